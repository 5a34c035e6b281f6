/* qcow2 writer. Layout (qemu-img's): header cluster, refcount table
 * (sized up front for the largest image the disk can make), the first
 * refcount block, L1 table, then L2 tables and data clusters appended as
 * the pipeline delivers them (in order). Further refcount blocks are
 * taken inline, just before the clusters they first describe, as qemu
 * allocates them: nothing follows the last data cluster, so readers that
 * size an image by its structures (7-Zip) see no trailing bytes. Refcounts are exact (qemu-img
 * check: no errors, no leaks): every host cluster below the end is used once, except clusters
 * holding compressed data, which count one per compressed cluster touching them (qcow2.txt,
 * compressed descriptor). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "codec.h"
#include "qcow2.h"
#include "util.h"

#define FMT                 "qcow2"
#define QCOW2_DEFLATE_LEVEL 1
#define QCOW2_ZSTD_LEVEL    3
#define QCOW2_RC_MAX        65535u

/* encode() output: one 4-byte record per cluster, then its payload. */
enum { QCOW2_REC_ZERO = 0, QCOW2_REC_COMP = 1, QCOW2_REC_RAW = 2 };

static int qcow2w_err(struct vdk_writer *w, struct vdk_err *e, uint64_t off, const char *msg)
{
	return vdk_err_set(e, VDK_E_USAGE, EINVAL, w->sink->name, FMT, off, "%s", msg);
}

/* ---- options ---- */

static int qcow2w_opt_layout(struct vdk_writer *w, struct qcow2_wstate *s, struct vdk_err *e)
{
	static const char *const compat[] = {"1.1", "0.10", "v3", "v2", NULL};
	static const char *const prealloc[] = {"off", "metadata", "falloc", "full", NULL};
	static const char *const ctype[] = {"zlib", "zstd", NULL};
	int c = 0, p = 0, t = 0, r;
	uint64_t cs = 0, lvl = 0;
	if ((r = vdk_opts_get_enum(w->opts, "compat", compat, 0, &c, e)) ||
	    (r = vdk_opts_get_size(w->opts, "cluster_size", 65536, 512, 2u << 20, &cs, e)) ||
	    (r = vdk_opts_get_enum(w->opts, "preallocation", prealloc, 0, &p, e)) ||
	    (r = vdk_opts_get_enum(w->opts, "compression_type", ctype, 0, &t, e)) ||
	    (r = vdk_opts_get_bool(w->opts, "compress", false, &s->compress, e)) ||
	    (r = vdk_opts_get_size(w->opts, "compression_level", 0, 0, 19, &lvl, e)))
		return r;
	s->level = (int)lvl;
	if (!vdk_is_pow2(cs))
		return qcow2w_err(w, e, VDK_NO_OFFSET, "cluster_size must be a power of two");
	s->version = (c == 1 || c == 3) ? 2 : 3;
	s->cluster_size = (uint32_t)cs;
	s->cluster_bits = (uint32_t)__builtin_ctzll(cs);
	s->fixed = p >= 1;
	s->prealloc = p;
	s->comp_type = (uint32_t)t;
	if (s->version == 2 && t)
		return qcow2w_err(w, e, VDK_NO_OFFSET, "compression_type=zstd needs compat=1.1");
	if (s->compress && s->fixed)
		return qcow2w_err(w, e, VDK_NO_OFFSET, "compression with preallocation");
	return 0;
}

static int qcow2w_opt_data(struct vdk_writer *w, struct qcow2_wstate *s, struct vdk_err *e)
{
	const char *path = vdk_opts_get(w->opts, "data_file");
	int r = vdk_opts_get_bool(w->opts, "data_file_raw", false, &s->data_raw, e);
	s->data_fd = -1;
	if (r)
		return r;
	if (!path)
		return s->data_raw
		           ? qcow2w_err(w, e, VDK_NO_OFFSET, "data_file_raw needs data_file")
		           : 0;
	if (s->version == 2 || s->compress)
		return qcow2w_err(w, e, VDK_NO_OFFSET,
		                  "data_file needs compat=1.1 and no compression");
	s->data_mode = s->fixed = true;
	s->data_fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (s->data_fd < 0 || fstat(s->data_fd, &st))
		return vdk_ioerr(e, errno, path, "cannot open the data file");
	s->data_dev = st.st_dev;
	s->data_ino = st.st_ino;
	/* Stored as given, like qemu-img (which opens it as written). */
	if (!(s->data_ref = strdup(path)))
		return vdk_nomem(e, w->sink->name, FMT, "the data file name");
	if (strlen(s->data_ref) + 136 > s->cluster_size)
		return qcow2w_err(w, e, VDK_NO_OFFSET, "data_file name too long for the cluster");
	return 0;
}

/* ---- allocation ---- */

static int qcow2w_rc_inc(struct qcow2_wstate *s, uint64_t first, uint64_t last)
{
	if (!s->compress)
		return 0;
	if (last >= s->rc_len) {
		uint64_t n = VDK_MAX(last + 1, s->rc_len * 2 + 1024);
		uint16_t *p = realloc(s->rc, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		memset(p + s->rc_len, 0, (n - s->rc_len) * sizeof(*p));
		s->rc = p;
		s->rc_len = n;
	}
	for (uint64_t c = first; c <= last; c++)
		s->rc[c]++;
	return 0;
}

/* Before n clusters are taken at the cursor, take (at the cursor) every
 * refcount block their refcounts need; the blocks count themselves. */
static int qcow2w_rb_room(struct qcow2_wstate *s, uint64_t n)
{
	uint64_t cs = s->cluster_size, per = cs / 2;
	while (s->cursor / cs + n > s->nrb * per) {
		if (s->nrb == s->rb_cap) {
			uint64_t cap = s->rb_cap ? s->rb_cap * 2 : 16;
			if (s->nrb >= s->rt_clusters * cs / 8)
				return -EFBIG; /* the table was sized for the largest image */
			uint64_t *v = realloc(s->rb, cap * sizeof(*v));
			if (!v)
				return -ENOMEM;
			s->rb = v;
			s->rb_cap = cap;
		}
		s->rb[s->nrb++] = s->cursor;
		s->cursor += cs;
		int r = qcow2w_rc_inc(s, s->cursor / cs - 1, s->cursor / cs - 1);
		if (r)
			return r;
	}
	return 0;
}

/* n whole clusters at the end (the cursor is always cluster-aligned). */
static int qcow2w_alloc(struct qcow2_wstate *s, uint64_t n, uint64_t *host)
{
	int rr = qcow2w_rb_room(s, n);
	if (rr)
		return rr;
	*host = s->cursor;
	s->cursor = *host + n * s->cluster_size;
	return n ? qcow2w_rc_inc(s, *host >> s->cluster_bits, (s->cursor - 1) >> s->cluster_bits)
	         : 0;
}

/* Make sure L2 tables exist for guest clusters [g0, g1]. */
static int qcow2w_l2_ensure(struct qcow2_wstate *s, uint64_t g0, uint64_t g1)
{
	for (uint64_t i = g0 / s->l2_entries; !s->fixed && i <= g1 / s->l2_entries; i++) {
		if (s->l2[i])
			continue;
		/* Lazy: a scattered disk touches one page of most tables. */
		if (!(s->l2[i] = vdk_zalloc_lazy(s->l2_entries * sizeof(uint64_t))))
			return -ENOMEM;
		int r = qcow2w_alloc(s, 1, &s->l1[i]);
		if (r)
			return r;
	}
	return 0;
}

static uint64_t *qcow2w_entry(struct qcow2_wstate *s, uint64_t g)
{
	return &s->l2[g / s->l2_entries][g % s->l2_entries];
}

/* Host offset of guest cluster g, allocating it when needed (tables
 * already ensured). */
static int qcow2w_host(struct qcow2_wstate *s, uint64_t g, uint64_t *host)
{
	if (s->fixed) {
		*host = s->base + (g << s->cluster_bits);
		return 0;
	}
	uint64_t *ent = qcow2w_entry(s, g);
	if (*ent & QCOW2_OFLAG_COMPRESSED)
		return -EEXIST;
	if (*ent) {
		*host = *ent & QCOW2_OFFSET_MASK;
		return 0;
	}
	int r = qcow2w_alloc(s, 1, host);
	if (r == 0)
		*ent = *host | QCOW2_OFLAG_COPIED;
	return r;
}

/* ---- create ---- */

static int qcow2w_layout(struct vdk_writer *w, struct qcow2_wstate *s, struct vdk_err *e)
{
	uint64_t cs = s->cluster_size;
	s->l2_entries = s->cluster_size / 8;
	s->nclusters = w->size / cs + (w->size % cs != 0);
	s->l1_size = s->nclusters / s->l2_entries + (s->nclusters % s->l2_entries != 0);
	if (s->l1_size * 8 > QCOW2_MAX_L1_BYTES)
		return qcow2w_err(w, e, VDK_NO_OFFSET, "disk too large for this cluster_size");
	s->l1 = calloc(s->l1_size ? s->l1_size : 1, sizeof(uint64_t));
	s->l2 = calloc(s->l1_size ? s->l1_size : 1, sizeof(uint64_t *));
	if (!s->l1 || !s->l2)
		return vdk_nomem(e, w->sink->name, FMT, "the L1 table");
	/* The largest image: every L2 table and guest cluster allocated,
	 * compressed packing at most doubling the data clusters. */
	uint64_t l1c = vdk_round_up(s->l1_size * 8, cs) / cs, per = cs / 2, R = 0, T = 0;
	uint64_t most = 1 + l1c + s->l1_size + 2 * s->nclusters + 16;
	for (;;) {
		uint64_t r2 = (most + R + T + per - 1) / per, t2 = (r2 * 8 + cs - 1) / cs;
		if (r2 == R && t2 == T)
			break;
		R = r2;
		T = t2;
	}
	if (T * cs > QCOW2_MAX_RT_BYTES)
		return qcow2w_err(w, e, VDK_NO_OFFSET, "disk too large for its refcount table");
	s->rt_clusters = T;
	s->cursor = (1 + T) * cs;
	int r = qcow2w_rc_inc(s, 0, T);
	if (r || (r = qcow2w_alloc(s, l1c, &s->l1_off)) || !s->fixed)
		return r;
	/* Fixed layout: every L2 table, then the data area (preallocation) or
	 * the guest offsets themselves (external data file). */
	uint64_t first = 0;
	if ((r = qcow2w_alloc(s, s->l1_size, &first)))
		return r;
	for (uint64_t i = 0; i < s->l1_size; i++)
		s->l1[i] = first + i * cs;
	s->base = 0;
	return s->data_mode ? 0 : qcow2w_alloc(s, s->nclusters, &s->base);
}

/* backing_file: only for a new empty image (vdkit create): a conversion
 * writes every cluster of its source, and a hole over a backing file would
 * show the parent's data instead of the source's zeroes. The name goes in
 * the header cluster after the extensions (qcow2 spec, "Header"). */
static int qcow2w_opt_backing(struct vdk_writer *w, struct qcow2_wstate *s, struct vdk_err *e)
{
	const char *b = vdk_opts_get(w->opts, "backing_file");
	const char *f = vdk_opts_get(w->opts, "backing_fmt");
	if (!b)
		return f ? qcow2w_err(w, e, VDK_NO_OFFSET, "backing_fmt needs backing_file") : 0;
	if (w->source)
		return qcow2w_err(w, e, VDK_NO_OFFSET,
		                  "backing_file applies to a new empty image (vdkit create -b)");
	size_t nb = strlen(b), nf = f ? strlen(f) : 0;
	/* qemu refuses names over 1023 bytes; both must fit the header cluster. */
	if (!nb || nb > 1023 || nf > 64 ||
	    QCOW2_HDR_MAX + 16 + vdk_round_up(nf, 8) + nb + 512 > s->cluster_size)
		return qcow2w_err(w, e, VDK_NO_OFFSET, "backing file name too long (or empty)");
	if (s->data_mode)
		return qcow2w_err(w, e, VDK_NO_OFFSET, "backing_file with data_file");
	s->backing = strdup(b);
	s->backing_fmt = f ? strdup(f) : NULL;
	if (!s->backing || (f && !s->backing_fmt))
		return vdk_ioerr(e, ENOMEM, w->sink->name, "out of memory");
	return 0;
}

/* Compressors the pool cannot keep (and those left at close). */
static void qcow2w_cctx_drop(void *arg, void *c)
{
	if (((struct qcow2_wstate *)arg)->comp_type == QCOW2_COMP_ZSTD)
		ZSTD_freeCCtx(c);
	else
		vdk_deflater_free(c);
}

/* preallocation=falloc reserves the data area of the metadata layout,
 * full writes zeroes over it (qemu-img's meanings). */

static int qcow2w_prealloc_data(struct vdk_writer *w, struct qcow2_wstate *s, struct vdk_err *e)
{
	uint64_t len = s->nclusters << s->cluster_bits;
	if (s->prealloc < 2 || s->data_mode || !len || w->sink->fd < 0)
		return 0;
	if (fallocate(w->sink->fd, 0, (off_t)(w->sink->fd_off + s->base), (off_t)len) == 0)
		return 0;
	if (s->prealloc == 2)
		return vdk_err_set(e, VDK_E_IO, errno, w->sink->name, FMT, s->base,
		                   "preallocation=falloc failed: %s", strerror(errno));
	static const uint8_t z[65536];
	for (uint64_t o = 0; o < len;) {
		size_t n = (size_t)VDK_MIN(len - o, (uint64_t)sizeof(z));
		int r = vdk_sink_pwrite(w->sink, z, n, s->base + o, e);
		if (r)
			return r;
		o += n;
	}
	return 0;
}

int qcow2_create(struct vdk_writer *w, struct vdk_err *e)
{
	struct qcow2_wstate *s = w->state;
	int r;
	s->data_fd = -1;
	if ((r = qcow2w_opt_layout(w, s, e)) || (r = qcow2w_opt_data(w, s, e)) ||
	    (r = qcow2w_opt_backing(w, s, e)))
		return r;
	if (w->sink->flags & VDK_SINK_SEQUENTIAL)
		return vdk_unsup(e, w->sink->name, FMT, VDK_NO_OFFSET,
		                 "qcow2 output needs a seekable file");
	if (vdk_pool_init(&s->cctx, qcow2w_cctx_drop, s))
		return vdk_nomem(e, w->sink->name, FMT, "a lock");
	/* vdkit's own option (qemu-img has none): deflate 1..12, zstd 1..19.
	 * Deflate levels are convert/codec.h's: 1..3 ISA-L igzip 1..3 when
	 * built with ISA-L, 4..12 libdeflate's. Level 1 is within ~10% of
	 * qemu's zlib level 6 on disk data and several times faster. */
	if (!s->level)
		s->level = s->comp_type == QCOW2_COMP_ZSTD ? QCOW2_ZSTD_LEVEL : QCOW2_DEFLATE_LEVEL;
	else if (s->comp_type == QCOW2_COMP_ZLIB && s->level > 12)
		return qcow2w_err(w, e, VDK_NO_OFFSET, "compression_level for zlib is 1..12");
	w->granularity = s->cluster_size;
	if (s->compress)
		w->caps &= ~(unsigned)VDK_WCAP_CLONE;
	else
		w->caps &= ~(unsigned)VDK_WCAP_ENCODE; /* plain clusters: write() */
	/* Zero ranges must be checked against the data file, and a
	 * preallocated data area reads as zero only on a zeroed sink. */
	if (s->data_mode || (s->fixed && !(w->sink->flags & VDK_SINK_ZEROED)))
		w->caps &= ~(unsigned)VDK_WCAP_ZEROED;
	r = qcow2w_layout(w, s, e);
	return r ? r : qcow2w_prealloc_data(w, s, e);
}

/* ---- data-file mode: the data is already there, verify instead ---- */

static int qcow2w_data_cmp(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                           struct vdk_err *e)
{
	struct qcow2_wstate *s = w->state;
	uint8_t tmp[65536];
	for (size_t done = 0; done < len;) {
		size_t n = VDK_MIN(len - done, sizeof(tmp));
		ssize_t got = pread(s->data_fd, tmp, n, (off_t)(off + done));
		if (got < 0)
			return vdk_ioerr(e, errno, s->data_ref, "cannot read the data file");
		memset(tmp + got, 0, n - (size_t)got);
		bool same =
		    buf ? !memcmp(tmp, (const uint8_t *)buf + done, n) : vdk_is_zero(tmp, n);
		if (!same)
			return qcow2w_err(w, e, off + done,
			                  "data_file differs from the source here: the data file "
			                  "must already hold the disk content (nothing is copied)");
		done += n;
	}
	return 0;
}

/* ---- write paths (called in order from one thread) ---- */

static int qcow2w_pwrite_run(struct vdk_writer *w, const uint8_t *buf, size_t len, uint64_t off,
                             struct vdk_err *e)
{
	struct qcow2_wstate *s = w->state;
	uint64_t g0 = off >> s->cluster_bits, g1 = (off + len - 1) >> s->cluster_bits;
	int r = qcow2w_l2_ensure(s, g0, g1);
	uint64_t run_host = 0, run_off = off;
	size_t run_len = 0;
	for (uint64_t g = g0; r == 0 && g <= g1; g++) {
		uint64_t cs0 = g << s->cluster_bits, host;
		uint64_t a = VDK_MAX(cs0, off), b = VDK_MIN(cs0 + s->cluster_size, off + len);
		if ((r = qcow2w_host(s, g, &host)))
			break;
		host += a - cs0;
		if (run_len && run_host + run_len != host) {
			r = vdk_sink_pwrite(w->sink, buf + (run_off - off), run_len, run_host, e);
			run_len = 0;
		}
		if (!run_len) {
			run_host = host;
			run_off = a;
		}
		run_len += (size_t)(b - a);
	}
	if (r == -EEXIST)
		return qcow2w_err(w, e, off, "rewrite of a compressed cluster");
	if (r == 0 && run_len)
		r = vdk_sink_pwrite(w->sink, buf + (run_off - off), run_len, run_host, e);
	return r;
}

int qcow2_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	struct qcow2_wstate *s = w->state;
	if (!len)
		return 0;
	if (!vdk_range_ok(off, len, w->size))
		return qcow2w_err(w, e, off, "write past the virtual size");
	if (s->data_mode)
		return qcow2w_data_cmp(w, buf, len, off, e);
	return qcow2w_pwrite_run(w, buf, len, off, e);
}

int qcow2_write_zeroes(struct vdk_writer *w, uint64_t off, uint64_t len, struct vdk_err *e)
{
	struct qcow2_wstate *s = w->state;
	if (!vdk_range_ok(off, len, w->size))
		return qcow2w_err(w, e, off, "zeroes past the virtual size");
	if (s->data_mode)
		return qcow2w_data_cmp(w, NULL, (size_t)len, off, e);
	if (s->fixed)
		return vdk_sink_zero(w->sink, s->base + off, len, e);
	/* Unallocated clusters already read as zero (no backing file);
	 * allocated ones are zeroed in place. */
	for (uint64_t g = off >> s->cluster_bits; len && g <= (off + len - 1) >> s->cluster_bits;
	     g++) {
		uint64_t cs0 = g << s->cluster_bits;
		uint64_t a = VDK_MAX(cs0, off), b = VDK_MIN(cs0 + s->cluster_size, off + len);
		uint64_t *l2 = s->l2[g / s->l2_entries];
		uint64_t ent = l2 ? l2[g % s->l2_entries] : 0;
		if (ent & QCOW2_OFLAG_COMPRESSED)
			return qcow2w_err(w, e, a, "zeroing a compressed cluster");
		int r =
		    ent ? vdk_sink_zero(w->sink, (ent & QCOW2_OFFSET_MASK) + (a - cs0), b - a, e)
		        : 0;
		if (r)
			return r;
	}
	return 0;
}

static bool qcow2w_same_file(const struct qcow2_wstate *s, int fd)
{
	struct stat st;
	return fd >= 0 && !fstat(fd, &st) && (uint64_t)st.st_dev == s->data_dev &&
	       (uint64_t)st.st_ino == s->data_ino;
}

/* Payload goes to one fresh cluster-aligned run so the blocks can be
 * shared with the source; nothing changes when the sink cannot clone. */
int qcow2_clone(struct vdk_writer *w, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
                enum vdk_clone_mode mode, struct vdk_err *e)
{
	struct qcow2_wstate *s = w->state;
	if (!len || !vdk_range_ok(off, len, w->size) || off % s->cluster_size)
		return -EOPNOTSUPP;
	if (s->data_mode)
		return qcow2w_same_file(s, src_fd) && src_off == off ? VDK_CLONED : -EOPNOTSUPP;
	if (s->fixed)
		return vdk_sink_clone(w->sink, s->base + off, len, src_fd, src_off, mode, e);
	uint64_t g0 = off >> s->cluster_bits, g1 = (off + len - 1) >> s->cluster_bits;
	int r = qcow2w_l2_ensure(s, g0, g1);
	if (r)
		return r;
	for (uint64_t g = g0; g <= g1; g++)
		if (*qcow2w_entry(s, g))
			return -EOPNOTSUPP;
	if ((r = qcow2w_rb_room(s, g1 - g0 + 1)))
		return r;
	uint64_t host = s->cursor;
	int how = vdk_sink_clone(w->sink, host, len, src_fd, src_off, mode, e);
	if (how < 0)
		return how;
	uint64_t h;
	if ((r = qcow2w_alloc(s, g1 - g0 + 1, &h)))
		return r;
	for (uint64_t g = g0; g <= g1; g++)
		*qcow2w_entry(s, g) = (h + ((g - g0) << s->cluster_bits)) | QCOW2_OFLAG_COPIED;
	return how;
}

/* ---- compression: encode on worker threads, write_encoded in order ---- */

static void *qcow2w_cctx_get(struct qcow2_wstate *s)
{
	void *c = vdk_pool_take(&s->cctx);
	if (c)
		return c;
	if (s->comp_type == QCOW2_COMP_ZSTD)
		return ZSTD_createCCtx();
	return vdk_deflater_new(VDK_WRAP_RAW, s->level);
}

/* Compress one whole cluster into out (room for cs - 1 bytes: qemu only
 * stores a compressed cluster when it is smaller than a cluster). */
static size_t qcow2w_squeeze(struct qcow2_wstate *s, void *c, const uint8_t *in, uint8_t *out)
{
	size_t cs = s->cluster_size;
	if (s->comp_type == QCOW2_COMP_ZSTD) {
		size_t n = ZSTD_compressCCtx(c, out, cs - 1, in, cs, s->level);
		return ZSTD_isError(n) ? 0 : n;
	}
	size_t z = 0;
	return vdk_deflate(c, in, cs, out, cs - 1, &z) ? 0 : z;
}

static int qcow2w_encode_one(struct qcow2_wstate *s, void *c, const uint8_t *in, size_t n,
                             uint8_t *pad, struct vdk_buf *out)
{
	size_t cs = s->cluster_size;
	uint8_t *rec = out->data + out->len;
	if (vdk_is_zero(in, n)) {
		vdk_put_le32(rec, QCOW2_REC_ZERO << 28);
		out->len += 4;
		return 0;
	}
	if (n < cs) { /* the tail of the disk: compress a zero-padded cluster */
		memcpy(pad, in, n);
		memset(pad + n, 0, cs - n);
		in = pad;
	}
	size_t z = s->compress ? qcow2w_squeeze(s, c, in, rec + 4) : 0;
	if (z) {
		vdk_put_le32(rec, (QCOW2_REC_COMP << 28) | (uint32_t)z);
	} else {
		memcpy(rec + 4, in, n);
		vdk_put_le32(rec, (QCOW2_REC_RAW << 28) | (uint32_t)n);
		z = n;
	}
	out->len += 4 + z;
	return 0;
}

int qcow2_encode(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                 struct vdk_buf *out, struct vdk_err *e)
{
	(void)off;
	(void)e;
	struct qcow2_wstate *s = w->state;
	size_t cs = s->cluster_size, nclus = len / cs + (len % cs != 0);
	out->len = 0;
	if (vdk_buf_reserve(out, nclus * (cs + 4)))
		return vdk_nomem(e, w->sink->name, FMT, "compressed clusters");
	void *c = s->compress ? qcow2w_cctx_get(s) : NULL;
	uint8_t *pad = len % cs ? malloc(cs) : NULL;
	if ((s->compress && !c) || (len % cs && !pad)) {
		free(pad);
		if (c)
			vdk_pool_give(&s->cctx, c);
		return vdk_nomem(e, w->sink->name, FMT, "a compressor");
	}
	const uint8_t *p = buf;
	for (size_t i = 0; i < nclus; i++)
		qcow2w_encode_one(s, c, p + i * cs, VDK_MIN(cs, len - i * cs), pad, out);
	free(pad);
	if (c)
		vdk_pool_give(&s->cctx, c);
	return 0;
}

/* Where n compressed bytes go. Like qemu, compressed clusters are packed
 * into a partly filled host cluster of their own, which survives the
 * cluster-aligned allocations in between (an uncompressible cluster, an L2
 * table); they spill into the next host cluster only when that one is the
 * next free cluster. A host cluster's refcount is capped by its 16-bit
 * field: start a fresh one before it would overflow. */
static int qcow2w_cplace(struct qcow2_wstate *s, size_t n, uint64_t *where)
{
	/* Any refcount block the spill needs comes first (it may end the
	 * partly filled cluster's run: then a fresh cluster is taken). */
	int r = qcow2w_rb_room(s, n / s->cluster_size + 2);
	if (r)
		return r;
	uint64_t cs = s->cluster_size, c = s->ccur, end = vdk_round_up(c, cs);
	bool partial = c % cs && !(c / cs < s->rc_len && s->rc[c / cs] >= QCOW2_RC_MAX - 1);
	uint64_t host;
	if (partial && c + n <= end) {
		host = c;
	} else if (partial && end == s->cursor) {
		host = c;
		s->cursor = vdk_round_up(c + n, cs);
	} else {
		host = s->cursor;
		s->cursor = vdk_round_up(host + n, cs);
	}
	s->ccur = host + n;
	*where = host;
	return 0;
}

static int qcow2w_put_compressed(struct vdk_writer *w, uint64_t g, const uint8_t *p, size_t n,
                                 struct vdk_err *e)
{
	struct qcow2_wstate *s = w->state;
	uint64_t host = 0;
	int rp = qcow2w_cplace(s, n, &host);
	if (rp)
		return rp;
	uint32_t shift = 62 - (s->cluster_bits - 8);
	if ((host + n) >> shift)
		return qcow2w_err(w, e, g << s->cluster_bits, "image too large for compression");
	int r = vdk_sink_pwrite(w->sink, p, n, host, e);
	if (r == 0)
		r = qcow2w_rc_inc(s, host >> s->cluster_bits, (host + n - 1) >> s->cluster_bits);
	if (r)
		return r;
	uint64_t extra = ((host + n - 1) >> 9) - (host >> 9);
	*qcow2w_entry(s, g) = QCOW2_OFLAG_COMPRESSED | (extra << shift) | host;
	return 0;
}

int qcow2_write_encoded(struct vdk_writer *w, const struct vdk_buf *enc, uint64_t off, uint64_t len,
                        struct vdk_err *e)
{
	struct qcow2_wstate *s = w->state;
	if (!len || !vdk_range_ok(off, len, w->size) || off % s->cluster_size)
		return qcow2w_err(w, e, off, "encoded run not cluster-aligned");
	uint64_t g0 = off >> s->cluster_bits, g1 = (off + len - 1) >> s->cluster_bits;
	int r = qcow2w_l2_ensure(s, g0, g1);
	size_t pos = 0;
	for (uint64_t g = g0; r == 0 && g <= g1; g++) {
		if (pos + 4 > enc->len)
			return qcow2w_err(w, e, g << s->cluster_bits, "short encoded buffer");
		uint32_t rec = vdk_le32(enc->data + pos);
		size_t n = rec & 0x0fffffffu;
		const uint8_t *p = enc->data + pos + 4;
		pos += 4 + ((rec >> 28) == QCOW2_REC_ZERO ? 0 : n);
		if (pos > enc->len)
			return qcow2w_err(w, e, g << s->cluster_bits, "short encoded buffer");
		if ((rec >> 28) == QCOW2_REC_COMP)
			r = qcow2w_put_compressed(w, g, p, n, e);
		else if ((rec >> 28) == QCOW2_REC_RAW)
			r = qcow2_write(w, p, n, g << s->cluster_bits, e);
		else if (s->fixed || s->data_mode || *qcow2w_entry(s, g))
			r = qcow2_write_zeroes(
			    w, g << s->cluster_bits,
			    VDK_MIN(s->cluster_size, w->size - (g << s->cluster_bits)), e);
	}
	return r;
}

/* ---- finalize: L2 tables, L1, refcounts, header ---- */

static int qcow2w_put_table(struct vdk_writer *w, const uint64_t *v, uint64_t n, uint64_t at,
                            struct vdk_err *e)
{
	struct qcow2_wstate *s = w->state;
	uint8_t *b = calloc(1, vdk_round_up(n * 8, s->cluster_size) + 8);
	if (!b)
		return vdk_nomem(e, w->sink->name, FMT, "a table buffer");
	for (uint64_t i = 0; i < n; i++)
		vdk_put_be64(b + 8 * i, v[i]);
	int r = vdk_sink_pwrite(w->sink, b, vdk_round_up(n * 8, s->cluster_size), at, e);
	free(b);
	return r;
}

static int qcow2w_write_l2(struct vdk_writer *w, struct vdk_err *e)
{
	struct qcow2_wstate *s = w->state;
	uint64_t *tmp = s->fixed ? malloc((size_t)s->l2_entries * 8) : NULL;
	if (s->fixed && !tmp)
		return vdk_nomem(e, w->sink->name, FMT, "an L2 table");
	int r = 0;
	for (uint64_t i = 0; r == 0 && i < s->l1_size; i++) {
		const uint64_t *v = s->l2[i];
		if (s->fixed) {
			for (uint64_t j = 0; j < s->l2_entries; j++) {
				uint64_t g = i * s->l2_entries + j;
				tmp[j] = g < s->nclusters ? (s->base + (g << s->cluster_bits)) |
				                                QCOW2_OFLAG_COPIED
				                          : 0;
			}
			v = tmp;
		}
		if (v)
			r = qcow2w_put_table(w, v, s->l2_entries, s->l1[i], e);
	}
	free(tmp);
	for (uint64_t i = 0; r == 0 && i < s->l1_size; i++)
		if (s->l1[i])
			s->l1[i] |= QCOW2_OFLAG_COPIED;
	return r ? r : qcow2w_put_table(w, s->l1, s->l1_size, s->l1_off, e);
}

/* Refcount blocks where rb_room put them; the table at cluster 1. */
static int qcow2w_write_refcounts(struct vdk_writer *w, uint64_t *rt_off, uint64_t *rt_clusters,
                                  struct vdk_err *e)
{
	struct qcow2_wstate *s = w->state;
	uint64_t cs = s->cluster_size, per = cs / 2, n = vdk_round_up(s->cursor, cs) / cs;
	uint64_t T = s->rt_clusters;
	if (n > s->nrb * per)
		return qcow2w_err(w, e, VDK_NO_OFFSET, "refcount blocks do not cover the image");
	uint64_t *rt = calloc(T * cs / 8, 8);
	uint8_t *blk = malloc(cs);
	int r = (rt && blk) ? 0 : -ENOMEM;
	for (uint64_t b = 0; r == 0 && b < s->nrb; b++) {
		rt[b] = s->rb[b];
		for (uint64_t i = 0; i < per; i++) {
			uint64_t c = b * per + i;
			uint16_t v = c >= n ? 0 : s->compress ? s->rc[c] : 1;
			vdk_put_be16(blk + 2 * i, v);
		}
		r = vdk_sink_pwrite(w->sink, blk, cs, rt[b], e);
	}
	if (r == 0)
		r = qcow2w_put_table(w, rt, T * cs / 8, cs, e);
	free(rt);
	free(blk);
	*rt_off = cs;
	*rt_clusters = T;
	return r ? r : vdk_sink_truncate(w->sink, n * cs, e);
}

/* The backing_fmt extension at p, the end marker, then the name. Version
 * 2 has header extensions too, right after its 72-byte header (qemu-img
 * create -o compat=0.10 -F writes this one). */
static size_t qcow2w_backing_name(const struct qcow2_wstate *s, uint8_t *h, size_t p)
{
	if (s->backing && s->backing_fmt) {
		size_t n = strlen(s->backing_fmt);
		vdk_put_be32(h + p, QCOW2_EXT_BACKING_FMT);
		vdk_put_be32(h + p + 4, (uint32_t)n);
		memcpy(h + p + 8, s->backing_fmt, n);
		p += 8 + vdk_round_up(n, 8);
	}
	p += 8; /* end-of-extensions marker (zeroed) */
	if (!s->backing)
		return p;
	size_t n = strlen(s->backing);
	vdk_put_be64(h + 8, p);
	vdk_put_be32(h + 16, (uint32_t)n);
	memcpy(h + p, s->backing, n);
	return p + n;
}

static size_t qcow2w_header(const struct vdk_writer *w, uint8_t *h, uint64_t rt_off,
                            uint32_t rt_clusters)
{
	const struct qcow2_wstate *s = w->state;
	vdk_put_be32(h, QCOW2_MAGIC);
	vdk_put_be32(h + 4, s->version);
	vdk_put_be32(h + 20, s->cluster_bits);
	vdk_put_be64(h + 24, w->size);
	vdk_put_be32(h + 36, (uint32_t)s->l1_size);
	vdk_put_be64(h + 40, s->l1_off);
	vdk_put_be64(h + 48, rt_off);
	vdk_put_be32(h + 56, rt_clusters);
	if (s->version == 2)
		return qcow2w_backing_name(s, h, QCOW2_HDR_V2_LEN);
	uint64_t inc = (s->data_mode ? QCOW2_INCOMPAT_DATA_FILE : 0) |
	               (s->comp_type ? QCOW2_INCOMPAT_COMPRESSION : 0);
	vdk_put_be64(h + 72, inc);
	vdk_put_be64(h + 88, s->data_raw ? QCOW2_AUTOCLEAR_DATA_RAW : 0);
	vdk_put_be32(h + 96, 4);
	vdk_put_be32(h + 100, QCOW2_HDR_MAX);
	h[104] = (uint8_t)s->comp_type;
	size_t p = QCOW2_HDR_MAX;
	if (s->data_ref) {
		size_t n = strlen(s->data_ref);
		vdk_put_be32(h + p, QCOW2_EXT_DATA_FILE);
		vdk_put_be32(h + p + 4, (uint32_t)n);
		memcpy(h + p + 8, s->data_ref, n);
		p += 8 + vdk_round_up(n, 8);
	}
	return qcow2w_backing_name(s, h, p);
}

int qcow2_finalize(struct vdk_writer *w, struct vdk_err *e)
{
	struct qcow2_wstate *s = w->state;
	uint64_t rt_off = 0, rt_clusters = 0;
	int r = qcow2w_write_l2(w, e);
	if (r == 0)
		r = qcow2w_write_refcounts(w, &rt_off, &rt_clusters, e);
	if (r)
		return r;
	uint8_t *h = calloc(1, s->cluster_size);
	if (!h)
		return vdk_nomem(e, w->sink->name, FMT, "the header");
	size_t n = qcow2w_header(w, h, rt_off, (uint32_t)rt_clusters);
	r = vdk_sink_pwrite(w->sink, h, n, 0, e);
	free(h);
	return r;
}

void qcow2_wclose(struct vdk_writer *w)
{
	struct qcow2_wstate *s = w->state;
	if (!s)
		return;
	for (uint64_t i = 0; s->l2 && i < s->l1_size; i++)
		vdk_free_lazy(s->l2[i], s->l2_entries * sizeof(uint64_t));
	free(s->l2);
	free(s->l1);
	free(s->rc);
	free(s->rb);
	free(s->data_ref);
	free(s->backing);
	free(s->backing_fmt);
	vdk_pool_fini(&s->cctx);
	if (s->data_mode && s->data_fd >= 0)
		close(s->data_fd);
}
