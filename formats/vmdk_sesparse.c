/* seSparse VMDK extents (ESXi 6.5+, every snapshot delta on VMFS6).
 *
 * Layout, as qemu's block/vmdk.c reads it (VMware never published it): a
 * 512-byte constant header at sector 0 and a 512-byte volatile header
 * elsewhere, then regions named by (offset, size) pairs in sectors:
 * journal header, journal, grain directory (GD), grain tables (GT), free
 * bitmap, back map, grains. GD and GT entries are le64. A GD entry is 0
 * (no table) or 0x10000000_iiiiiiii, table i of the GT region. A GT entry's
 * top nibble is its type: 0 unallocated (the parent shows through), 1 SCSI
 * unmapped and 2 zero (both read as zeroes in qemu), 3 allocated: grain
 * index = bits 48..59 | bits 0..47 << 12, at grains + index * grain.
 *
 * Everything is checked and decoded at open (lookups are read-only, so
 * pread may run on threads); allocation is bounded by the file, since the
 * directory and every table loaded must lie in it, each table only once. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "util.h"
#include "vmdk.h"

#define VMDK_SE_HDR       512u
#define VMDK_SE_GT_BYTES  (VMDK_SE_GTES * 8u)
#define VMDK_SE_GT_SPAN   ((uint64_t)VMDK_SE_GTES * VMDK_SE_GRAIN) /* 16 MiB */
#define VMDK_SE_GDE_USED  0x10000000u
#define VMDK_SE_TYPE(v)   ((unsigned)((v) >> 60))
#define VMDK_SE_T_UNALLOC 0u
#define VMDK_SE_T_UNMAP   1u
#define VMDK_SE_T_ZERO    2u
#define VMDK_SE_T_ALLOC   3u

/* Constant header fields (byte offsets). */
enum {
	VMDK_SE_H_MAGIC = 0,
	VMDK_SE_H_VERSION = 8,
	VMDK_SE_H_CAPACITY = 16,
	VMDK_SE_H_GRAIN = 24,
	VMDK_SE_H_GT_SIZE = 32,
	VMDK_SE_H_FLAGS = 40,
	VMDK_SE_H_RESERVED = 48, /* 4 x le64, zero */
	VMDK_SE_H_REGIONS = 80,  /* 8 (offset, size) pairs */
	VMDK_SE_H_PAD = 208,     /* 304 bytes of zeroes */
};
/* Volatile header fields. */
enum {
	VMDK_SE_V_MAGIC = 0,
	VMDK_SE_V_FREE_GT = 8,
	VMDK_SE_V_TXN = 16,
	VMDK_SE_V_REPLAY = 24,
	VMDK_SE_V_PAD = 32, /* 480 bytes of zeroes */
};
_Static_assert(VMDK_SE_H_REGIONS + 8 * 16 == VMDK_SE_H_PAD, "eight regions");
_Static_assert(VMDK_SE_H_PAD + 304 == VMDK_SE_HDR, "constant header is one sector");
_Static_assert(VMDK_SE_V_PAD + 480 == VMDK_SE_HDR, "volatile header is one sector");

enum {
	VMDK_SE_R_VOLATILE,
	VMDK_SE_R_JOURNAL_HDR,
	VMDK_SE_R_JOURNAL,
	VMDK_SE_R_GD,
	VMDK_SE_R_GT,
	VMDK_SE_R_FREE_BITMAP,
	VMDK_SE_R_BACKMAP,
	VMDK_SE_R_GRAINS,
	VMDK_SE_R_N,
};
static const char *const vmdk_se_region_names[VMDK_SE_R_N] = {
    "volatile header", "journal header", "journal",  "grain directory",
    "grain tables",    "free bitmap",    "back map", "grains",
};

struct vmdk_se_region {
	uint64_t off, len; /* bytes */
};

struct vmdk_se_ctx {
	struct vdk_src *src;
	struct vmdk_sesparse *se;
	struct vmdk_se_region r[VMDK_SE_R_N];
	struct vdk_err *e;
	uint64_t gt_loaded, gt_max; /* tables */
	uint8_t *buf;               /* one raw table */
};

bool vmdk_se_magic(const uint8_t *h, size_t len)
{
	return len >= 8 && vdk_le64(h) == VMDK_SE_MAGIC;
}

#define vmdk_se_bad(c, off, ...)                                                                   \
	vdk_bad((c)->e, (c)->src->name, "vmdk", (off), "seSparse: " __VA_ARGS__)

static int vmdk_se_unsup(struct vmdk_se_ctx *c, uint64_t off, const char *what, uint64_t v)
{
	return vdk_unsup(c->e, c->src->name, "vmdk", off, "seSparse: unsupported %s 0x%" PRIx64,
	                 what, v);
}

/* qemu is strict about every constant field (the format is undocumented,
 * so a value never seen may mean a layout never seen): so are we. */
static int vmdk_se_check_const(struct vmdk_se_ctx *c, const uint8_t *h)
{
	if (vdk_le64(h + VMDK_SE_H_MAGIC) != VMDK_SE_MAGIC)
		return vmdk_se_bad(c, 0, "bad constant header magic 0x%" PRIx64, vdk_le64(h));
	uint64_t v = vdk_le64(h + VMDK_SE_H_VERSION);
	if (v != VMDK_SE_VERSION)
		return vmdk_se_unsup(c, VMDK_SE_H_VERSION, "version", v);
	if ((v = vdk_le64(h + VMDK_SE_H_GRAIN)) != VMDK_SE_GRAIN / VMDK_SECTOR)
		return vmdk_se_unsup(c, VMDK_SE_H_GRAIN, "grain size (sectors)", v);
	if ((v = vdk_le64(h + VMDK_SE_H_GT_SIZE)) != VMDK_SE_GT_BYTES / VMDK_SECTOR)
		return vmdk_se_unsup(c, VMDK_SE_H_GT_SIZE, "grain table size (sectors)", v);
	if ((v = vdk_le64(h + VMDK_SE_H_FLAGS)) != 0)
		return vmdk_se_unsup(c, VMDK_SE_H_FLAGS, "flags", v);
	for (unsigned i = 0; i < 4; i++)
		if ((v = vdk_le64(h + VMDK_SE_H_RESERVED + 8 * i)) != 0)
			return vmdk_se_unsup(c, VMDK_SE_H_RESERVED + 8 * i, "reserved field", v);
	if (!vdk_is_zero(h + VMDK_SE_H_PAD, VMDK_SE_HDR - VMDK_SE_H_PAD))
		return vmdk_se_unsup(c, VMDK_SE_H_PAD, "non-zero header padding", 0);
	uint64_t cap = vdk_le64(h + VMDK_SE_H_CAPACITY);
	if (cap > VMDK_MAX_SECTORS)
		return vmdk_se_bad(c, VMDK_SE_H_CAPACITY,
		                   "capacity %" PRIu64 " sectors is larger than the largest disk "
		                   "(%" PRIu64 " sectors)",
		                   cap, (uint64_t)VMDK_MAX_SECTORS);
	c->se->capacity = cap * VMDK_SECTOR;
	return 0;
}

/* Regions in bytes. Only the volatile header must lie in the file here:
 * of the directory and the tables, what is read is checked when it is
 * (ESXi sizes the directory for the largest disk, and may reserve tables
 * past the end), and the grains region grows with the file, so every
 * allocated grain is checked on its own. */
static int vmdk_se_regions(struct vmdk_se_ctx *c, const uint8_t *h)
{
	for (unsigned i = 0; i < VMDK_SE_R_N; i++) {
		uint64_t at = VMDK_SE_H_REGIONS + 16 * i;
		uint64_t o = vdk_le64(h + at), n = vdk_le64(h + at + 8);
		if (o > VMDK_MAX_SECTORS || n > VMDK_MAX_SECTORS)
			return vmdk_se_bad(c, at,
			                   "%s (sector %" PRIu64 ", %" PRIu64
			                   " sectors) is beyond any disk",
			                   vmdk_se_region_names[i], o, n);
		c->r[i].off = o * VMDK_SECTOR;
		c->r[i].len = n * VMDK_SECTOR;
		bool must = i == VMDK_SE_R_VOLATILE || i == VMDK_SE_R_GD || i == VMDK_SE_R_GT;
		bool read_now = i == VMDK_SE_R_VOLATILE;
		if (must && !n)
			return vmdk_se_bad(c, at + 8, "%s is empty", vmdk_se_region_names[i]);
		if (read_now && !vdk_range_ok(c->r[i].off, c->r[i].len, c->src->size))
			return vmdk_se_bad(c, at,
			                   "%s (sector %" PRIu64 ", %" PRIu64
			                   " sectors) is not inside the file (%" PRIu64 " bytes)",
			                   vmdk_se_region_names[i], o, n, c->src->size);
	}
	return 0;
}

/* No region may overlap the constant header or another region: a grain
 * or table placed over metadata is corruption, or an attack. */
static int vmdk_se_overlaps(struct vmdk_se_ctx *c)
{
	for (unsigned i = 0; i < VMDK_SE_R_N; i++) {
		const struct vmdk_se_region *a = &c->r[i];
		uint64_t at = VMDK_SE_H_REGIONS + 16 * i;
		if (!a->len)
			continue;
		if (a->off < VMDK_SE_HDR)
			return vmdk_se_bad(c, at,
			                   "%s at byte %" PRIu64 " overlaps the constant header",
			                   vmdk_se_region_names[i], a->off);
		for (unsigned j = 0; j < i; j++) {
			const struct vmdk_se_region *b = &c->r[j];
			if (b->len && a->off < b->off + b->len && b->off < a->off + a->len)
				return vmdk_se_bad(
				    c, at,
				    "%s (bytes %" PRIu64 "..%" PRIu64
				    ") overlaps the %s (bytes %" PRIu64 "..%" PRIu64 ")",
				    vmdk_se_region_names[i], a->off, a->off + a->len,
				    vmdk_se_region_names[j], b->off, b->off + b->len);
		}
	}
	return 0;
}

static int vmdk_se_volatile(struct vmdk_se_ctx *c)
{
	uint8_t v[VMDK_SE_HDR];
	uint64_t at = c->r[VMDK_SE_R_VOLATILE].off;
	int r = vdk_src_pread(c->src, v, sizeof(v), at, c->e);
	if (r < 0)
		return r;
	if (vdk_le64(v + VMDK_SE_V_MAGIC) != VMDK_SE_VMAGIC)
		return vmdk_se_bad(c, at, "bad volatile header magic 0x%" PRIx64, vdk_le64(v));
	if (vdk_le64(v + VMDK_SE_V_REPLAY))
		return vdk_unsup(c->e, c->src->name, "vmdk", at + VMDK_SE_V_REPLAY,
		                 "seSparse: the journal must be replayed first (the delta was not "
		                 "closed cleanly; consolidate it on ESXi)");
	if (!vdk_is_zero(v + VMDK_SE_V_PAD, VMDK_SE_HDR - VMDK_SE_V_PAD))
		return vmdk_se_unsup(c, at + VMDK_SE_V_PAD, "non-zero volatile header padding", 0);
	return 0;
}

/* Decode entry j of a table read from byte at; 0 or an error naming it. */
static int vmdk_se_entry(struct vmdk_se_ctx *c, uint64_t raw, uint64_t at, uint64_t *out)
{
	const struct vmdk_se_region *g = &c->r[VMDK_SE_R_GRAINS];
	switch (VMDK_SE_TYPE(raw)) {
	case VMDK_SE_T_UNALLOC:
		*out = VMDK_SE_E_HOLE;
		if (raw)
			return vmdk_se_bad(
			    c, at, "unallocated grain entry 0x%" PRIx64 " has stray bits", raw);
		return 0;
	case VMDK_SE_T_UNMAP:
	case VMDK_SE_T_ZERO:
		*out = VMDK_SE_E_ZERO;
		return 0;
	case VMDK_SE_T_ALLOC: {
		uint64_t idx = ((raw >> 48) & 0xfff) | ((raw & 0xffffffffffffull) << 12);
		uint64_t rel = idx * VMDK_SE_GRAIN; /* idx < 2^60 / 2^12: no overflow */
		if (rel >= g->len || g->len - rel < VMDK_SE_GRAIN)
			return vmdk_se_bad(c, at,
			                   "allocated grain %" PRIu64 " lies outside the grains "
			                   "region (%" PRIu64 " grains)",
			                   idx, g->len / VMDK_SE_GRAIN);
		if (!vdk_range_ok(g->off + rel, VMDK_SE_GRAIN, c->se->file_size))
			return vmdk_se_bad(c, at,
			                   "allocated grain at byte %" PRIu64
			                   " lies past the end of the file (%" PRIu64 " bytes)",
			                   g->off + rel, c->se->file_size);
		*out = g->off + rel;
		return 0;
	}
	default:
		return vmdk_se_bad(c, at,
		                   "unknown grain entry type %" PRIu64 " (entry 0x%" PRIx64 ")",
		                   raw >> 60, raw);
	}
}

static int vmdk_se_load_gt(struct vmdk_se_ctx *c, uint64_t gde, uint64_t i)
{
	uint64_t gde_at = c->r[VMDK_SE_R_GD].off + 8 * i;
	if ((gde >> 32) != VMDK_SE_GDE_USED)
		return vmdk_se_bad(
		    c, gde_at, "grain directory entry 0x%" PRIx64 " is not a table reference", gde);
	uint64_t t = gde & 0xffffffffu;
	if (t >= c->gt_max)
		return vmdk_se_bad(c, gde_at,
		                   "grain table %" PRIu64 " is past the grain tables region "
		                   "(%" PRIu64 " tables)",
		                   t, c->gt_max);
	uint64_t at = c->r[VMDK_SE_R_GT].off + t * VMDK_SE_GT_BYTES;
	if (!vdk_range_ok(at, VMDK_SE_GT_BYTES, c->src->size))
		return vmdk_se_bad(c, gde_at,
		                   "grain table %" PRIu64 " at byte %" PRIu64
		                   " lies past the end of the file (%" PRIu64 " bytes)",
		                   t, at, c->src->size);
	/* Each table at most once: what is loaded never exceeds the file. */
	if (++c->gt_loaded > VDK_MIN(c->gt_max, c->src->size / VMDK_SE_GT_BYTES))
		return vmdk_se_bad(c, gde_at,
		                   "more grain directory entries than grain tables (%" PRIu64
		                   "): tables are shared",
		                   c->gt_max);
	int r = vdk_src_pread(c->src, c->buf, VMDK_SE_GT_BYTES, at, c->e);
	if (r < 0)
		return r;
	uint64_t *gt = malloc(VMDK_SE_GTES * sizeof(*gt));
	if (!gt)
		return vdk_err_set(c->e, VDK_E_IO, ENOMEM, c->src->name, "vmdk", VDK_NO_OFFSET,
		                   "out of memory");
	c->se->gt[i] = gt;
	for (unsigned j = 0; j < VMDK_SE_GTES; j++)
		if ((r = vmdk_se_entry(c, vdk_le64(c->buf + 8 * j), at + 8 * j, &gt[j])) < 0)
			return r;
	return 0;
}

static int vmdk_se_tables(struct vmdk_se_ctx *c)
{
	struct vmdk_sesparse *se = c->se;
	const struct vmdk_se_region *gd = &c->r[VMDK_SE_R_GD];
	se->gd_n = (se->capacity + VMDK_SE_GT_SPAN - 1) / VMDK_SE_GT_SPAN;
	if (se->gd_n > gd->len / 8)
		return vmdk_se_bad(c, VMDK_SE_H_REGIONS + 16 * VMDK_SE_R_GD + 8,
		                   "grain directory has %" PRIu64 " entries, the capacity needs "
		                   "%" PRIu64,
		                   gd->len / 8, se->gd_n);
	if (!vdk_range_ok(gd->off, se->gd_n * 8, c->src->size))
		return vmdk_se_bad(c, VMDK_SE_H_REGIONS + 16 * VMDK_SE_R_GD,
		                   "the %" PRIu64 " grain directory entries the capacity needs run "
		                   "past the end of the file (%" PRIu64 " bytes)",
		                   se->gd_n, c->src->size);
	c->gt_max = c->r[VMDK_SE_R_GT].len / VMDK_SE_GT_BYTES;
	/* gd_n * 8 bytes lie in the file: bounded. */
	uint8_t *raw = malloc(se->gd_n ? se->gd_n * 8 : 1);
	se->gt = calloc(se->gd_n ? se->gd_n : 1, sizeof(*se->gt));
	c->buf = malloc(VMDK_SE_GT_BYTES);
	int r = raw && se->gt && c->buf ? 0 : -ENOMEM;
	if (r == 0)
		r = vdk_src_pread(c->src, raw, se->gd_n * 8, gd->off, c->e);
	for (uint64_t i = 0; r == 0 && i < se->gd_n; i++) {
		uint64_t gde = vdk_le64(raw + 8 * i);
		if (gde)
			r = vmdk_se_load_gt(c, gde, i);
	}
	free(raw);
	free(c->buf);
	if (r == -ENOMEM)
		r = vdk_err_set(c->e, VDK_E_IO, ENOMEM, c->src->name, "vmdk", VDK_NO_OFFSET,
		                "out of memory");
	return r;
}

int vmdk_se_open(struct vdk_src *src, struct vmdk_sesparse *se, struct vdk_err *e)
{
	struct vmdk_se_ctx c = {.src = src, .se = se, .e = e};
	uint8_t h[VMDK_SE_HDR];
	memset(se, 0, sizeof(*se));
	se->file_size = src->size;
	if (src->size == VDK_SIZE_UNKNOWN || src->size < 2 * VMDK_SE_HDR)
		return vdk_bad(e, src->name, "vmdk", 0,
		               "seSparse: extent shorter than its two headers");
	int r = vdk_src_pread(src, h, sizeof(h), 0, e);
	if (r == 0)
		r = vmdk_se_check_const(&c, h);
	if (r == 0)
		r = vmdk_se_regions(&c, h);
	if (r == 0)
		r = vmdk_se_overlaps(&c);
	if (r == 0)
		r = vmdk_se_volatile(&c);
	if (r == 0)
		r = vmdk_se_tables(&c);
	if (r < 0)
		vmdk_se_free(se);
	se->gd_off = c.r[VMDK_SE_R_GD].off;
	se->gt_off = c.r[VMDK_SE_R_GT].off;
	se->grains_off = c.r[VMDK_SE_R_GRAINS].off;
	return r;
}

void vmdk_se_free(struct vmdk_sesparse *se)
{
	if (se->gt)
		for (uint64_t i = 0; i < se->gd_n; i++)
			free(se->gt[i]);
	free(se->gt);
	se->gt = NULL;
}

static uint64_t vmdk_se_at(const struct vmdk_sesparse *se, uint64_t g)
{
	const uint64_t *t = se->gt[g / VMDK_SE_GTES];
	return t ? t[g % VMDK_SE_GTES] : VMDK_SE_E_HOLE;
}

uint64_t vmdk_se_run(const struct vmdk_sesparse *se, uint64_t off, uint64_t n, uint64_t *entry)
{
	uint64_t g = off / VMDK_SE_GRAIN, in = off % VMDK_SE_GRAIN;
	if (g / VMDK_SE_GTES >= se->gd_n || off >= se->capacity) {
		*entry = VMDK_SE_E_HOLE;
		return n;
	}
	n = VDK_MIN(n, se->capacity - off);
	uint64_t first = vmdk_se_at(se, g);
	*entry = first > VMDK_SE_E_ZERO ? first + in : first;
	if (!se->gt[g / VMDK_SE_GTES]) /* a whole table's span in one step */
		return VDK_MIN(n, VMDK_SE_GT_SPAN - off % VMDK_SE_GT_SPAN);
	uint64_t got = VMDK_SE_GRAIN - in;
	uint64_t end = (g / VMDK_SE_GTES + 1) * VMDK_SE_GTES;
	for (uint64_t k = g + 1; got < n && k < end; k++) {
		uint64_t v = vmdk_se_at(se, k);
		bool same =
		    first > VMDK_SE_E_ZERO ? v == first + (k - g) * VMDK_SE_GRAIN : v == first;
		if (!same)
			break;
		got += VMDK_SE_GRAIN;
	}
	return VDK_MIN(got, n);
}

static int vmdk_se_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int vmdk_se_check(const struct vmdk_sesparse *se, uint64_t *dup)
{
	uint64_t n = 0, cap = 0;
	*dup = 0;
	for (uint64_t i = 0; i < se->gd_n; i++)
		cap += se->gt[i] ? VMDK_SE_GTES : 0;
	/* As many entries as the tables loaded at open: bounded by the file. */
	uint64_t *all = malloc((cap ? cap : 1) * sizeof(*all));
	if (!all)
		return -ENOMEM;
	for (uint64_t i = 0; i < se->gd_n; i++)
		for (unsigned j = 0; se->gt[i] && j < VMDK_SE_GTES; j++)
			if (se->gt[i][j] > VMDK_SE_E_ZERO)
				all[n++] = se->gt[i][j];
	qsort(all, n, sizeof(*all), vmdk_se_cmp);
	for (uint64_t i = 1; i < n; i++)
		*dup += all[i] == all[i - 1];
	free(all);
	return 0;
}
