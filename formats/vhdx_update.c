/* VHDX updated in place (convert/update.h; MS-VHDX 2.2-2.5). Guest data for
 * a FULLY_PRESENT block is written where the block is. Any other block gets
 * a new 1 MiB-aligned block at the end of the file (the file is extended,
 * not written, so an update costs what it writes), and every BAT change
 * reaches the file through the log, as Hyper-V updates metadata
 * (MS-VHDX 2.3). A flush runs, for each batch of changed BAT sectors that
 * fits one log entry:
 *
 *   data durable -> log entry holding the new BAT sectors durable ->
 *   header naming the log (new LogGuid) durable -> BAT sectors in place
 *   durable -> header with a zero LogGuid durable.
 *
 * Killed before the header names the log, the old BAT stands and the new
 * blocks leak; killed after, every VHDX reader replays the entry (vdkit in
 * memory, qemu-img when it opens the file read-write, Hyper-V on mount).
 * update_open replays a non-empty log into the file first (vhdx_log_commit,
 * as `vdkit check -r` does) rather than refusing it: an interrupted update
 * leaves exactly such a log, and its rerun must complete by itself. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "update.h"
#include "util.h"
#include "vhdx.h"

#define FMT                 "vhdx"
#define VHDX_UPD_PER_SECTOR (VHDX_LOG_SECTOR / 8) /* BAT entries in a 4 KiB sector */
/* Descriptors in one log entry at most: bounds the entry's buffer (16 MiB)
 * whatever log size the header declares. */
#define VHDX_UPD_MAX_DESC 4000u
#define VHDX_UPD_FILE_MAX (1ull << 62)

static const uint8_t vhdx_upd_zeroes[64 * VHDX_KiB];

static uint64_t vhdx_upd_bidx(const struct vhdx_ustate *us, uint64_t block)
{
	return block + block / us->chunk_ratio; /* a sector bitmap entry per chunk */
}

static uint32_t vhdx_upd_desc_sectors(uint32_t ndesc)
{
	return (ndesc + 2 + VHDX_DESC_PER_SECTOR - 1) / VHDX_DESC_PER_SECTOR;
}

/* Data descriptors that fit one entry. One log sector stays unused: qemu
 * reads a circular log whose write index meets its read index as empty. */
static uint32_t vhdx_upd_max_desc(uint32_t log_len)
{
	uint32_t nsec = log_len / VHDX_LOG_SECTOR - 1, n = nsec;
	while (n && n + vhdx_upd_desc_sectors(n) > nsec)
		n--;
	return VDK_MIN(n, VHDX_UPD_MAX_DESC);
}

/* Headers ---------------------------------------------------------------- */

static int vhdx_upd_put_hdr(void *ctx, const uint8_t *h, uint64_t at, struct vdk_err *e)
{
	struct vdk_update *u = ctx;
	int r = vdk_update_pwrite(u, h, VHDX_HDR_SIZE, at, true, e);
	return r ? r : vdk_update_sync(u, e);
}

/* Both headers rewritten with log_guid (NULL: zero, the log is empty). */
static int vhdx_upd_header(struct vdk_update *u, const uint8_t *log_guid, struct vdk_err *e)
{
	struct vhdx_ustate *us = u->state;
	if (log_guid)
		memcpy(us->hdr + VHDX_H_LOGGUID, log_guid, 16);
	else
		memset(us->hdr + VHDX_H_LOGGUID, 0, 16);
	return vhdx_hdr_update(us->hdr, us->hdr_idx, &us->hdr_seq, vhdx_upd_put_hdr, u, e);
}

/* MS-VHDX 2.2.2: FileWriteGuid changes before the first write to a file
 * opened for writing, DataWriteGuid before the first change of what the
 * guest reads (a differencing child checks its parent's). */
static int vhdx_upd_touch(struct vdk_update *u, struct vdk_err *e)
{
	struct vhdx_ustate *us = u->state;
	if (us->touched)
		return 0;
	uuid_generate(us->hdr + VHDX_H_FWGUID);
	uuid_generate(us->hdr + VHDX_H_DWGUID);
	int r = vhdx_upd_header(u, NULL, e);
	us->touched = r == 0;
	return r;
}

/* Open ------------------------------------------------------------------- */

static int vhdx_upd_image(struct vdk_update *u, struct vdk_image **img, struct vdk_err *e)
{
	static const struct vdk_open_opts o = {.no_backing = true};
	int r = vdk_image_open_path(u->path, FMT, &o, img, e);
	if (r)
		return r;
	struct vhdx_state *s = (*img)->state;
	if (s->has_parent)
		r = vdk_unsup(e, u->path, FMT, VDK_NO_OFFSET,
		              "a differencing VHDX cannot be updated in place (its unwritten "
		              "sectors come from the parent)");
	else if (s->log_len < VHDX_MiB)
		r = vdk_unsup(e, u->path, FMT, VHDX_HDR_OFF(s->hdr_idx) + VHDX_H_LOGLEN,
		              "the image has no log region to update its BAT through");
	if (r) {
		vdk_image_close(*img);
		*img = NULL;
	}
	return r;
}

static int vhdx_upd_load(struct vdk_update *u, struct vdk_image *img, struct vdk_err *e)
{
	struct vhdx_ustate *us = u->state;
	struct vhdx_state *s = img->state;
	us->hdr_idx = s->hdr_idx;
	us->hdr_seq = s->hdr_seq;
	us->leave_alloc = s->leave_alloc;
	us->block_size = s->block_size;
	us->log_off = s->log_off;
	us->log_len = s->log_len;
	us->bat_off = s->bat_off;
	us->chunk_ratio = s->chunk_ratio;
	us->data_blocks = s->data_blocks;
	us->bat_entries = s->bat_entries;
	us->log_seq = s->log_head_seq;
	us->bat = s->bat; /* bounded by the BAT region and the file (vhdx_bat_load) */
	s->bat = NULL;
	us->nsect = (us->bat_entries + VHDX_UPD_PER_SECTOR - 1) / VHDX_UPD_PER_SECTOR;
	us->dirty = calloc(us->nsect / 8 + 1, 1);
	if (!us->dirty)
		return vdk_nomem(e, u->path, FMT, "the BAT change map");
	uint64_t at = VHDX_HDR_OFF(us->hdr_idx);
	if (vdk_pread_full(u->fd, us->hdr, VHDX_HDR_SIZE, at))
		return vdk_err_set(e, VDK_E_IO, errno, u->path, FMT, at,
		                   "reading the header failed: %s", strerror(errno));
	struct stat st;
	if (fstat(u->fd, &st))
		return vdk_ioerr(e, errno, u->path, "stat failed: %s", strerror(errno));
	us->fend = vdk_round_up((uint64_t)st.st_size, VHDX_MiB);
	u->size = img->size;
	u->granularity = us->block_size;
	return 0;
}

int vhdx_update_open(struct vdk_update *u, struct vdk_err *e)
{
	struct vdk_image *img = NULL;
	int r = vhdx_upd_image(u, &img, e);
	if (!r && !vhdx_guid_is_zero(((struct vhdx_state *)img->state)->log_guid)) {
		r = vhdx_log_commit(img, e);
		vdk_image_close(img);
		img = NULL;
		if (!r)
			r = vhdx_upd_image(u, &img, e);
		if (!r && !vhdx_guid_is_zero(((struct vhdx_state *)img->state)->log_guid))
			r = vdk_err_set(e, VDK_E_IO, EPROTO, u->path, FMT, VDK_NO_OFFSET,
			                "the log is still not empty after replaying it");
	}
	if (!r)
		r = vhdx_upd_load(u, img, e);
	vdk_image_close(img);
	return r;
}

void vhdx_update_close(struct vdk_update *u)
{
	struct vhdx_ustate *us = u->state;
	free(us->bat);
	free(us->dirty);
}

/* Writes ----------------------------------------------------------------- */

static void vhdx_upd_set(struct vhdx_ustate *us, uint64_t i, uint64_t v)
{
	uint64_t k = i / VHDX_UPD_PER_SECTOR;
	us->bat[i] = v;
	if (!(us->dirty[k / 8] & (1u << (k % 8)))) {
		us->dirty[k / 8] |= (uint8_t)(1u << (k % 8));
		us->ndirty++;
	}
}

/* A new block at the end of the file: the file grows (reads as zeroes,
 * nothing written), the BAT entry changes in memory until the flush. */
static int vhdx_upd_alloc(struct vdk_update *u, uint64_t b, uint64_t *phys, struct vdk_err *e)
{
	struct vhdx_ustate *us = u->state;
	uint64_t end;
	if (vdk_add_overflow(us->fend, us->block_size, &end) || end > VHDX_UPD_FILE_MAX)
		return vdk_unsup(e, u->path, FMT, us->fend,
		                 "the file cannot grow by another block");
	if (ftruncate(u->fd, (off_t)end))
		return vdk_err_set(e, VDK_E_IO, errno, u->path, FMT, us->fend,
		                   "growing the file for a new block failed: %s", strerror(errno));
	*phys = us->fend;
	us->fend = end;
	vhdx_upd_set(us, vhdx_upd_bidx(us, b), *phys | VHDX_PB_FULLY_PRESENT);
	return 0;
}

int vhdx_update_write(struct vdk_update *u, const void *buf, size_t len, uint64_t off,
                      struct vdk_err *e)
{
	struct vhdx_ustate *us = u->state;
	const uint8_t *p = buf;
	int r = vhdx_upd_touch(u, e);
	while (!r && len) {
		uint64_t b = off / us->block_size, in = off % us->block_size;
		size_t n = (size_t)VDK_MIN((uint64_t)len, us->block_size - in);
		uint64_t ent = us->bat[vhdx_upd_bidx(us, b)], phys = VHDX_BAT_OFF(ent);
		if (VHDX_BAT_STATE(ent) != VHDX_PB_FULLY_PRESENT)
			r = vhdx_upd_alloc(u, b, &phys, e);
		if (!r)
			r = vdk_update_pwrite(u, p, n, phys + in, false, e);
		p += n;
		off += n;
		len -= n;
	}
	return r;
}

/* Zeroes into a present block: ZERO_RANGE where the file system has it
 * (the space stays allocated, as a fixed VHDX wants), written otherwise. */
static int vhdx_upd_zero_at(struct vdk_update *u, uint64_t at, uint64_t len, struct vdk_err *e)
{
	if (fallocate(u->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)at, (off_t)len) ==
	    0)
		return 0;
	int r = 0;
	while (!r && len) {
		size_t n = (size_t)VDK_MIN(len, (uint64_t)sizeof(vhdx_upd_zeroes));
		r = vdk_update_pwrite(u, vhdx_upd_zeroes, n, at, false, e);
		at += n;
		len -= n;
	}
	return r;
}

/* Blocks that are not present read as zeroes already (no parent). A whole
 * present block becomes PAYLOAD_BLOCK_ZERO through the log, unless the
 * image asks that blocks stay allocated (LeaveBlocksAllocated, a fixed
 * VHDX: MS-VHDX 2.6.2.1); anything else gets zeroes written in place. */
int vhdx_update_zero(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e)
{
	struct vhdx_ustate *us = u->state;
	int r = 0;
	while (!r && len) {
		uint64_t b = off / us->block_size, in = off % us->block_size;
		uint64_t n = VDK_MIN(len, us->block_size - in);
		uint64_t i = vhdx_upd_bidx(us, b), ent = us->bat[i];
		bool whole = in == 0 && (n == us->block_size || off + n == u->size);
		if (VHDX_BAT_STATE(ent) == VHDX_PB_FULLY_PRESENT) {
			r = vhdx_upd_touch(u, e);
			if (!r && whole && !us->leave_alloc)
				vhdx_upd_set(us, i, VHDX_PB_ZERO);
			else if (!r)
				r = vhdx_upd_zero_at(u, VHDX_BAT_OFF(ent) + in, n, e);
		}
		off += n;
		len -= n;
	}
	return r;
}

/* The log ---------------------------------------------------------------- */

/* Sector k of the BAT as this session has it: the file's bytes (the part
 * past the last entry kept as it is) with the entries in memory. */
static int vhdx_upd_bat_sector(struct vdk_update *u, uint64_t k, uint8_t *sec, struct vdk_err *e)
{
	struct vhdx_ustate *us = u->state;
	uint64_t at = us->bat_off + k * VHDX_LOG_SECTOR;
	if (vdk_pread_full(u->fd, sec, VHDX_LOG_SECTOR, at))
		return vdk_err_set(e, VDK_E_IO, errno, u->path, FMT, at,
		                   "reading the BAT failed: %s", strerror(errno));
	uint64_t first = k * VHDX_UPD_PER_SECTOR;
	uint64_t last = VDK_MIN(first + VHDX_UPD_PER_SECTOR, us->bat_entries);
	for (uint64_t i = first; i < last; i++)
		vdk_put_le64(sec + 8 * (i - first), us->bat[i]);
	return 0;
}

/* Up to max changed BAT sectors, in ascending order. */
static uint32_t vhdx_upd_pick(const struct vhdx_ustate *us, uint64_t *secs, uint32_t max)
{
	uint32_t n = 0;
	for (uint64_t k = 0; k < us->nsect && n < max; k++)
		if (us->dirty[k / 8] & (1u << (k % 8)))
			secs[n++] = k;
	return n;
}

/* One log entry (MS-VHDX 2.3.1) whose data descriptors put the n BAT
 * sectors in bats at their place; tail is the entry itself (a sequence of
 * one), and both file offsets name the file as it is now. */
static void vhdx_upd_entry(const struct vhdx_ustate *us, uint8_t *ent, const uint8_t *guid,
                           uint64_t fsize, const uint64_t *secs, const uint8_t *bats, uint32_t n)
{
	uint32_t dsec = vhdx_upd_desc_sectors(n);
	uint32_t elen = (dsec + n) * VHDX_LOG_SECTOR;
	uint64_t seq = us->log_seq;
	memcpy(ent, "loge", 4);
	vdk_put_le32(ent + VHDX_LE_LEN, elen);
	vdk_put_le32(ent + VHDX_LE_TAIL, 0);
	vdk_put_le64(ent + VHDX_LE_SEQ, seq);
	vdk_put_le32(ent + VHDX_LE_NDESC, n);
	memcpy(ent + VHDX_LE_GUID, guid, 16);
	vdk_put_le64(ent + VHDX_LE_FLUSHED, fsize);
	vdk_put_le64(ent + VHDX_LE_LAST, fsize);
	for (uint32_t d = 0; d < n; d++) {
		const uint8_t *src = bats + (size_t)d * VHDX_LOG_SECTOR;
		uint8_t *desc = ent + (size_t)(d + 2) * 32;
		uint8_t *data = ent + (size_t)(dsec + d) * VHDX_LOG_SECTOR;
		memcpy(desc, "desc", 4);
		memcpy(desc + 4, src + 4092, 4);
		memcpy(desc + 8, src, 8);
		vdk_put_le64(desc + 16, us->bat_off + secs[d] * VHDX_LOG_SECTOR);
		vdk_put_le64(desc + 24, seq);
		memcpy(data, "data", 4);
		vdk_put_le32(data + 4, (uint32_t)(seq >> 32));
		memcpy(data + 8, src + 8, 4084);
		vdk_put_le32(data + 4092, (uint32_t)seq);
	}
	vdk_put_le32(ent + VHDX_LE_CRC, vhdx_crc(ent, elen, VHDX_LE_CRC));
}

/* The MS-VHDX 2.3 sequence for n sectors whose new contents are in bats. */
static int vhdx_upd_log_apply(struct vdk_update *u, const uint64_t *secs, const uint8_t *bats,
                              uint32_t n, uint8_t *ent, struct vdk_err *e)
{
	struct vhdx_ustate *us = u->state;
	struct stat st;
	if (fstat(u->fd, &st))
		return vdk_ioerr(e, errno, u->path, "stat failed: %s", strerror(errno));
	uint8_t guid[16];
	uuid_generate(guid);
	us->log_seq++;
	vhdx_upd_entry(us, ent, guid, (uint64_t)st.st_size, secs, bats, n);
	size_t elen = (size_t)(vhdx_upd_desc_sectors(n) + n) * VHDX_LOG_SECTOR;
	int r = vdk_update_pwrite(u, ent, elen, us->log_off, true, e);
	if (!r)
		r = vdk_update_sync(u, e);
	if (!r)
		r = vhdx_upd_header(u, guid, e);
	for (uint32_t d = 0; !r && d < n; d++)
		r = vdk_update_pwrite(u, bats + (size_t)d * VHDX_LOG_SECTOR, VHDX_LOG_SECTOR,
		                      us->bat_off + secs[d] * VHDX_LOG_SECTOR, true, e);
	if (!r)
		r = vdk_update_sync(u, e);
	return r ? r : vhdx_upd_header(u, NULL, e);
}

static int vhdx_upd_batch(struct vdk_update *u, struct vdk_err *e)
{
	struct vhdx_ustate *us = u->state;
	uint32_t max = vhdx_upd_max_desc(us->log_len);
	if (max == 0)
		return vdk_unsup(e, u->path, FMT, us->log_off, "the log region is too small");
	max = (uint32_t)VDK_MIN((uint64_t)max, us->ndirty);
	size_t elen = (size_t)(vhdx_upd_desc_sectors(max) + max) * VHDX_LOG_SECTOR;
	uint64_t *secs = malloc(max * sizeof(*secs));
	uint8_t *bats = malloc((size_t)max * VHDX_LOG_SECTOR), *ent = calloc(1, elen);
	int r = secs && bats && ent ? 0 : vdk_nomem(e, u->path, FMT, "a log entry");
	uint32_t n = r ? 0 : vhdx_upd_pick(us, secs, max);
	for (uint32_t d = 0; !r && d < n; d++)
		r = vhdx_upd_bat_sector(u, secs[d], bats + (size_t)d * VHDX_LOG_SECTOR, e);
	if (!r)
		r = vhdx_upd_log_apply(u, secs, bats, n, ent, e);
	for (uint32_t d = 0; !r && d < n; d++)
		us->dirty[secs[d] / 8] &= (uint8_t) ~(1u << (secs[d] % 8));
	if (!r)
		us->ndirty -= n;
	free(secs);
	free(bats);
	free(ent);
	return r;
}

int vhdx_update_flush(struct vdk_update *u, struct vdk_err *e)
{
	struct vhdx_ustate *us = u->state;
	int r = vdk_update_sync(u, e); /* the data, and the file grown for new blocks */
	while (!r && us->ndirty)
		r = vhdx_upd_batch(u, e);
	return r;
}
