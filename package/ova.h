/* OVA/OVF packages (DSP0243): the package layer. It sits above the disk
 * formats (it opens images, finds their formats and runs the conversion
 * job) and below the tools. A package is a .ova (a tar), or an extracted
 * OVF package given by its .ovf file or its folder. Nothing is ever
 * extracted by member name: a member is a window into the .ova, so a disk
 * inside is opened in place by the format readers.
 *
 * This is the public API; ova_private.h, ova_tar.h, ova_ovf.h and
 * ova_mf.h are the module's own. */
#ifndef VDK_OVA_H
#define VDK_OVA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "findings.h"
#include "format.h"
#include "pipeline.h"

enum ova_alg { OVA_ALG_NONE = 0, OVA_SHA1, OVA_SHA256, OVA_SHA512 };

struct ova_cert_info {
	bool present;
	bool sig_ok; /* the signature over the .mf verifies with the cert's key */
	bool self_signed;
	bool trusted; /* chains to the CA file (or the system store) */
	bool time_ok; /* now within notBefore..notAfter */
	char subject[256], issuer[256];
	char not_before[64], not_after[64];
	char trust_msg[256];
};

/* Packages (ova.c) --------------------------------------------------- */

struct ova_pkg; /* an open package (opaque) */

int ova_pkg_open(const char *path, struct ova_pkg **out, struct vdk_err *e);
void ova_pkg_close(struct ova_pkg *p);
int ova_pkg_find(const struct ova_pkg *p, const char *name);
/* A source over one member (a window of the .ova, or the folder's file). */
int ova_member_src(struct ova_pkg *p, int idx, struct vdk_src **out, struct vdk_err *e);
/* The inventory `ova list` prints. */
struct vdk_json *ova_pkg_inventory(const struct ova_pkg *p);
void ova_pkg_inventory_into(const struct ova_pkg *p, struct vdk_json *obj);
/* Refuse a package file whose size or mtime changed since open (NFS). */
int ova_pkg_stable(struct ova_pkg *p, struct vdk_err *e);

/* What verify and unpack found: the same findings `vdkit check` reports,
 * plus the certificate and the outputs. Errors make the package bad. */
struct ova_report {
	struct vdk_findings issues;
	struct ova_cert_info cert;
	size_t checked; /* files whose digest matched */
	char **outputs; /* unpack: files written */
	size_t nout;
};
void ova_report_free(struct ova_report *r);

struct ova_verify_opts {
	const char *cafile; /* --require-trusted: untrusted becomes an error */
};
/* Every file against the manifest in one sequential pass. Findings go to
 * r (errors make the package bad); the return is negative only for I/O
 * failures. */
int ova_verify(struct ova_pkg *p, const struct ova_verify_opts *o, struct ova_report *r,
               struct vdk_err *e);

struct ova_unpack_opts {
	const char *out_fmt; /* raw, qcow2, vhdx, vmdk... */
	struct vdk_opts *wopts;
	struct vdk_convert_opts conv;
	const char *cafile;
	bool no_verify; /* skip digests (for the benchmark baseline) */
};
int ova_unpack(struct ova_pkg *p, const char *dir, struct ova_unpack_opts *o, struct ova_report *r,
               struct vdk_err *e);

struct ova_pack_opts {
	const char *name; /* VirtualSystem name; default from OUT */
	enum ova_alg alg;
	const char *sign_key, *sign_cert;
	const char *in_fmt; /* NULL: probe */
	struct vdk_convert_opts conv;
};
int ova_pack(const char *out, const char *const *disks, size_t ndisks,
             const struct ova_pack_opts *o, struct vdk_err *e);

enum ova_scan_kind { OVA_SCAN_OVA = 1, OVA_SCAN_OVF, OVA_SCAN_ERROR, OVA_SCAN_SKIPPED };
struct ova_scan_item {
	enum ova_scan_kind kind;
	char *path;
	char *msg;  /* error or skip reason */
	char *name; /* VirtualSystem name of packages that opened */
};
struct ova_scan {
	struct ova_scan_item *v;
	size_t n, cap;
};
/* MTV's rules: .ova in the root and one folder down, .ovf up to two
 * folders down, one .ovf per folder; files modified within 30 s of now, or
 * empty, are skipped as still being copied. json, when not NULL, is an
 * array that receives one object per item (path, kind, error or reason,
 * inventory). */
int ova_scan_dir(const char *dir, time_t now, struct ova_scan *s, struct vdk_json *json,
                 struct vdk_err *e);
const char *ova_scan_kind_name(enum ova_scan_kind k);
void ova_scan_free(struct ova_scan *s);

#endif
