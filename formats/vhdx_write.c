/* VHDX writer: a container Hyper-V accepts as is (MS-VHDX v1.00).
 *
 * Layout, everything 1 MiB aligned: header area (file identifier, two
 * headers, two region tables) | log (empty, LogGuid zero) | metadata (1 MiB)
 * | BAT | payload blocks. Dynamic disks allocate a payload block on first
 * write, in order, so consecutive virtual blocks land in consecutive file
 * blocks and a flat source becomes one contiguous run that the filesystem
 * can share (FICLONERANGE). Fixed disks place block i at payload + i * block
 * size, every block FULLY_PRESENT. Only the standard states are written:
 * NOT_PRESENT with FileOffsetMB 0, FULLY_PRESENT, sector bitmaps NOT_PRESENT.
 * The headers go last: until they are written the file is not a VHDX. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "util.h"
#include "vhdx.h"

#define VHDX_DEFAULT_BLOCK (32 * VHDX_MiB) /* what Hyper-V uses */
#define VHDX_META_LEN      VHDX_MiB
#define VHDX_WBUF          VHDX_MiB

#define WBAD(w, ...)                                                                               \
	vdk_err_set(e, VDK_E_USAGE, EINVAL, (w)->sink->name, "vhdx", VDK_NO_OFFSET, __VA_ARGS__)

static uint64_t vhdx_bat_index_w(const struct vhdx_wstate *ws, uint64_t b)
{
	return b + b / ws->chunk_ratio;
}

static int vhdx_create_opts(struct vdk_writer *w, struct vdk_err *e)
{
	struct vhdx_wstate *ws = w->state;
	static const char *const sub[] = {"dynamic", "fixed", NULL};
	int fixed = 0;
	uint64_t bs, lss, log;
	int r = vdk_opts_get_enum(w->opts, "subformat", sub, 0, &fixed, e);
	if (r == 0)
		r = vdk_opts_get_size(w->opts, "block_size", VHDX_DEFAULT_BLOCK, VHDX_MiB,
		                      VHDX_MAX_BLOCK, &bs, e);
	if (r == 0)
		r = vdk_opts_get_size(w->opts, "logical_sector_size", 512, 512, 4096, &lss, e);
	if (r == 0)
		r = vdk_opts_get_size(w->opts, "log_size", VHDX_MiB, VHDX_MiB, 1ull << 31, &log, e);
	if (r < 0)
		return r;
	if (!vdk_is_pow2(bs))
		return WBAD(w, "block_size %llu is not a power of two", (unsigned long long)bs);
	if (lss != 512 && lss != 4096)
		return WBAD(w, "logical_sector_size must be 512 or 4096");
	if (log % VHDX_MiB)
		return WBAD(w, "log_size must be a multiple of 1 MiB");
	ws->fixed = fixed == 1;
	ws->block_size = (uint32_t)bs;
	ws->lss = (uint32_t)lss;
	ws->pss = 4096;
	ws->log_len = log;
	return 0;
}

static int vhdx_layout(struct vdk_writer *w, struct vdk_err *e)
{
	struct vhdx_wstate *ws = w->state;
	uint64_t vsize = vdk_round_up(w->size, ws->lss);
	if (w->size > VHDX_MAX_SIZE)
		return WBAD(w, "virtual size %llu is larger than 64 TiB",
		            (unsigned long long)w->size);
	ws->chunk_ratio = ((uint64_t)1 << 23) * ws->lss / ws->block_size;
	ws->data_blocks = (vsize + ws->block_size - 1) / ws->block_size;
	ws->bat_entries =
	    ws->data_blocks ? ws->data_blocks + (ws->data_blocks - 1) / ws->chunk_ratio : 0;
	ws->log_off = VHDX_MiB;
	ws->meta_off = ws->log_off + ws->log_len;
	ws->meta_len = VHDX_META_LEN;
	ws->bat_off = ws->meta_off + ws->meta_len;
	ws->bat_len = VDK_MAX(vdk_round_up(ws->bat_entries * 8, VHDX_MiB), VHDX_MiB);
	ws->payload_off = ws->bat_off + ws->bat_len;
	ws->next_free = ws->payload_off;
	ws->bat = calloc(ws->bat_entries ? ws->bat_entries : 1, sizeof(*ws->bat));
	return ws->bat ? 0 : vdk_nomem(e, w->sink->name, "vhdx", "the BAT");
}

int vhdx_create(struct vdk_writer *w, struct vdk_err *e)
{
	struct vhdx_wstate *ws = w->state;
	if (w->sink->flags & VDK_SINK_SEQUENTIAL)
		return vdk_unsup(e, w->sink->name, "vhdx", VDK_NO_OFFSET,
		                 "VHDX cannot be written to a sequential output");
	int r = vhdx_create_opts(w, e);
	if (r == 0)
		r = vhdx_layout(w, e);
	if (r < 0)
		return r;
	uuid_generate(ws->fw_guid);
	uuid_generate(ws->dw_guid);
	uuid_generate(ws->page83);
	w->granularity = VDK_MAX(ws->lss, 4096u);
	bool zeroed = w->sink->flags & VDK_SINK_ZEROED;
	if (!zeroed && ws->fixed)
		w->caps &= ~(unsigned)VDK_WCAP_ZEROED; /* the core must write the zeroes */
	if (ws->fixed) {
		for (uint64_t b = 0; b < ws->data_blocks; b++)
			ws->bat[vhdx_bat_index_w(ws, b)] =
			    (ws->payload_off + b * ws->block_size) | VHDX_PB_FULLY_PRESENT;
		/* Every BAT entry maps a whole block, the partial last one too, so
		 * the file covers it (a hole past the virtual end): readers such
		 * as 7-Zip call a shorter file truncated. qemu-img does the same. */
		ws->next_free = ws->payload_off + ws->data_blocks * ws->block_size;
		return vdk_sink_truncate(w->sink, ws->next_free, e);
	}
	return 0;
}

/* File offset of virtual block b, allocating it (dynamic) on first use. */
static int vhdx_alloc(struct vdk_writer *w, uint64_t b, uint64_t *foff, struct vdk_err *e)
{
	struct vhdx_wstate *ws = w->state;
	uint64_t *ent = &ws->bat[vhdx_bat_index_w(ws, b)];
	if (VHDX_BAT_STATE(*ent) == VHDX_PB_FULLY_PRESENT) {
		*foff = VHDX_BAT_OFF(*ent);
		return 0;
	}
	*foff = ws->next_free;
	/* A whole block even for the partial last one: its BAT entry maps a
	 * whole block (the part past the virtual end stays a hole). */
	ws->next_free += ws->block_size;
	*ent = *foff | VHDX_PB_FULLY_PRESENT;
	uint64_t used = VDK_MIN((uint64_t)ws->block_size, w->size - b * ws->block_size);
	if (!(w->sink->flags & VDK_SINK_ZEROED))
		return vdk_sink_zero(w->sink, *foff, vdk_round_up(used, VHDX_MiB), e);
	return 0;
}

int vhdx_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	struct vhdx_wstate *ws = w->state;
	const uint8_t *p = buf;
	while (len) {
		uint64_t b = off / ws->block_size, bo = off % ws->block_size, foff;
		size_t n = (size_t)VDK_MIN((uint64_t)len, ws->block_size - bo);
		int r = vhdx_alloc(w, b, &foff, e);
		if (r == 0)
			r = vdk_sink_pwrite(w->sink, p, n, foff + bo, e);
		if (r < 0)
			return r;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int vhdx_write_zeroes(struct vdk_writer *w, uint64_t off, uint64_t len, struct vdk_err *e)
{
	struct vhdx_wstate *ws = w->state;
	while (len) {
		uint64_t b = off / ws->block_size, bo = off % ws->block_size;
		uint64_t n = VDK_MIN(len, ws->block_size - bo);
		uint64_t ent = ws->bat[vhdx_bat_index_w(ws, b)];
		/* a block not present already reads as zeroes */
		if (VHDX_BAT_STATE(ent) == VHDX_PB_FULLY_PRESENT) {
			int r = vdk_sink_zero(w->sink, VHDX_BAT_OFF(ent) + bo, n, e);
			if (r < 0)
				return r;
		}
		off += n;
		len -= n;
	}
	return 0;
}

int vhdx_clone(struct vdk_writer *w, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
               enum vdk_clone_mode mode, struct vdk_err *e)
{
	struct vhdx_wstate *ws = w->state;
	int how = VDK_CLONED;
	while (len) {
		/* one run: blocks whose file offsets follow each other */
		uint64_t b = off / ws->block_size, bo = off % ws->block_size, foff, next;
		int r = vhdx_alloc(w, b, &foff, e);
		if (r < 0)
			return r;
		uint64_t run = VDK_MIN(len, ws->block_size - bo), b0 = b;
		while (run < len) {
			if ((r = vhdx_alloc(w, b + 1, &next, e)) < 0)
				return r;
			if (next != foff + (b + 1 - b0) * ws->block_size)
				break;
			b++;
			run += VDK_MIN(len - run, (uint64_t)ws->block_size);
		}
		r = vdk_sink_clone(w->sink, foff + bo, run, src_fd, src_off, mode, e);
		if (r < 0)
			return r;
		if (r == VDK_OFFLOADED)
			how = VDK_OFFLOADED;
		off += run;
		src_off += run;
		len -= run;
	}
	return how;
}

/* Finalize: BAT, metadata, region tables, headers ------------------------- */

static int vhdx_write_bat(struct vdk_writer *w, struct vdk_err *e)
{
	struct vhdx_wstate *ws = w->state;
	uint8_t *buf = calloc(1, VHDX_WBUF);
	if (!buf)
		return vdk_nomem(e, w->sink->name, "vhdx", "the BAT");
	int r = 0;
	for (uint64_t done = 0; r == 0 && done < ws->bat_len; done += VHDX_WBUF) {
		uint64_t first = done / 8,
		         n = VDK_MIN((uint64_t)VHDX_WBUF / 8,
		                     ws->bat_entries - VDK_MIN(first, ws->bat_entries));
		memset(buf, 0, VHDX_WBUF);
		for (uint64_t i = 0; i < n; i++)
			vdk_put_le64(buf + 8 * i, ws->bat[first + i]);
		r = vdk_sink_pwrite(w->sink, buf, VHDX_WBUF, ws->bat_off + done, e);
	}
	free(buf);
	return r;
}

static void vhdx_meta_ent(uint8_t *t, unsigned i, const uint8_t *guid, uint32_t off, uint32_t len,
                          uint32_t flags)
{
	uint8_t *p = t + 32 + 32 * i;
	memcpy(p, guid, 16);
	vdk_put_le32(p + 16, off);
	vdk_put_le32(p + 20, len);
	vdk_put_le32(p + 24, flags);
}

static int vhdx_write_meta(struct vdk_writer *w, struct vdk_err *e)
{
	struct vhdx_wstate *ws = w->state;
	const uint32_t vd = VHDX_META_IS_VDISK | VHDX_META_IS_REQUIRED, it = VHDX_META_TABLE;
	uint8_t *t = calloc(1, VHDX_META_LEN);
	if (!t)
		return vdk_nomem(e, w->sink->name, "vhdx", "the metadata region");
	memcpy(t, "metadata", 8);
	vdk_put_le16(t + 10, 5);
	vhdx_meta_ent(t, 0, vhdx_guid_fileparam, it, 8, VHDX_META_IS_REQUIRED);
	vhdx_meta_ent(t, 1, vhdx_guid_vsize, it + 8, 8, vd);
	vhdx_meta_ent(t, 2, vhdx_guid_page83, it + 16, 16, vd);
	vhdx_meta_ent(t, 3, vhdx_guid_lss, it + 32, 4, vd);
	vhdx_meta_ent(t, 4, vhdx_guid_pss, it + 36, 4, vd);
	vdk_put_le32(t + it, ws->block_size);
	vdk_put_le32(t + it + 4, ws->fixed ? 1 : 0); /* LeaveBlocksAllocated */
	vdk_put_le64(t + it + 8, vdk_round_up(w->size, ws->lss));
	memcpy(t + it + 16, ws->page83, 16);
	vdk_put_le32(t + it + 32, ws->lss);
	vdk_put_le32(t + it + 36, ws->pss);
	int r = vdk_sink_pwrite(w->sink, t, VHDX_META_LEN, ws->meta_off, e);
	free(t);
	return r;
}

static void vhdx_put_header(struct vhdx_wstate *ws, uint8_t *h, uint64_t seq)
{
	memcpy(h + VHDX_H_SIG, "head", 4);
	vdk_put_le64(h + VHDX_H_SEQ, seq);
	memcpy(h + VHDX_H_FWGUID, ws->fw_guid, 16);
	memcpy(h + VHDX_H_DWGUID, ws->dw_guid, 16);
	/* LogGuid stays zero: the log is empty */
	vdk_put_le16(h + VHDX_H_LOGVER, 0);
	vdk_put_le16(h + VHDX_H_VERSION, 1);
	vdk_put_le32(h + VHDX_H_LOGLEN, (uint32_t)ws->log_len);
	vdk_put_le64(h + VHDX_H_LOGOFF, ws->log_off);
	vdk_put_le32(h + VHDX_H_CRC, vhdx_crc(h, VHDX_HDR_SIZE, VHDX_H_CRC));
}

static void vhdx_put_rt(struct vhdx_wstate *ws, uint8_t *rt)
{
	memcpy(rt, "regi", 4);
	vdk_put_le32(rt + 8, 2);
	memcpy(rt + 16, vhdx_guid_bat, 16);
	vdk_put_le64(rt + 32, ws->bat_off);
	vdk_put_le32(rt + 40, (uint32_t)ws->bat_len);
	vdk_put_le32(rt + 44, 1); /* required */
	memcpy(rt + 48, vhdx_guid_meta, 16);
	vdk_put_le64(rt + 64, ws->meta_off);
	vdk_put_le32(rt + 72, (uint32_t)ws->meta_len);
	vdk_put_le32(rt + 76, 1);
	vdk_put_le32(rt + 4, vhdx_crc(rt, VHDX_RT_SIZE, 4));
}

static int vhdx_write_head(struct vdk_writer *w, struct vdk_err *e)
{
	struct vhdx_wstate *ws = w->state;
	static const char creator[] = "vdkit";
	uint8_t *a = calloc(1, VHDX_MiB);
	if (!a)
		return vdk_nomem(e, w->sink->name, "vhdx", "the headers");
	memcpy(a, "vhdxfile", 8);
	for (size_t i = 0; i < sizeof(creator) - 1; i++)
		vdk_put_le16(a + 8 + 2 * i, (uint8_t)creator[i]);
	vhdx_put_header(ws, a + VHDX_HDR1_OFF, 1);
	vhdx_put_header(ws, a + VHDX_HDR2_OFF, 2);
	vhdx_put_rt(ws, a + VHDX_RT1_OFF);
	vhdx_put_rt(ws, a + VHDX_RT2_OFF);
	/* the region tables and the log first, the headers last */
	int r =
	    vdk_sink_pwrite(w->sink, a + VHDX_RT1_OFF, VHDX_MiB - VHDX_RT1_OFF, VHDX_RT1_OFF, e);
	for (uint64_t o = 0; r == 0 && o < ws->log_len; o += VHDX_MiB)
		r = vdk_sink_zero(w->sink, ws->log_off + o, VHDX_MiB, e);
	if (r == 0)
		r = vdk_sink_pwrite(w->sink, a, VHDX_RT1_OFF, 0, e);
	free(a);
	return r;
}

int vhdx_finalize(struct vdk_writer *w, struct vdk_err *e)
{
	struct vhdx_wstate *ws = w->state;
	int r = vdk_sink_truncate(w->sink, ws->next_free, e);
	if (r == 0)
		r = vhdx_write_bat(w, e);
	if (r == 0)
		r = vhdx_write_meta(w, e);
	if (r == 0)
		r = vhdx_write_head(w, e);
	return r;
}

void vhdx_wclose(struct vdk_writer *w)
{
	struct vhdx_wstate *ws = w->state;
	if (ws)
		free(ws->bat);
}
