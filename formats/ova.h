/* OVA/OVF packages (DSP0243): a container module, not a disk format, so it
 * is not in the registry. A package is a .ova (a tar), or an extracted OVF
 * package given by its .ovf file or its folder. Nothing is ever extracted by
 * member name: a member is a window into the .ova, so a disk inside is
 * opened in place by the format readers. */
#ifndef VDK_OVA_H
#define VDK_OVA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "format.h"
#include "pipeline.h"

/* Limits on attacker-controlled sizes. */
#define OVA_OVF_MAX     (32u << 20) /* descriptor */
#define OVA_MF_MAX      (4u << 20)  /* manifest */
#define OVA_CERT_MAX    (1u << 20)  /* certificate */
#define OVA_NAME_MAX    4096        /* member name */
#define OVA_MEMBERS_MAX 100000

/* Digests ---------------------------------------------------------- */

enum ova_alg { OVA_ALG_NONE = 0, OVA_SHA1, OVA_SHA256, OVA_SHA512 };
#define OVA_DIGEST_MAX 64

const char *ova_alg_name(enum ova_alg a); /* "SHA256" */
size_t ova_alg_len(enum ova_alg a);       /* bytes */
struct ova_hash;
struct ova_hash *ova_hash_new(enum ova_alg a);
void ova_hash_update(struct ova_hash *h, const void *buf, size_t len);
/* Writes ova_alg_len bytes. */
void ova_hash_final(struct ova_hash *h, uint8_t *out);
void ova_hash_free(struct ova_hash *h);
void ova_hex(const uint8_t *d, size_t len, char *out); /* lower case, NUL-terminated */

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

/* OVF descriptor (ova_ovf.c) ----------------------------------------- */

struct ova_file {
	char *id, *href;
	uint64_t size;
	bool has_size;
	bool gzip;
	uint64_t chunk; /* chunkSize, 0 when not chunked */
};

struct ova_disk {
	char *id, *file_ref, *format;
	int file;          /* index into files, -1 when none (empty disk) */
	uint64_t capacity; /* bytes */
	uint64_t populated;
	bool has_populated;
	char *controller; /* "scsi", "ide", "sata", "nvme"... or NULL */
	char *ctrl_subtype;
	int64_t address; /* AddressOnParent, -1 unknown */
};

struct ova_nic {
	char *name, *type, *network;
};

struct ova_ctrl {
	char *id, *type, *subtype;
};

struct ova_ovf {
	const char *version; /* "0.9", "1.x", "2.x" */
	char *name;          /* VirtualSystem name (or id) */
	char *os;            /* vmw:osType or OperatingSystemSection description */
	char *firmware;      /* "bios" or "efi" */
	char *producer;      /* "vmware", "virtualbox" or NULL */
	uint64_t cpus;
	uint64_t memory; /* bytes */
	struct ova_file *files;
	size_t nfiles;
	struct ova_disk *disks;
	size_t ndisks;
	struct ova_nic *nics;
	size_t nnics;
	struct ova_ctrl *ctrls;
	size_t nctrls;
};

/* Parse a descriptor from a buffer (len <= OVA_OVF_MAX). No network, no
 * entity substitution, no DTD: a DOCTYPE is refused outright. */
int ova_ovf_parse(const uint8_t *buf, size_t len, const char *name, struct ova_ovf *o,
                  struct vdk_err *e);
void ova_ovf_free(struct ova_ovf *o);
void ova_ovf_json(const struct ova_ovf *o, struct vdk_json *obj);
/* "byte * 2^30" style units: the multiplier, or false when invalid. */
bool ova_ovf_units(const char *s, uint64_t *mult);

struct ova_pack_disk {
	const char *href;
	uint64_t file_size;
	uint64_t capacity;
	uint64_t populated;
};
/* An OVF 1.0 envelope (VMware's conventions) for pack. */
int ova_ovf_write(const char *vm_name, const struct ova_pack_disk *d, size_t n, uint8_t **out,
                  size_t *len, struct vdk_err *e);

/* Manifest and certificate (ova_mf.c) -------------------------------- */

struct ova_mf_entry {
	char *name;
	enum ova_alg alg;
	uint8_t digest[OVA_DIGEST_MAX];
	bool seen; /* set by verify */
};

struct ova_mf {
	struct ova_mf_entry *v;
	size_t n;
};

int ova_mf_parse(const char *buf, size_t len, const char *name, struct ova_mf *mf,
                 struct vdk_err *e);
struct ova_mf_entry *ova_mf_find(const struct ova_mf *mf, const char *name);
void ova_mf_free(struct ova_mf *mf);
/* One strict "SHA256(name)= hex\n" line; returns its length (0 when it
 * does not fit). */
size_t ova_mf_line(char *buf, size_t cap, enum ova_alg alg, const char *name,
                   const uint8_t *digest);

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

/* Check a .cert (signature line over the .mf, then PEM certificates). A
 * bad signature is an error; trust is reported in ci. cafile NULL: the
 * system store. */
int ova_cert_verify(const uint8_t *cert, size_t cert_len, const char *cert_name, const uint8_t *mf,
                    size_t mf_len, const char *mf_name, const char *cafile,
                    struct ova_cert_info *ci, struct vdk_err *e);
/* Sign mf with the PEM key; out is the .cert text (signature line + cert). */
int ova_cert_sign(const char *keyfile, const char *certfile, enum ova_alg alg, const uint8_t *mf,
                  size_t mf_len, const char *mf_name, char **out, size_t *out_len,
                  struct vdk_err *e);

/* Packages (ova.c) --------------------------------------------------- */

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

int ova_pkg_open(const char *path, struct ova_pkg **out, struct vdk_err *e);
void ova_pkg_close(struct ova_pkg *p);
int ova_pkg_find(const struct ova_pkg *p, const char *name);
/* A source over one member (a window of the .ova, or the folder's file). */
int ova_member_src(struct ova_pkg *p, int idx, struct vdk_src **out, struct vdk_err *e);
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
/* The inventory `ova list` prints. */
struct vdk_json *ova_pkg_inventory(const struct ova_pkg *p);
void ova_pkg_inventory_into(const struct ova_pkg *p, struct vdk_json *obj);
/* Refuse a package file whose size or mtime changed since open (NFS). */
int ova_pkg_stable(struct ova_pkg *p, struct vdk_err *e);

enum ova_level { OVA_WARN = 1, OVA_ERROR = 2 };
struct ova_issue {
	enum ova_level level;
	char *file;
	char *msg;
};
struct ova_report {
	struct ova_issue *v;
	size_t n, cap;
	size_t errors, warnings;
	struct ova_cert_info cert;
	size_t checked; /* files whose digest matched */
	char **outputs; /* unpack: files written */
	size_t nout;
};
void ova_report_add(struct ova_report *r, enum ova_level lv, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
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
 * empty, are skipped as still being copied. */
void ova_scan_free(struct ova_scan *s);

/* Shared inside the module (ova.c, ova_xfer.c). */
void ova_free_names(char **v, size_t n);
/* Structure checks of verify that read no file contents; want[i] is set
 * for every member that belongs to the package. */
int ova_check_structure(struct ova_pkg *p, const struct ova_verify_opts *o, struct ova_report *r,
                        bool *want);

/* json, when not NULL, is an array that receives one object per item
 * (path, kind, error or reason, inventory). */
int ova_scan_dir(const char *dir, time_t now, struct ova_scan *s, struct vdk_json *json,
                 struct vdk_err *e);
const char *ova_scan_kind_name(enum ova_scan_kind k);

#endif
