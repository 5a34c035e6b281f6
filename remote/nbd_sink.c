/* NBD exports as targets. Writes are copied and sent with nbd_aio_pwrite,
 * up to NBD_SINK_SLOTS (and NBD_SINK_BYTES) in flight, so the writer does
 * not wait a round trip per chunk; when the server offers multi-conn they
 * go round-robin over a few connections (a server runs a bounded number of
 * requests per connection: nbdkit 16); zero runs become WRITE_ZEROES (holes
 * allowed, no FAST_ZERO) when the server has it, else the core writes zero
 * buffers. TRIM is never used for zeroes: the protocol does not promise
 * that trimmed blocks read back as zero. Commit waits for everything and
 * sends FLUSH. The export is written in place: a failure leaves whatever
 * had been written, nothing is rolled back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd_conn.h"
#include "transport.h"
#include "util.h"

#define NBD_SINK_CONNS 4
/* Latency-bound: the time is writes / in flight x round trip. */
#define NBD_SINK_SLOTS 64
#define NBD_SINK_BYTES (32u << 20)
#define NBD_SINK_REQ   (32u << 20)
/* One WRITE_ZEROES asks for at most this much (32-bit length). */
#define NBD_ZERO_MAX ((uint64_t)1 << 30)

struct nbd_wslot {
	uint64_t off, len;
	bool zero;    /* WRITE_ZEROES, not a write of buf */
	uint8_t *buf; /* a copy of the data, kept for the slot's next use */
	size_t cap;
	struct vdk_nbd_req *q;
	struct vdk_nbd_conn *c; /* where it was sent */
};

/* Used by one thread (the pipeline commits in order): only the libnbd
 * calls take a connection's mu, which its polling thread shares. */
struct nbd_sink {
	struct vdk_nbd_conn c[NBD_SINK_CONNS];
	unsigned nconn, next;
	uint64_t export_size;
	bool can_zero, can_flush;
	uint32_t min_block, max_req;
	struct nbd_wslot slot[NBD_SINK_SLOTS]; /* ring in issue order */
	unsigned head, count;
	uint64_t inflight;
	size_t kept; /* bytes of the slots' copy buffers */
};

/* Wait for the oldest command in flight and retire it. */
static int nbd_sink_retire(struct vdk_sink *k, struct vdk_err *e)
{
	struct nbd_sink *n = k->priv;
	struct nbd_wslot *w = &n->slot[n->head];
	char what[64];
	snprintf(what, sizeof(what), "%s of %llu bytes", w->zero ? "zeroing" : "write",
	         (unsigned long long)w->len);
	pthread_mutex_lock(&w->c->mu);
	int r = vdk_nbd_conn_wait(w->c, w->q, w->off, what, e);
	pthread_mutex_unlock(&w->c->mu);
	vdk_nbd_req_put(w->q);
	w->q = NULL;
	/* Slots keep their copy buffers for the next write, within the budget. */
	if (n->kept > NBD_SINK_BYTES) {
		n->kept -= w->cap;
		free(w->buf);
		w->buf = NULL;
		w->cap = 0;
	}
	n->inflight -= w->zero ? 0 : w->len;
	n->head = (n->head + 1) % NBD_SINK_SLOTS;
	n->count--;
	return r;
}

/* Make room for a command on [off, off+len): no overlap with one in flight
 * (the protocol leaves overlapping writes undefined), a free slot, and the
 * byte budget. */
static int nbd_sink_room(struct vdk_sink *k, uint64_t off, uint64_t len, uint64_t bytes,
                         struct vdk_err *e)
{
	struct nbd_sink *n = k->priv;
	int r = 0;
	for (unsigned i = 0; !r && i < n->count;) {
		const struct nbd_wslot *w = &n->slot[(n->head + i) % NBD_SINK_SLOTS];
		if (off < w->off + w->len && w->off < off + len) {
			for (unsigned j = 0; !r && j <= i; j++)
				r = nbd_sink_retire(k, e);
			i = 0;
		} else {
			i++;
		}
	}
	while (!r && n->count &&
	       (n->count == NBD_SINK_SLOTS || n->inflight + bytes > NBD_SINK_BYTES))
		r = nbd_sink_retire(k, e);
	return r;
}

static int nbd_sink_bounds(struct vdk_sink *k, uint64_t off, uint64_t len, struct vdk_err *e)
{
	struct nbd_sink *n = k->priv;
	if (!vdk_range_ok(off, len, n->export_size))
		return vdk_err_set(e, VDK_E_IO, ENOSPC, k->name, "nbd", off,
		                   "%llu bytes would pass the end of the export (%llu bytes)",
		                   (unsigned long long)len, (unsigned long long)n->export_size);
	if ((off % n->min_block) || (len % n->min_block))
		return vdk_err_set(e, VDK_E_IO, EINVAL, k->name, "nbd", off,
		                   "%llu bytes are not aligned to the server's %u-byte blocks",
		                   (unsigned long long)len, n->min_block);
	return 0;
}

/* Issue one write (buf) or zeroing (buf NULL) into the next slot. */
static int nbd_sink_issue(struct vdk_sink *k, const void *buf, uint64_t len, uint64_t off,
                          struct vdk_err *e)
{
	struct nbd_sink *n = k->priv;
	int r = nbd_sink_room(k, off, len, buf ? len : 0, e);
	if (r)
		return r;
	struct nbd_wslot *w = &n->slot[(n->head + n->count) % NBD_SINK_SLOTS];
	if (buf && w->cap < len) {
		uint8_t *nb = realloc(w->buf, (size_t)len);
		if (!nb)
			return vdk_ioerr(e, ENOMEM, k->name, "out of memory");
		w->buf = nb;
		n->kept += (size_t)len - w->cap;
		w->cap = (size_t)len;
	}
	if (!(w->q = vdk_nbd_req_new()))
		return vdk_ioerr(e, ENOMEM, k->name, "out of memory");
	if (buf)
		memcpy(w->buf, buf, (size_t)len);
	struct vdk_nbd_conn *c = w->c = &n->c[n->next++ % n->nconn];
	pthread_mutex_lock(&c->mu);
	if (c->dead) {
		r = vdk_nbd_dead_error(c, off, e);
	} else if ((buf ? nbd_aio_pwrite(c->h, w->buf, (size_t)len, off, vdk_nbd_req_cb(w->q), 0)
	                : nbd_aio_zero(c->h, len, off, vdk_nbd_req_cb(w->q), 0)) == -1) {
		r = vdk_nbd_issue_error(c, off, buf ? "write" : "zeroing", e);
		vdk_nbd_req_unissue(w->q);
	}
	vdk_nbd_conn_kick(c);
	pthread_mutex_unlock(&c->mu);
	if (r) {
		vdk_nbd_req_put(w->q);
		w->q = NULL;
		return r;
	}
	w->off = off;
	w->len = len;
	w->zero = !buf;
	n->count++;
	n->inflight += buf ? len : 0;
	return 0;
}

static int nbd_sink_pwrite(struct vdk_sink *k, const void *buf, size_t len, uint64_t off,
                           struct vdk_err *e)
{
	struct nbd_sink *n = k->priv;
	int r = nbd_sink_bounds(k, off, len, e);
	for (size_t done = 0; !r && done < len;) {
		size_t piece = VDK_MIN(len - done, (size_t)n->max_req);
		r = nbd_sink_issue(k, (const uint8_t *)buf + done, piece, off + done, e);
		done += piece;
	}
	return r;
}

static int nbd_sink_punch(struct vdk_sink *k, uint64_t off, uint64_t len, struct vdk_err *e)
{
	struct nbd_sink *n = k->priv;
	if (!n->can_zero)
		return -EOPNOTSUPP;
	int r = nbd_sink_bounds(k, off, len, e);
	uint64_t step = NBD_ZERO_MAX - NBD_ZERO_MAX % n->min_block;
	for (uint64_t done = 0; !r && done < len;) {
		uint64_t piece = VDK_MIN(len - done, step);
		r = nbd_sink_issue(k, NULL, piece, off + done, e);
		done += piece;
	}
	return r;
}

/* The export keeps its size: a smaller image leaves the tail as it was. */
static int nbd_sink_truncate(struct vdk_sink *k, uint64_t size, struct vdk_err *e)
{
	struct nbd_sink *n = k->priv;
	if (size > n->export_size)
		return vdk_err_set(e, VDK_E_IO, ENOSPC, k->name, "nbd", VDK_NO_OFFSET,
		                   "the export has %llu bytes, the output needs %llu",
		                   (unsigned long long)n->export_size, (unsigned long long)size);
	return 0;
}

static int nbd_sink_drain(struct vdk_sink *k, struct vdk_err *e)
{
	struct nbd_sink *n = k->priv;
	int r = 0;
	while (n->count) {
		int w = nbd_sink_retire(k, e);
		r = r ? r : w;
	}
	return r;
}

/* Every write has completed by then: with multi-conn, the server promises
 * that a FLUSH on one connection persists what completed on all of them. */
static int nbd_sink_flush(struct vdk_sink *k, struct vdk_err *e)
{
	struct nbd_sink *n = k->priv;
	struct vdk_nbd_conn *c = &n->c[0];
	struct vdk_nbd_req *q = vdk_nbd_req_new();
	if (!q)
		return vdk_ioerr(e, ENOMEM, k->name, "out of memory");
	pthread_mutex_lock(&c->mu);
	int r = c->dead ? vdk_nbd_dead_error(c, VDK_NO_OFFSET, e) : 0;
	if (!r && nbd_aio_flush(c->h, vdk_nbd_req_cb(q), 0) == -1) {
		vdk_nbd_req_unissue(q);
		r = vdk_nbd_issue_error(c, VDK_NO_OFFSET, "flush", e);
	} else if (!r) {
		vdk_nbd_conn_kick(c);
		r = vdk_nbd_conn_wait(c, q, VDK_NO_OFFSET, "flush", e);
	}
	pthread_mutex_unlock(&c->mu);
	vdk_nbd_req_put(q);
	return r;
}

static int nbd_sink_commit(struct vdk_sink *k, struct vdk_err *e)
{
	struct nbd_sink *n = k->priv;
	int r = nbd_sink_drain(k, e);
	return !r && n->can_flush ? nbd_sink_flush(k, e) : r;
}

static void nbd_sink_close(struct vdk_sink *k)
{
	struct nbd_sink *n = k->priv;
	if (!n)
		return;
	/* Not committed: whatever reached the server stays there. Close drops
	 * the commands still in flight (their .free releases the requests). */
	for (unsigned i = 0; i < NBD_SINK_CONNS; i++)
		vdk_nbd_conn_close(&n->c[i]);
	for (unsigned i = 0; i < NBD_SINK_SLOTS; i++) {
		vdk_nbd_req_put(n->slot[i].q);
		free(n->slot[i].buf);
	}
	free(n);
}

static const struct vdk_sink_ops nbd_sink_ops = {
    .pwrite = nbd_sink_pwrite,
    .punch = nbd_sink_punch,
    .truncate = nbd_sink_truncate,
    .commit = nbd_sink_commit,
    .close = nbd_sink_close,
};

static int nbd_sink_setup(struct vdk_sink *k, uint64_t size, struct vdk_err *e)
{
	struct nbd_sink *n = k->priv;
	struct nbd_handle *h = n->c[0].h;
	int64_t es = nbd_get_size(h);
	if (es < 0)
		return vdk_nbd_issue_error(&n->c[0], VDK_NO_OFFSET, "reading the export size", e);
	n->export_size = (uint64_t)es;
	if (n->export_size < size)
		return vdk_err_set(e, VDK_E_IO, ENOSPC, k->name, "nbd", VDK_NO_OFFSET,
		                   "the export is too small: it has %llu bytes, the output needs "
		                   "%llu",
		                   (unsigned long long)n->export_size, (unsigned long long)size);
	if (nbd_is_read_only(h) > 0)
		return vdk_err_set(e, VDK_E_IO, EROFS, k->name, "nbd", VDK_NO_OFFSET,
		                   "the export is read-only");
	n->can_zero = nbd_can_zero(h) > 0;
	n->can_flush = nbd_can_flush(h) > 0;
	int64_t mn = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
	int64_t pref = nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED);
	int64_t mx = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
	n->min_block = mn > 1 && mn <= 65536 ? (uint32_t)mn : 1;
	n->max_req = mx >= 4096 && mx < NBD_SINK_REQ ? (uint32_t)mx : NBD_SINK_REQ;
	n->max_req -= n->max_req % n->min_block;
	if (pref >= 512 && pref <= (1 << 20) && vdk_is_pow2((uint64_t)pref))
		k->blksize = (uint32_t)pref;
	n->nconn = 1;
	if (nbd_can_multi_conn(h) > 0) {
		/* More connections only help; one that fails is not needed. */
		struct vdk_err ignore = {0};
		while (n->nconn < NBD_SINK_CONNS &&
		       vdk_nbd_conn_open(&n->c[n->nconn], k->name, false, &ignore) == 0)
			n->nconn++;
		if (n->nconn < NBD_SINK_CONNS)
			vdk_nbd_conn_close(&n->c[n->nconn]);
	}
	return 0;
}

int vdk_nbd_sink_open(const char *uri, uint64_t size, struct vdk_sink **out, struct vdk_err *e)
{
	struct vdk_sink *k = vdk_sink_alloc(&nbd_sink_ops, uri);
	struct nbd_sink *n = calloc(1, sizeof(*n));
	if (!k || !n) {
		free(n);
		vdk_sink_close(k);
		return vdk_ioerr(e, ENOMEM, uri, "out of memory");
	}
	k->priv = n;
	/* Never VDK_SINK_ZEROED: an export holds whatever it held before. */
	k->flags = 0;
	int r = vdk_nbd_conn_open(&n->c[0], k->name, false, e);
	if (!r)
		r = nbd_sink_setup(k, size, e);
	if (r) {
		k->committed = true; /* nothing to abort */
		vdk_sink_close(k);
		return r;
	}
	*out = k;
	return 0;
}
