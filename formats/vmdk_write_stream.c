/* streamOptimized writer, the form vSphere and ovftool import: one file
 * written strictly front to back (a pipe, a tar member), so it needs no
 * seek: header (gdOffset = GD_AT_END), descriptor, then every non-zero
 * grain deflated (zlib format) behind a grain marker, each grain table
 * behind a GT marker once the stream has moved past it, and at the end the
 * GD marker and directory, a footer marker and header copy that holds the
 * real gdOffset, and the end-of-stream marker (spec 5.0, "Stream-Optimized
 * Compressed Sparse Extents").
 *
 * encode() runs on the pipeline's worker threads and turns a run of grains
 * into finished grain records; write_encoded() appends them in order and
 * notes where each grain went. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "err.h"
#include "util.h"
#include "vmdk.h"

#define VMDK_S_GT_SECTORS   (VMDK_GTES * 4 / VMDK_SECTOR)
#define VMDK_S_DESC_SECTORS 20u
/* Codec level 1 (ISA-L igzip 1, or libdeflate 1 without ISA-L): on 64 KiB
 * grains libdeflate 1 is ~2.2x faster than level 6 for ~4% more output and
 * igzip 1 twice as fast again, which keeps grain compression from being
 * the bottleneck of an OVA export. */
#define VMDK_S_LEVEL 1

static int vmdk_soom(struct vdk_writer *w, struct vdk_err *e)
{
	return vdk_ioerr(e, ENOMEM, w->sink->name, "out of memory");
}

static int vmdk_swrite(struct vdk_writer *w, const void *p, size_t n, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	int r = vdk_sink_write(w->sink, p, n, e);
	if (r == 0)
		ws->pos += n;
	return r;
}

/* A metadata marker sector: le64 sectors that follow, le32 0, le32 type. */
static int vmdk_marker(struct vdk_writer *w, uint64_t sectors, uint32_t type, struct vdk_err *e)
{
	uint8_t m[VMDK_SECTOR] = {0};
	vdk_put_le64(m, sectors);
	vdk_put_le32(m + 12, type);
	return vmdk_swrite(w, m, sizeof(m), e);
}

int vmdk_stream_create(struct vdk_writer *w, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	w->granularity = ws->grain;
	uint64_t cap = vdk_round_up(w->size, VMDK_SECTOR) / VMDK_SECTOR;
	uint64_t gsec = ws->grain / VMDK_SECTOR;
	uint64_t grains = (cap + gsec - 1) / gsec;
	ws->gd_n = (grains + VMDK_GTES - 1) / VMDK_GTES;
	ws->gt_idx = UINT64_MAX;
	ws->level = VMDK_S_LEVEL;
	if (!(ws->gd = calloc(ws->gd_n ? ws->gd_n : 1, sizeof(*ws->gd))))
		return vmdk_soom(w, e);
	const char *base = strrchr(w->sink->name, '/');
	base = base ? base + 1 : w->sink->name;
	if (strpbrk(base, "\"\n\r"))
		base = "disk.vmdk";
	if (vmdk_desc_add_extent(&ws->desc, VMDK_ACC_RW, VMDK_EK_SPARSE, cap, base, 0))
		return vmdk_soom(w, e);
	char *desc;
	size_t dlen;
	if (vmdk_desc_render(&ws->desc, &desc, &dlen) < 0)
		return vmdk_soom(w, e);
	uint64_t dsec =
	    VDK_MAX((uint64_t)VMDK_S_DESC_SECTORS, (dlen + VMDK_SECTOR - 1) / VMDK_SECTOR);
	uint64_t overhead = vdk_round_up(1 + dsec, gsec);
	vmdk_put_header(ws->header, 3,
	                VMDK_FLAG_NL_DETECT | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS, cap, gsec,
	                1, dsec, 0, VMDK_GD_AT_END, overhead, VMDK_COMPRESS_DEFLATE);
	/* Header, descriptor, zero padding up to the first grain. */
	uint8_t *head = calloc(overhead, VMDK_SECTOR);
	int r = head ? 0 : vmdk_soom(w, e);
	if (r == 0) {
		memcpy(head, ws->header, VMDK_SECTOR);
		memcpy(head + VMDK_SECTOR, desc, dlen);
		r = vmdk_swrite(w, head, overhead * VMDK_SECTOR, e);
	}
	free(head);
	free(desc);
	return r;
}

/* Deflate whole grains of [off, off+len) into grain records. Thread-safe:
 * touches only its arguments and read-only writer fields. */
int vmdk_stream_encode(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                       struct vdk_buf *out, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	const uint8_t *p = buf;
	out->len = 0;
	if (off % ws->grain)
		return vdk_err_set(e, VDK_E_IO, EINVAL, w->sink->name, "vmdk", off,
		                   "internal error: unaligned stream write");
	struct vdk_deflater *c = vdk_deflater_new(VDK_WRAP_ZLIB, ws->level);
	if (!c)
		return vmdk_soom(w, e);
	size_t bound = vdk_deflate_bound(ws->grain);
	size_t rec_max = vdk_round_up(VMDK_GRAIN_MARKER_LEN + bound, VMDK_SECTOR);
	size_t grains = (len + ws->grain - 1) / ws->grain;
	uint8_t *pad = NULL;
	int r = vdk_buf_reserve(out, grains * rec_max) < 0 ? vmdk_soom(w, e) : 0;
	for (size_t i = 0; i < grains && r == 0; i++) {
		const uint8_t *g = p + i * ws->grain;
		size_t n = VDK_MIN((size_t)ws->grain, len - i * ws->grain);
		if (vdk_is_zero(g, n))
			continue;    /* unallocated grains read as zeroes */
		if (n < ws->grain) { /* the disk's last grain: pad it to a whole one */
			if (!pad && !(pad = calloc(1, ws->grain))) {
				r = vmdk_soom(w, e);
				break;
			}
			memcpy(pad, g, n);
			g = pad;
		}
		uint8_t *rec = out->data + out->len;
		size_t z = 0;
		if (vdk_deflate(c, g, ws->grain, rec + VMDK_GRAIN_MARKER_LEN, bound, &z)) {
			r = vdk_err_set(e, VDK_E_IO, EPROTO, w->sink->name, "vmdk", off,
			                "internal error: deflate failed");
			break;
		}
		vdk_put_le64(rec, (off + i * ws->grain) / VMDK_SECTOR);
		vdk_put_le32(rec + 8, (uint32_t)z);
		size_t used = VMDK_GRAIN_MARKER_LEN + z, whole = vdk_round_up(used, VMDK_SECTOR);
		memset(rec + used, 0, whole - used);
		out->len += whole;
	}
	free(pad);
	vdk_deflater_free(c);
	return r;
}

/* Emit the current grain table (when it has entries) behind its marker. */
static int vmdk_flush_gt(struct vdk_writer *w, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	if (!ws->gt_used)
		return 0;
	uint8_t t[VMDK_GTES * 4];
	for (unsigned i = 0; i < VMDK_GTES; i++)
		vdk_put_le32(t + 4 * i, ws->gt[i]);
	int r = vmdk_marker(w, VMDK_S_GT_SECTORS, VMDK_MARKER_GT, e);
	if (r == 0) {
		ws->gd[ws->gt_idx] = (uint32_t)(ws->pos / VMDK_SECTOR);
		r = vmdk_swrite(w, t, sizeof(t), e);
	}
	memset(ws->gt, 0, sizeof(ws->gt));
	ws->gt_used = false;
	return r;
}

static int vmdk_sbadrec(struct vdk_writer *w, uint64_t off, struct vdk_err *e)
{
	return vdk_err_set(e, VDK_E_IO, EPROTO, w->sink->name, "vmdk", off,
	                   "internal error: bad encoded grain run");
}

int vmdk_stream_write_encoded(struct vdk_writer *w, const struct vdk_buf *enc, uint64_t off,
                              uint64_t len, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	const uint8_t *p = enc->data, *end = enc->data + enc->len, *seg = p;
	(void)len;
	int r = 0;
	while (p < end && r == 0) {
		if ((size_t)(end - p) < VMDK_GRAIN_MARKER_LEN)
			return vmdk_sbadrec(w, off, e);
		uint64_t g = vdk_le64(p) * VMDK_SECTOR / ws->grain, gti = g / VMDK_GTES;
		size_t rec = vdk_round_up(VMDK_GRAIN_MARKER_LEN + vdk_le32(p + 8), VMDK_SECTOR);
		if (rec > (size_t)(end - p) || gti >= ws->gd_n ||
		    (ws->gt_idx != UINT64_MAX && gti < ws->gt_idx))
			return vmdk_sbadrec(w, off, e);
		if (gti != ws->gt_idx) {
			/* Leaving a table's span: what came before goes out first. */
			if ((r = vmdk_swrite(w, seg, (size_t)(p - seg), e)) < 0 ||
			    (r = vmdk_flush_gt(w, e)) < 0)
				return r;
			seg = p;
			ws->gt_idx = gti;
		}
		ws->gt[g % VMDK_GTES] = (uint32_t)((ws->pos + (uint64_t)(p - seg)) / VMDK_SECTOR);
		ws->gt_used = true;
		p += rec;
	}
	return vmdk_swrite(w, seg, (size_t)(end - seg), e);
}

int vmdk_stream_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                      struct vdk_err *e)
{
	struct vdk_buf b = {0};
	int r = vmdk_stream_encode(w, buf, len, off, &b, e);
	if (r == 0)
		r = vmdk_stream_write_encoded(w, &b, off, len, e);
	free(b.data);
	return r;
}

int vmdk_stream_finalize(struct vdk_writer *w, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	int r = vmdk_flush_gt(w, e);
	if (r < 0)
		return r;
	uint64_t gd_sec = VDK_MAX(1, (ws->gd_n * 4 + VMDK_SECTOR - 1) / VMDK_SECTOR);
	uint8_t *gd = calloc(gd_sec, VMDK_SECTOR);
	if (!gd)
		return vmdk_soom(w, e);
	for (uint64_t i = 0; i < ws->gd_n; i++)
		vdk_put_le32(gd + 4 * i, ws->gd[i]);
	r = vmdk_marker(w, gd_sec, VMDK_MARKER_GD, e);
	uint64_t gd_at = ws->pos / VMDK_SECTOR;
	if (r == 0)
		r = vmdk_swrite(w, gd, gd_sec * VMDK_SECTOR, e);
	free(gd);
	uint8_t footer[VMDK_SECTOR];
	memcpy(footer, ws->header, sizeof(footer));
	vdk_put_le64(footer + VMDK_H_GD, gd_at);
	if (r == 0)
		r = vmdk_marker(w, 1, VMDK_MARKER_FOOTER, e);
	if (r == 0)
		r = vmdk_swrite(w, footer, sizeof(footer), e);
	if (r == 0)
		r = vmdk_marker(w, 0, VMDK_MARKER_EOS, e);
	return r;
}
