/* tar members of a .ova: index, names, and writing members. Private to package/. */
#ifndef VDK_OVA_TAR_H
#define VDK_OVA_TAR_H

#include "ova_mf.h"

/* tar (ova_tar.c) --------------------------------------------------- */

struct ova_member {
	char *name;   /* normalized: no "./", no trailing "/" */
	uint64_t off; /* data offset in the package file */
	uint64_t size;
	bool dir;   /* a directory entry (tolerated, no data) */
	char *path; /* folder packages: the file's path; NULL in a tar */
};

struct ova_tar {
	struct ova_member *v;
	size_t n, cap;
};

/* Index every member of the tar in src: ustar, GNU (L/K, base-256) and pax
 * (x/g: path, size). Refuses links, devices, absolute names, "..", NUL in
 * names, duplicates and data past the end of src. */
int ova_tar_index(struct vdk_src *src, struct ova_tar *t, struct vdk_err *e);
void ova_tar_free(struct ova_tar *t);
/* True when name is a safe relative member name (see ova_tar_index). */
bool ova_name_ok(const char *name);

/* Writing: a header for a regular file (GNU L record first when the name
 * does not fit ustar; base-256 size past 8 GiB). */
size_t ova_tar_hdr_len(const char *name);
int ova_tar_hdr(uint8_t *buf, size_t buflen, const char *name, uint64_t size, uint64_t mtime,
                struct vdk_err *e);
/* A sequential sink whose bytes become the data of a tar member that
 * starts (header first) at hdr_off of parent. The header is written when
 * the member sink is committed, then ova_tar_member_info gives the data
 * size and digest; the parent is not committed. */
int ova_tar_member_sink(struct vdk_sink *parent, uint64_t hdr_off, const char *name,
                        enum ova_alg alg, uint64_t mtime, struct vdk_sink **out, struct vdk_err *e);
/* After commit: data size, digest, and the offset just past the padding. */
void ova_tar_member_info(const struct vdk_sink *k, uint64_t *size, uint8_t *digest, uint64_t *end);

#endif
