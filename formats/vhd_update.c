/* VHD (vpc) updated in place (convert/update.h). A fixed disk is its data
 * followed by the footer: writes go in place, the footer is never touched.
 *
 * A dynamic disk writes into an allocated block in place and sets the
 * written sectors' bits in the block's sector bitmap (vdkit's reader and
 * libvhdi read a clear bit as a sector not stored; qemu ignores the
 * bitmap): data durable first, bitmap at the flush. An unallocated block
 * goes where the footer was: the footer is first copied further on, making
 * room for several blocks, and made durable (so the file ends in a valid
 * footer at every moment), then the all-ones bitmap and the written data go
 * into the block (the rest reads as zeroes: the file grew, nothing was
 * written); its BAT entry is written at the flush, after the data is
 * durable, and the room left over is cut off again (footer first). Killed
 * anywhere, the old BAT stands for blocks not yet flushed: at worst blocks
 * leak. A wholly zeroed block is unallocated in the BAT (qemu and vdkit
 * read an unallocated block as zeroes; it leaks the same way). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "update.h"
#include "util.h"
#include "vhd.h"

#define FMT              "vpc"
#define VHD_UPD_PER_SEC  (VHD_SECTOR / 4) /* BAT entries in a sector */
#define VHD_UPD_BM_BYTES (16u << 20)      /* changed bitmaps kept before a flush */
#define VHD_UPD_RESERVE  64u              /* blocks of room made at once */

struct vhd_upd_bm {
	uint64_t blk;
	uint8_t *bm;
};

static const uint8_t vhd_upd_zeroes[64 * 1024];

static bool vhd_upd_bit(const uint8_t *v, uint64_t i)
{
	return (v[i / 8] >> (i % 8)) & 1;
}

static void vhd_upd_setbit(uint8_t *v, uint64_t i, bool on)
{
	if (on)
		v[i / 8] |= (uint8_t)(1u << (i % 8));
	else
		v[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

/* Open ------------------------------------------------------------------- */

static int vhd_upd_check(struct vdk_update *u, const struct vdk_image *img,
                         const struct vhd_state *s, struct vdk_err *e)
{
	if (s->f.type == VHD_TYPE_DIFF)
		return vdk_unsup(e, u->path, FMT, VDK_NO_OFFSET,
		                 "a differencing VHD cannot be updated in place (its unwritten "
		                 "sectors come from the parent)");
	if (s->footer_off == 0)
		return vdk_unsup(e, u->path, FMT, img->src->size - VHD_FOOTER_SIZE,
		                 "the footer at the end of the file is damaged (only the copy at 0 "
		                 "is valid): refusing to update");
	return 0;
}

static int vhd_upd_load_dynamic(struct vdk_update *u, struct vhd_state *s, struct vdk_err *e)
{
	struct vhd_ustate *us = u->state;
	us->bat_off = s->bat_off;
	us->block_size = s->block_size;
	us->bitmap_size = s->bitmap_size;
	us->nblocks = s->nblocks;
	us->bat = s->bat; /* nblocks entries, bounded by the file (vhd_read_bat) */
	s->bat = NULL;
	uint64_t nsec = (us->nblocks + VHD_UPD_PER_SEC - 1) / VHD_UPD_PER_SEC;
	us->bat_dirty = calloc(nsec / 8 + 1, 1);
	us->bm_full = calloc(us->nblocks / 8 + 1, 1);
	us->ones = malloc(us->bitmap_size);
	us->bms = calloc(VDK_MAX(VHD_UPD_BM_BYTES / us->bitmap_size, 1), sizeof(*us->bms));
	if (!us->bat_dirty || !us->bm_full || !us->ones || !us->bms)
		return vdk_nomem(e, u->path, FMT, "the update state");
	memset(us->ones, 0xff, us->bitmap_size);
	u->granularity = us->block_size;
	return 0;
}

int vhd_update_open(struct vdk_update *u, struct vdk_err *e)
{
	static const struct vdk_open_opts o = {.no_backing = true};
	struct vhd_ustate *us = u->state;
	struct vdk_image *img;
	int r = vdk_image_open_path(u->path, FMT, &o, &img, e);
	if (r)
		return r;
	struct vhd_state *s = img->state;
	r = vhd_upd_check(u, img, s, e);
	us->type = s->f.type;
	us->footer_off = s->footer_off;
	us->next_blk = vdk_round_up(us->footer_off, VHD_SECTOR);
	u->size = img->size;
	u->granularity = VHD_SECTOR;
	if (!r && vdk_pread_full(u->fd, us->footer, VHD_FOOTER_SIZE, us->footer_off))
		r = vdk_err_set(e, VDK_E_IO, errno, u->path, FMT, us->footer_off,
		                "reading the footer failed: %s", strerror(errno));
	if (!r && !vhd_footer_csum_ok(us->footer))
		r = vdk_err_set(e, VDK_E_IO, ESTALE, u->path, FMT, us->footer_off,
		                "the footer changed while the image was opened");
	if (!r && us->type == VHD_TYPE_DYNAMIC)
		r = vhd_upd_load_dynamic(u, s, e);
	vdk_image_close(img);
	return r;
}

void vhd_update_close(struct vdk_update *u)
{
	struct vhd_ustate *us = u->state;
	for (size_t i = 0; i < us->nbms; i++)
		free(us->bms[i].bm);
	free(us->bms);
	free(us->bat);
	free(us->bat_dirty);
	free(us->bm_full);
	free(us->ones);
}

/* Flush ------------------------------------------------------------------ */

static int vhd_upd_put_bat(struct vdk_update *u, uint64_t k, struct vdk_err *e)
{
	struct vhd_ustate *us = u->state;
	uint8_t sec[VHD_SECTOR];
	uint64_t at = us->bat_off + k * VHD_SECTOR;
	/* entries past the disk's last block keep their bytes */
	if (vdk_pread_full(u->fd, sec, sizeof(sec), at))
		return vdk_err_set(e, VDK_E_IO, errno, u->path, FMT, at,
		                   "reading the BAT failed: %s", strerror(errno));
	uint64_t first = k * VHD_UPD_PER_SEC, last = VDK_MIN(first + VHD_UPD_PER_SEC, us->nblocks);
	for (uint64_t i = first; i < last; i++)
		vdk_put_be32(sec + 4 * (i - first), us->bat[i]);
	return vdk_update_pwrite(u, sec, sizeof(sec), at, true, e);
}

static int vhd_upd_put_bitmaps(struct vdk_update *u, struct vdk_err *e)
{
	struct vhd_ustate *us = u->state;
	int r = 0;
	for (size_t i = 0; i < us->nbms; i++) {
		uint64_t blk = us->bms[i].blk;
		if (!r && us->bat[blk] != VHD_BAT_UNUSED)
			r = vdk_update_pwrite(u, us->bms[i].bm, us->bitmap_size,
			                      (uint64_t)us->bat[blk] * VHD_SECTOR, true, e);
		free(us->bms[i].bm);
	}
	us->nbms = 0;
	return r;
}

/* After a flush: the room not used goes, the footer right after the last
 * block (durable before the file is cut, so a footer ends it throughout). */
static int vhd_upd_trim(struct vdk_update *u, struct vdk_err *e)
{
	struct vhd_ustate *us = u->state;
	if (us->next_blk >= us->footer_off)
		return 0;
	int r = vdk_update_pwrite(u, us->footer, VHD_FOOTER_SIZE, us->next_blk, true, e);
	if (!r)
		r = vdk_update_sync(u, e);
	if (!r && ftruncate(u->fd, (off_t)(us->next_blk + VHD_FOOTER_SIZE)))
		r = vdk_err_set(e, VDK_E_IO, errno, u->path, FMT, us->next_blk,
		                "cutting the file after its last block failed: %s",
		                strerror(errno));
	if (!r)
		r = vdk_update_sync(u, e);
	if (!r)
		us->footer_off = us->next_blk;
	return r;
}

int vhd_update_flush(struct vdk_update *u, struct vdk_err *e)
{
	struct vhd_ustate *us = u->state;
	int r = vdk_update_sync(u, e); /* data and new blocks durable */
	if (r || us->type != VHD_TYPE_DYNAMIC)
		return r;
	uint64_t nsec = (us->nblocks + VHD_UPD_PER_SEC - 1) / VHD_UPD_PER_SEC;
	bool any = us->nbms > 0;
	r = vhd_upd_put_bitmaps(u, e);
	for (uint64_t k = 0; !r && k < nsec; k++) {
		if (!vhd_upd_bit(us->bat_dirty, k))
			continue;
		any = true;
		r = vhd_upd_put_bat(u, k, e);
		vhd_upd_setbit(us->bat_dirty, k, false);
	}
	if (!r && any)
		r = vdk_update_sync(u, e);
	return r ? r : vhd_upd_trim(u, e);
}

/* Dynamic blocks ------------------------------------------------------- */

static void vhd_upd_set_bat(struct vhd_ustate *us, uint64_t blk, uint32_t v)
{
	us->bat[blk] = v;
	vhd_upd_setbit(us->bat_dirty, blk / VHD_UPD_PER_SEC, true);
}

/* Room for the next new blocks: the footer goes VHD_UPD_RESERVE blocks
 * further (fewer near the end of what the BAT addresses) and is made
 * durable before the old one is overwritten, so that the file ends in a
 * valid footer at every moment and one sync serves many allocations. */
static int vhd_upd_reserve(struct vdk_update *u, struct vdk_err *e)
{
	struct vhd_ustate *us = u->state;
	uint64_t span = (uint64_t)us->bitmap_size + us->block_size, foot = 0;
	for (uint64_t k = VHD_UPD_RESERVE; k && !foot; k /= 2)
		if (us->next_blk <= (VHD_BAT_UNUSED - 1ull) * VHD_SECTOR - k * span)
			foot = us->next_blk + k * span;
	if (!foot)
		return vdk_unsup(e, u->path, FMT, us->next_blk,
		                 "a new block would lie beyond what the BAT can address");
	int r = vdk_update_pwrite(u, us->footer, VHD_FOOTER_SIZE, foot, true, e);
	if (!r)
		r = vdk_update_sync(u, e);
	if (!r)
		us->footer_off = foot;
	return r;
}

static int vhd_upd_alloc(struct vdk_update *u, uint64_t blk, struct vdk_err *e)
{
	struct vhd_ustate *us = u->state;
	uint64_t at = us->next_blk, span = (uint64_t)us->bitmap_size + us->block_size;
	int r = at + span > us->footer_off ? vhd_upd_reserve(u, e) : 0;
	if (!r)
		r = vdk_update_pwrite(u, us->ones, us->bitmap_size, at, true, e);
	if (r)
		return r;
	us->next_blk = at + span;
	vhd_upd_set_bat(us, blk, (uint32_t)(at / VHD_SECTOR));
	vhd_upd_setbit(us->bm_full, blk, true);
	return 0;
}

static struct vhd_upd_bm *vhd_upd_find_bm(struct vhd_ustate *us, uint64_t blk)
{
	for (size_t i = 0; i < us->nbms; i++)
		if (us->bms[i].blk == blk)
			return &us->bms[i];
	return NULL;
}

/* The bitmap of an allocated block, to change at the next flush; NULL
 * (and *full) when it is all ones on disk already. */
static int vhd_upd_get_bm(struct vdk_update *u, uint64_t blk, struct vhd_upd_bm **out,
                          struct vdk_err *e)
{
	struct vhd_ustate *us = u->state;
	if ((*out = vhd_upd_find_bm(us, blk)))
		return 0;
	if (us->nbms == VDK_MAX(VHD_UPD_BM_BYTES / us->bitmap_size, 1)) {
		int r = vhd_update_flush(u, e);
		if (r)
			return r;
	}
	uint8_t *bm = malloc(us->bitmap_size);
	uint64_t at = (uint64_t)us->bat[blk] * VHD_SECTOR;
	if (!bm)
		return vdk_nomem(e, u->path, FMT, "a sector bitmap");
	if (vdk_pread_full(u->fd, bm, us->bitmap_size, at)) {
		free(bm);
		return vdk_err_set(e, VDK_E_IO, errno, u->path, FMT, at,
		                   "reading a sector bitmap failed: %s", strerror(errno));
	}
	if (memcmp(bm, us->ones, us->bitmap_size) == 0) {
		free(bm);
		vhd_upd_setbit(us->bm_full, blk, true);
		return 0;
	}
	us->bms[us->nbms] = (struct vhd_upd_bm){blk, bm};
	*out = &us->bms[us->nbms++];
	return 0;
}

/* Sectors [in, in+n) of block blk are stored now (bits MSB first). */
static int vhd_upd_mark(struct vdk_update *u, uint64_t blk, uint64_t in, uint64_t n,
                        struct vdk_err *e)
{
	struct vhd_ustate *us = u->state;
	if (vhd_upd_bit(us->bm_full, blk))
		return 0;
	struct vhd_upd_bm *b;
	int r = vhd_upd_get_bm(u, blk, &b, e);
	for (uint64_t s = in / VHD_SECTOR; !r && b && s < (in + n + VHD_SECTOR - 1) / VHD_SECTOR;
	     s++)
		b->bm[s / 8] |= (uint8_t)(0x80u >> (s % 8));
	return r;
}

static int vhd_upd_write_dyn(struct vdk_update *u, const uint8_t *p, size_t len, uint64_t off,
                             struct vdk_err *e)
{
	struct vhd_ustate *us = u->state;
	int r = 0;
	while (!r && len) {
		uint64_t blk = off / us->block_size, in = off % us->block_size;
		size_t n = (size_t)VDK_MIN((uint64_t)len, us->block_size - in);
		if (us->bat[blk] == VHD_BAT_UNUSED)
			r = vhd_upd_alloc(u, blk, e);
		uint64_t at = (uint64_t)us->bat[blk] * VHD_SECTOR + us->bitmap_size + in;
		if (!r)
			r = vdk_update_pwrite(u, p, n, at, false, e);
		if (!r)
			r = vhd_upd_mark(u, blk, in, n, e);
		p += n;
		off += n;
		len -= n;
	}
	return r;
}

int vhd_update_write(struct vdk_update *u, const void *buf, size_t len, uint64_t off,
                     struct vdk_err *e)
{
	struct vhd_ustate *us = u->state;
	if (us->type == VHD_TYPE_DYNAMIC)
		return vhd_upd_write_dyn(u, buf, len, off, e);
	return vdk_update_pwrite(u, buf, len, off, false, e);
}

static int vhd_upd_zero_writes(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e)
{
	int r = 0;
	while (!r && len) {
		size_t n = (size_t)VDK_MIN(len, (uint64_t)sizeof(vhd_upd_zeroes));
		r = vhd_update_write(u, vhd_upd_zeroes, n, off, e);
		off += n;
		len -= n;
	}
	return r;
}

static void vhd_upd_drop_bm(struct vhd_ustate *us, uint64_t blk)
{
	struct vhd_upd_bm *b = vhd_upd_find_bm(us, blk);
	if (!b)
		return;
	free(b->bm);
	*b = us->bms[--us->nbms];
}

int vhd_update_zero(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e)
{
	struct vhd_ustate *us = u->state;
	/* a fixed disk: ZERO_RANGE where the file system has it, as raw does */
	if (us->type != VHD_TYPE_DYNAMIC)
		return fallocate(u->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		                 (off_t)len) == 0
		           ? 0
		           : vhd_upd_zero_writes(u, off, len, e);
	int r = 0;
	while (!r && len) {
		uint64_t blk = off / us->block_size, in = off % us->block_size;
		uint64_t n = VDK_MIN(len, us->block_size - in);
		if (us->bat[blk] == VHD_BAT_UNUSED) {
			/* reads as zeroes already */
		} else if (in == 0 && (n == us->block_size || off + n == u->size)) {
			vhd_upd_drop_bm(us, blk);
			vhd_upd_setbit(us->bm_full, blk, false);
			vhd_upd_set_bat(us, blk, VHD_BAT_UNUSED);
		} else {
			r = vhd_upd_zero_writes(u, off, n, e);
		}
		off += n;
		len -= n;
	}
	return r;
}
