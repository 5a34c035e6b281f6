/* Structural validation of a sparse VMDK extent (KDMV and COWD), run at
 * open so that a damaged file is refused before anything is converted:
 * every grain table entry must point at grain data that lies inside the
 * file and outside the metadata (header, embedded descriptor, grain
 * directories, grain tables, stream markers and footer), and every grain
 * table must lie outside the fixed metadata. A conversion that turned such
 * an entry into data would copy metadata, or zeroes, into the guest's disk
 * and exit 0.
 *
 * The metadata is a list of intervals, sorted and merged, searched once per
 * allocated grain: O(grains * log(tables)). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "util.h"
#include "vmdk.h"

#define VMDK_COWD_HDR_BYTES 2048u

struct vmdk_iv {
	uint64_t lo, hi; /* [lo, hi) in the file */
	const char *what;
};

struct vmdk_ivs {
	struct vmdk_iv *v;
	size_t n, cap;
	size_t fixed; /* the first `fixed` intervals are not grain tables */
};

static void vmdk_iv_add(struct vmdk_ivs *s, uint64_t lo, uint64_t len, const char *what)
{
	uint64_t hi;
	if (!len || s->n == s->cap)
		return;
	if (vdk_add_overflow(lo, len, &hi))
		hi = UINT64_MAX;
	s->v[s->n++] = (struct vmdk_iv){lo, hi, what};
}

static int vmdk_iv_cmp(const void *a, const void *b)
{
	const struct vmdk_iv *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void vmdk_iv_merge(struct vmdk_ivs *s)
{
	if (!s->n)
		return;
	qsort(s->v, s->n, sizeof(*s->v), vmdk_iv_cmp);
	size_t k = 0;
	for (size_t i = 1; i < s->n; i++) {
		if (s->v[i].lo < s->v[k].hi)
			s->v[k].hi = VDK_MAX(s->v[k].hi, s->v[i].hi);
		else
			s->v[++k] = s->v[i];
	}
	s->n = k + 1;
}

/* The merged interval holding lo, else the first one inside [lo, hi). */
static const struct vmdk_iv *vmdk_iv_find(const struct vmdk_ivs *s, uint64_t lo, uint64_t hi)
{
	size_t a = 0, b = s->n; /* a: the number of intervals starting at or before lo */
	while (a < b) {
		size_t m = a + (b - a) / 2;
		if (s->v[m].lo <= lo)
			a = m + 1;
		else
			b = m;
	}
	if (a > 0 && s->v[a - 1].hi > lo)
		return &s->v[a - 1];
	return a < s->n && s->v[a].lo < hi ? &s->v[a] : NULL;
}

static uint64_t vmdk_dir_bytes(const struct vmdk_sparse *sp)
{
	return vdk_round_up(sp->gd_n * 4, VMDK_SECTOR);
}

static uint64_t vmdk_table_bytes(const struct vmdk_sparse *sp)
{
	return vdk_round_up((uint64_t)sp->gtes * 4, VMDK_SECTOR);
}

/* Header, descriptor, directories and the stream footer. */
static void vmdk_fixed_meta(const struct vmdk_sparse *sp, struct vmdk_ivs *s)
{
	uint64_t mark = sp->markers ? VMDK_SECTOR : 0;
	vmdk_iv_add(s, 0, sp->cowd ? VMDK_COWD_HDR_BYTES : VMDK_SECTOR, "header");
	vmdk_iv_add(s, sp->desc_off, sp->desc_hdr, "embedded descriptor");
	mark = sp->gd_off >= mark ? mark : 0;
	if (sp->gd_n)
		vmdk_iv_add(s, sp->gd_off - mark, vmdk_dir_bytes(sp) + mark, "grain directory");
	if (sp->gd_n && sp->rgd_off && vdk_range_ok(sp->rgd_off, sp->gd_n * 4, sp->file_size))
		vmdk_iv_add(s, sp->rgd_off, vmdk_dir_bytes(sp), "redundant grain directory");
	/* footer marker, footer header, end-of-stream marker */
	if (sp->footer && sp->file_size >= 3 * VMDK_SECTOR)
		vmdk_iv_add(s, sp->file_size - 3 * VMDK_SECTOR, 3 * VMDK_SECTOR, "stream footer");
	s->fixed = s->n;
}

static int vmdk_gt_meta(struct vdk_src *src, const struct vmdk_sparse *sp, struct vmdk_ivs *s,
                        struct vdk_err *e)
{
	uint64_t mark = sp->markers ? VMDK_SECTOR : 0, tb = vmdk_table_bytes(sp);
	for (uint64_t i = 0; i < sp->gd_n; i++) {
		if (!sp->gd[i])
			continue;
		uint64_t at = (uint64_t)sp->gd[i] * VMDK_SECTOR;
		for (size_t k = 0; k < s->fixed; k++)
			if (at < s->v[k].hi && s->v[k].lo < at + (uint64_t)sp->gtes * 4)
				return vdk_bad(e, src->name, "vmdk", sp->gd_off + 4 * i,
				               "grain directory entry %" PRIu64
				               " points its grain table at %" PRIu64
				               ", inside the %s",
				               i, at, s->v[k].what);
		uint64_t lo = at >= mark ? at - mark : at;
		vmdk_iv_add(s, lo, tb + (at - lo), "grain table");
	}
	return 0;
}

/* The redundant directory's tables are metadata too (qemu and VMware lay
 * them out after the primary ones). Read only when the RGD is in the file;
 * qemu ignores it, so a damaged RGD is not itself refused. */
static int vmdk_rgt_meta(struct vdk_src *src, const struct vmdk_sparse *sp, struct vmdk_ivs *s,
                         struct vdk_err *e)
{
	uint64_t gdb = sp->gd_n * 4, tb = vmdk_table_bytes(sp);
	if (!sp->gd_n || !sp->rgd_off || sp->cowd || !vdk_range_ok(sp->rgd_off, gdb, sp->file_size))
		return 0;
	uint8_t *raw = malloc(gdb);
	if (!raw)
		return vdk_err_set(e, VDK_E_IO, ENOMEM, src->name, "vmdk", VDK_NO_OFFSET,
		                   "out of memory");
	int r = vdk_src_pread(src, raw, gdb, sp->rgd_off, e);
	for (uint64_t i = 0; r == 0 && i < sp->gd_n; i++) {
		uint64_t at = (uint64_t)vdk_le32(raw + 4 * i) * VMDK_SECTOR;
		if (at && vdk_range_ok(at, tb, sp->file_size))
			vmdk_iv_add(s, at, tb, "redundant grain table");
	}
	free(raw);
	return r;
}

/* One allocated grain: inside the file (its data up to the capacity, or
 * the marker of a compressed grain), and outside the metadata. */
static int vmdk_check_grain(struct vdk_src *src, const struct vmdk_sparse *sp,
                            const struct vmdk_ivs *s, uint64_t gi, uint64_t ent_at, uint32_t gte,
                            struct vdk_err *e)
{
	uint64_t vstart = gi * sp->grain, at = (uint64_t)gte * VMDK_SECTOR;
	if (vstart >= sp->capacity)
		return 0; /* never read */
	uint64_t need = sp->compressed ? (sp->markers ? VMDK_GRAIN_MARKER_LEN : 1)
	                               : VDK_MIN((uint64_t)sp->grain, sp->capacity - vstart);
	if (at >= sp->file_size)
		return vdk_bad(e, src->name, "vmdk", ent_at,
		               "grain table entry for virtual offset %" PRIu64 " points at %" PRIu64
		               ", past the end of the %" PRIu64 "-byte file",
		               vstart, at, sp->file_size);
	if (need > sp->file_size - at)
		return vdk_bad(e, src->name, "vmdk", ent_at,
		               "grain at virtual offset %" PRIu64 " (file offset %" PRIu64
		               ") runs past the end of the %" PRIu64 "-byte file (truncated image)",
		               vstart, at, sp->file_size);
	const struct vmdk_iv *m = vmdk_iv_find(s, at, at + need);
	if (m)
		return vdk_bad(e, src->name, "vmdk", ent_at,
		               "grain table entry for virtual offset %" PRIu64 " points at %" PRIu64
		               ", inside the %s [%" PRIu64 ", %" PRIu64 ")",
		               vstart, at, m->what, m->lo, m->hi);
	return 0;
}

/* GTE 1 means "zeroed grain" only when the header sets the zeroed-grain
 * flag (spec 4.0, flags bit 2; qemu honours it only then). Without it the
 * entry points its grain at sector 1, inside the header area (header,
 * descriptor): qemu reads the descriptor as data, or fails on it as a
 * stream grain marker; reading zeroes would hide the damage. */
static int vmdk_check_gte_one(struct vdk_src *src, const struct vmdk_sparse *sp, uint64_t gi,
                              uint64_t ent_at, struct vdk_err *e)
{
	uint64_t vstart = gi * sp->grain;
	if (vstart >= sp->capacity)
		return 0; /* never read */
	return vdk_bad(e, src->name, "vmdk", ent_at,
	               "grain table entry for virtual offset %" PRIu64
	               " points at sector 1, inside the %s, and the header does not set the "
	               "zeroed-grain flag that would make it a zeroed grain",
	               vstart,
	               sp->cowd                                      ? "COWD header"
	               : sp->desc_hdr && sp->desc_off == VMDK_SECTOR ? "embedded descriptor"
	                                                             : "header area");
}

static int vmdk_check_grains(struct vdk_src *src, const struct vmdk_sparse *sp,
                             const struct vmdk_ivs *s, struct vdk_err *e)
{
	for (uint64_t i = 0; i < sp->gd_n; i++) {
		if (!sp->gt[i])
			continue;
		uint64_t base = (uint64_t)sp->gd[i] * VMDK_SECTOR;
		for (uint32_t j = 0; j < sp->gtes; j++) {
			uint32_t gte = sp->gt[i][j];
			if (gte == 0 || (gte == VMDK_GTE_ZEROED && sp->zero_grain))
				continue;
			int r = gte == VMDK_GTE_ZEROED
			            ? vmdk_check_gte_one(src, sp, i * sp->gtes + j,
			                                 base + 4 * (uint64_t)j, e)
			            : vmdk_check_grain(src, sp, s, i * sp->gtes + j,
			                               base + 4 * (uint64_t)j, gte, e);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int vmdk_sparse_validate(struct vdk_src *src, struct vmdk_sparse *sp, struct vdk_err *e)
{
	if (!sp->gd_n || !sp->gd)
		return 0;
	/* gd_n tables twice (primary, redundant) and the fixed metadata */
	struct vmdk_ivs s = {.cap = (size_t)sp->gd_n * 2 + 8};
	if (!(s.v = malloc(s.cap * sizeof(*s.v))))
		return vdk_err_set(e, VDK_E_IO, ENOMEM, src->name, "vmdk", VDK_NO_OFFSET,
		                   "out of memory");
	vmdk_fixed_meta(sp, &s);
	int r = vmdk_gt_meta(src, sp, &s, e);
	if (r == 0)
		r = vmdk_rgt_meta(src, sp, &s, e);
	if (r == 0) {
		vmdk_iv_merge(&s);
		r = vmdk_check_grains(src, sp, &s, e);
	}
	free(s.v);
	return r;
}

/* check ------------------------------------------------------------------ */

static int vmdk_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void vmdk_check_note(struct vdk_check *r, const char *file, const char *what, uint64_t n,
                            uint64_t first)
{
	if (n)
		vdk_findings_add(&r->findings, VDK_ERROR, file, first, "vmdk: %" PRIu64 " %s", n,
		                 what);
}

/* Grains that two table entries share (qemu-img check's "overlap" class);
 * open already refused grains past the end or inside metadata. */
int vmdk_sparse_check(const struct vmdk_sparse *sp, const char *file, struct vdk_check *r)
{
	uint64_t n = 0, cap = 0, dup = 0, first = 0;
	for (uint64_t i = 0; i < sp->gd_n; i++)
		cap += sp->gt[i] ? sp->gtes : 0;
	uint32_t *all = malloc((cap ? cap : 1) * sizeof(*all));
	if (!all)
		return -ENOMEM;
	for (uint64_t i = 0; i < sp->gd_n; i++)
		for (uint32_t j = 0; sp->gt[i] && j < sp->gtes; j++)
			if (sp->gt[i][j] > VMDK_GTE_ZEROED)
				all[n++] = sp->gt[i][j];
	qsort(all, n, sizeof(*all), vmdk_cmp_u32);
	for (uint64_t i = 1; i < n; i++)
		if (all[i] == all[i - 1] && !dup++)
			first = (uint64_t)all[i] * VMDK_SECTOR;
	free(all);
	r->corruptions += dup;
	vmdk_check_note(r, file, "grains referenced twice", dup, first);
	return 0;
}
