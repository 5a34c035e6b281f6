/* fuzz-diff: seeds and structure-aware mutations. Each format's metadata
 * regions (headers, tables the headers point at, and the tables those
 * point at) are found by a small parser over the seed; mutations land in
 * them most of the time: words set to boundary values or to another
 * pointer's value, bit flips, copies of one region over another,
 * truncation, extension, deleted and zeroed ranges. The checksums the
 * formats keep are recomputed afterwards (most of the time), so mutants
 * get past the first check to the tables. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"
#include "util.h"

#define FD_MAX_REGIONS 96
/* Seeds larger than this (expanded) are left out: each mutant is a copy
 * written to tmpfs, and 100 MiB seeds cost more than their mutants teach. */
#define FD_MAX_SEED (32u << 20)

uint64_t fd_rand(struct fd_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

const char *fd_kind_fmt(enum fd_kind k)
{
	static const char *const f[FD_NKINDS] = {"qcow2", "vmdk", "vpc", "vhdx", "vmdk"};
	return f[k];
}

const char *fd_kind_name(enum fd_kind k)
{
	static const char *const f[FD_NKINDS] = {"qcow2", "vmdk", "vhd", "vhdx", "sesparse"};
	return f[k];
}

/* --- seeds ---------------------------------------------------------- */

static uint32_t fd_le32(const uint8_t *p)
{
	return vdk_le32(p);
}

/* The sparse corpus form (fuzz/fuzz_sparse.h): "VXSP", le32 size, then
 * records of le32 offset, le16 length and the bytes. */
static int fd_vxsp_expand(const uint8_t *d, size_t n, uint8_t **out, size_t *outn)
{
	size_t size = fd_le32(d + 4);
	uint8_t *b = calloc(1, size ? size : 1);
	if (!b)
		return -ENOMEM;
	for (size_t p = 8; p + 6 <= n;) {
		size_t ro = fd_le32(d + p), rl = (size_t)d[p + 4] | (size_t)d[p + 5] << 8;
		p += 6;
		rl = VDK_MIN(rl, n - p);
		if (ro < size)
			memcpy(b + ro, d + p, VDK_MIN(rl, size - ro));
		p += rl;
	}
	*out = b;
	*outn = size;
	return 0;
}

static int fd_read_all(const char *path, uint8_t **out, size_t *outn)
{
	FILE *f = fopen(path, "rb");
	long n;
	if (!f)
		return -errno;
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		fclose(f);
		return -EIO;
	}
	if ((size_t)n > FD_MAX_SEED) {
		fclose(f);
		return -EFBIG;
	}
	uint8_t *b = malloc((size_t)n + 1);
	if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		fclose(f);
		return -EIO;
	}
	fclose(f);
	*out = b;
	*outn = (size_t)n;
	return 0;
}

int fd_seeds_add_file(struct fd_seeds *s, const char *path, enum fd_kind kind)
{
	uint8_t *d = NULL;
	size_t n = 0;
	int r = fd_read_all(path, &d, &n);
	if (r == -EFBIG) {
		s->skipped++;
		return 0;
	}
	if (r)
		return r;
	if (n >= 8 && !memcmp(d, "VXSP", 4) && fd_le32(d + 4) > FD_MAX_SEED) {
		free(d);
		s->skipped++;
		return 0;
	}
	if (n >= 8 && !memcmp(d, "VXSP", 4)) {
		uint8_t *x;
		r = fd_vxsp_expand(d, n, &x, &n);
		free(d);
		if (r)
			return r;
		d = x;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct fd_seed *v = realloc(s->v, cap * sizeof *v);
		if (!v) {
			free(d);
			return -ENOMEM;
		}
		s->v = v;
		s->cap = cap;
	}
	struct fd_seed *e = &s->v[s->n++];
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	snprintf(e->name, sizeof e->name, "%s/%s", fd_kind_name(kind), base);
	e->kind = kind;
	e->d = d;
	e->n = n;
	return 0;
}

static int fd_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* In name order, so that a seed's index (and every mutant) is the same on
 * every machine. */
int fd_seeds_add_dir(struct fd_seeds *s, const char *dir, enum fd_kind kind)
{
	DIR *d = opendir(dir);
	char *names[4096];
	size_t k = 0;
	struct dirent *de;
	if (!d)
		return -errno;
	while ((de = readdir(d)) && k < 4096)
		if (de->d_name[0] != '.')
			names[k++] = strdup(de->d_name);
	closedir(d);
	qsort(names, k, sizeof *names, fd_name_cmp);
	int r = 0;
	for (size_t i = 0; i < k; i++) {
		char p[4096];
		snprintf(p, sizeof p, "%s/%s", dir, names[i] ? names[i] : "");
		if (!r && names[i])
			r = fd_seeds_add_file(s, p, kind);
		free(names[i]);
	}
	return r;
}

void fd_seeds_free(struct fd_seeds *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].d);
	free(s->v);
	memset(s, 0, sizeof *s);
}

/* --- regions -------------------------------------------------------- */

struct fd_region {
	uint64_t off, len;
};

struct fd_regions {
	struct fd_region v[FD_MAX_REGIONS];
	size_t n;
	bool be;        /* the format's byte order */
	unsigned width; /* its table entries' width */
	uint64_t unit;  /* what its pointers count: bytes, sectors */
};

static void fd_reg_add(struct fd_regions *g, uint64_t off, uint64_t len, size_t n)
{
	if (off >= n || len == 0 || g->n == FD_MAX_REGIONS)
		return;
	len = VDK_MIN(len, (uint64_t)n - off);
	len = VDK_MIN(len, 64ull << 10);
	for (size_t i = 0; i < g->n; i++)
		if (g->v[i].off == off)
			return;
	g->v[g->n++] = (struct fd_region){off, len};
}

uint64_t fd_rd(const uint8_t *d, size_t n, uint64_t off, unsigned w, bool be)
{
	uint64_t v = 0;
	if (off > n || w > n - off)
		return 0;
	for (unsigned i = 0; i < w; i++)
		v |= (uint64_t)d[off + (be ? w - 1 - i : i)] << (8 * i);
	return v;
}

static void fd_wr(uint8_t *d, size_t n, uint64_t off, unsigned w, bool be, uint64_t v)
{
	if (off > n || w > n - off)
		return;
	for (unsigned i = 0; i < w; i++)
		d[off + (be ? w - 1 - i : i)] = (uint8_t)(v >> (8 * i));
}

/* Header, L1, refcount table, and the L2 tables and refcount blocks they
 * name (qcow2 spec: every offset is in bytes, flags in the top bits). */
static void fd_reg_qcow2(struct fd_regions *g, const uint8_t *d, size_t n)
{
	uint32_t cb = (uint32_t)fd_rd(d, n, 20, 4, true);
	uint64_t cs = cb >= 9 && cb <= 21 ? 1ull << cb : 65536;
	uint64_t l1 = fd_rd(d, n, 40, 8, true), l1n = fd_rd(d, n, 36, 4, true);
	uint64_t rt = fd_rd(d, n, 48, 8, true), rtc = fd_rd(d, n, 56, 4, true);
	fd_reg_add(g, 0, cs, n);
	fd_reg_add(g, l1, l1n * 8, n);
	fd_reg_add(g, rt, rtc * cs, n);
	fd_reg_add(g, fd_rd(d, n, 64, 8, true), 4096, n);
	for (uint64_t i = 0; i < VDK_MIN(l1n, 32); i++)
		fd_reg_add(g, fd_rd(d, n, l1 + 8 * i, 8, true) & 0x00fffffffffffe00ull, cs, n);
	for (uint64_t i = 0; i < VDK_MIN(rtc * cs / 8, 16); i++)
		fd_reg_add(g, fd_rd(d, n, rt + 8 * i, 8, true), cs, n);
	g->be = true;
	g->width = 8;
	g->unit = 1;
}

/* A hosted sparse header (or a stream-optimized footer's copy), its
 * descriptor, the grain directories and the first grain tables. */
static void fd_reg_vmdk_hdr(struct fd_regions *g, const uint8_t *d, size_t n, uint64_t h)
{
	uint64_t cap = fd_rd(d, n, h + 12, 8, false), gs = fd_rd(d, n, h + 20, 8, false);
	uint64_t gtes = fd_rd(d, n, h + 44, 4, false);
	uint64_t gd = fd_rd(d, n, h + 56, 8, false), rgd = fd_rd(d, n, h + 48, 8, false);
	uint64_t gdn = gs && gtes ? VDK_MIN(cap / gs / gtes + 1, 64) : 1;
	fd_reg_add(g, h, 512, n);
	fd_reg_add(g, fd_rd(d, n, h + 28, 8, false) * 512, fd_rd(d, n, h + 36, 8, false) * 512, n);
	uint64_t dirs[2] = {gd, rgd};
	for (int k = 0; k < 2; k++) {
		if (dirs[k] == UINT64_MAX || dirs[k] >= n / 512)
			continue;
		fd_reg_add(g, dirs[k] * 512, gdn * 4, n);
		for (uint64_t i = 0; i < VDK_MIN(gdn, 8); i++)
			fd_reg_add(g, fd_rd(d, n, dirs[k] * 512 + 4 * i, 4, false) * 512, gtes * 4,
			           n);
	}
}

/* seSparse: the constant header's (offset, size) sector pairs from 0x50:
 * volatile header, journal header, journal, directory, tables, free
 * bitmap, back map (the grains themselves are left to data mutations). */
static void fd_reg_vmdk(struct fd_regions *g, const uint8_t *d, size_t n)
{
	g->be = false;
	g->unit = 512;
	g->width = 4;
	if (n >= 512 && fd_rd(d, n, 0, 8, false) == 0xcafebabeull) {
		g->width = 8;
		fd_reg_add(g, 0, 512, n);
		for (uint64_t p = 0x50; p < 0xc0; p += 16)
			fd_reg_add(g, fd_rd(d, n, p, 8, false) * 512,
			           fd_rd(d, n, p + 8, 8, false) * 512, n);
		return;
	}
	if (n >= 512 && !memcmp(d, "KDMV", 4)) {
		fd_reg_vmdk_hdr(g, d, n, 0);
		if (fd_rd(d, n, 56, 8, false) == UINT64_MAX && n >= 1536)
			fd_reg_vmdk_hdr(g, d, n, (n - 1024) / 512 * 512);
		return;
	}
	fd_reg_add(g, 0, 4096, n); /* COWD header, or a text descriptor */
}

/* Footer (and its copy), dynamic header, BAT and the first blocks'
 * bitmaps (big-endian; the BAT counts sectors). */
static void fd_reg_vhd(struct fd_regions *g, const uint8_t *d, size_t n)
{
	uint64_t f = n >= 512 ? (n - 512) / 512 * 512 : 0;
	if (n >= 512 && memcmp(d + n - 512, "conectix", 8) == 0)
		f = n - 512;
	else if (n >= 512 && memcmp(d + n - 511, "conectix", 8) == 0)
		f = n - 511; /* the 511-byte footer of old Virtual PC images */
	fd_reg_add(g, f, 512, n);
	fd_reg_add(g, 0, 512, n);
	uint64_t dh = fd_rd(d, n, f + 16, 8, true);
	fd_reg_add(g, dh, 1024, n);
	uint64_t bat = fd_rd(d, n, dh + 16, 8, true), batn = fd_rd(d, n, dh + 28, 4, true);
	fd_reg_add(g, bat, batn * 4, n);
	for (uint64_t i = 0, k = 0; i < VDK_MIN(batn, 4096) && k < 16; i++) {
		uint64_t s = fd_rd(d, n, bat + 4 * i, 4, true);
		if (s != 0xffffffffull && s * 512 < n) {
			fd_reg_add(g, s * 512, 512, n);
			k++;
		}
	}
	g->be = true;
	g->width = 4;
	g->unit = 512;
}

/* File identifier, both headers and region tables, the log, the BAT and
 * the metadata region (VHDX 2.x: little-endian, offsets in bytes). */
static void fd_reg_vhdx(struct fd_regions *g, const uint8_t *d, size_t n)
{
	fd_reg_add(g, 0, 512, n);
	for (uint64_t h = 64 << 10; h <= 128 << 10; h += 64 << 10) {
		fd_reg_add(g, h, 4096, n);
		fd_reg_add(g, fd_rd(d, n, h + 72, 8, false), fd_rd(d, n, h + 68, 4, false), n);
	}
	for (uint64_t t = 192 << 10; t <= 256 << 10; t += 64 << 10) {
		uint64_t cnt = VDK_MIN(fd_rd(d, n, t + 8, 4, false), 8);
		fd_reg_add(g, t, 16 + 32 * cnt, n);
		for (uint64_t i = 0; i < cnt; i++)
			fd_reg_add(g, fd_rd(d, n, t + 16 + 32 * i + 16, 8, false),
			           fd_rd(d, n, t + 16 + 32 * i + 24, 4, false), n);
	}
	g->be = false;
	g->width = 8;
	g->unit = 1;
}

static void fd_regions(enum fd_kind k, const uint8_t *d, size_t n, struct fd_regions *g)
{
	memset(g, 0, sizeof *g);
	switch (k) {
	case FD_QCOW2:
		fd_reg_qcow2(g, d, n);
		break;
	case FD_VMDK:
	case FD_SESPARSE:
		fd_reg_vmdk(g, d, n);
		break;
	case FD_VHD:
		fd_reg_vhd(g, d, n);
		break;
	case FD_VHDX:
		fd_reg_vhdx(g, d, n);
		break;
	default:
		break;
	}
	if (g->n == 0)
		fd_reg_add(g, 0, 4096, n);
}

/* --- mutations ------------------------------------------------------ */

struct fd_mut {
	uint8_t *d;
	size_t n, cap;
	struct fd_regions g;
	struct fd_rng *r;
	char *desc;
	size_t dl, dcap;
};

__attribute__((format(printf, 2, 3))) static void fd_say(struct fd_mut *m, const char *fmt, ...)
{
	va_list ap;
	if (m->dl + 1 >= m->dcap)
		return;
	va_start(ap, fmt);
	int k = vsnprintf(m->desc + m->dl, m->dcap - m->dl, fmt, ap);
	va_end(ap);
	if (k > 0)
		m->dl = VDK_MIN(m->dl + (size_t)k, m->dcap - 1);
}

/* A position: inside a metadata region (mostly) or anywhere. */
static uint64_t fd_pos(struct fd_mut *m, unsigned align)
{
	uint64_t p;
	if (m->n == 0)
		return 0;
	if (m->g.n && fd_below(m->r, 10) < 9) {
		const struct fd_region *rg = &m->g.v[fd_below(m->r, m->g.n)];
		p = rg->off + fd_below(m->r, rg->len);
	} else {
		p = fd_below(m->r, m->n);
	}
	p -= p % align;
	return VDK_MIN(p, m->n - 1);
}

static uint64_t fd_interesting(struct fd_mut *m, uint64_t v, unsigned w, uint64_t pos)
{
	static const uint64_t deltas[] = {1, 2, 8, 0x10, 0x200, 0x1000, 0x10000, 0x100000};
	uint64_t max = w == 8 ? UINT64_MAX : (1ull << (8 * w)) - 1, u = m->g.unit;
	uint64_t dlt = deltas[fd_below(m->r, sizeof deltas / sizeof *deltas)];
	switch (fd_below(m->r, 14)) {
	case 0:
		return 0;
	case 1:
		return 1;
	case 2:
		return v + dlt;
	case 3:
		return v - dlt;
	case 4:
		return max;
	case 5:
		return max >> 1;
	case 6:
		return (max >> 1) + 1;
	case 7:
		return m->n / u;
	case 8:
		return m->n / u + fd_below(m->r, 3);
	case 9:
		return v ^ (1ull << fd_below(m->r, 8 * w));
	case 10:
		return v << 1;
	case 11:
		return 1ull << fd_below(m->r, 8 * w);
	case 12:
		return v + (m->n / u) * (1 + fd_below(m->r, 4));
	default: {
		/* another word of the metadata: a duplicate or crossed pointer */
		uint64_t o = fd_pos(m, w);
		return o == pos ? v + 1 : fd_rd(m->d, m->n, o, w, m->g.be);
	}
	}
}

static void fd_op_word(struct fd_mut *m)
{
	static const unsigned ws[] = {1, 2, 4, 8};
	unsigned w = fd_below(m->r, 10) < 6 ? m->g.width : ws[fd_below(m->r, 4)];
	uint64_t p = fd_pos(m, w);
	if (p + w > m->n)
		return;
	uint64_t v = fd_rd(m->d, m->n, p, w, m->g.be), nv = fd_interesting(m, v, w, p);
	fd_wr(m->d, m->n, p, w, m->g.be, nv);
	fd_say(m, "word@%llu/%u=%#llx ", (unsigned long long)p, w, (unsigned long long)nv);
}

static void fd_op_flip(struct fd_mut *m)
{
	unsigned k = 1 + (unsigned)fd_below(m->r, 4);
	for (unsigned i = 0; i < k; i++) {
		uint64_t p = fd_pos(m, 1), b = fd_below(m->r, 8);
		m->d[p] ^= (uint8_t)(1u << b);
		fd_say(m, "flip@%llu.%u ", (unsigned long long)p, (unsigned)b);
	}
}

static void fd_op_bytes(struct fd_mut *m)
{
	uint64_t p = fd_pos(m, 1), k = 1 + fd_below(m->r, 16);
	for (uint64_t i = 0; i < k && p + i < m->n; i++)
		m->d[p + i] = (uint8_t)fd_rand(m->r);
	fd_say(m, "bytes@%llu+%llu ", (unsigned long long)p, (unsigned long long)k);
}

static void fd_op_zero(struct fd_mut *m)
{
	uint64_t p = fd_pos(m, 512), k = 1 + fd_below(m->r, fd_below(m->r, 2) ? 512 : 65536);
	k = VDK_MIN(k, m->n - p);
	memset(m->d + p, fd_below(m->r, 4) ? 0 : 0xff, k);
	fd_say(m, "fill@%llu+%llu ", (unsigned long long)p, (unsigned long long)k);
}

static void fd_op_copy(struct fd_mut *m)
{
	uint64_t a = fd_pos(m, 8), b = fd_pos(m, 8), k = 8 << fd_below(m->r, 10);
	k = VDK_MIN(k, m->n - VDK_MAX(a, b));
	memmove(m->d + b, m->d + a, k);
	fd_say(m, "copy@%llu>%llu+%llu ", (unsigned long long)a, (unsigned long long)b,
	       (unsigned long long)k);
}

static void fd_op_trunc(struct fd_mut *m)
{
	/* anywhere, a little off the end, or whole sectors off the end */
	uint64_t how = fd_below(m->r, 3), back = 1 + fd_below(m->r, 4096);
	uint64_t secs = m->n / 512 * 512, sback = 512 * fd_below(m->r, 64);
	uint64_t p = how == 0   ? fd_below(m->r, m->n)
	             : how == 1 ? m->n - VDK_MIN(m->n, back)
	                        : secs - VDK_MIN(secs, sback);
	m->n = p;
	fd_say(m, "trunc@%llu ", (unsigned long long)p);
}

/* Append, or open a gap (insert) or cut a range out, keeping the end: a
 * footer-at-end format (VHD, stream-optimized VMDK) keeps its footer. */
static void fd_op_resize(struct fd_mut *m)
{
	uint64_t k = 1 + fd_below(m->r, fd_below(m->r, 2) ? 1024 : 131072);
	uint64_t p = fd_below(m->r, 3) ? fd_pos(m, 512) : m->n;
	bool cut = fd_below(m->r, 2) && p < m->n;
	if (cut) {
		k = VDK_MIN(k, m->n - p);
		memmove(m->d + p, m->d + p + k, m->n - p - k);
		m->n -= k;
		fd_say(m, "cut@%llu+%llu ", (unsigned long long)p, (unsigned long long)k);
		return;
	}
	if (m->n + k > m->cap) {
		uint8_t *x = realloc(m->d, m->n + k);
		if (!x)
			return;
		m->d = x;
		m->cap = m->n + k;
	}
	memmove(m->d + p + k, m->d + p, m->n - p);
	memset(m->d + p, 0, k);
	m->n += k;
	fd_say(m, "insert@%llu+%llu ", (unsigned long long)p, (unsigned long long)k);
}

static void fd_op_data(struct fd_mut *m)
{
	uint64_t p = fd_below(m->r, m->n);
	m->d[p] ^= (uint8_t)(1 + fd_below(m->r, 255));
	fd_say(m, "data@%llu ", (unsigned long long)p);
}

static void fd_op(struct fd_mut *m)
{
	unsigned x = (unsigned)fd_below(m->r, 100);
	if (m->n == 0)
		return;
	if (x < 40)
		fd_op_word(m);
	else if (x < 55)
		fd_op_flip(m);
	else if (x < 65)
		fd_op_bytes(m);
	else if (x < 72)
		fd_op_zero(m);
	else if (x < 79)
		fd_op_copy(m);
	else if (x < 86)
		fd_op_trunc(m);
	else if (x < 95)
		fd_op_resize(m);
	else
		fd_op_data(m);
}

int fd_mutate(const struct fd_seed *seed, struct fd_rng *r, uint8_t **out, size_t *outn, char *desc,
              size_t desclen)
{
	struct fd_mut m = {.n = seed->n, .cap = seed->n + 1, .r = r, .desc = desc, .dcap = desclen};
	m.d = malloc(m.cap);
	if (!m.d)
		return -ENOMEM;
	memcpy(m.d, seed->d, seed->n);
	desc[0] = 0;
	fd_regions(seed->kind, m.d, m.n, &m.g);
	unsigned k = 1;
	while (k < 4 && fd_below(r, 2))
		k++;
	for (unsigned i = 0; i < k; i++)
		fd_op(&m);
	if (fd_below(r, 100) < 85) {
		fd_fixup(seed->kind, m.d, m.n);
		fd_say(&m, "fix");
	}
	*out = m.d;
	*outn = m.n;
	return 0;
}

/* --- checksums ------------------------------------------------------ */

/* VHD: one's complement of the byte sum, the field itself taken as 0. */
static void fd_fix_vhd_sum(uint8_t *p, size_t len, size_t at)
{
	uint32_t s = 0;
	memset(p + at, 0, 4);
	for (size_t i = 0; i < len; i++)
		s += p[i];
	vdk_put_be32(p + at, ~s);
}

static void fd_fix_vhd(uint8_t *d, size_t n)
{
	uint64_t dh = UINT64_MAX;
	if (n >= 512 && !memcmp(d + n - 512, "conectix", 8)) {
		fd_fix_vhd_sum(d + n - 512, 512, 64);
		dh = vdk_be64(d + n - 512 + 16);
	}
	if (n >= 512 && !memcmp(d, "conectix", 8)) {
		fd_fix_vhd_sum(d, 512, 64);
		dh = dh == UINT64_MAX ? vdk_be64(d + 16) : dh;
	}
	if (dh < n && n - dh >= 1024 && !memcmp(d + dh, "cxsparse", 8))
		fd_fix_vhd_sum(d + dh, 1024, 36);
}

/* VHDX: CRC-32C over the 4 KiB header and the 64 KiB region table, the
 * field taken as 0 (VHDX 2.2.2, 2.2.3). */
static void fd_fix_vhdx(uint8_t *d, size_t n)
{
	static const struct {
		uint32_t off, len;
		const char sig[5];
	} t[] = {{64 << 10, 4096, "head"},
	         {128 << 10, 4096, "head"},
	         {192 << 10, 64 << 10, "regi"},
	         {256 << 10, 64 << 10, "regi"}};
	for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
		if (t[i].off + t[i].len > n || memcmp(d + t[i].off, t[i].sig, 4))
			continue;
		memset(d + t[i].off + 4, 0, 4);
		vdk_put_le32(d + t[i].off + 4, vdk_crc32c(0, d + t[i].off, t[i].len));
	}
}

void fd_fixup(enum fd_kind kind, uint8_t *d, size_t n)
{
	if (kind == FD_VHD)
		fd_fix_vhd(d, n);
	else if (kind == FD_VHDX)
		fd_fix_vhdx(d, n);
}
