/* tar as found in OVA packages: POSIX ustar, GNU (L/K long names, base-256
 * numbers) and pax (x/g records for path and size). The reader only
 * indexes members; their data stays in the .ova and is read through
 * windows. The writer emits ustar, with GNU extensions only when needed
 * (vSphere does not accept pax). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ova_private.h"
#include "util.h"

#define TAR_BLOCK   512
#define TAR_PAX_MAX (1u << 20)

/* Header field offsets (POSIX.1-1988 ustar layout). */
enum {
	TAR_NAME = 0,
	TAR_MODE = 100,
	TAR_UID = 108,
	TAR_GID = 116,
	TAR_SIZE = 124,
	TAR_MTIME = 136,
	TAR_CHKSUM = 148,
	TAR_TYPE = 156,
	TAR_LINK = 157,
	TAR_MAGIC = 257,
	TAR_VERSION = 263,
	TAR_UNAME = 265,
	TAR_GNAME = 297,
	TAR_PREFIX = 345,
};

struct tar_pending {
	char *name; /* from GNU L or pax path */
	bool has_size;
	uint64_t size; /* pax size */
};

static const char *tar_fmt = "tar";

/* Numeric fields: octal (leading spaces/NULs allowed, ended by space or
 * NUL), or GNU base-256 when the high bit of the first byte is set. */
static bool tar_num(const uint8_t *p, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	if (p[0] & 0x80) {
		if (p[0] != 0x80)
			return false; /* negative or > 2^64 */
		for (size_t i = 1; i < len; i++) {
			if (v >> 56)
				return false;
			v = (v << 8) | p[i];
		}
		*out = v;
		return true;
	}
	size_t i = 0;
	while (i < len && (p[i] == ' ' || p[i] == 0))
		i++;
	if (i == len) {
		*out = 0;
		return true;
	}
	for (; i < len && p[i] >= '0' && p[i] <= '7'; i++) {
		if (v >> 61)
			return false;
		v = (v << 3) | (uint64_t)(p[i] - '0');
	}
	for (; i < len; i++)
		if (p[i] != ' ' && p[i] != 0)
			return false;
	*out = v;
	return true;
}

/* The sum of the header bytes with the checksum field read as spaces;
 * some old tars summed signed chars, so both are accepted. */
static bool tar_checksum_ok(const uint8_t *h)
{
	uint64_t want;
	if (!tar_num(h + TAR_CHKSUM, 8, &want))
		return false;
	uint64_t u = 0;
	int64_t s = 0;
	for (size_t i = 0; i < TAR_BLOCK; i++) {
		uint8_t c = (i >= TAR_CHKSUM && i < TAR_CHKSUM + 8) ? ' ' : h[i];
		u += c;
		s += (int8_t)c;
	}
	return want == u || (int64_t)want == s;
}

bool ova_name_ok(const char *name)
{
	if (!name[0] || name[0] == '/' || strlen(name) >= OVA_NAME_MAX)
		return false;
	const char *p = name;
	while (*p) {
		const char *q = strchr(p, '/');
		size_t n = q ? (size_t)(q - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
				return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

/* Drop leading "./" and trailing "/" (tar c ./x, directory entries). */
static void tar_normalize(char *name)
{
	while (name[0] == '.' && name[1] == '/') {
		size_t skip = 2;
		while (name[skip] == '/')
			skip++;
		memmove(name, name + skip, strlen(name + skip) + 1);
	}
	size_t n = strlen(name);
	while (n > 1 && name[n - 1] == '/')
		name[--n] = 0;
}

/* Copy a fixed-width, possibly unterminated field. */
static void tar_field(char *dst, const uint8_t *src, size_t len)
{
	size_t n = strnlen((const char *)src, len);
	memcpy(dst, src, n);
	dst[n] = 0;
}

static char *tar_header_name(const uint8_t *h)
{
	char name[101], prefix[156];
	tar_field(name, h + TAR_NAME, 100);
	prefix[0] = 0;
	/* Only POSIX ustar has a prefix; GNU keeps other fields there. */
	if (!memcmp(h + TAR_MAGIC, "ustar\0", 6))
		tar_field(prefix, h + TAR_PREFIX, 155);
	char *out = malloc(strlen(prefix) + strlen(name) + 2);
	if (!out)
		return NULL;
	if (prefix[0])
		sprintf(out, "%s/%s", prefix, name);
	else
		strcpy(out, name);
	return out;
}

/* Read a member's data (GNU L names, pax records) into memory. */
static int tar_read_meta(struct vdk_src *src, uint64_t off, uint64_t size, size_t max,
                         uint8_t **out, struct vdk_err *e)
{
	if (size > max)
		return vdk_bad(e, src->name, tar_fmt, off,
		               "extended header of %llu bytes is too large",
		               (unsigned long long)size);
	uint8_t *b = malloc((size_t)size + 1);
	if (!b)
		return vdk_ioerr(e, ENOMEM, src->name, "out of memory");
	int r = vdk_src_pread(src, b, (size_t)size, off, e);
	if (r < 0) {
		free(b);
		return r;
	}
	b[size] = 0;
	*out = b;
	return 0;
}

/* A GNU L name: the data, NUL-padded; an embedded NUL is refused. */
static int tar_long_name(struct vdk_src *src, uint64_t off, uint64_t size, char **name,
                         struct vdk_err *e)
{
	uint8_t *b;
	int r = tar_read_meta(src, off, size, OVA_NAME_MAX, &b, e);
	if (r < 0)
		return r;
	size_t n = (size_t)size;
	while (n > 0 && b[n - 1] == 0)
		n--;
	if (memchr(b, 0, n)) {
		free(b);
		return vdk_bad(e, src->name, tar_fmt, off, "member name contains a NUL byte");
	}
	b[n] = 0;
	free(*name);
	*name = (char *)b;
	return 0;
}

/* pax records "LEN key=value\n": path and size matter here. */
static int tar_pax(struct vdk_src *src, uint64_t off, uint64_t size, struct tar_pending *pd,
                   struct vdk_err *e)
{
	uint8_t *b;
	int r = tar_read_meta(src, off, size, TAR_PAX_MAX, &b, e);
	if (r < 0)
		return r;
	size_t pos = 0, n = (size_t)size;
	while (pos < n && r == 0) {
		size_t len = 0, i = pos;
		while (i < n && b[i] >= '0' && b[i] <= '9' && len < n)
			len = len * 10 + (size_t)(b[i++] - '0');
		if (i >= n || b[i] != ' ' || len <= i - pos + 1 || len > n - pos ||
		    b[pos + len - 1] != '\n') {
			r = vdk_bad(e, src->name, tar_fmt, off + pos, "malformed pax record");
			break;
		}
		const char *kv = (const char *)b + i + 1;
		size_t kvlen = pos + len - 1 - (i + 1);
		const char *eq = memchr(kv, '=', kvlen);
		if (!eq) {
			r = vdk_bad(e, src->name, tar_fmt, off + pos, "pax record without '='");
			break;
		}
		size_t klen = (size_t)(eq - kv), vlen = kvlen - klen - 1;
		const char *val = eq + 1;
		if (klen == 4 && !memcmp(kv, "path", 4)) {
			if (memchr(val, 0, vlen) || vlen >= OVA_NAME_MAX) {
				r = vdk_bad(e, src->name, tar_fmt, off + pos,
				            "pax path contains a NUL byte or is too long");
				break;
			}
			free(pd->name);
			pd->name = strndup(val, vlen);
			if (!pd->name)
				r = vdk_ioerr(e, ENOMEM, src->name, "out of memory");
		} else if (klen == 4 && !memcmp(kv, "size", 4)) {
			uint64_t v = 0;
			size_t k = 0;
			for (; k < vlen && val[k] >= '0' && val[k] <= '9'; k++)
				if (vdk_mul_overflow(v, 10, &v) ||
				    vdk_add_overflow(v, (uint64_t)(val[k] - '0'), &v))
					break;
			if (k != vlen || vlen == 0) {
				r = vdk_bad(e, src->name, tar_fmt, off + pos, "bad pax size");
				break;
			}
			pd->size = v;
			pd->has_size = true;
		} else if ((klen == 8 && !memcmp(kv, "linkpath", 8)) ||
		           (klen > 11 && !memcmp(kv, "GNU.sparse.", 11))) {
			r = vdk_unsup(e, src->name, tar_fmt, off + pos,
			              "pax links and sparse members are not allowed in a package");
			break;
		}
		pos += len;
	}
	free(b);
	return r;
}

static int tar_add(struct ova_tar *t, struct vdk_src *src, char *name, uint64_t off, uint64_t size,
                   bool dir, uint64_t hoff, struct vdk_err *e)
{
	tar_normalize(name);
	if (dir && (!name[0] || !strcmp(name, "."))) {
		free(name); /* the archive's own root, "./" */
		return 0;
	}
	if (!ova_name_ok(name)) {
		int r = vdk_bad(
		    e, src->name, tar_fmt, hoff,
		    "member name \"%.200s\" is absolute, has \"..\" or control characters", name);
		free(name);
		return r;
	}
	for (size_t i = 0; i < t->n; i++) {
		if (!strcmp(t->v[i].name, name)) {
			int r = vdk_bad(e, src->name, tar_fmt, hoff, "duplicate member \"%.200s\"",
			                name);
			free(name);
			return r;
		}
	}
	if (t->n >= OVA_MEMBERS_MAX) {
		free(name);
		return vdk_bad(e, src->name, tar_fmt, hoff, "too many members");
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct ova_member *v = realloc(t->v, cap * sizeof(*v));
		if (!v) {
			free(name);
			return vdk_ioerr(e, ENOMEM, src->name, "out of memory");
		}
		t->v = v;
		t->cap = cap;
	}
	t->v[t->n++] = (struct ova_member){.name = name, .off = off, .size = size, .dir = dir};
	return 0;
}

static int tar_bad_type(struct vdk_src *src, uint64_t hoff, char type, const char *name,
                        struct vdk_err *e)
{
	const char *what = type == '1'   ? "a hard link"
	                   : type == '2' ? "a symbolic link"
	                   : type == '3' ? "a character device"
	                   : type == '4' ? "a block device"
	                   : type == '6' ? "a FIFO"
	                                 : "an unsupported entry type";
	return vdk_bad(e, src->name, tar_fmt, hoff, "member \"%.200s\" is %s (type '%c'): refused",
	               name ? name : "?", what, type >= 0x20 && type < 0x7f ? type : '?');
}

/* One header block at *off: add a member or update pending state. */
static int tar_entry(struct vdk_src *src, const uint8_t *h, uint64_t *off, struct ova_tar *t,
                     struct tar_pending *pd, struct tar_pending *gl, bool *end, struct vdk_err *e)
{
	uint64_t hoff = *off, size, data = hoff + TAR_BLOCK, next;
	if (vdk_is_zero(h, TAR_BLOCK)) {
		*end = true;
		return 0;
	}
	if (!tar_checksum_ok(h))
		return vdk_bad(e, src->name, tar_fmt, hoff, "header checksum mismatch");
	if (!tar_num(h + TAR_SIZE, 12, &size))
		return vdk_bad(e, src->name, tar_fmt, hoff, "bad size field");
	char type = (char)h[TAR_TYPE];
	if (pd->has_size)
		size = pd->size;
	else if (gl->has_size && (type == '0' || type == 0 || type == '7'))
		size = gl->size;
	if (!vdk_range_ok(data, size, src->size))
		return vdk_bad(e, src->name, tar_fmt, hoff,
		               "member data of %llu bytes extends past the end of the file",
		               (unsigned long long)size);
	next = data + vdk_round_up(size, TAR_BLOCK);
	*off = next;
	int r = 0;
	switch (type) {
	case 'L':
		return tar_long_name(src, data, size, &pd->name, e);
	case 'K':
		return 0; /* a long link target: the link itself is refused next */
	case 'x':
		return tar_pax(src, data, size, pd, e);
	case 'g':
		return tar_pax(src, data, size, gl, e);
	case '0':
	case 0:
	case '7':
	case '5': {
		char *name = pd->name ? pd->name : gl->name ? strdup(gl->name) : tar_header_name(h);
		pd->name = NULL;
		if (!name)
			return vdk_ioerr(e, ENOMEM, src->name, "out of memory");
		bool dir = type == '5' || (name[0] && name[strlen(name) - 1] == '/');
		r = tar_add(t, src, name, data, dir ? 0 : size, dir, hoff, e);
		break;
	}
	default: {
		char *name = pd->name ? pd->name : tar_header_name(h);
		pd->name = NULL;
		r = tar_bad_type(src, hoff, type, name, e);
		free(name);
		return r;
	}
	}
	free(pd->name);
	*pd = (struct tar_pending){0};
	return r;
}

int ova_tar_index(struct vdk_src *src, struct ova_tar *t, struct vdk_err *e)
{
	struct tar_pending pd = {0}, gl = {0};
	uint64_t off = 0;
	bool end = false;
	int r = 0;
	memset(t, 0, sizeof(*t));
	if (src->size == VDK_SIZE_UNKNOWN)
		return vdk_unsup(e, src->name, tar_fmt, VDK_NO_OFFSET, "a package must be a file");
	while (!end && r == 0) {
		uint8_t h[TAR_BLOCK];
		/* EOF without the zero blocks: accepted, as GNU tar does. */
		if (src->size - off < TAR_BLOCK) {
			if (off < src->size && off == 0)
				r = vdk_bad(e, src->name, tar_fmt, 0, "not a tar file (too short)");
			break;
		}
		r = vdk_src_pread(src, h, TAR_BLOCK, off, e);
		if (r == 0)
			r = tar_entry(src, h, &off, t, &pd, &gl, &end, e);
	}
	if (r == 0 && (pd.name || pd.has_size))
		r = vdk_bad(e, src->name, tar_fmt, off, "extended header without a member");
	free(pd.name);
	free(gl.name);
	if (r == 0 && t->n == 0)
		r = vdk_bad(e, src->name, tar_fmt, 0, "the archive has no members");
	if (r < 0)
		ova_tar_free(t);
	return r;
}

void ova_tar_free(struct ova_tar *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].name);
		free(t->v[i].path);
	}
	free(t->v);
	memset(t, 0, sizeof(*t));
}

/* Writing ----------------------------------------------------------- */

static bool tar_name_fits(const char *name)
{
	return strlen(name) <= 100;
}

size_t ova_tar_hdr_len(const char *name)
{
	if (tar_name_fits(name))
		return TAR_BLOCK;
	return 2 * TAR_BLOCK + vdk_round_up(strlen(name) + 1, TAR_BLOCK);
}

static void tar_octal(uint8_t *p, size_t len, uint64_t v)
{
	/* len-1 digits then NUL, zero-padded */
	for (size_t i = len - 1; i-- > 0;) {
		p[i] = (uint8_t)('0' + (v & 7));
		v >>= 3;
	}
	p[len - 1] = 0;
}

static void tar_size_field(uint8_t *p, uint64_t v)
{
	if (v < (1ull << 33)) {
		tar_octal(p, 12, v);
		return;
	}
	memset(p, 0, 12);
	p[0] = 0x80;
	for (int i = 11; i >= 4; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static void tar_fill(uint8_t *h, const char *name, uint64_t size, uint64_t mtime, char type,
                     bool gnu)
{
	memset(h, 0, TAR_BLOCK);
	memcpy(h + TAR_NAME, name, VDK_MIN(strlen(name), (size_t)100));
	tar_octal(h + TAR_MODE, 8, 0644);
	tar_octal(h + TAR_UID, 8, 0);
	tar_octal(h + TAR_GID, 8, 0);
	tar_size_field(h + TAR_SIZE, size);
	tar_octal(h + TAR_MTIME, 12, mtime);
	h[TAR_TYPE] = (uint8_t)type;
	if (gnu)
		memcpy(h + TAR_MAGIC, "ustar  \0", 8);
	else
		memcpy(h + TAR_MAGIC,
		       "ustar\0"
		       "00",
		       8);
	memcpy(h + TAR_UNAME, "root", 4);
	memcpy(h + TAR_GNAME, "root", 4);
	memset(h + TAR_CHKSUM, ' ', 8);
	unsigned sum = 0;
	for (size_t i = 0; i < TAR_BLOCK; i++)
		sum += h[i];
	tar_octal(h + TAR_CHKSUM, 7, sum);
	h[TAR_CHKSUM + 7] = ' ';
}

int ova_tar_hdr(uint8_t *buf, size_t buflen, const char *name, uint64_t size, uint64_t mtime,
                struct vdk_err *e)
{
	size_t need = ova_tar_hdr_len(name);
	if (buflen < need || !ova_name_ok(name))
		return vdk_bad(e, name, tar_fmt, VDK_NO_OFFSET,
		               "cannot write a header for this name");
	bool gnu = !tar_name_fits(name) || size >= (1ull << 33);
	memset(buf, 0, need);
	if (!tar_name_fits(name)) {
		size_t n = strlen(name) + 1;
		tar_fill(buf, "././@LongLink", n, 0, 'L', true);
		memcpy(buf + TAR_BLOCK, name, n - 1);
		buf += TAR_BLOCK + vdk_round_up(n, TAR_BLOCK);
	}
	tar_fill(buf, name, size, mtime, '0', gnu);
	return 0;
}

/* Member sink --------------------------------------------------------- */

struct tar_msink {
	struct vdk_sink *parent;
	uint64_t hdr_off, data_off, pos;
	char *name;
	uint64_t mtime;
	enum ova_alg alg;
	struct ova_hash *h;
	uint8_t digest[OVA_DIGEST_MAX];
	uint64_t end;
};

static int msink_append(struct tar_msink *m, const void *buf, size_t len, struct vdk_err *e)
{
	int r = vdk_sink_pwrite(m->parent, buf, len, m->data_off + m->pos, e);
	if (r < 0)
		return r;
	if (m->h)
		ova_hash_update(m->h, buf, len);
	m->pos += len;
	return 0;
}

static int msink_pad(struct tar_msink *m, uint64_t to, struct vdk_err *e)
{
	static const uint8_t zero[64 * 1024];
	while (m->pos < to) {
		size_t n = (size_t)VDK_MIN(to - m->pos, (uint64_t)sizeof(zero));
		int r = msink_append(m, zero, n, e);
		if (r < 0)
			return r;
	}
	return 0;
}

static int msink_pwrite(struct vdk_sink *k, const void *buf, size_t len, uint64_t off,
                        struct vdk_err *e)
{
	struct tar_msink *m = k->priv;
	if (off < m->pos)
		return vdk_err_set(e, VDK_E_IO, EINVAL, k->name, tar_fmt, off,
		                   "a tar member is written sequentially (at %llu)",
		                   (unsigned long long)m->pos);
	int r = msink_pad(m, off, e);
	return r < 0 ? r : msink_append(m, buf, len, e);
}

static int msink_truncate(struct vdk_sink *k, uint64_t size, struct vdk_err *e)
{
	struct tar_msink *m = k->priv;
	if (size < m->pos)
		return vdk_err_set(e, VDK_E_IO, EINVAL, k->name, tar_fmt, size,
		                   "cannot shrink a tar member");
	return msink_pad(m, size, e);
}

static int msink_commit(struct vdk_sink *k, struct vdk_err *e)
{
	struct tar_msink *m = k->priv;
	static const uint8_t zero[TAR_BLOCK];
	uint64_t pad = vdk_round_up(m->pos, TAR_BLOCK) - m->pos;
	int r = pad ? vdk_sink_pwrite(m->parent, zero, (size_t)pad, m->data_off + m->pos, e) : 0;
	size_t hl = ova_tar_hdr_len(m->name);
	uint8_t *h = malloc(hl);
	if (!h)
		return vdk_ioerr(e, ENOMEM, k->name, "out of memory");
	if (r == 0)
		r = ova_tar_hdr(h, hl, m->name, m->pos, m->mtime, e);
	if (r == 0)
		r = vdk_sink_pwrite(m->parent, h, hl, m->hdr_off, e);
	free(h);
	if (r < 0)
		return r;
	if (m->h) {
		ova_hash_final(m->h, m->digest);
		ova_hash_free(m->h);
		m->h = NULL;
	}
	m->end = m->data_off + m->pos + pad;
	return 0;
}

static void msink_close(struct vdk_sink *k)
{
	struct tar_msink *m = k->priv;
	if (!m)
		return;
	ova_hash_free(m->h);
	free(m->name);
	free(m);
}

static const struct vdk_sink_ops msink_ops = {
    .pwrite = msink_pwrite,
    .truncate = msink_truncate,
    .commit = msink_commit,
    .close = msink_close,
};

int ova_tar_member_sink(struct vdk_sink *parent, uint64_t hdr_off, const char *name,
                        enum ova_alg alg, uint64_t mtime, struct vdk_sink **out, struct vdk_err *e)
{
	if (!ova_name_ok(name))
		return vdk_bad(e, name, tar_fmt, VDK_NO_OFFSET, "bad member name");
	struct vdk_sink *k = vdk_sink_alloc(&msink_ops, name);
	struct tar_msink *m = calloc(1, sizeof(*m));
	if (!k || !m || !(m->name = strdup(name)) || (alg && !(m->h = ova_hash_new(alg)))) {
		if (m) {
			free(m->name);
			free(m);
		}
		if (k)
			vdk_sink_close(k);
		return vdk_ioerr(e, ENOMEM, name, "out of memory");
	}
	m->parent = parent;
	m->hdr_off = hdr_off;
	m->data_off = hdr_off + ova_tar_hdr_len(name);
	m->alg = alg;
	m->mtime = mtime;
	k->priv = m;
	k->flags = VDK_SINK_SEQUENTIAL;
	k->fd = -1;
	k->blksize = TAR_BLOCK;
	*out = k;
	return 0;
}

void ova_tar_member_info(const struct vdk_sink *k, uint64_t *size, uint8_t *digest, uint64_t *end)
{
	const struct tar_msink *m = k->priv;
	if (size)
		*size = m->pos;
	if (digest)
		memcpy(digest, m->digest, ova_alg_len(m->alg));
	if (end)
		*end = m->end;
}
