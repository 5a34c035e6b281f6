/* VMDK writers: options, descriptor, and the seekable subformats
 * (monolithicSparse, twoGbMaxExtentSparse, monolithicFlat,
 * twoGbMaxExtentFlat, vmfs). streamOptimized lives in vmdk_stream.c.
 *
 * Sparse extents follow qemu-img's layout so `qemu-img check` and VMware
 * accept them: header, embedded descriptor (monolithic only), redundant GD
 * and its GTs, GD and its GTs (every table preallocated), then grains from
 * a grain-aligned overhead, appended in write order. Flat extents are
 * companion files written raw at offset 0, so they can share blocks with a
 * raw or flat source (clone). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "err.h"
#include "util.h"
#include "vmdk.h"

#define VMDK_GRAIN_SECTORS 128u                /* 64 KiB, what every producer uses */
#define VMDK_DESC_SECTORS  20u                 /* qemu reserves 20 sectors for the descriptor */
#define VMDK_SPLIT         ((uint64_t)2 << 30) /* twoGbMaxExtent*: qemu's 2 GiB */
/* GTE sector numbers are 32-bit: a hosted sparse extent ends below 2 TiB. */
#define VMDK_SPARSE_MAX ((uint64_t)UINT32_MAX * VMDK_SECTOR)

static const char *const vmdk_sub_names[] = {
    [VMDK_SUB_MONO_SPARSE] = "monolithicSparse",
    [VMDK_SUB_MONO_FLAT] = "monolithicFlat",
    [VMDK_SUB_2GB_SPARSE] = "twoGbMaxExtentSparse",
    [VMDK_SUB_2GB_FLAT] = "twoGbMaxExtentFlat",
    [VMDK_SUB_STREAM] = "streamOptimized",
    [VMDK_SUB_VMFS] = "vmfs",
    NULL,
};

static int vmdk_wbad(struct vdk_writer *w, struct vdk_err *e, const char *what)
{
	return vdk_err_set(e, VDK_E_USAGE, EINVAL, w->sink->name, "vmdk", VDK_NO_OFFSET, "%s",
	                   what);
}

static int vmdk_woom(struct vdk_writer *w, struct vdk_err *e)
{
	return vdk_ioerr(e, ENOMEM, w->sink->name, "out of memory");
}

/* A decimal string of 1..10 digits (hwversion, toolsversion). */
static bool vmdk_is_number(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 10)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static int vmdk_wopt_num(struct vdk_writer *w, const char *key, const char *def, const char **out,
                         struct vdk_err *e)
{
	const char *v = vdk_opts_get(w->opts, key);
	if (v && !vmdk_is_number(v))
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, w->sink->name, "vmdk", VDK_NO_OFFSET,
		                   "option %s must be a number, not \"%s\"", key, v);
	*out = v ? v : def;
	return 0;
}

static void vmdk_uuid_text(char *out, size_t cap)
{
	uuid_t u;
	uuid_generate(u);
	/* VMware's ddb.uuid form: 16 hex bytes, a dash after the eighth. */
	snprintf(out, cap,
	         "%02x %02x %02x %02x %02x %02x %02x %02x-%02x %02x %02x %02x %02x %02x %02x %02x",
	         u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
	         u[13], u[14], u[15]);
}

static uint32_t vmdk_new_cid(void)
{
	uuid_t u;
	uuid_generate(u);
	uint32_t cid = vdk_le32(u);
	/* ffffffff means "no parent" and fffffffe "being created": avoid both. */
	return cid >= 0xfffffffeu ? 0x12345678u : cid;
}

static int vmdk_ddb(struct vdk_writer *w, struct vmdk_wstate *ws, struct vdk_err *e)
{
	static const char *const adapters[] = {"ide",       "buslogic", "lsilogic",
	                                       "legacyESX", "pvscsi",   NULL};
	int ad;
	const char *hw, *tools;
	int r = vdk_opts_get_enum(w->opts, "adapter_type", adapters, 0, &ad, e);
	if (r < 0 || (r = vmdk_wopt_num(w, "hwversion", "4", &hw, e)) < 0 ||
	    (r = vmdk_wopt_num(w, "toolsversion", "2147483647", &tools, e)) < 0)
		return r;
	/* VMware reports 255 heads for every SCSI adapter, 16 for IDE. */
	uint64_t heads = ad == 0 ? 16 : 255;
	char cyl[32], hd[8], uuid[64];
	snprintf(cyl, sizeof(cyl), "%" PRIu64, w->size / (heads * 63 * VMDK_SECTOR));
	snprintf(hd, sizeof(hd), "%" PRIu64, heads);
	vmdk_uuid_text(uuid, sizeof(uuid));
	struct vmdk_desc *d = &ws->desc;
	if (vmdk_desc_set(d, "ddb.virtualHWVersion", hw) ||
	    vmdk_desc_set(d, "ddb.geometry.cylinders", cyl) ||
	    vmdk_desc_set(d, "ddb.geometry.heads", hd) ||
	    vmdk_desc_set(d, "ddb.geometry.sectors", "63") ||
	    vmdk_desc_set(d, "ddb.adapterType", adapters[ad]) ||
	    vmdk_desc_set(d, "ddb.toolsVersion", tools) || vmdk_desc_set(d, "ddb.uuid", uuid))
		return vmdk_woom(w, e);
	return 0;
}

int vmdk_write_prepare(struct vdk_writer *w, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	int sub;
	int r =
	    vdk_opts_get_enum(w->opts, "subformat", vmdk_sub_names, VMDK_SUB_MONO_SPARSE, &sub, e);
	if (r < 0 ||
	    (r = vdk_opts_get_bool(w->opts, "zeroed_grain", false, &ws->zero_grain, e)) < 0)
		return r;
	ws->sub = (enum vmdk_subformat)sub;
	ws->grain = VMDK_GRAIN_SECTORS * VMDK_SECTOR;
	bool flat = ws->sub == VMDK_SUB_MONO_FLAT || ws->sub == VMDK_SUB_2GB_FLAT ||
	            ws->sub == VMDK_SUB_VMFS;
	if (flat && ws->zero_grain)
		return vmdk_wbad(w, e, "zeroed_grain applies to sparse subformats only");
	bool split = ws->sub == VMDK_SUB_2GB_FLAT || ws->sub == VMDK_SUB_2GB_SPARSE;
	if (!flat && !split && w->size > VMDK_SPARSE_MAX)
		return vmdk_wbad(w, e,
		                 "a single sparse extent holds less than 2 TiB; use "
		                 "twoGbMaxExtentSparse or a flat subformat");
	if (w->size > VMDK_MAX_SECTORS * VMDK_SECTOR ||
	    (split && w->size / VMDK_SPLIT >= VMDK_MAX_EXTENTS))
		return vmdk_wbad(w, e, "disk too large for VMDK");
	ws->desc.version = 1;
	ws->desc.cid = vmdk_new_cid();
	if (!(ws->desc.create_type = strdup(vmdk_sub_names[ws->sub])))
		return vmdk_woom(w, e);
	return vmdk_ddb(w, ws, e);
}

/* "dir/name.vmdk" -> prefix "name", suffix ".vmdk" (qemu's naming). */
static int vmdk_ext_name(struct vdk_writer *w, const char *tag, unsigned idx, char *out, size_t cap,
                         struct vdk_err *e)
{
	const char *name = w->sink->name, *base = strrchr(name, '/');
	base = base ? base + 1 : name;
	const char *dot = strrchr(base, '.');
	int plen = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
	const char *suffix = dot && dot != base ? dot : "";
	int n = idx ? snprintf(out, cap, "%.*s-%s%03u%s", plen, base, tag, idx, suffix)
	            : snprintf(out, cap, "%.*s-%s%s", plen, base, tag, suffix);
	if (n < 0 || (size_t)n >= cap || strpbrk(out, "\"\n\r"))
		return vmdk_wbad(w, e, "output name unusable for an extent file name");
	return 0;
}

static const char *vmdk_basename(const char *name)
{
	const char *b = strrchr(name, '/');
	return b ? b + 1 : name;
}

/* Lay out a sparse extent of len bytes; desc_sectors reserves room for an
 * embedded descriptor. */
static int vmdk_sparse_layout(struct vdk_writer *w, struct vmdk_wext *x, uint64_t desc_sectors,
                              struct vdk_err *e)
{
	uint64_t cap = x->len / VMDK_SECTOR;
	x->n_grains = (cap + VMDK_GRAIN_SECTORS - 1) / VMDK_GRAIN_SECTORS;
	x->gt_n = (x->n_grains + VMDK_GTES - 1) / VMDK_GTES;
	x->gd_sectors = (x->gt_n * 4 + VMDK_SECTOR - 1) / VMDK_SECTOR;
	x->desc_sectors = desc_sectors;
	uint64_t gt_sectors = x->gt_n * (VMDK_GTES * 4 / VMDK_SECTOR);
	x->rgd = 1 + desc_sectors;
	x->gd = x->rgd + x->gd_sectors + gt_sectors;
	x->overhead = vdk_round_up(x->gd + x->gd_sectors + gt_sectors, VMDK_GRAIN_SECTORS);
	x->next = x->overhead;
	if (!(x->gt = calloc(x->gt_n ? x->gt_n : 1, sizeof(*x->gt))))
		return vmdk_woom(w, e);
	return 0;
}

static uint32_t vmdk_wgte(const struct vmdk_wext *x, uint64_t g)
{
	const uint32_t *t = x->gt[g / VMDK_GTES];
	return t ? t[g % VMDK_GTES] : 0;
}

static int vmdk_set_wgte(struct vdk_writer *w, struct vmdk_wext *x, uint64_t g, uint32_t v,
                         struct vdk_err *e)
{
	uint32_t **t = &x->gt[g / VMDK_GTES];
	if (!*t && !(*t = calloc(VMDK_GTES, sizeof(**t))))
		return vmdk_woom(w, e);
	(*t)[g % VMDK_GTES] = v;
	return 0;
}

static int vmdk_add_wext(struct vdk_writer *w, struct vmdk_wstate *ws, uint64_t start, uint64_t len,
                         struct vdk_sink *sink, struct vdk_err *e)
{
	void *p = realloc(ws->ext, (ws->n_ext + 1) * sizeof(*ws->ext));
	if (!p)
		return vmdk_woom(w, e);
	ws->ext = p;
	struct vmdk_wext *x = &ws->ext[ws->n_ext++];
	memset(x, 0, sizeof(*x));
	x->sink = sink;
	x->start = start;
	x->len = len;
	return 0;
}

/* Companion extent files: "<base>-flat.vmdk", "<base>-s001.vmdk", ... */
static int vmdk_create_companions(struct vdk_writer *w, struct vmdk_wstate *ws, bool sparse,
                                  struct vdk_err *e)
{
	bool split = ws->sub == VMDK_SUB_2GB_FLAT || ws->sub == VMDK_SUB_2GB_SPARSE;
	uint64_t total = vdk_round_up(w->size, VMDK_SECTOR), start = 0;
	unsigned idx = 0;
	do {
		uint64_t len = split ? VDK_MIN(VMDK_SPLIT, total - start) : total;
		char name[VMDK_MAX_NAME];
		int r = vmdk_ext_name(w, split ? (sparse ? "s" : "f") : "flat", split ? ++idx : 0,
		                      name, sizeof(name), e);
		struct vdk_sink *k;
		if (r < 0 || (r = vdk_sink_open_related(w->sink, name, &k, e)) < 0 ||
		    (r = vmdk_add_wext(w, ws, start, len, k, e)) < 0)
			return r;
		enum vmdk_ext_kind kind = sparse                     ? VMDK_EK_SPARSE
		                          : ws->sub == VMDK_SUB_VMFS ? VMDK_EK_VMFS
		                                                     : VMDK_EK_FLAT;
		if (vmdk_desc_add_extent(&ws->desc, VMDK_ACC_RW, kind, len / VMDK_SECTOR, name, 0))
			return vmdk_woom(w, e);
		if (sparse && (r = vmdk_sparse_layout(w, &ws->ext[ws->n_ext - 1], 0, e)) < 0)
			return r;
		start += len;
	} while (start < total);
	return 0;
}

int vmdk_wcreate(struct vdk_writer *w, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	int r = vmdk_write_prepare(w, e);
	if (r < 0)
		return r;
	if (ws->sub == VMDK_SUB_STREAM)
		return vmdk_stream_create(w, e);
	if (w->sink->flags & VDK_SINK_SEQUENTIAL)
		return vmdk_wbad(w, e, "only subformat=streamOptimized can be written to a stream");
	/* Only streamOptimized transforms its data; the rest use write(). */
	w->caps &= ~(unsigned)(VDK_WCAP_SEQUENTIAL | VDK_WCAP_ENCODE);
	w->granularity = ws->grain;
	if (ws->sub == VMDK_SUB_MONO_SPARSE) {
		uint64_t len = vdk_round_up(w->size, VMDK_SECTOR);
		if ((r = vmdk_add_wext(w, ws, 0, len, w->sink, e)) < 0)
			return r;
		if (vmdk_desc_add_extent(&ws->desc, VMDK_ACC_RW, VMDK_EK_SPARSE, len / VMDK_SECTOR,
		                         vmdk_basename(w->sink->name), 0))
			return vmdk_woom(w, e);
		return vmdk_sparse_layout(w, &ws->ext[0], VMDK_DESC_SECTORS, e);
	}
	bool sparse = ws->sub == VMDK_SUB_2GB_SPARSE;
	if (!sparse) {
		/* Flat data sits verbatim at offset 0 of its file: clonable. */
		w->caps |= VDK_WCAP_CLONE;
		w->granularity = VMDK_SECTOR;
	}
	return vmdk_create_companions(w, ws, sparse, e);
}

/* Pending contiguous write, so consecutive new grains go out in one call. */
struct vmdk_pend {
	struct vdk_sink *k;
	const uint8_t *p;
	uint64_t at;
	size_t n;
};

static int vmdk_pend_flush(struct vmdk_pend *q, struct vdk_err *e)
{
	int r = q->n ? vdk_sink_pwrite(q->k, q->p, q->n, q->at, e) : 0;
	q->n = 0;
	return r;
}

static int vmdk_pend_add(struct vmdk_pend *q, const uint8_t *p, size_t n, uint64_t at,
                         struct vdk_err *e)
{
	if (q->n && q->p + q->n == p && q->at + q->n == at) {
		q->n += n;
		return 0;
	}
	int r = vmdk_pend_flush(q, e);
	q->p = p;
	q->at = at;
	q->n = n;
	return r;
}

static int vmdk_sparse_put(struct vdk_writer *w, struct vmdk_wext *x, const uint8_t *p, uint64_t n,
                           uint64_t rel, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	struct vmdk_pend q = {.k = x->sink};
	int r = 0;
	while (n && r == 0) {
		uint64_t g = rel / ws->grain, in = rel % ws->grain;
		size_t k = (size_t)VDK_MIN(n, ws->grain - in);
		bool last = x->start + rel + k >= w->size; /* the disk's short last grain */
		uint32_t gte = vmdk_wgte(x, g);
		if (gte > VMDK_GTE_ZEROED) {
			r = vmdk_pend_add(&q, p, k, (uint64_t)gte * VMDK_SECTOR + in, e);
		} else if (vdk_is_zero(p, k)) {
			if (ws->zero_grain && !in && (k == ws->grain || last))
				r = vmdk_set_wgte(w, x, g, VMDK_GTE_ZEROED, e);
		} else if (in || (k < ws->grain && !last)) {
			r = vdk_err_set(e, VDK_E_IO, EINVAL, w->sink->name, "vmdk", x->start + rel,
			                "internal error: partial grain write");
		} else {
			/* A short last grain is padded with zeroes at finalize. */
			uint64_t at = x->next;
			x->next += VMDK_GRAIN_SECTORS;
			r = vmdk_set_wgte(w, x, g, (uint32_t)at, e);
			if (r == 0)
				r = vmdk_pend_add(&q, p, k, at * VMDK_SECTOR, e);
		}
		p += k;
		rel += k;
		n -= k;
	}
	int f = vmdk_pend_flush(&q, e);
	return r ? r : f;
}

static struct vmdk_wext *vmdk_wfind(struct vmdk_wstate *ws, uint64_t off)
{
	size_t i = (size_t)(off / VMDK_SPLIT);
	if (ws->sub != VMDK_SUB_2GB_FLAT && ws->sub != VMDK_SUB_2GB_SPARSE)
		i = 0;
	return i < ws->n_ext ? &ws->ext[i] : NULL;
}

int vmdk_wwrite(struct vdk_writer *w, const void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	if (ws->sub == VMDK_SUB_STREAM)
		return vmdk_stream_write(w, buf, len, off, e);
	const uint8_t *p = buf;
	while (len) {
		struct vmdk_wext *x = vmdk_wfind(ws, off);
		if (!x || off < x->start || off >= x->start + x->len)
			return vdk_err_set(e, VDK_E_IO, EINVAL, w->sink->name, "vmdk", off,
			                   "write past the last extent");
		uint64_t rel = off - x->start, n = VDK_MIN((uint64_t)len, x->len - rel);
		int r = x->gt ? vmdk_sparse_put(w, x, p, n, rel, e)
		              : vdk_sink_pwrite(x->sink, p, (size_t)n, rel, e);
		if (r < 0)
			return r;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Seekable subformats need no transform: encode passes the bytes on. */
int vmdk_wencode(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                 struct vdk_buf *out, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	if (ws->sub == VMDK_SUB_STREAM)
		return vmdk_stream_encode(w, buf, len, off, out, e);
	if (vdk_buf_reserve(out, len) < 0)
		return vmdk_woom(w, e);
	memcpy(out->data, buf, len);
	out->len = len;
	return 0;
}

int vmdk_wwrite_encoded(struct vdk_writer *w, const struct vdk_buf *enc, uint64_t off, uint64_t len,
                        struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	if (ws->sub == VMDK_SUB_STREAM)
		return vmdk_stream_write_encoded(w, enc, off, len, e);
	if (enc->len != len)
		return vdk_err_set(e, VDK_E_IO, EPROTO, w->sink->name, "vmdk", off,
		                   "internal error: encoded length mismatch");
	return vmdk_wwrite(w, enc->data, enc->len, off, e);
}

int vmdk_wclone(struct vdk_writer *w, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
                enum vdk_clone_mode mode, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	if (!(w->caps & VDK_WCAP_CLONE))
		return -EOPNOTSUPP;
	int how = VDK_CLONED;
	while (len) {
		struct vmdk_wext *x = vmdk_wfind(ws, off);
		if (!x || off < x->start || off >= x->start + x->len)
			return -EOPNOTSUPP;
		uint64_t rel = off - x->start, n = VDK_MIN(len, x->len - rel);
		int r = vdk_sink_clone(x->sink, rel, n, src_fd, src_off, mode, e);
		if (r < 0)
			return r; /* -EOPNOTSUPP: the core copies the whole range again */
		if (r == VDK_OFFLOADED)
			how = VDK_OFFLOADED;
		off += n;
		src_off += n;
		len -= n;
	}
	return how;
}

/* Grain tables [a, b) into buf, NULL tables as zeroes. */
static void vmdk_fill_gts(const struct vmdk_wext *x, uint64_t a, uint64_t b, uint8_t *buf)
{
	memset(buf, 0, (b - a) * VMDK_GTES * 4);
	for (uint64_t t = a; t < b; t++)
		for (uint32_t j = 0; x->gt[t] && j < VMDK_GTES; j++)
			vdk_put_le32(buf + 4 * ((t - a) * VMDK_GTES + j), x->gt[t][j]);
}

/* Write the tables [i, i + n) found at sector gts. A new file reads zeroes
 * where nothing was written (the final truncate covers the tables), so
 * only runs of tables that hold a grain are written, as qemu leaves its
 * untouched tables unwritten: an empty 2 TiB disk wrote 256 MiB of zero
 * tables (1.0 s on this VM's disk), and 1 GiB scattered over 2 TiB in
 * batches of 256 tables allocated 1.25 GiB against qemu's 1.03. */
static int vmdk_write_gts(struct vmdk_wext *x, uint64_t i, uint64_t n, uint8_t *buf, uint64_t gts,
                          struct vdk_err *e)
{
	const uint64_t gt_bytes = VMDK_GTES * 4;
	bool skip = x->sink->flags & VDK_SINK_ZEROED;
	for (uint64_t a = i; a < i + n;) {
		if (skip && !x->gt[a]) {
			a++;
			continue;
		}
		uint64_t b = a + 1;
		while (b < i + n && (!skip || x->gt[b]))
			b++;
		vmdk_fill_gts(x, a, b, buf);
		int r = vdk_sink_pwrite(x->sink, buf, (b - a) * gt_bytes,
		                        gts * VMDK_SECTOR + a * gt_bytes, e);
		if (r)
			return r;
		a = b;
	}
	return 0;
}

/* Write both grain table copies and both directories of a sparse extent. */
static int vmdk_write_tables(struct vdk_writer *w, struct vmdk_wext *x, struct vdk_err *e)
{
	const uint64_t gt_sec = VMDK_GTES * 4 / VMDK_SECTOR, batch = 256;
	uint8_t *buf = malloc(batch * VMDK_GTES * 4);
	uint8_t *gd = calloc(x->gd_sectors ? x->gd_sectors : 1, VMDK_SECTOR);
	int r = buf && gd ? 0 : vmdk_woom(w, e);
	for (int copy = 0; copy < 2 && r == 0; copy++) {
		uint64_t dir = copy ? x->gd : x->rgd, gts = dir + x->gd_sectors;
		for (uint64_t i = 0; i < x->gt_n; i++)
			vdk_put_le32(gd + 4 * i, (uint32_t)(gts + i * gt_sec));
		r = vdk_sink_pwrite(x->sink, gd, x->gd_sectors * VMDK_SECTOR, dir * VMDK_SECTOR, e);
		for (uint64_t i = 0; i < x->gt_n && r == 0; i += batch) {
			r = vmdk_write_gts(x, i, VDK_MIN(batch, x->gt_n - i), buf, gts, e);
		}
	}
	free(buf);
	free(gd);
	return r;
}

static int vmdk_finish_sparse(struct vdk_writer *w, struct vmdk_wext *x, const char *desc,
                              size_t dlen, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	uint8_t h[VMDK_SECTOR];
	uint32_t flags = VMDK_FLAG_NL_DETECT | VMDK_FLAG_RGD;
	if (ws->zero_grain)
		flags |= VMDK_FLAG_ZERO_GRAIN;
	vmdk_put_header(h, ws->zero_grain ? 2 : 1, flags, x->len / VMDK_SECTOR, VMDK_GRAIN_SECTORS,
	                desc ? 1 : 0, x->desc_sectors, x->rgd, x->gd, x->overhead, 0);
	int r = vmdk_write_tables(w, x, e);
	if (r == 0)
		r = vdk_sink_pwrite(x->sink, h, sizeof(h), 0, e);
	if (r == 0 && desc)
		r = vdk_sink_pwrite(x->sink, desc, dlen, VMDK_SECTOR, e);
	/* Whole grains to the end: the file ends at the last grain's end. */
	if (r == 0)
		r = vdk_sink_truncate(x->sink, x->next * VMDK_SECTOR, e);
	return r;
}

int vmdk_wfinalize(struct vdk_writer *w, struct vdk_err *e)
{
	struct vmdk_wstate *ws = w->state;
	if (ws->sub == VMDK_SUB_STREAM)
		return vmdk_stream_finalize(w, e);
	char *desc;
	size_t dlen;
	if (vmdk_desc_render(&ws->desc, &desc, &dlen) < 0)
		return vmdk_woom(w, e);
	int r = 0;
	if (ws->sub == VMDK_SUB_MONO_SPARSE) {
		if (dlen > VMDK_DESC_SECTORS * VMDK_SECTOR)
			r = vmdk_wbad(w, e, "descriptor too long for its reserved space");
		else
			r = vmdk_finish_sparse(w, &ws->ext[0], desc, dlen, e);
		free(desc);
		return r;
	}
	for (size_t i = 0; i < ws->n_ext && r == 0; i++) {
		struct vmdk_wext *x = &ws->ext[i];
		r = x->gt ? vmdk_finish_sparse(w, x, NULL, 0, e)
		          : vdk_sink_truncate(x->sink, x->len, e);
	}
	if (r == 0)
		r = vdk_sink_pwrite(w->sink, desc, dlen, 0, e);
	free(desc);
	return r;
}

void vmdk_wclose(struct vdk_writer *w)
{
	struct vmdk_wstate *ws = w->state;
	/* Companion sinks belong to the main sink, which closes them. */
	for (size_t i = 0; i < ws->n_ext; i++) {
		for (uint64_t t = 0; ws->ext[i].gt && t < ws->ext[i].gt_n; t++)
			free(ws->ext[i].gt[t]);
		free(ws->ext[i].gt);
	}
	free(ws->ext);
	free(ws->gd);
	vmdk_desc_free(&ws->desc);
}
