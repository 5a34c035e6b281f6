/* VHDX block allocation table (MS-VHDX 2.5): payload entries interleaved
 * with one sector-bitmap entry per chunk, extents, reads, the differencing
 * parent and the structural check. Everything here is read-only after open,
 * so pread may run on several threads at once. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"
#include "vhdx.h"

#define BAD(img, off, ...) vdk_bad(e, (img)->src->name, "vhdx", (off), __VA_ARGS__)

uint64_t vhdx_bat_index(const struct vhdx_state *s, uint64_t block)
{
	return block + block / s->chunk_ratio;
}

static uint64_t vhdx_sb_index(const struct vhdx_state *s, uint64_t block)
{
	return (block / s->chunk_ratio) * (s->chunk_ratio + 1) + s->chunk_ratio;
}

/* Bytes of virtual disk block b holds (the last one may be short). */
static uint64_t vhdx_block_bytes(const struct vdk_image *img, uint64_t b)
{
	const struct vhdx_state *s = img->state;
	return VDK_MIN((uint64_t)s->block_size, img->size - b * s->block_size);
}

/* A payload block or sector bitmap inside the log, BAT or metadata region
 * would hand metadata to the guest as data (the first MiB is refused by
 * the callers). */
static int vhdx_block_meta(struct vdk_image *img, uint64_t at, uint64_t off, uint64_t len,
                           const char *what, struct vdk_err *e)
{
	const struct vhdx_state *s = img->state;
	struct {
		uint64_t off, len;
		const char *what;
	} m[] = {
	    {s->log_off, s->log_len, "log"},
	    {s->bat_off, s->bat_len, "BAT"},
	    {s->meta_off, s->meta_len, "metadata"},
	};
	size_t hit = VDK_ARRAY_SIZE(m);
	for (size_t k = 0; k < VDK_ARRAY_SIZE(m); k++)
		if (m[k].len && off < m[k].off + m[k].len && m[k].off < off + len &&
		    (hit == VDK_ARRAY_SIZE(m) || m[k].off <= off))
			hit = k; /* name the region the block starts in, if any */
	if (hit == VDK_ARRAY_SIZE(m))
		return 0;
	return BAD(img, at, "%s at file offset %llu lies inside the %s region at %llu", what,
	           (unsigned long long)off, m[hit].what, (unsigned long long)m[hit].off);
}

static int vhdx_check_payload(struct vdk_image *img, uint64_t b, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	uint64_t i = vhdx_bat_index(s, b), ent = s->bat[i], at = s->bat_off + 8 * i;
	unsigned st = VHDX_BAT_STATE(ent);
	switch (st) {
	case VHDX_PB_NOT_PRESENT:
	case VHDX_PB_UNDEFINED:
	case VHDX_PB_ZERO:
	case VHDX_PB_UNMAPPED:
		return 0;
	case VHDX_PB_PARTIALLY_PRESENT:
		if (!s->has_parent)
			return BAD(img, at, "block %llu is partially present without a parent",
			           (unsigned long long)b);
		if (VHDX_BAT_STATE(s->bat[vhdx_sb_index(s, b)]) != VHDX_SB_PRESENT)
			return BAD(img, at,
			           "block %llu is partially present but its sector "
			           "bitmap is not",
			           (unsigned long long)b);
		/* fall through */
	case VHDX_PB_FULLY_PRESENT:
		if (VHDX_BAT_OFF(ent) < VHDX_MiB ||
		    !vdk_range_ok(VHDX_BAT_OFF(ent), vhdx_block_bytes(img, b), s->fsize))
			return BAD(img, at,
			           "block %llu at file offset %llu is beyond the end of "
			           "the file (%llu bytes)",
			           (unsigned long long)b, (unsigned long long)VHDX_BAT_OFF(ent),
			           (unsigned long long)s->fsize);
		return vhdx_block_meta(img, at, VHDX_BAT_OFF(ent), vhdx_block_bytes(img, b),
		                       "payload block", e);
	default:
		return BAD(img, at, "block %llu has invalid state %u", (unsigned long long)b, st);
	}
}

static int vhdx_check_bitmaps(struct vdk_image *img, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	for (uint64_t i = s->chunk_ratio; i < s->bat_entries; i += s->chunk_ratio + 1) {
		uint64_t ent = s->bat[i];
		unsigned st = VHDX_BAT_STATE(ent);
		if (st == VHDX_SB_NOT_PRESENT)
			continue;
		if (st != VHDX_SB_PRESENT)
			return BAD(img, s->bat_off + 8 * i, "sector bitmap entry has state %u", st);
		if (VHDX_BAT_OFF(ent) < VHDX_MiB ||
		    !vdk_range_ok(VHDX_BAT_OFF(ent), VHDX_SB_SIZE, s->fsize))
			return BAD(img, s->bat_off + 8 * i,
			           "sector bitmap at file offset %llu is "
			           "beyond the end of the file",
			           (unsigned long long)VHDX_BAT_OFF(ent));
		int r = vhdx_block_meta(img, s->bat_off + 8 * i, VHDX_BAT_OFF(ent), VHDX_SB_SIZE,
		                        "sector bitmap block", e);
		if (r < 0)
			return r;
	}
	return 0;
}

int vhdx_bat_load(struct vdk_image *img, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	s->chunk_ratio = ((uint64_t)1 << 23) * s->lss / s->block_size;
	s->data_blocks = (img->size + s->block_size - 1) / s->block_size;
	if (s->has_parent) {
		uint64_t chunks = (s->data_blocks + s->chunk_ratio - 1) / s->chunk_ratio;
		s->bat_entries = chunks * (s->chunk_ratio + 1);
	} else {
		s->bat_entries =
		    s->data_blocks ? s->data_blocks + (s->data_blocks - 1) / s->chunk_ratio : 0;
	}
	uint64_t bytes = s->bat_entries * 8;
	/* the size of the table is bounded by the region and the real file */
	if (bytes > s->bat_len || bytes > img->src->size)
		return BAD(img, s->bat_off,
		           "BAT of %llu entries does not fit its region of %u "
		           "bytes",
		           (unsigned long long)s->bat_entries, s->bat_len);
	s->bat = malloc(bytes ? bytes : 8);
	if (!s->bat)
		return vdk_nomem(e, img->src->name, "vhdx", "the BAT");
	int r = vhdx_fread(img, s->bat, bytes, s->bat_off, e);
	if (r < 0)
		return r;
	for (uint64_t i = 0; i < s->bat_entries; i++)
		s->bat[i] = vdk_le64((const uint8_t *)&s->bat[i]);
	for (uint64_t b = 0; b < s->data_blocks; b++)
		if ((r = vhdx_check_payload(img, b, e)) < 0)
			return r;
	return vhdx_check_bitmaps(img, e);
}

/* Extents ---------------------------------------------------------------- */

static int vhdx_add_data(struct vdk_image *img, uint64_t off, uint64_t len, uint64_t foff,
                         struct vdk_extents *out)
{
	const struct vhdx_state *s = img->state;
	struct vdk_src *src = img->src;
	bool verbatim =
	    src->fd >= 0 && vdk_range_ok(foff, len, src->size) && !vhdx_log_touches(s, foff, len);
	return vdk_extents_add(out, off, len, 0, verbatim ? src->fd : -1,
	                       verbatim ? src->fd_off + foff : 0);
}

/* A partially present block: runs of the sector bitmap (bit i of the
 * chunk's bitmap, LSB first, is logical sector i of the chunk). */
static int vhdx_partial(struct vdk_image *img, uint64_t b, uint64_t off, uint64_t n,
                        struct vdk_extents *out, struct vdk_err *e)
{
	const struct vhdx_state *s = img->state;
	uint64_t lss = s->lss, bo = off - b * s->block_size;
	uint64_t sec0 = (b % s->chunk_ratio) * (s->block_size / lss) + bo / lss;
	uint64_t nsec = (bo % lss + n + lss - 1) / lss;
	uint64_t sb = VHDX_BAT_OFF(s->bat[vhdx_sb_index(s, b)]);
	size_t bytes = (size_t)((sec0 % 8 + nsec + 7) / 8);
	uint8_t *bm = malloc(bytes);
	if (!bm)
		return vdk_nomem(e, img->src->name, "vhdx", "a sector bitmap");
	int r = vhdx_fread(img, bm, bytes, sb + sec0 / 8, e);
	uint64_t foff = VHDX_BAT_OFF(s->bat[vhdx_bat_index(s, b)]);
	for (uint64_t k = 0, pos = off; r == 0 && k < nsec;) {
		uint64_t bit = sec0 % 8 + k;
		bool set = (bm[bit / 8] >> (bit % 8)) & 1;
		uint64_t k2 = k + 1;
		while (k2 < nsec) {
			uint64_t b2 = sec0 % 8 + k2;
			if ((bool)((bm[b2 / 8] >> (b2 % 8)) & 1) != set)
				break;
			k2++;
		}
		uint64_t end = VDK_MIN(off + n, b * s->block_size + (bo / lss + k2) * lss);
		uint64_t len = end - pos;
		if (set)
			r = vhdx_add_data(img, pos, len, foff + (pos - b * s->block_size), out);
		else
			r = vdk_extents_add(out, pos, len, VDK_EXT_HOLE, -1, 0);
		pos = end;
		k = k2;
	}
	free(bm);
	return r;
}

static int vhdx_block_extents(struct vdk_image *img, uint64_t b, uint64_t off, uint64_t n,
                              struct vdk_extents *out, struct vdk_err *e)
{
	const struct vhdx_state *s = img->state;
	uint64_t ent = s->bat[vhdx_bat_index(s, b)];
	switch (VHDX_BAT_STATE(ent)) {
	case VHDX_PB_FULLY_PRESENT:
		return vhdx_add_data(img, off, n, VHDX_BAT_OFF(ent) + (off - b * s->block_size),
		                     out);
	case VHDX_PB_PARTIALLY_PRESENT:
		return vhdx_partial(img, b, off, n, out, e);
	case VHDX_PB_ZERO:
		/* reads as zeroes even over a parent */
		return vdk_extents_add(
		    out, off, n, s->has_parent ? VDK_EXT_ZERO : VDK_EXT_ZERO | VDK_EXT_HOLE, -1, 0);
	default:
		return vdk_extents_add(
		    out, off, n, s->has_parent ? VDK_EXT_HOLE : VDK_EXT_HOLE | VDK_EXT_ZERO, -1, 0);
	}
}

int vhdx_extents(struct vdk_image *img, uint64_t off, uint64_t len, struct vdk_extents *out,
                 struct vdk_err *e)
{
	const struct vhdx_state *s = img->state;
	uint64_t end = VDK_MIN(off + len, img->size);
	while (off < end) {
		uint64_t b = off / s->block_size;
		uint64_t n = VDK_MIN(end - off, (b + 1) * s->block_size - off);
		int r = vhdx_block_extents(img, b, off, n, out, e);
		if (r < 0)
			return r == -ENOMEM && e->cls == VDK_E_NONE
			           ? vdk_ioerr(e, ENOMEM, img->src->name, "out of memory")
			           : r;
		off += n;
		if (vdk_extents_full(out))
			break;
	}
	return 0;
}

int vhdx_pread(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	const struct vhdx_state *s = img->state;
	uint8_t *p = buf;
	while (len) {
		uint64_t b = off / s->block_size;
		size_t n = (size_t)VDK_MIN((uint64_t)len, (b + 1) * s->block_size - off);
		uint64_t ent = s->bat[vhdx_bat_index(s, b)];
		unsigned st = VHDX_BAT_STATE(ent);
		int r = 0;
		if (st == VHDX_PB_FULLY_PRESENT || st == VHDX_PB_PARTIALLY_PRESENT)
			r = vhdx_fread(img, p, n, VHDX_BAT_OFF(ent) + (off - b * s->block_size), e);
		else if (img->backing && st != VHDX_PB_ZERO)
			r = vdk_image_pread(img->backing, p, n, off, e);
		else
			memset(p, 0, n);
		if (r < 0)
			return r;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* Differencing parent (MS-VHDX 2.6.2.6) ----------------------------------- */

/* "{xxxxxxxx-xxxx-...}" as written in parent_linkage, against a GUID. */
static bool vhdx_linkage_matches(const char *txt, const uint8_t *g)
{
	char want[40];
	snprintf(want, sizeof(want), "{%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x}",
	         vdk_le32(g), vdk_le16(g + 4), vdk_le16(g + 6), g[8], g[9], g[10], g[11], g[12],
	         g[13], g[14], g[15]);
	return strcasecmp(txt, want) == 0;
}

int vhdx_parent_open(struct vdk_image *img, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	const char *rel = s->parent_rel;
	int r;
	if (rel) {
		while (rel[0] == '.' && rel[1] == '/')
			rel += 2;
		r = vdk_image_open_backing(img, rel, "vhdx", e);
	} else if (s->parent_abs && strrchr(s->parent_abs, '/')) {
		/* only the name: the parent must sit in this image's folder */
		r = vdk_image_open_backing(img, strrchr(s->parent_abs, '/') + 1, "vhdx", e);
	} else {
		return BAD(img, s->meta_off, "parent locator has no relative_path");
	}
	if (r < 0 || !img->backing) /* no_backing: named, not opened */
		return r;
	const struct vhdx_state *ps = img->backing->state;
	bool force = img->opts && img->opts->force;
	if (img->backing->fmt == img->fmt && s->parent_linkage && !force &&
	    !vhdx_linkage_matches(s->parent_linkage, ps->dw_guid))
		return BAD(img, s->meta_off,
		           "parent %s was modified after this differencing disk was made "
		           "(DataWriteGuid does not match parent_linkage %s)",
		           img->backing->src->name, s->parent_linkage);
	return 0;
}

/* Check ------------------------------------------------------------------ */

struct vhdx_span {
	uint64_t off, len;
};

static int vhdx_span_cmp(const void *a, const void *b)
{
	const struct vhdx_span *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

int vhdx_check(struct vdk_image *img, struct vdk_check *r, bool repair, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	struct vhdx_span *v = malloc((s->bat_entries + 4) * sizeof(*v));
	if (!v)
		return vdk_nomem(e, img->src->name, "vhdx", "the check's block list");
	size_t n = 0;
	v[n++] = (struct vhdx_span){0, VHDX_MiB};
	v[n++] = (struct vhdx_span){s->bat_off, s->bat_len};
	v[n++] = (struct vhdx_span){s->meta_off, s->meta_len};
	if (s->log_len)
		v[n++] = (struct vhdx_span){s->log_off, s->log_len};
	for (uint64_t i = 0; i < s->bat_entries; i++) {
		unsigned st = VHDX_BAT_STATE(s->bat[i]);
		bool sb = (i + 1) % (s->chunk_ratio + 1) == 0;
		if (st == VHDX_PB_FULLY_PRESENT || st == VHDX_PB_PARTIALLY_PRESENT)
			v[n++] = (struct vhdx_span){VHDX_BAT_OFF(s->bat[i]),
			                            sb ? VHDX_SB_SIZE : s->block_size};
	}
	qsort(v, n, sizeof(*v), vhdx_span_cmp);
	for (size_t i = 1; i < n; i++)
		if (v[i].off < v[i - 1].off + v[i - 1].len) {
			r->corruptions++;
			vdk_findings_add(&r->findings, VDK_ERROR, img->src->name, v[i].off,
			                 "block overlaps the one at file offset %llu",
			                 (unsigned long long)v[i - 1].off);
		}
	free(v);
	if (vhdx_guid_is_zero(s->log_guid))
		return 0;
	if (!repair) {
		vdk_findings_add(&r->findings, VDK_NOTE, img->src->name, s->log_off,
		                 "the log holds %llu entries (sequence %llu) not yet replayed into "
		                 "the file; they were applied in memory (check -r writes them)",
		                 (unsigned long long)s->log_nentries,
		                 (unsigned long long)s->log_head_seq);
		return 0;
	}
	int rc = vhdx_log_commit(img, e);
	if (rc)
		return rc;
	r->fixed++;
	vdk_findings_add(&r->findings, VDK_NOTE, img->src->name, s->log_off,
	                 "replayed %llu log entries (sequence %llu) into the file",
	                 (unsigned long long)s->log_nentries, (unsigned long long)s->log_head_seq);
	return 0;
}
