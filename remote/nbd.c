/* NBD exports as sources: size from the handshake, reads through libnbd's
 * asynchronous API on one connection (several requests in flight from the
 * pipeline's worker threads) or, when the server advertises multi-conn, on
 * a few connections used in turn; block status (base:allocation) answers
 * vdk_src_next_data so holes and zeroes never cross the network. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd_conn.h"
#include "transport.h"
#include "util.h"

#define NBD_CONNS 4
/* libnbd refuses larger requests; servers may advertise less. */
#define NBD_REQ_MAX (32u << 20)
/* One block status request asks about this much (the protocol's count is
 * 32-bit, and not every server takes 4 GiB). */
#define NBD_BS_WINDOW ((uint64_t)2 << 30)
/* Extents kept from one reply: bounds memory whatever the server says. */
#define NBD_BS_RUNS 65536

struct nbd_run {
	uint64_t end; /* source offset where the run ends */
	bool zero;
};

struct nbd_bs {
	uint64_t off, limit; /* asked from off up to limit */
	uint64_t pos;        /* end of what was collected */
	struct nbd_run *v;
	size_t n;
};

struct nbd_src {
	struct vdk_nbd_conn conn[NBD_CONNS];
	unsigned nconn;
	atomic_uint next;
	uint32_t min_block, max_req;
	bool can_bs;
	/* The last block status reply, [bs_off, bs_end); guarded by bs_mu. */
	pthread_mutex_t bs_mu;
	uint64_t bs_off, bs_end;
	struct nbd_run *bs;
	size_t bs_n;
};

/* Reads ------------------------------------------------------------- */

/* Issue [off, off+len) on c in pieces and wait for all of them. */
static int nbd_read_on(struct nbd_src *n, struct vdk_nbd_conn *c, uint8_t *buf, size_t len,
                       uint64_t off, struct vdk_err *e)
{
	struct vdk_nbd_req *q = vdk_nbd_req_new();
	if (!q)
		return vdk_ioerr(e, ENOMEM, c->uri, "out of memory");
	char what[64];
	snprintf(what, sizeof(what), "read of %zu bytes", len);
	int r = 0;
	pthread_mutex_lock(&c->mu);
	if (c->dead)
		r = vdk_nbd_dead_error(c, off, e);
	for (size_t done = 0; !r && done < len;) {
		size_t piece = VDK_MIN(len - done, (size_t)n->max_req);
		if (nbd_aio_pread(c->h, buf + done, piece, off + done, vdk_nbd_req_cb(q), 0) ==
		    -1) {
			vdk_nbd_req_unissue(q);
			r = vdk_nbd_issue_error(c, off + done, what, e);
		}
		done += piece;
	}
	vdk_nbd_conn_kick(c);
	/* Even after a refused piece: the issued ones write into buf. */
	int w = vdk_nbd_conn_wait(c, q, off, what, e);
	pthread_mutex_unlock(&c->mu);
	vdk_nbd_req_put(q);
	return r ? r : w;
}

/* A server with a minimum block size: read the aligned cover and copy. */
static int nbd_read_bounce(struct vdk_src *s, struct vdk_nbd_conn *c, void *buf, size_t len,
                           uint64_t off, struct vdk_err *e)
{
	struct nbd_src *n = s->priv;
	uint64_t a = off / n->min_block * n->min_block;
	uint64_t b = VDK_MIN(vdk_round_up(off + len, n->min_block), s->size);
	uint8_t *tmp = malloc((size_t)(b - a));
	if (!tmp)
		return vdk_ioerr(e, ENOMEM, s->name, "out of memory");
	int r = nbd_read_on(n, c, tmp, (size_t)(b - a), a, e);
	if (!r)
		memcpy(buf, tmp + (off - a), len);
	free(tmp);
	return r;
}

static int nbd_src_pread(struct vdk_src *s, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	struct nbd_src *n = s->priv;
	struct vdk_nbd_conn *c = &n->conn[atomic_fetch_add(&n->next, 1) % n->nconn];
	if (n->min_block > 1 && ((off % n->min_block) || (len % n->min_block)))
		return nbd_read_bounce(s, c, buf, len, off, e);
	return nbd_read_on(n, c, buf, len, off, e);
}

/* Block status -------------------------------------------------------- */

static bool nbd_bs_add(struct nbd_bs *b, uint64_t len, bool zero)
{
	if (b->n && b->v[b->n - 1].zero == zero) {
		b->v[b->n - 1].end += len;
	} else {
		if (b->n == NBD_BS_RUNS)
			return false;
		b->v[b->n++] = (struct nbd_run){.end = b->pos + len, .zero = zero};
	}
	b->pos += len;
	return true;
}

/* NBD_STATE_ZERO reads as zeroes whether allocated or not: skip it too.
 * A HOLE without ZERO is not promised to read as zeroes, so it is data. */
static int nbd_bs_cb(void *ud, const char *ctx, uint64_t off, uint32_t *ent, size_t nent,
                     int *error)
{
	(void)error;
	struct vdk_nbd_req *q = ud;
	struct nbd_bs *b = q->ext;
	if (strcmp(ctx, LIBNBD_CONTEXT_BASE_ALLOCATION) || off != b->off || b->pos != b->off)
		return 0; /* another context, or a repeated reply: ignore it */
	for (size_t i = 0; i + 1 < nent && b->pos < b->limit; i += 2) {
		uint64_t len = VDK_MIN((uint64_t)ent[i], b->limit - b->pos);
		if (len == 0 || !nbd_bs_add(b, len, ent[i + 1] & LIBNBD_STATE_ZERO))
			break;
	}
	return 0;
}

static void nbd_bs_free(void *ud)
{
	vdk_nbd_req_put(ud);
}

/* Make reply b the cached one (bs_mu held). */
static int nbd_bs_keep(struct vdk_src *s, const struct nbd_bs *b, struct vdk_err *e)
{
	struct nbd_src *n = s->priv;
	if (b->n == 0)
		return vdk_err_set(e, VDK_E_IO, EPROTO, s->name, "nbd", b->off,
		                   "block status: the server described nothing");
	struct nbd_run *v = realloc(n->bs, b->n * sizeof(*v));
	if (!v)
		return vdk_ioerr(e, ENOMEM, s->name, "out of memory");
	memcpy(v, b->v, b->n * sizeof(*v));
	n->bs = v;
	n->bs_n = b->n;
	n->bs_off = b->off;
	n->bs_end = b->pos;
	return 0;
}

/* Ask the server about [off, ...) and keep its answer (bs_mu held). */
static int nbd_bs_fetch(struct vdk_src *s, uint64_t off, struct vdk_err *e)
{
	struct nbd_src *n = s->priv;
	struct vdk_nbd_conn *c = &n->conn[0];
	struct vdk_nbd_req *q = vdk_nbd_req_new();
	struct nbd_bs *b = calloc(1, sizeof(*b) + NBD_BS_RUNS * sizeof(struct nbd_run));
	if (!q || !b) {
		free(b);
		vdk_nbd_req_put(q);
		return vdk_ioerr(e, ENOMEM, s->name, "out of memory");
	}
	b->v = (struct nbd_run *)(b + 1);
	b->off = b->pos = off;
	b->limit = off + VDK_MIN(NBD_BS_WINDOW, s->size - off);
	q->ext = b;
	pthread_mutex_lock(&c->mu);
	int r = c->dead ? vdk_nbd_dead_error(c, off, e) : 0;
	if (!r) {
		atomic_fetch_add(&q->refs, 1);
		nbd_extent_callback ecb = {
		    .callback = nbd_bs_cb, .user_data = q, .free = nbd_bs_free};
		if (nbd_aio_block_status(c->h, b->limit - off, off, ecb, vdk_nbd_req_cb(q), 0) ==
		    -1) {
			vdk_nbd_req_unissue(q);
			r = vdk_nbd_issue_error(c, off, "block status", e);
		}
		vdk_nbd_conn_kick(c);
		int w = vdk_nbd_conn_wait(c, q, off, "block status", e);
		r = r ? r : w;
	}
	if (!r)
		r = nbd_bs_keep(s, b, e);
	pthread_mutex_unlock(&c->mu);
	vdk_nbd_req_put(q);
	return r;
}

/* Index of the cached run holding off (bs_off <= off < bs_end). */
static size_t nbd_bs_find(const struct nbd_src *n, uint64_t off)
{
	size_t lo = 0, hi = n->bs_n - 1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (n->bs[mid].end <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* From off, the end of the run of the given kind inside the cache, or of
 * the cache itself. */
static uint64_t nbd_bs_skip(const struct nbd_src *n, uint64_t off, bool zero)
{
	for (size_t i = nbd_bs_find(n, off); i < n->bs_n; i++)
		if (n->bs[i].zero != zero)
			return VDK_MAX(off, i ? n->bs[i - 1].end : n->bs_off);
	return n->bs_end;
}

static int nbd_bs_locked(const struct vdk_src *s, uint64_t off, uint64_t end, uint64_t *data,
                         uint64_t *hole, struct vdk_err *e)
{
	struct nbd_src *n = s->priv;
	uint64_t d = off;
	for (;;) {
		if (d >= end) {
			*data = *hole = end;
			return 0;
		}
		if (!n->bs_n || d < n->bs_off || d >= n->bs_end) {
			int r = nbd_bs_fetch((struct vdk_src *)s, d, e);
			if (r)
				return r;
		}
		uint64_t z = nbd_bs_skip(n, d, true);
		if (z < n->bs_end || z >= end) {
			d = VDK_MIN(z, end);
			break;
		}
		d = z; /* zero up to the end of this reply: ask further */
	}
	*data = d;
	*hole = d < end ? VDK_MIN(nbd_bs_skip(n, d, false), end) : end;
	return 0;
}

static int nbd_src_block_status(const struct vdk_src *s, uint64_t off, uint64_t end, uint64_t *data,
                                uint64_t *hole, struct vdk_err *e)
{
	struct nbd_src *n = s->priv;
	if (!n->can_bs) {
		*data = off;
		*hole = end;
		return 0;
	}
	pthread_mutex_lock(&n->bs_mu);
	int r = nbd_bs_locked(s, off, end, data, hole, e);
	pthread_mutex_unlock(&n->bs_mu);
	return r;
}

/* The source ---------------------------------------------------------- */

static int nbd_src_open_related(struct vdk_src *s, const char *name, const struct vdk_access *acc,
                                struct vdk_src **out, struct vdk_err *e)
{
	(void)acc;
	(void)out;
	return vdk_err_set(e, VDK_E_INPUT, EPERM, NULL, NULL, VDK_NO_OFFSET,
	                   "cannot open related file '%s' of %s: remote images have no folder",
	                   name, s->name);
}

static void nbd_src_close(struct vdk_src *s)
{
	struct nbd_src *n = s->priv;
	if (!n)
		return;
	for (unsigned i = 0; i < NBD_CONNS; i++)
		vdk_nbd_conn_close(&n->conn[i]);
	pthread_mutex_destroy(&n->bs_mu);
	free(n->bs);
	free(n);
}

static const struct vdk_src_ops nbd_src_ops = {
    .pread = nbd_src_pread,
    .open_related = nbd_src_open_related,
    .close = nbd_src_close,
    .block_status = nbd_src_block_status,
};

/* What the handshake told: size, block sizes, contexts, multi-conn. */
static int nbd_src_setup(struct vdk_src *s, struct vdk_err *e)
{
	struct nbd_src *n = s->priv;
	struct nbd_handle *h = n->conn[0].h;
	int64_t size = nbd_get_size(h);
	if (size < 0)
		return vdk_nbd_issue_error(&n->conn[0], VDK_NO_OFFSET, "reading the export size",
		                           e);
	s->size = (uint64_t)size;
	s->flags |= VDK_SRC_REMOTE;
	int64_t mn = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
	int64_t mx = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
	/* The protocol caps the minimum at 64 KiB. */
	n->min_block = mn > 1 && mn <= 65536 ? (uint32_t)mn : 1;
	n->max_req = mx >= 4096 && mx < NBD_REQ_MAX ? (uint32_t)mx : NBD_REQ_MAX;
	n->max_req -= n->max_req % n->min_block;
	n->can_bs = nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) > 0;
	n->nconn = 1;
	if (nbd_can_multi_conn(h) > 0) {
		/* More connections only help; one that fails is not needed. */
		struct vdk_err ignore = {0};
		while (n->nconn < NBD_CONNS &&
		       vdk_nbd_conn_open(&n->conn[n->nconn], s->name, false, &ignore) == 0)
			n->nconn++;
		if (n->nconn < NBD_CONNS)
			vdk_nbd_conn_close(&n->conn[n->nconn]);
	}
	return 0;
}

int vdk_nbd_src_open(const char *uri, struct vdk_src **out, struct vdk_err *e)
{
	struct vdk_src *s = vdk_src_alloc(&nbd_src_ops, uri);
	struct nbd_src *n = calloc(1, sizeof(*n));
	if (!s || !n) {
		free(n);
		vdk_src_close(s);
		return vdk_ioerr(e, ENOMEM, uri, "out of memory");
	}
	pthread_mutex_init(&n->bs_mu, NULL);
	s->priv = n;
	int r = vdk_nbd_conn_open(&n->conn[0], s->name, true, e);
	if (!r)
		r = nbd_src_setup(s, e);
	if (r) {
		vdk_src_close(s);
		return r;
	}
	*out = s;
	return 0;
}
