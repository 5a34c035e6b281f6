/* Digests, the .mf manifest and the .cert signature. Private to package/. */
#ifndef VDK_OVA_MF_H
#define VDK_OVA_MF_H

#include "ova.h"

/* Limits on attacker-controlled sizes. */
#define OVA_OVF_MAX     (32u << 20) /* descriptor */
#define OVA_MF_MAX      (4u << 20)  /* manifest */
#define OVA_CERT_MAX    (1u << 20)  /* certificate */
#define OVA_NAME_MAX    4096        /* member name */
#define OVA_MEMBERS_MAX 100000

/* Digests ---------------------------------------------------------- */

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

#endif
