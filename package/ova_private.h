/* What ova.c, ova_vsrc.c and ova_xfer.c share: the open package and the verifying source. Private
 * to package/. */
#ifndef VDK_OVA_PRIVATE_H
#define VDK_OVA_PRIVATE_H

#include "ova.h"
#include "ova_mf.h"
#include "ova_ovf.h"
#include "ova_tar.h"

struct ova_pkg {
	char *path;  /* as given */
	char *label; /* for messages: the .ova or the .ovf */
	bool tar;
	struct vdk_src *src; /* the .ova */
	char *dir;           /* folder packages */
	struct ova_tar m;    /* members (tar) or the folder's files */
	int ovf, mf, cert;   /* member indexes, -1 when absent */
	uint8_t *ovf_buf, *mf_buf, *cert_buf;
	size_t ovf_len, mf_len, cert_len;
	struct ova_ovf desc;
	struct ova_mf man;
	uint64_t st_size; /* the .ova's size and mtime at open */
	struct timespec mtime;
};

/* ova_vsrc.c: the source ova unpack converts from: file f's member (or
 * chunked members, concatenated), hashed for the manifest as it is read
 * when verify is set. finish hashes what the reader skipped and names the
 * first member whose digest differs (*bad), or leaves *bad NULL. */
struct ova_file;
struct ova_vsrc_stats {
	uint64_t file_reads, file_bytes; /* read-ahead and hole requests */
	uint64_t reread;                 /* bytes read only to be hashed */
};
int ova_vsrc_open(struct ova_pkg *p, const struct ova_file *f, bool verify, struct vdk_src **out,
                  struct vdk_err *e);
int ova_vsrc_finish(struct vdk_src *s, const char **bad, struct ova_vsrc_stats *st,
                    struct vdk_err *e);
/* Shared inside the module (ova.c, ova_xfer.c). */
void ova_free_names(char **v, size_t n);
/* Structure checks of verify that read no file contents; want[i] is set
 * for every member that belongs to the package. */
int ova_check_structure(struct ova_pkg *p, const struct ova_verify_opts *o, struct ova_report *r,
                        bool *want);

#endif
