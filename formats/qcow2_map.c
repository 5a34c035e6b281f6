/* qcow2 cluster mapping: L2 table cache, classification of guest clusters
 * and subclusters (qcow2.txt "Cluster mapping", "Extended L2 Entries"),
 * extents, reads, and compressed clusters (raw deflate or zstd). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "codec.h"
#include "qcow2.h"
#include "util.h"

#define FMT               "qcow2"
#define QCOW2_CACHE_BYTES (8u << 20)
#define QCOW2_BATCH       128u

static void qcow2_ctx_drop(void *arg, void *c)
{
	if (((struct qcow2_state *)arg)->comp_type == QCOW2_COMP_ZSTD)
		ZSTD_freeDCtx(c);
	else
		vdk_inflater_free(c);
}

int qcow2_map_init(struct vdk_image *img, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	if (pthread_mutex_init(&s->lock, NULL))
		return vdk_nomem(e, img->src->name, "qcow2", "a lock");
	s->lock_ok = true;
	if (vdk_pool_init(&s->dctx, qcow2_ctx_drop, s))
		return vdk_nomem(e, img->src->name, "qcow2", "a lock");
	s->nslots = VDK_MAX(4u, VDK_MIN(64u, QCOW2_CACHE_BYTES / s->cluster_size));
	s->slots = calloc(s->nslots, sizeof(*s->slots));
	return s->slots ? 0 : vdk_nomem(e, img->src->name, "qcow2", "the L2 cache");
}

void qcow2_map_free(struct qcow2_state *s)
{
	for (unsigned i = 0; s->slots && i < s->nslots; i++)
		free(s->slots[i].ent);
	free(s->slots);
	vdk_pool_fini(&s->dctx);
	if (s->lock_ok)
		pthread_mutex_destroy(&s->lock);
}

/* Load the table at host into a slot (lock held). */
static int qcow2_l2_load(struct vdk_image *img, uint64_t host, struct qcow2_l2slot **out,
                         struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	struct qcow2_l2slot *v = &s->slots[0];
	for (unsigned i = 0; i < s->nslots; i++) {
		if (s->slots[i].host == host) {
			*out = &s->slots[i];
			(*out)->stamp = ++s->clock;
			return 0;
		}
		if (s->slots[i].stamp < v->stamp)
			v = &s->slots[i];
	}
	if (!v->ent && !(v->ent = malloc(s->cluster_size)))
		return -ENOMEM;
	v->host = 0;
	int r = vdk_src_pread(img->src, v->ent, s->cluster_size, host, e);
	if (r)
		return r;
	uint8_t *raw = (uint8_t *)v->ent;
	for (uint32_t i = 0; i < s->cluster_size / 8; i++)
		v->ent[i] = vdk_be64(raw + 8 * (size_t)i);
	v->host = host;
	v->stamp = ++s->clock;
	*out = v;
	return 0;
}

int qcow2_l2_read(struct vdk_image *img, uint64_t l1_idx, uint32_t first, uint32_t max,
                  uint64_t *ent, uint32_t *n, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	uint32_t words = s->extl2 ? 2 : 1;
	*n = VDK_MIN(max, s->l2_entries - first);
	uint64_t l1e = l1_idx < s->l1_size ? s->l1[l1_idx] : 0;
	uint64_t host = l1e & QCOW2_OFFSET_MASK;
	if (!host) {
		memset(ent, 0, (size_t)*n * words * 8);
		return 0;
	}
	if (host % s->cluster_size || !vdk_range_ok(host, s->cluster_size, img->src->size))
		return vdk_bad(e, img->src->name, FMT, s->l1_off + 8 * l1_idx,
		               "L2 table offset %llu unaligned or outside the file",
		               (unsigned long long)host);
	if (l1e & QCOW2_L1_RESERVED)
		return vdk_bad(e, img->src->name, FMT, s->l1_off + 8 * l1_idx,
		               "L1 entry 0x%016llx has reserved bits set", (unsigned long long)l1e);
	int mr = qcow2_meta_l2_ok(img, l1_idx, host, e);
	if (mr)
		return mr;
	pthread_mutex_lock(&s->lock);
	struct qcow2_l2slot *sl = NULL;
	int r = qcow2_l2_load(img, host, &sl, e);
	if (r == 0)
		memcpy(ent, sl->ent + (size_t)first * words, (size_t)*n * words * 8);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* One classified run of the guest disk. */
struct qcow2_unit {
	uint64_t off, len;
	enum qcow2_kind kind;
	uint64_t host;   /* DATA: host offset of off; COMPRESSED: the L2 entry */
	uint64_t cstart; /* COMPRESSED: guest offset where its cluster starts */
};

typedef int (*qcow2_unit_fn)(struct vdk_image *img, void *ctx, const struct qcow2_unit *u,
                             struct vdk_err *e);

static int qcow2_classify(struct vdk_image *img, uint64_t ent, uint64_t bmp, unsigned sub,
                          uint64_t guest, enum qcow2_kind *kind, uint64_t *host, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	if (ent & QCOW2_OFLAG_COMPRESSED) {
		*kind = QCOW2_COMPRESSED;
		*host = ent;
		if ((ent & QCOW2_OFLAG_COPIED) || bmp)
			return vdk_bad(e, img->src->name, FMT, qcow2_entry_off(s, guest),
			               "compressed L2 entry 0x%016llx with %s at guest offset %llu",
			               (unsigned long long)ent,
			               bmp ? "a subcluster bitmap" : "COPIED set",
			               (unsigned long long)guest);
		return 0;
	}
	/* Bit 0 is reserved with extended L2 entries, and in version 2, which
	 * has no zero clusters (qcow2.txt; qemu-img calls it corruption: found
	 * by `make fuzz-diff`). */
	if ((ent & QCOW2_L2_RESERVED) || ((s->extl2 || s->version < 3) && (ent & QCOW2_OFLAG_ZERO)))
		return vdk_bad(e, img->src->name, FMT, qcow2_entry_off(s, guest),
		               "L2 entry 0x%016llx has reserved bits set (guest offset %llu)",
		               (unsigned long long)ent, (unsigned long long)guest);
	uint64_t h = ent & QCOW2_OFFSET_MASK;
	bool alloc = h || (s->data && (ent & QCOW2_OFLAG_COPIED));
	if (alloc && h % s->cluster_size)
		return vdk_bad(e, img->src->name, FMT, qcow2_entry_off(s, guest),
		               "cluster at guest offset %llu maps to unaligned host offset %llu",
		               (unsigned long long)guest, (unsigned long long)h);
	if (!s->extl2) {
		*kind = (ent & QCOW2_OFLAG_ZERO) ? QCOW2_ZERO : alloc ? QCOW2_DATA : QCOW2_UNALLOC;
		*host = h;
		return *kind == QCOW2_DATA ? qcow2_meta_data_ok(img, h, s->cluster_size, guest, e)
		                           : 0;
	}
	uint32_t am = (uint32_t)bmp, zm = (uint32_t)(bmp >> 32);
	if ((am & zm) || (!alloc && am))
		return vdk_bad(e, img->src->name, FMT, qcow2_entry_off(s, guest) + 8,
		               "invalid subcluster bitmap 0x%016llx at guest offset %llu",
		               (unsigned long long)bmp, (unsigned long long)guest);
	*kind = (zm >> sub) & 1 ? QCOW2_ZERO : (am >> sub) & 1 ? QCOW2_DATA : QCOW2_UNALLOC;
	*host = h + (uint64_t)sub * s->sub_size;
	return *kind == QCOW2_DATA ? qcow2_meta_data_ok(img, *host, s->sub_size, guest, e) : 0;
}

static bool qcow2_unit_joins(const struct qcow2_unit *a, const struct qcow2_unit *b)
{
	if (a->len == 0 || a->kind != b->kind || a->kind == QCOW2_COMPRESSED)
		return false;
	return a->kind != QCOW2_DATA || a->host + a->len == b->host;
}

struct qcow2_walk {
	struct qcow2_unit cur;
	qcow2_unit_fn fn;
	void *ctx;
};

/* Feed one (sub)cluster [us, us+ulen) clipped to [pos, end) to the walk. */
static int qcow2_walk_unit(struct vdk_image *img, struct qcow2_walk *w, uint64_t us, uint64_t ulen,
                           uint64_t pos, uint64_t end, uint64_t ent, uint64_t bmp, unsigned sub,
                           struct vdk_err *e)
{
	uint64_t a = VDK_MAX(us, pos), b = VDK_MIN(us + ulen, end);
	if (a >= b)
		return 0;
	struct qcow2_unit u = {.off = a, .len = b - a, .cstart = us - (uint64_t)sub * ulen};
	int r = qcow2_classify(img, ent, bmp, sub, us, &u.kind, &u.host, e);
	if (r)
		return r;
	if (u.kind == QCOW2_DATA)
		u.host += a - us;
	if (qcow2_unit_joins(&w->cur, &u)) {
		w->cur.len += u.len;
		return 0;
	}
	if (w->cur.len && (r = w->fn(img, w->ctx, &w->cur, e)))
		return r;
	w->cur = u;
	return 0;
}

/* Walk [pos, end) of the guest disk, calling fn for maximal runs; fn
 * returning > 0 stops the walk early (the run it was given is consumed). */
static int qcow2_walk(struct vdk_image *img, uint64_t pos, uint64_t end, qcow2_unit_fn fn,
                      void *ctx, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	struct qcow2_walk w = {.fn = fn, .ctx = ctx};
	uint64_t ent[QCOW2_BATCH * 2];
	unsigned words = s->extl2 ? 2 : 1, nsub = s->extl2 ? QCOW2_SUBCLUSTERS : 1;
	int r = 0;
	end = VDK_MIN(end, img->size);
	while (r == 0 && pos < end) {
		uint64_t cl = pos >> s->cluster_bits;
		uint64_t left = ((end - 1) >> s->cluster_bits) - cl + 1;
		uint32_t got = 0;
		uint64_t l1i = cl / s->l2_entries;
		if (l1i >= s->l1_size || !(s->l1[l1i] & QCOW2_OFFSET_MASK)) {
			/* A whole L2 table's span unallocated: one step, not one
			 * per cluster (sparse disks of many TiB). */
			uint64_t span = (uint64_t)s->l2_entries << s->cluster_bits;
			uint64_t te = VDK_MIN(end, (l1i + 1) * span);
			r = qcow2_walk_unit(img, &w, pos, te - pos, pos, te, 0, 0, 0, e);
			pos = te;
			continue;
		}
		r = qcow2_l2_read(img, cl / s->l2_entries, (uint32_t)(cl % s->l2_entries),
		                  (uint32_t)VDK_MIN(left, QCOW2_BATCH), ent, &got, e);
		for (uint32_t j = 0; r == 0 && j < got; j++) {
			uint64_t cs0 = (cl + j) << s->cluster_bits;
			uint64_t bmp = words == 2 ? ent[2 * j + 1] : 0;
			for (unsigned k = 0; r == 0 && k < nsub; k++)
				r = qcow2_walk_unit(img, &w, cs0 + (uint64_t)k * s->sub_size,
				                    s->sub_size, pos, end, ent[words * j], bmp, k,
				                    e);
		}
		pos = (cl + got) << s->cluster_bits;
	}
	if (r == 0 && w.cur.len)
		r = fn(img, ctx, &w.cur, e);
	return r < 0 ? r : 0;
}

static int qcow2_extent_fn(struct vdk_image *img, void *ctx, const struct qcow2_unit *u,
                           struct vdk_err *e)
{
	(void)e;
	struct vdk_extents *out = ctx;
	struct vdk_src *d = qcow2_data_src(img);
	uint32_t fl = 0;
	int fd = -1;
	uint64_t phys = 0;
	if (u->kind == QCOW2_UNALLOC)
		fl = img->backing ? VDK_EXT_HOLE : VDK_EXT_HOLE | VDK_EXT_ZERO;
	else if (u->kind == QCOW2_ZERO)
		fl = VDK_EXT_ZERO;
	else if (u->kind == QCOW2_DATA && d->fd >= 0 && vdk_range_ok(u->host, u->len, d->size)) {
		fd = d->fd;
		phys = d->fd_off + u->host;
	}
	int r = vdk_extents_add(out, u->off, u->len, fl, fd, phys);
	if (r)
		return r;
	return vdk_extents_full(out) ? 1 : 0;
}

int qcow2_extents(struct vdk_image *img, uint64_t off, uint64_t len, struct vdk_extents *out,
                  struct vdk_err *e)
{
	return qcow2_walk(img, off, off + len, qcow2_extent_fn, out, e);
}

/* A decompression context from the image's pool, or a new one. */
static void *qcow2_dctx_get(struct qcow2_state *s)
{
	void *c = vdk_pool_take(&s->dctx);
	if (c)
		return c;
	if (s->comp_type == QCOW2_COMP_ZSTD)
		return ZSTD_createDCtx();
	return vdk_inflater_new(VDK_WRAP_RAW);
}

/* qemu stops decompressing once a whole cluster came out: the final sector
 * may hold another cluster's bytes, so trailing input is fine. */
static bool qcow2_zstd_cluster(ZSTD_DCtx *z, const uint8_t *in, size_t inlen, uint8_t *out,
                               size_t cs)
{
	ZSTD_DCtx_reset(z, ZSTD_reset_session_only);
	ZSTD_inBuffer ib = {in, inlen, 0};
	ZSTD_outBuffer ob = {out, cs, 0};
	while (ob.pos < cs) {
		size_t pi = ib.pos, po = ob.pos;
		size_t r = ZSTD_decompressStream(z, &ob, &ib);
		if (ZSTD_isError(r) || (r == 0 && ob.pos < cs))
			return false;
		if (ib.pos == pi && ob.pos == po)
			return false;
	}
	return true;
}

static int qcow2_inflate(struct vdk_image *img, uint64_t ent, uint64_t guest, uint8_t *out,
                         uint8_t *in, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	struct vdk_src *src = img->src;
	uint64_t coff = ent & s->coff_mask;
	uint64_t nsec = ((ent >> s->csize_shift) & s->csize_mask) + 1;
	uint64_t clen = nsec * 512 - (coff & 511);
	if (s->data)
		return vdk_bad(e, src->name, FMT, coff, "compressed cluster with a data file");
	if (coff >= src->size)
		return vdk_bad(e, src->name, FMT, coff, "compressed cluster outside the file");
	/* The last sector may run past the end of the file. */
	clen = VDK_MIN(clen, src->size - coff);
	int r = qcow2_meta_data_ok(img, coff, clen, guest, e);
	if (r == 0)
		r = vdk_src_pread(src, in, (size_t)clen, coff, e);
	if (r)
		return r;
	void *c = qcow2_dctx_get(s);
	if (!c)
		return -ENOMEM;
	bool ok;
	if (s->comp_type == QCOW2_COMP_ZSTD) {
		ok = qcow2_zstd_cluster(c, in, (size_t)clen, out, s->cluster_size);
	} else {
		/* Exact: a stream that ends before a whole cluster is damage. */
		ok = vdk_inflate(c, in, (size_t)clen, out, s->cluster_size, NULL) == 0;
	}
	vdk_pool_give(&s->dctx, c);
	if (!ok)
		return vdk_bad(e, src->name, FMT, coff,
		               "compressed cluster (%s) does not inflate "
		               "to %u bytes",
		               s->comp_type ? "zstd" : "deflate", s->cluster_size);
	return 0;
}

struct qcow2_rd {
	uint8_t *buf; /* destination for guest offset base */
	uint64_t base;
	uint8_t *cbuf, *ibuf; /* one inflated cluster, its compressed bytes */
	uint64_t cached;      /* guest cluster start held in cbuf, or UINT64_MAX */
};

static int qcow2_read_data(struct vdk_image *img, uint8_t *dst, const struct qcow2_unit *u,
                           struct vdk_err *e)
{
	struct vdk_src *d = qcow2_data_src(img);
	uint64_t have = u->host < d->size ? VDK_MIN(u->len, d->size - u->host) : 0;
	/* Bytes past the end of the file read as zeroes, as in qemu. */
	memset(dst + have, 0, (size_t)(u->len - have));
	return have ? vdk_src_pread(d, dst, (size_t)have, u->host, e) : 0;
}

static int qcow2_read_fn(struct vdk_image *img, void *ctx, const struct qcow2_unit *u,
                         struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	struct qcow2_rd *rd = ctx;
	uint8_t *dst = rd->buf + (u->off - rd->base);
	switch (u->kind) {
	case QCOW2_DATA:
		return qcow2_read_data(img, dst, u, e);
	case QCOW2_ZERO:
		memset(dst, 0, (size_t)u->len);
		return 0;
	case QCOW2_UNALLOC:
		if (!img->backing || u->off >= img->backing->size) {
			memset(dst, 0, (size_t)u->len);
			return 0;
		}
		uint64_t n = VDK_MIN(u->len, img->backing->size - u->off);
		memset(dst + n, 0, (size_t)(u->len - n));
		return vdk_image_pread(img->backing, dst, (size_t)n, u->off, e);
	case QCOW2_COMPRESSED:
		break;
	}
	if (!rd->cbuf) {
		rd->cbuf = malloc((size_t)s->cluster_size * 3);
		if (!rd->cbuf)
			return -ENOMEM;
		rd->ibuf = rd->cbuf + s->cluster_size;
	}
	if (rd->cached != u->cstart) {
		int r = qcow2_inflate(img, u->host, u->cstart, rd->cbuf, rd->ibuf, e);
		if (r)
			return r;
		rd->cached = u->cstart;
	}
	memcpy(dst, rd->cbuf + (u->off - u->cstart), (size_t)u->len);
	return 0;
}

int qcow2_pread(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	if (!vdk_range_ok(off, len, img->size))
		return vdk_bad(e, img->src->name, FMT, off, "read past the virtual size");
	struct qcow2_rd rd = {.buf = buf, .base = off, .cached = UINT64_MAX};
	int r = qcow2_walk(img, off, off + len, qcow2_read_fn, &rd, e);
	free(rd.cbuf);
	return r;
}
