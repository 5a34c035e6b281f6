/* OVF manifests and certificates (DSP0243 5.1, 5.2). A manifest line is
 * "SHA256(name)= hex" (VMware, ovftool) or "SHA256 (name) = hex"
 * (VirtualBox); hex in either case. A certificate file holds a line of the
 * same shape whose value is the signature over the whole .mf, followed by
 * the signer's PEM certificate (and possibly its chain). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ova_private.h"
#include "util.h"

static const char *mf_fmt = "manifest";

/* Digests ----------------------------------------------------------- */

static const EVP_MD *mf_md(enum ova_alg a)
{
	switch (a) {
	case OVA_SHA1:
		return EVP_sha1();
	case OVA_SHA256:
		return EVP_sha256();
	case OVA_SHA512:
		return EVP_sha512();
	default:
		return NULL;
	}
}

const char *ova_alg_name(enum ova_alg a)
{
	return a == OVA_SHA1     ? "SHA1"
	       : a == OVA_SHA256 ? "SHA256"
	       : a == OVA_SHA512 ? "SHA512"
	                         : "?";
}

size_t ova_alg_len(enum ova_alg a)
{
	return a == OVA_SHA1 ? 20 : a == OVA_SHA256 ? 32 : a == OVA_SHA512 ? 64 : 0;
}

struct ova_hash *ova_hash_new(enum ova_alg a)
{
	const EVP_MD *md = mf_md(a);
	EVP_MD_CTX *c = md ? EVP_MD_CTX_new() : NULL;
	if (c && EVP_DigestInit_ex(c, md, NULL) != 1) {
		EVP_MD_CTX_free(c);
		c = NULL;
	}
	return (struct ova_hash *)c;
}

void ova_hash_update(struct ova_hash *h, const void *buf, size_t len)
{
	EVP_DigestUpdate((EVP_MD_CTX *)h, buf, len);
}

void ova_hash_final(struct ova_hash *h, uint8_t *out)
{
	unsigned n = 0;
	EVP_DigestFinal_ex((EVP_MD_CTX *)h, out, &n);
}

void ova_hash_free(struct ova_hash *h)
{
	EVP_MD_CTX_free((EVP_MD_CTX *)h);
}

void ova_hex(const uint8_t *d, size_t len, char *out)
{
	static const char x[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = x[d[i] >> 4];
		out[2 * i + 1] = x[d[i] & 15];
	}
	out[2 * len] = 0;
}

/* Manifest ---------------------------------------------------------- */

static enum ova_alg mf_alg(const char *s, size_t n)
{
	if (n == 4 && !strncasecmp(s, "SHA1", 4))
		return OVA_SHA1;
	if (n == 6 && !strncasecmp(s, "SHA256", 6))
		return OVA_SHA256;
	if (n == 6 && !strncasecmp(s, "SHA512", 6))
		return OVA_SHA512;
	return OVA_ALG_NONE;
}

static int mf_unhex(const char *s, size_t n, uint8_t *out, size_t want)
{
	if (n != 2 * want)
		return -1;
	for (size_t i = 0; i < want; i++) {
		int v = 0;
		for (int k = 0; k < 2; k++) {
			char c = s[2 * i + k];
			int d = isdigit((unsigned char)c) ? c - '0'
			        : (c >= 'a' && c <= 'f')  ? c - 'a' + 10
			        : (c >= 'A' && c <= 'F')  ? c - 'A' + 10
			                                  : -1;
			if (d < 0)
				return -1;
			v = v * 16 + d;
		}
		out[i] = (uint8_t)v;
	}
	return 0;
}

/* Split one line into algorithm, name and value (the hex after the last
 * '='); the name runs from the first '(' to the ')' just before it. */
struct mf_line {
	enum ova_alg alg;
	const char *name, *val;
	size_t name_len, val_len;
};

static bool mf_split(const char *l, size_t n, struct mf_line *out)
{
	while (n && (l[n - 1] == '\r' || l[n - 1] == ' ' || l[n - 1] == '\t'))
		n--;
	const char *open = memchr(l, '(', n);
	const char *eq = NULL;
	for (size_t i = n; i-- > 0;)
		if (l[i] == '=') {
			eq = l + i;
			break;
		}
	if (!open || !eq || eq < open)
		return false;
	size_t al = (size_t)(open - l);
	while (al && l[al - 1] == ' ')
		al--;
	out->alg = mf_alg(l, al);
	const char *close = eq;
	while (close > open && close[-1] == ' ')
		close--;
	if (close <= open + 1 || close[-1] != ')')
		return false;
	out->name = open + 1;
	out->name_len = (size_t)(close - 1 - out->name);
	out->val = eq + 1;
	while (out->val < l + n && *out->val == ' ')
		out->val++;
	out->val_len = (size_t)(l + n - out->val);
	return out->name_len > 0;
}

static int mf_add(struct ova_mf *mf, const struct mf_line *ln, const char *fname, uint64_t off,
                  struct vdk_err *e)
{
	struct ova_mf_entry en = {.alg = ln->alg};
	if (mf_unhex(ln->val, ln->val_len, en.digest, ova_alg_len(ln->alg)) < 0)
		return vdk_bad(e, fname, mf_fmt, off, "bad %s digest for \"%.*s\"",
		               ova_alg_name(ln->alg), (int)VDK_MIN(ln->name_len, (size_t)200),
		               ln->name);
	if (memchr(ln->name, 0, ln->name_len))
		return vdk_bad(e, fname, mf_fmt, off, "NUL byte in a file name");
	en.name = strndup(ln->name, ln->name_len);
	if (!en.name)
		return vdk_ioerr(e, ENOMEM, fname, "out of memory");
	if (ova_mf_find(mf, en.name)) {
		int r = vdk_bad(e, fname, mf_fmt, off, "\"%.200s\" is listed twice", en.name);
		free(en.name);
		return r;
	}
	struct ova_mf_entry *v = realloc(mf->v, (mf->n + 1) * sizeof(*v));
	if (!v) {
		free(en.name);
		return vdk_ioerr(e, ENOMEM, fname, "out of memory");
	}
	mf->v = v;
	mf->v[mf->n++] = en;
	return 0;
}

int ova_mf_parse(const char *buf, size_t len, const char *fname, struct ova_mf *mf,
                 struct vdk_err *e)
{
	memset(mf, 0, sizeof(*mf));
	if (len > OVA_MF_MAX)
		return vdk_bad(e, fname, mf_fmt, VDK_NO_OFFSET, "manifest is too large");
	size_t pos = 0;
	/* A UTF-8 byte-order mark from Windows tools. */
	if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
		pos = 3;
	int r = 0;
	while (pos < len && r == 0) {
		const char *l = buf + pos, *nl = memchr(l, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - l) : len - pos;
		struct mf_line ln;
		size_t k = 0;
		while (k < n && (l[k] == ' ' || l[k] == '\t' || l[k] == '\r'))
			k++;
		if (k == n) {
			pos += n + 1;
			continue;
		}
		if (!mf_split(l, n, &ln))
			r = vdk_bad(e, fname, mf_fmt, pos, "malformed line");
		else if (ln.alg == OVA_ALG_NONE)
			r = vdk_unsup(e, fname, mf_fmt, pos,
			              "unsupported digest (SHA1, SHA256 and SHA512 are)");
		else
			r = mf_add(mf, &ln, fname, pos, e);
		pos += n + 1;
	}
	if (r < 0)
		ova_mf_free(mf);
	return r;
}

struct ova_mf_entry *ova_mf_find(const struct ova_mf *mf, const char *name)
{
	for (size_t i = 0; i < mf->n; i++)
		if (!strcmp(mf->v[i].name, name))
			return &mf->v[i];
	return NULL;
}

void ova_mf_free(struct ova_mf *mf)
{
	for (size_t i = 0; i < mf->n; i++)
		free(mf->v[i].name);
	free(mf->v);
	memset(mf, 0, sizeof(*mf));
}

size_t ova_mf_line(char *buf, size_t cap, enum ova_alg alg, const char *name, const uint8_t *digest)
{
	char hex[2 * OVA_DIGEST_MAX + 1];
	ova_hex(digest, ova_alg_len(alg), hex);
	int n = snprintf(buf, cap, "%s(%s)= %s\n", ova_alg_name(alg), name, hex);
	return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/* Certificates ------------------------------------------------------ */

static void cert_name(X509_NAME *n, char *out, size_t cap)
{
	BIO *b = BIO_new(BIO_s_mem());
	out[0] = 0;
	if (!b)
		return;
	X509_NAME_print_ex(b, n, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
	int got = BIO_read(b, out, (int)cap - 1);
	out[got > 0 ? got : 0] = 0;
	BIO_free(b);
}

static void cert_time(const ASN1_TIME *t, char *out, size_t cap)
{
	BIO *b = BIO_new(BIO_s_mem());
	out[0] = 0;
	if (!b)
		return;
	ASN1_TIME_print(b, t);
	int got = BIO_read(b, out, (int)cap - 1);
	out[got > 0 ? got : 0] = 0;
	BIO_free(b);
}

/* The signature line: the first non-blank line of the file. */
static int cert_sigline(const uint8_t *cert, size_t len, const char *cname, struct mf_line *ln,
                        size_t *end, struct vdk_err *e)
{
	size_t pos = 0;
	while (pos < len && (cert[pos] == '\n' || cert[pos] == '\r' || cert[pos] == ' '))
		pos++;
	const uint8_t *nl = memchr(cert + pos, '\n', len - pos);
	size_t n = nl ? (size_t)(nl - cert - pos) : len - pos;
	if (!mf_split((const char *)cert + pos, n, ln) || ln->alg == OVA_ALG_NONE)
		return vdk_bad(e, cname, "certificate", pos, "no signature line");
	*end = pos + n;
	return 0;
}

static int cert_check_sig(X509 *x, const struct mf_line *ln, const uint8_t *mf, size_t mf_len,
                          struct ova_cert_info *ci, const char *cname, struct vdk_err *e)
{
	size_t slen = ln->val_len / 2;
	uint8_t *sig = malloc(slen ? slen : 1);
	if (!sig)
		return vdk_ioerr(e, ENOMEM, cname, "out of memory");
	if (slen == 0 || mf_unhex(ln->val, ln->val_len, sig, slen) < 0) {
		free(sig);
		return vdk_bad(e, cname, "certificate", VDK_NO_OFFSET, "bad signature hex");
	}
	EVP_PKEY *pk = X509_get0_pubkey(x);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	ci->sig_ok = pk && c && EVP_DigestVerifyInit(c, NULL, mf_md(ln->alg), NULL, pk) == 1 &&
	             EVP_DigestVerify(c, sig, slen, mf, mf_len) == 1;
	EVP_MD_CTX_free(c);
	free(sig);
	ERR_clear_error();
	return 0;
}

static void cert_trust(X509 *x, STACK_OF(X509) * chain, const char *cafile,
                       struct ova_cert_info *ci)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	ci->trusted = false;
	if (!st || !ctx)
		goto out;
	if (cafile ? X509_STORE_load_file(st, cafile) != 1
	           : X509_STORE_set_default_paths(st) != 1) {
		snprintf(ci->trust_msg, sizeof(ci->trust_msg), "cannot load CA file %s",
		         cafile ? cafile : "(system)");
		goto out;
	}
	if (X509_STORE_CTX_init(ctx, st, x, chain) != 1)
		goto out;
	ci->trusted = X509_verify_cert(ctx) == 1;
	snprintf(ci->trust_msg, sizeof(ci->trust_msg), "%s",
	         ci->trusted ? "trusted"
	                     : X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	ERR_clear_error();
}

int ova_cert_verify(const uint8_t *cert, size_t cert_len, const char *cname, const uint8_t *mf,
                    size_t mf_len, const char *mf_name, const char *cafile,
                    struct ova_cert_info *ci, struct vdk_err *e)
{
	struct mf_line ln;
	size_t end = 0;
	memset(ci, 0, sizeof(*ci));
	ci->present = true;
	if (cert_len > OVA_CERT_MAX)
		return vdk_bad(e, cname, "certificate", VDK_NO_OFFSET,
		               "certificate file too large");
	int r = cert_sigline(cert, cert_len, cname, &ln, &end, e);
	if (r < 0)
		return r;
	if (mf_name && (ln.name_len != strlen(mf_name) || memcmp(ln.name, mf_name, ln.name_len)))
		return vdk_bad(e, cname, "certificate", 0, "the signature is not over %s", mf_name);
	BIO *b = BIO_new_mem_buf(cert + end, (int)(cert_len - end));
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509 *more;
	while (x && chain && (more = PEM_read_bio_X509(b, NULL, NULL, NULL)))
		sk_X509_push(chain, more);
	BIO_free(b);
	ERR_clear_error();
	if (!x) {
		sk_X509_pop_free(chain, X509_free);
		return vdk_bad(e, cname, "certificate", end,
		               "no PEM certificate after the signature");
	}
	cert_name(X509_get_subject_name(x), ci->subject, sizeof(ci->subject));
	cert_name(X509_get_issuer_name(x), ci->issuer, sizeof(ci->issuer));
	cert_time(X509_get0_notBefore(x), ci->not_before, sizeof(ci->not_before));
	cert_time(X509_get0_notAfter(x), ci->not_after, sizeof(ci->not_after));
	ci->time_ok = X509_cmp_current_time(X509_get0_notBefore(x)) < 0 &&
	              X509_cmp_current_time(X509_get0_notAfter(x)) > 0;
	ci->self_signed = X509_check_issued(x, x) == X509_V_OK;
	r = cert_check_sig(x, &ln, mf, mf_len, ci, cname, e);
	if (r == 0)
		cert_trust(x, chain, cafile, ci);
	X509_free(x);
	sk_X509_pop_free(chain, X509_free);
	return r;
}

static int cert_read_file(const char *path, char **out, size_t *len, struct vdk_err *e)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return vdk_ioerr(e, errno, path, "cannot open: %s", strerror(errno));
	char *b = malloc(OVA_CERT_MAX + 1);
	size_t n = b ? fread(b, 1, OVA_CERT_MAX + 1, f) : 0;
	fclose(f);
	if (!b)
		return vdk_ioerr(e, ENOMEM, path, "out of memory");
	if (n > OVA_CERT_MAX) {
		free(b);
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, path, NULL, VDK_NO_OFFSET, "too large");
	}
	b[n] = 0;
	*out = b;
	*len = n;
	return 0;
}

static int cert_load(const char *keyfile, const char *certfile, EVP_PKEY **pk, char **pem,
                     size_t *pem_len, struct vdk_err *e)
{
	FILE *f = fopen(keyfile, "rb");
	if (!f)
		return vdk_ioerr(e, errno, keyfile, "cannot open: %s", strerror(errno));
	*pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!*pk)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, keyfile, NULL, VDK_NO_OFFSET,
		                   "not a PEM private key (or it is encrypted)");
	int r = cert_read_file(certfile, pem, pem_len, e);
	if (r < 0)
		return r;
	BIO *b = BIO_new_mem_buf(*pem, (int)*pem_len);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	bool match = x && X509_check_private_key(x, *pk) == 1;
	X509_free(x);
	ERR_clear_error();
	if (!match)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, certfile, NULL, VDK_NO_OFFSET,
		                   "not a PEM certificate matching the key");
	return 0;
}

int ova_cert_sign(const char *keyfile, const char *certfile, enum ova_alg alg, const uint8_t *mf,
                  size_t mf_len, const char *mf_name, char **out, size_t *out_len,
                  struct vdk_err *e)
{
	EVP_PKEY *pk = NULL;
	char *pem = NULL;
	size_t pem_len = 0, slen = 0;
	uint8_t *sig = NULL;
	EVP_MD_CTX *c = NULL;
	int r = cert_load(keyfile, certfile, &pk, &pem, &pem_len, e);
	if (r < 0)
		goto out;
	c = EVP_MD_CTX_new();
	if (!c || EVP_DigestSignInit(c, NULL, mf_md(alg), NULL, pk) != 1 ||
	    EVP_DigestSign(c, NULL, &slen, mf, mf_len) != 1 || !(sig = malloc(slen)) ||
	    EVP_DigestSign(c, sig, &slen, mf, mf_len) != 1) {
		r = vdk_err_set(e, VDK_E_IO, EINVAL, keyfile, NULL, VDK_NO_OFFSET,
		                "signing failed");
		goto out;
	}
	size_t cap = strlen(mf_name) + 2 * slen + pem_len + 32;
	char *o = malloc(cap);
	if (!o) {
		r = vdk_ioerr(e, ENOMEM, keyfile, "out of memory");
		goto out;
	}
	int n = snprintf(o, cap, "%s(%s)= ", ova_alg_name(alg), mf_name);
	ova_hex(sig, slen, o + n);
	n += (int)(2 * slen);
	o[n++] = '\n';
	memcpy(o + n, pem, pem_len);
	*out = o;
	*out_len = (size_t)n + pem_len;
out:
	ERR_clear_error();
	EVP_MD_CTX_free(c);
	EVP_PKEY_free(pk);
	free(pem);
	free(sig);
	return r;
}
