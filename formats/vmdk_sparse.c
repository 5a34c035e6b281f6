/* Sparse VMDK extents: hosted sparse ("KDMV", versions 1-3, plain or
 * stream-optimized) and ESX vmfsSparse ("COWD"). Both map grains through a
 * grain directory (GD) of grain tables (GT) of 32-bit sector numbers.
 *
 * Everything is loaded at open, so lookups are read-only and pread may run
 * on several threads. Allocation is bounded by the file: the GD must lie in
 * the file, and the grain tables loaded may not add up to more bytes than
 * the file has (real images never share a table). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "err.h"
#include "util.h"
#include "vmdk.h"

_Static_assert(VMDK_H_END + 433 == VMDK_SECTOR, "hosted sparse header is one sector");

#define VMDK_COWD_GTES 4096u
#define VMDK_COWD_HDR  2048u
/* GTs read per batch when they sit back to back (qemu lays them out so). */
#define VMDK_GT_BATCH (256u * 1024u)

static int vmdk_sbad(struct vdk_src *src, struct vdk_err *e, uint64_t off, const char *what)
{
	return vdk_bad(e, src->name, "vmdk", off, "%s", what);
}

/* The stream-optimized footer: a footer marker, a header copy and an
 * end-of-stream marker in the last three sectors (spec 5.0, "Stream-
 * Optimized Compressed Sparse Extents"). */
static int vmdk_read_footer(struct vdk_src *src, uint8_t *h, struct vdk_err *e)
{
	uint8_t f[3 * VMDK_SECTOR];
	if (src->size < 5 * VMDK_SECTOR)
		return vmdk_sbad(src, e, 0, "grain directory at end but no room for a footer");
	uint64_t at = src->size - sizeof(f);
	int r = vdk_src_pread(src, f, sizeof(f), at, e);
	if (r < 0)
		return r;
	const uint8_t *fm = f, *fh = f + VMDK_SECTOR, *eos = f + 2 * VMDK_SECTOR;
	if (vdk_le32(fm + 8) != 0 || vdk_le32(fm + 12) != VMDK_MARKER_FOOTER ||
	    vdk_le32(fh) != VMDK_MAGIC_KDMV || vdk_le64(eos) != 0 || vdk_le32(eos + 8) != 0 ||
	    vdk_le32(eos + 12) != VMDK_MARKER_EOS)
		return vmdk_sbad(src, e, at, "invalid stream footer");
	memcpy(h, fh, VMDK_SECTOR);
	if (vdk_le64(h + VMDK_H_GD) == VMDK_GD_AT_END)
		return vmdk_sbad(src, e, at + VMDK_SECTOR, "footer has no grain directory offset");
	return 0;
}

static int vmdk_sectors_to_bytes(struct vdk_src *src, uint64_t sec, uint64_t at, uint64_t *out,
                                 struct vdk_err *e)
{
	if (vdk_mul_overflow(sec, VMDK_SECTOR, out))
		return vmdk_sbad(src, e, at, "offset overflows");
	return 0;
}

static int vmdk_check_geometry(struct vdk_src *src, struct vmdk_sparse *sp, uint64_t cap_sectors,
                               uint64_t grain_sectors, struct vdk_err *e)
{
	if (cap_sectors > VMDK_MAX_SECTORS)
		return vmdk_sbad(src, e, VMDK_H_CAPACITY, "capacity too large");
	if (grain_sectors == 0 || grain_sectors > VMDK_MAX_GRAIN_SECTORS)
		return vmdk_sbad(src, e, VMDK_H_GRAIN, "grain size out of range");
	if (sp->gtes == 0 || sp->gtes > VMDK_COWD_GTES)
		return vmdk_sbad(src, e, VMDK_H_GTES, "grain table size out of range");
	/* Spec 5.0, hosted sparse header: "grainSize must be a power of 2 and
	 * greater than 8 (4 KB)", "numGTEsPerGT is 512". VMware and qemu-img
	 * write 128-sector grains and 512 entries; COWD has its own rules. */
	if (!sp->cowd && (!vdk_is_pow2(grain_sectors) || grain_sectors <= 8))
		return vdk_bad(e, src->name, "vmdk", VMDK_H_GRAIN,
		               "grainSize of %" PRIu64
		               " sectors is not a power of two greater than 8",
		               grain_sectors);
	if (!sp->cowd && sp->gtes != 512)
		return vdk_bad(e, src->name, "vmdk", VMDK_H_GTES,
		               "numGTEsPerGT is %" PRIu32 ", the format defines 512", sp->gtes);
	sp->capacity = cap_sectors * VMDK_SECTOR;
	sp->grain = (uint32_t)(grain_sectors * VMDK_SECTOR);
	uint64_t span = (uint64_t)sp->grain * sp->gtes;
	sp->gd_n = (sp->capacity + span - 1) / span;
	return 0;
}

static int vmdk_parse_kdmv(struct vdk_src *src, struct vmdk_sparse *sp, const uint8_t *h0,
                           struct vdk_err *e)
{
	uint8_t h[VMDK_SECTOR];
	memcpy(h, h0, sizeof(h));
	int r;
	sp->footer = vdk_le64(h + VMDK_H_GD) == VMDK_GD_AT_END;
	if (sp->footer && (r = vmdk_read_footer(src, h, e)) < 0)
		return r;
	sp->version = vdk_le32(h + VMDK_H_VERSION);
	if (sp->version < 1 || sp->version > 3)
		return vdk_unsup(e, src->name, "vmdk", VMDK_H_VERSION,
		                 "unsupported sparse extent version %" PRIu32, sp->version);
	sp->flags = vdk_le32(h + VMDK_H_FLAGS);
	sp->gtes = vdk_le32(h + VMDK_H_GTES);
	r = vmdk_check_geometry(src, sp, vdk_le64(h + VMDK_H_CAPACITY), vdk_le64(h + VMDK_H_GRAIN),
	                        e);
	if (r < 0)
		return r;
	uint16_t alg = vdk_le16(h + VMDK_H_COMPRESS);
	if (alg > VMDK_COMPRESS_DEFLATE)
		return vdk_unsup(e, src->name, "vmdk", VMDK_H_COMPRESS,
		                 "unknown compression algorithm %u", alg);
	sp->compressed = alg == VMDK_COMPRESS_DEFLATE; /* qemu trusts this field */
	sp->markers = sp->flags & VMDK_FLAG_MARKERS;
	sp->zero_grain = sp->flags & VMDK_FLAG_ZERO_GRAIN;
	sp->unclean = h0[VMDK_H_UNCLEAN] != 0;
	uint64_t doff, dlen;
	if ((r = vmdk_sectors_to_bytes(src, vdk_le64(h + VMDK_H_DESC_OFF), VMDK_H_DESC_OFF, &doff,
	                               e)) < 0 ||
	    (r = vmdk_sectors_to_bytes(src, vdk_le64(h + VMDK_H_DESC_SIZE), VMDK_H_DESC_SIZE, &dlen,
	                               e)) < 0 ||
	    (r = vmdk_sectors_to_bytes(src, vdk_le64(h + VMDK_H_GD), VMDK_H_GD, &sp->gd_off, e)) <
	        0)
		return r;
	uint64_t ovh = vdk_le64(h + VMDK_H_OVERHEAD);
	if (ovh > src->size / VMDK_SECTOR)
		return vdk_bad(e, src->name, "vmdk", VMDK_H_OVERHEAD,
		               "overHead of %" PRIu64 " sectors lies past the end of the %" PRIu64
		               "-byte file",
		               ovh, src->size);
	sp->overhead = ovh * VMDK_SECTOR;
	sp->desc_hdr = doff ? dlen : 0;
	if (doff && dlen) {
		/* qemu reads at most 1 MiB of descriptor; so do we, inside the file. */
		if (doff >= src->size)
			return vmdk_sbad(src, e, VMDK_H_DESC_OFF, "descriptor offset past the end");
		sp->desc_off = doff;
		sp->desc_len = VDK_MIN(VDK_MIN(dlen, src->size - doff), (uint64_t)VMDK_DESC_MAX);
	}
	if ((sp->flags & VMDK_FLAG_RGD) &&
	    vdk_mul_overflow(vdk_le64(h + VMDK_H_RGD), VMDK_SECTOR, &sp->rgd_off))
		sp->rgd_off = 0;
	return 0;
}

static int vmdk_parse_cowd(struct vdk_src *src, struct vmdk_sparse *sp, struct vdk_err *e)
{
	uint8_t h[VMDK_COWD_HDR];
	if (src->size < VMDK_COWD_HDR)
		return vmdk_sbad(src, e, 0, "COWD header truncated");
	int r = vdk_src_pread(src, h, sizeof(h), 0, e);
	if (r < 0)
		return r;
	sp->cowd = true;
	sp->version = vdk_le32(h + 4);
	if (sp->version != 1)
		return vdk_unsup(e, src->name, "vmdk", 4, "unsupported COWD version %" PRIu32,
		                 sp->version);
	sp->flags = vdk_le32(h + 8);
	sp->gtes = VMDK_COWD_GTES;
	r = vmdk_check_geometry(src, sp, vdk_le32(h + 12), vdk_le32(h + 16), e);
	if (r < 0)
		return r;
	/* The header's own GD entry count rules; entries past it are holes. */
	sp->gd_n = VDK_MIN(sp->gd_n, (uint64_t)vdk_le32(h + 24));
	sp->gd_off = (uint64_t)vdk_le32(h + 20) * VMDK_SECTOR;
	sp->unclean = vdk_le32(h + 1648) != 0;
	return 0;
}

/* Load the GTs gd[first..last) that sit back to back from one read. */
static int vmdk_load_run(struct vdk_src *src, struct vmdk_sparse *sp, const uint32_t *gd,
                         uint64_t first, uint64_t last, uint8_t *buf, struct vdk_err *e)
{
	size_t gtb = (size_t)sp->gtes * 4;
	uint64_t at = (uint64_t)gd[first] * VMDK_SECTOR;
	int r = vdk_src_pread(src, buf, gtb * (size_t)(last - first), at, e);
	if (r < 0)
		return r;
	for (uint64_t i = first; i < last; i++) {
		const uint8_t *p = buf + gtb * (size_t)(i - first);
		if (vdk_is_zero(p, gtb))
			continue; /* qemu preallocates every table: keep only used ones */
		uint32_t *t = malloc(gtb);
		if (!t)
			return vdk_err_set(e, VDK_E_IO, ENOMEM, src->name, "vmdk", VDK_NO_OFFSET,
			                   "out of memory");
		for (uint32_t j = 0; j < sp->gtes; j++)
			t[j] = vdk_le32(p + 4 * j);
		sp->gt[i] = t;
	}
	return 0;
}

static int vmdk_check_gt(struct vdk_src *src, struct vmdk_sparse *sp, uint32_t gde, uint64_t i,
                         struct vdk_err *e)
{
	uint64_t gtb = (uint64_t)sp->gtes * 4, at = (uint64_t)gde * VMDK_SECTOR;
	if (!vdk_range_ok(at, gtb, src->size))
		return vmdk_sbad(src, e, sp->gd_off + 4 * i,
		                 "grain table past the end of the file");
	sp->gt_loaded += gtb;
	if (sp->gt_loaded > src->size)
		return vmdk_sbad(src, e, sp->gd_off + 4 * i, "grain tables overlap");
	return 0;
}

static int vmdk_load_gts(struct vdk_src *src, struct vmdk_sparse *sp, const uint32_t *gd,
                         struct vdk_err *e)
{
	size_t gtb = (size_t)sp->gtes * 4;
	/* Tables that are not whole sectors are never back to back. */
	uint64_t batch = gtb % VMDK_SECTOR ? 1 : VDK_MAX(1, VMDK_GT_BATCH / gtb);
	uint8_t *buf = malloc(gtb * batch);
	if (!buf)
		return -ENOMEM;
	int r = 0;
	uint64_t i = 0;
	while (i < sp->gd_n && r == 0) {
		if (!gd[i]) {
			i++;
			continue;
		}
		uint64_t j = i;
		while (j < sp->gd_n && j - i < batch && gd[j] &&
		       (uint64_t)gd[j] == (uint64_t)gd[i] + (j - i) * (gtb / VMDK_SECTOR) &&
		       (r = vmdk_check_gt(src, sp, gd[j], j, e)) == 0)
			j++;
		if (r == 0)
			r = vmdk_load_run(src, sp, gd, i, j, buf, e);
		i = j;
	}
	free(buf);
	return r;
}

static int vmdk_load_tables(struct vdk_src *src, struct vmdk_sparse *sp, struct vdk_err *e)
{
	if (!sp->gd_n)
		return 0;
	uint64_t gdb = sp->gd_n * 4;
	if (!vdk_range_ok(sp->gd_off, gdb, src->size))
		return vmdk_sbad(src, e, VMDK_H_GD, "grain directory past the end of the file");
	uint8_t *raw = malloc(gdb);
	uint32_t *gd = malloc(sp->gd_n * sizeof(*gd));
	sp->gt = calloc(sp->gd_n, sizeof(*sp->gt));
	int r = -ENOMEM;
	if (raw && gd && sp->gt) {
		r = vdk_src_pread(src, raw, gdb, sp->gd_off, e);
		for (uint64_t i = 0; r == 0 && i < sp->gd_n; i++)
			gd[i] = vdk_le32(raw + 4 * i);
		if (r == 0)
			r = vmdk_load_gts(src, sp, gd, e);
	}
	if (r == -ENOMEM)
		r = vdk_err_set(e, VDK_E_IO, ENOMEM, src->name, "vmdk", VDK_NO_OFFSET,
		                "out of memory");
	free(raw);
	sp->gd = gd;
	return r;
}

int vmdk_sparse_open(struct vdk_src *src, struct vmdk_sparse *sp, struct vdk_err *e)
{
	uint8_t h[VMDK_SECTOR];
	memset(sp, 0, sizeof(*sp));
	sp->file_size = src->size;
	if (src->size == VDK_SIZE_UNKNOWN || src->size < VMDK_SECTOR)
		return vmdk_sbad(src, e, 0, "sparse extent shorter than its header");
	int r = vdk_src_pread(src, h, sizeof(h), 0, e);
	if (r < 0)
		return r;
	if (vdk_le32(h) == VMDK_MAGIC_KDMV)
		r = vmdk_parse_kdmv(src, sp, h, e);
	else if (vdk_le32(h) == VMDK_MAGIC_COWD)
		r = vmdk_parse_cowd(src, sp, e);
	else
		r = vmdk_sbad(src, e, 0, "not a sparse extent (no KDMV or COWD magic)");
	if (r == 0)
		r = vmdk_load_tables(src, sp, e);
	if (r == 0)
		r = vmdk_sparse_validate(src, sp, e);
	if (r < 0)
		vmdk_sparse_free(sp);
	return r;
}

void vmdk_sparse_free(struct vmdk_sparse *sp)
{
	if (sp->gt)
		for (uint64_t i = 0; i < sp->gd_n; i++)
			free(sp->gt[i]);
	free(sp->gt);
	sp->gt = NULL;
	free(sp->gd);
	sp->gd = NULL;
}

uint32_t vmdk_sparse_gte(const struct vmdk_sparse *sp, uint64_t off)
{
	uint64_t g = off / sp->grain, gdi = g / sp->gtes;
	if (gdi >= sp->gd_n || !sp->gt[gdi])
		return 0;
	return sp->gt[gdi][g % sp->gtes];
}

uint64_t vmdk_sparse_span(const struct vmdk_sparse *sp, uint64_t off)
{
	uint64_t span = (uint64_t)sp->grain * sp->gtes, gdi = off / span;
	if (gdi >= sp->gd_n)
		return UINT64_MAX - off; /* past the tables: the rest is unallocated */
	if (!sp->gt[gdi])
		return (gdi + 1) * span - off;
	return sp->grain - off % sp->grain;
}

void vmdk_rctx_free(struct vmdk_rctx *c)
{
	vdk_inflater_free(c->dec);
	free(c->cbuf);
	free(c->ubuf);
	memset(c, 0, sizeof(*c));
}

static int vmdk_rctx_ready(struct vmdk_rctx *c, size_t ccap, size_t ucap)
{
	if (!c->dec && !(c->dec = vdk_inflater_new(VDK_WRAP_ZLIB)))
		return -ENOMEM;
	if (c->ccap < ccap) {
		free(c->cbuf);
		c->ccap = 0;
		c->wsrc = NULL;
		if (!(c->cbuf = malloc(ccap)))
			return -ENOMEM;
		c->ccap = ccap;
	}
	if (c->ucap < ucap) {
		free(c->ubuf);
		c->ucap = 0;
		if (!(c->ubuf = malloc(ucap)))
			return -ENOMEM;
		c->ucap = ucap;
	}
	return 0;
}

static bool vmdk_win_has(const struct vmdk_rctx *c, const struct vdk_src *src, uint64_t at,
                         size_t n)
{
	return c->wsrc == src && at >= c->woff && at - c->woff <= c->wlen &&
	       n <= c->wlen - (at - c->woff);
}

static int vmdk_win_read(struct vdk_src *src, struct vmdk_rctx *c, uint64_t at, size_t n,
                         struct vdk_err *e)
{
	c->wsrc = NULL;
	int r = vdk_src_pread(src, c->cbuf, n, at, e);
	if (r == 0) {
		c->wsrc = src;
		c->woff = at;
		c->wlen = n;
	}
	return r;
}

/* Bytes from the grain at `at` to the request's last grain, within the
 * read-ahead bound. */
static uint64_t vmdk_ahead_span(const struct vmdk_rctx *c, uint64_t at)
{
	return c->ahead > at ? VDK_MIN(c->ahead - at, (uint64_t)VMDK_RCTX_WINDOW) : 0;
}

/* Read a compressed grain: its deflate data is *n bytes at c->cbuf +
 * *data. With markers, the marker, the data and the padding to the next
 * sector come in one read sized from the last grain, extended to the
 * request's last grain (c->ahead) when the grains follow each other: one
 * system call per request instead of per grain, and a source that hashes
 * what passes (ova unpack) sees each worker's grains as one contiguous run. */
static int vmdk_grain_fetch(struct vdk_src *src, const struct vmdk_sparse *sp, uint64_t at,
                            struct vmdk_rctx *c, size_t *data, size_t *n, struct vdk_err *e)
{
	/* A grain that deflate expanded still fits in two grains (qemu too). */
	uint64_t max = 2ull * sp->grain;
	if (at >= src->size)
		return vmdk_sbad(src, e, at, "compressed grain past the end of the file");
	uint64_t avail = src->size - at;
	if (!sp->markers) {
		*data = 0;
		*n = (size_t)VDK_MIN(max, avail);
		return vmdk_win_read(src, c, at, *n, e);
	}
	if (!vmdk_win_has(c, src, at, VMDK_GRAIN_MARKER_LEN)) {
		uint64_t span = vmdk_ahead_span(c, at);
		uint64_t want =
		    VMDK_GRAIN_MARKER_LEN + (c->guess ? c->guess : sp->grain / 4) + span;
		/* Grain sizes vary tenfold in one disk: a guess from the last
		 * grain over-reads by most of a grain, which the next request
		 * (another worker) reads again. The next grain's offset ends
		 * the window exactly when the request's grains end before it. */
		if (c->bound > at + span && c->bound - at <= span + VMDK_GRAIN_MARKER_LEN + max)
			want = c->bound - at;
		want = VDK_MIN(vdk_round_up(want, VMDK_SECTOR), avail);
		if (want < VMDK_GRAIN_MARKER_LEN)
			return vmdk_sbad(src, e, at, "grain marker cut off by the end of the file");
		int r = vmdk_win_read(src, c, at, (size_t)want, e);
		if (r < 0)
			return r;
	}
	size_t in = (size_t)(at - c->woff);
	uint32_t sz = vdk_le32(c->cbuf + in + 8);
	if (sz == 0 || sz > max || !vdk_range_ok(at + VMDK_GRAIN_MARKER_LEN, sz, src->size))
		return vmdk_sbad(src, e, at, "bad grain marker size");
	size_t need = VMDK_GRAIN_MARKER_LEN + sz;
	if (!vmdk_win_has(c, src, at, need)) {
		int r = vmdk_win_read(src, c, at,
		                      (size_t)VDK_MIN(vdk_round_up(need, VMDK_SECTOR), avail), e);
		if (r < 0)
			return r;
		in = 0;
	}
	c->guess = (size_t)VDK_MIN((uint64_t)sz + sz / 4, max);
	*data = in + VMDK_GRAIN_MARKER_LEN;
	*n = sz;
	return 0;
}

int vmdk_sparse_read(struct vdk_src *src, const struct vmdk_sparse *sp, uint32_t gte, void *buf,
                     size_t len, uint64_t off, struct vmdk_rctx *c, struct vdk_err *e)
{
	uint64_t at = (uint64_t)gte * VMDK_SECTOR, in = off % sp->grain;
	if (!sp->compressed)
		return vdk_src_pread(src, buf, len, at + in, e);
	size_t data = 0, n = 0, got = 0;
	/* Room for this request's read-ahead, the marker, two grains of
	 * deflate data and the padding; sized by the request, not the largest
	 * window, so 32 NBD workers on 256 KiB requests stay small. */
	uint64_t span = vmdk_ahead_span(c, at);
	size_t ccap = (size_t)vdk_round_up(
	    span + 2 * (uint64_t)sp->grain + VMDK_GRAIN_MARKER_LEN + 2 * VMDK_SECTOR, 64u << 10);
	if (vmdk_rctx_ready(c, ccap, sp->grain) < 0)
		return vdk_err_set(e, VDK_E_IO, ENOMEM, src->name, "vmdk", VDK_NO_OFFSET,
		                   "out of memory");
	int r = vmdk_grain_fetch(src, sp, at, c, &data, &n, e);
	if (r < 0)
		return r;
	/* A whole-grain read inflates straight into the caller's buffer. */
	uint8_t *dst = in == 0 && len == sp->grain ? buf : c->ubuf;
	int res = vdk_inflate(c->dec, c->cbuf + data, n, dst, sp->grain, &got);
	if (res == VDK_CODEC_NOFIT)
		return vmdk_sbad(src, e, at, "compressed grain inflates to more than one grain");
	if (res == -ENOMEM)
		return vdk_err_set(e, VDK_E_IO, ENOMEM, src->name, "vmdk", VDK_NO_OFFSET,
		                   "out of memory");
	if (res)
		return vmdk_sbad(src, e, at, "compressed grain does not inflate");
	/* Only the disk's last grain may inflate short (producers compress
	 * just the part inside the capacity): it reads as zeroes after its
	 * data. Anywhere else the data is damaged, and zero-filling would
	 * convert the damage silently. */
	uint64_t gstart = off - in;
	if (got < sp->grain && gstart + sp->grain < sp->capacity)
		return vdk_bad(e, src->name, "vmdk", at,
		               "compressed grain at virtual offset %" PRIu64
		               " inflates to %zu bytes, short of the %" PRIu32 "-byte grain",
		               gstart, got, sp->grain);
	if (got < sp->grain)
		memset(dst + got, 0, sp->grain - got);
	if (dst != buf)
		memcpy(buf, c->ubuf + in, len);
	return 0;
}
