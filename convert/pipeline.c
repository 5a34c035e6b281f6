/* The conversion pipeline. The main thread walks the source's extents and
 * cuts the disk into segments aligned to the writer's granularity: ZERO
 * (skipped when the target reads as zero), CLONE (verbatim data shared with
 * the writer) and DATA (at most one chunk). DATA segments are read, scanned
 * for zero blocks and encoded by worker threads; every segment is committed
 * to the writer by the main thread strictly in order, which is what
 * sequential targets (streamOptimized VMDK, tar, pipes) need. Memory is the
 * slot ring: (2 * threads + 2) chunks, whatever the disk size. */
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline.h"
#include "util.h"

/* 1 MiB: as fast as 2 MiB in every make-bench row, with peak RSS 12
 * instead of 18 MiB now that short zero runs stay inside segments. */
#define PL_DEFAULT_CHUNK (1u << 20)
#define PL_MAX_THREADS   8
/* Remote sources (NBD) are bound by round trips, not CPUs: the time is
 * reads / requests-in-flight x latency. More workers on smaller chunks keep
 * more requests in flight for the same ring memory ((2 * 32 + 2) x 256 KiB
 * = 16.5 MiB); 256 KiB is also nbdcopy's request size. A writer with
 * larger grains gets fewer workers (never under 8) within that memory. */
#define PL_REMOTE_CHUNK   (256u << 10)
#define PL_REMOTE_THREADS 32
#define PL_REMOTE_RING    ((uint64_t)33 << 19)
#define PL_CLONE_MAX      ((uint64_t)256 << 20) /* progress/cancel granularity */
#define PL_DIGEST_BLOCK   4096u
/* Zero runs up to this size stay inside a DATA segment (zero detection
 * still keeps them sparse): a disk that alternates 64 KiB of data and of
 * holes otherwise costs a slot hand-off per grain. */
#define PL_ABSORB_MAX ((uint64_t)256 << 10)

enum pl_kind { PL_DATA, PL_ZERO, PL_CLONE };
enum pl_state { SLOT_FREE, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE };

struct pl_run {
	uint64_t off, len;
	bool zero;
	struct vdk_buf enc;
};

/* A granule-aligned stretch of a DATA segment that the source's extents
 * already say is zero: the worker neither reads, fills nor scans it. */
struct pl_span {
	uint64_t off, len;
};

struct pl_slot {
	enum pl_kind kind;
	enum pl_state state;
	uint64_t off, len;
	int fd;
	uint64_t phys;
	uint8_t *buf;
	struct pl_run *runs;
	size_t nruns;
	struct pl_span *known; /* known-zero spans, in order */
	size_t nknown;
	struct pl_slot *wnext; /* queue of slots waiting to be written */
	int rc;
	struct vdk_err err;
};

struct pl {
	struct vdk_image *in;
	struct vdk_writer *out;
	const struct vdk_convert_opts *o;
	struct vdk_convert_stats *st;
	uint64_t g; /* segment alignment */
	uint32_t chunk;
	bool detect_zero;
	bool clone_ok; /* cleared after the first -EOPNOTSUPP */
	bool par;      /* workers write their own data runs */
	EVP_MD_CTX *md;
	/* producer */
	struct vdk_extents x;
	size_t xi;
	uint64_t pos;
	/* slots and workers */
	struct pl_slot *slots;
	unsigned nslots, head, count, nthreads;
	pthread_t *threads;
	pthread_mutex_t mu, wlock;
	pthread_cond_t work_cv, done_cv;
	struct pl_slot *wq_head, *wq_tail; /* under mu */
	bool stop;
	uint64_t done;
};

void vdk_convert_opts_init(struct vdk_convert_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->clone = VDK_CLONE_AUTO;
	o->min_sparse = 4096;
}

static uint64_t pl_pow2_ceil(uint64_t v)
{
	uint64_t p = 1;
	while (p < v)
		p <<= 1;
	return p;
}

/* Producer ---------------------------------------------------------- */

static bool pl_is_zero_ext(const struct vdk_extent *x)
{
	return x->flags & (VDK_EXT_ZERO | VDK_EXT_HOLE);
}

static bool pl_is_clone_ext(const struct pl *p, const struct vdk_extent *x)
{
	return p->clone_ok && !pl_is_zero_ext(x) && x->fd >= 0;
}

/* End of the aligned run a zero/clone extent offers from pos, or pos. */
static uint64_t pl_aligned_end(const struct pl *p, const struct vdk_extent *x)
{
	uint64_t t = x->off + x->len;
	return t >= p->in->size ? p->in->size : t / p->g * p->g;
}

/* Make sure the extent batch covers pos. */
static int pl_fill(struct pl *p, struct vdk_err *e)
{
	while (p->xi < p->x.n && p->x.v[p->xi].off + p->x.v[p->xi].len <= p->pos)
		p->xi++;
	if (p->xi < p->x.n)
		return 0;
	vdk_extents_reset(&p->x);
	p->xi = 0;
	int r = vdk_image_extents(p->in, p->pos, p->in->size - p->pos, &p->x, e);
	if (!r && p->x.n == 0)
		r = vdk_err_set(e, VDK_E_IO, EPROTO, p->in->src->name, p->in->fmt->name, p->pos,
		                "internal error: no extents");
	return r;
}

/* End of a DATA segment starting at pos: the first aligned start of a
 * zero/clone run, the chunk boundary, or the end of the batch. */
static uint64_t pl_data_end(const struct pl *p)
{
	uint64_t cap = VDK_MIN(p->in->size, (p->pos / p->chunk + 1) * p->chunk);
	for (size_t i = p->xi; i < p->x.n; i++) {
		const struct vdk_extent *x = &p->x.v[i];
		if (x->off >= cap)
			return cap;
		if (pl_is_zero_ext(x) && p->detect_zero && x->len <= PL_ABSORB_MAX)
			continue;
		if (pl_is_zero_ext(x) || pl_is_clone_ext(p, x)) {
			uint64_t s = vdk_round_up(VDK_MAX(x->off, p->pos), p->g);
			if (s > p->pos && s < pl_aligned_end(p, x))
				return VDK_MIN(s, cap);
		}
	}
	const struct vdk_extent *last = &p->x.v[p->x.n - 1];
	uint64_t bend = last->off + last->len;
	uint64_t end = VDK_MAX(bend / p->g * p->g, p->pos + p->g);
	return VDK_MIN(end, cap);
}

/* The absorbed zero extents of the DATA segment s (a hole between two
 * grains of data, say), cut to whole granules: zero detection would find
 * them anyway, after a memset and a scan that cost 7% of a streamOptimized
 * VMDK's conversion to raw. */
static void pl_known_zero(const struct pl *p, struct pl_slot *s)
{
	uint64_t end = s->off + s->len;
	s->nknown = 0;
	if (!p->detect_zero)
		return;
	for (size_t i = p->xi; i < p->x.n && p->x.v[i].off < end; i++) {
		const struct vdk_extent *x = &p->x.v[i];
		if (!pl_is_zero_ext(x))
			continue;
		uint64_t a = vdk_round_up(VDK_MAX(x->off, s->off), p->g);
		uint64_t b = VDK_MIN(x->off + x->len, end);
		if (b < end)
			b = b / p->g * p->g;
		if (a >= b)
			continue;
		struct pl_span *last = s->nknown ? &s->known[s->nknown - 1] : NULL;
		if (last && last->off + last->len == a)
			last->len += b - a;
		else
			s->known[s->nknown++] = (struct pl_span){a, b - a};
	}
}

static int pl_next(struct pl *p, struct pl_slot *s, struct vdk_err *e)
{
	int r = pl_fill(p, e);
	if (r)
		return r;
	const struct vdk_extent *x = &p->x.v[p->xi];
	uint64_t aend = pl_aligned_end(p, x);
	s->off = p->pos;
	s->fd = -1;
	if (pl_is_zero_ext(x) && aend > p->pos) {
		s->kind = PL_ZERO;
		s->len = aend - p->pos;
	} else if (pl_is_clone_ext(p, x) && aend > p->pos) {
		s->kind = PL_CLONE;
		s->len = VDK_MIN(aend - p->pos, PL_CLONE_MAX);
		s->fd = x->fd;
		s->phys = x->phys + (p->pos - x->off);
	} else {
		s->kind = PL_DATA;
		s->len = pl_data_end(p) - p->pos;
		pl_known_zero(p, s);
	}
	p->pos += s->len;
	return 0;
}

/* Workers ----------------------------------------------------------- */

static int pl_add_run(struct pl_slot *s, uint64_t off, uint64_t len, bool zero)
{
	if (s->nruns && s->runs[s->nruns - 1].zero == zero &&
	    s->runs[s->nruns - 1].off + s->runs[s->nruns - 1].len == off) {
		s->runs[s->nruns - 1].len += len;
		return 0;
	}
	struct pl_run *r = &s->runs[s->nruns++];
	r->off = off;
	r->len = len;
	r->zero = zero;
	return 0;
}

/* Where the output takes writes in any order from any thread, the worker
 * writes its slot's data itself: the copy into the output (the page cache
 * or the filesystem's allocation) is then spread over every worker rather
 * than serialised on the committing thread, the bottleneck of a raw output
 * (qemu-img -W does the same). Zero runs stay with the in-order commit. */
static void pl_write_runs(struct pl *p, struct pl_slot *s)
{
	for (size_t i = 0; i < s->nruns && !s->rc; i++) {
		const struct pl_run *run = &s->runs[i];
		if (!run->zero)
			s->rc = vdk_writer_write(p->out, s->buf + (run->off - s->off), run->len,
			                         run->off, &s->err);
	}
}

/* Read [o, end) of the slot and cut it into zero and data runs. */
static int pl_scan(struct pl *p, struct pl_slot *s, uint64_t o, uint64_t end)
{
	int r = vdk_image_pread(p->in, s->buf + o, end - o, s->off + o, &s->err);
	for (; !r && o < end; o += p->g) {
		uint64_t n = VDK_MIN(p->g, end - o);
		bool zero = p->detect_zero && vdk_is_zero(s->buf + o, n);
		pl_add_run(s, s->off + o, n, zero);
	}
	return r;
}

static void pl_work(struct pl *p, struct pl_slot *s)
{
	vdk_err_clear(&s->err);
	s->nruns = 0;
	s->rc = 0;
	uint64_t o = 0;
	for (size_t k = 0; k < s->nknown && !s->rc; k++) {
		uint64_t at = s->known[k].off - s->off;
		if (at > o)
			s->rc = pl_scan(p, s, o, at);
		pl_add_run(s, s->known[k].off, s->known[k].len, true);
		o = at + s->known[k].len;
	}
	if (!s->rc && o < s->len)
		s->rc = pl_scan(p, s, o, s->len);
	if (s->rc || !(p->out->caps & VDK_WCAP_ENCODE))
		return;
	for (size_t i = 0; i < s->nruns && !s->rc; i++) {
		struct pl_run *run = &s->runs[i];
		run->enc.len = 0;
		if (!run->zero)
			s->rc = vdk_err_ensure(
			    &s->err,
			    p->out->fmt->encode(p->out, s->buf + (run->off - s->off), run->len,
			                        run->off, &run->enc, &s->err),
			    vdk_writer_name(p->out), p->out->fmt->name, "encoding");
	}
}

/* pl_work, and the slot's data written when the output takes writes in
 * any order: the main thread's way, with no worker to hand them to. */
static void pl_work_inline(struct pl *p, struct pl_slot *s)
{
	pl_work(p, s);
	if (p->par && !s->rc)
		pl_write_runs(p, s);
}

/* A worker's finished slot goes to whichever worker is writing, and this
 * one goes on to the next slot instead of waiting: the kernel serialises
 * buffered writes to one file on its inode lock, and a second writer
 * spins there (12% of a streamOptimized -> raw conversion's CPU time)
 * while it could inflate. The worker that gets wlock writes every queued
 * slot, and lets go of wlock under mu once the queue is empty: a slot
 * queued after that finds wlock free, one queued before is written. */
static void pl_write_deferred(struct pl *p, struct pl_slot *s)
{
	pthread_mutex_lock(&p->mu);
	s->wnext = NULL;
	*(p->wq_tail ? &p->wq_tail->wnext : &p->wq_head) = s;
	p->wq_tail = s;
	pthread_mutex_unlock(&p->mu);
	if (pthread_mutex_trylock(&p->wlock) != 0)
		return;
	pthread_mutex_lock(&p->mu);
	for (struct pl_slot *w; (w = p->wq_head);) {
		if (!(p->wq_head = w->wnext))
			p->wq_tail = NULL;
		pthread_mutex_unlock(&p->mu);
		pl_write_runs(p, w);
		pthread_mutex_lock(&p->mu);
		w->state = SLOT_DONE;
		pthread_cond_broadcast(&p->done_cv);
	}
	pthread_mutex_unlock(&p->wlock);
	pthread_mutex_unlock(&p->mu);
}

static void *pl_worker(void *arg)
{
	struct pl *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct pl_slot *s = NULL;
		while (!p->stop) {
			for (unsigned i = 0; i < p->nslots && !s; i++)
				if (p->slots[i].state == SLOT_QUEUED)
					s = &p->slots[i];
			if (s)
				break;
			pthread_cond_wait(&p->work_cv, &p->mu);
		}
		if (!s)
			break;
		s->state = SLOT_RUNNING;
		pthread_mutex_unlock(&p->mu);
		pl_work(p, s);
		bool defer = p->par && !s->rc;
		if (defer)
			pl_write_deferred(p, s); /* marks it done once written */
		pthread_mutex_lock(&p->mu);
		if (!defer) {
			s->state = SLOT_DONE;
			pthread_cond_broadcast(&p->done_cv);
		}
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Commit (main thread, in order) ------------------------------------ */

static void pl_hash(struct pl *p, const uint8_t *buf, uint64_t len, uint64_t off)
{
	/* Segments start 4 KiB-aligned (g >= 4096), so blocks are absolute. */
	for (uint64_t o = 0; o < len; o += PL_DIGEST_BLOCK) {
		uint64_t n = VDK_MIN((uint64_t)PL_DIGEST_BLOCK, len - o);
		if (vdk_is_zero(buf + o, n))
			continue;
		uint8_t le[8];
		vdk_put_le64(le, off + o);
		EVP_DigestUpdate(p->md, le, sizeof(le));
		EVP_DigestUpdate(p->md, buf + o, n);
	}
}

static int pl_zero(struct pl *p, uint64_t off, uint64_t len, struct vdk_err *e)
{
	p->st->sparse += len;
	if (p->out->caps & VDK_WCAP_ZEROED)
		return 0;
	return vdk_writer_zero(p->out, off, len, e);
}

static int pl_commit_data(struct pl *p, struct pl_slot *s, struct vdk_err *e)
{
	if (s->rc) {
		*e = s->err;
		return s->rc;
	}
	/* Zero runs hash as nothing and may hold a known-zero span's stale
	 * bytes: only data runs are hashed. */
	for (size_t i = 0; p->md && i < s->nruns; i++)
		if (!s->runs[i].zero)
			pl_hash(p, s->buf + (s->runs[i].off - s->off), s->runs[i].len,
			        s->runs[i].off);
	int r = 0;
	for (size_t i = 0; i < s->nruns && !r; i++) {
		struct pl_run *run = &s->runs[i];
		if (run->zero) {
			r = pl_zero(p, run->off, run->len, e);
			continue;
		}
		p->st->copied += run->len;
		if (p->par) /* the worker wrote it */
			continue;
		if (p->out->caps & VDK_WCAP_ENCODE)
			r = vdk_err_ensure(
			    e, p->out->fmt->write_encoded(p->out, &run->enc, run->off, run->len, e),
			    vdk_writer_name(p->out), p->out->fmt->name, "writing the output");
		else
			r = vdk_writer_write(p->out, s->buf + (run->off - s->off), run->len,
			                     run->off, e);
	}
	return r;
}

/* Copy [off, off+len) through user space on the main thread (after a clone
 * was refused, or to hash what was cloned). write=false: hash only. */
static int pl_copy_inline(struct pl *p, struct pl_slot *tmp, uint64_t off, uint64_t len, bool write,
                          struct vdk_err *e)
{
	for (uint64_t o = 0; o < len; o += p->chunk) {
		tmp->off = off + o;
		tmp->len = VDK_MIN((uint64_t)p->chunk, len - o);
		tmp->nknown = 0;
		if (write) {
			pl_work_inline(p, tmp);
			int r = pl_commit_data(p, tmp, e);
			if (r)
				return r;
			continue;
		}
		int r = vdk_image_pread(p->in, tmp->buf, tmp->len, tmp->off, e);
		if (r)
			return r;
		pl_hash(p, tmp->buf, tmp->len, tmp->off);
	}
	return 0;
}

static int pl_commit_clone(struct pl *p, struct pl_slot *s, struct vdk_err *e)
{
	int r = -EOPNOTSUPP;
	if (p->clone_ok)
		r = p->out->fmt->clone(p->out, s->off, s->len, s->fd, s->phys, p->o->clone, e);
	if (r < 0 && r != -EOPNOTSUPP)
		r = vdk_err_ensure(e, r, vdk_writer_name(p->out), p->out->fmt->name, "cloning");
	if (r == VDK_CLONED || r == VDK_OFFLOADED) {
		if (r == VDK_CLONED)
			p->st->cloned += s->len;
		else
			p->st->offloaded += s->len;
		return p->md ? pl_copy_inline(p, &p->slots[p->nslots], s->off, s->len, false, e)
		             : 0;
	}
	/* -EOPNOTSUPP with no error recorded is a polite "copy it instead";
	 * with one (--clone=always) it is the failure to report. */
	if (r != -EOPNOTSUPP || e->cls != VDK_E_NONE)
		return r;
	p->clone_ok = false; /* one refusal means the rest would be refused too */
	return pl_copy_inline(p, &p->slots[p->nslots], s->off, s->len, true, e);
}

static int pl_commit(struct pl *p, struct pl_slot *s, struct vdk_err *e)
{
	int r;
	switch (s->kind) {
	case PL_ZERO:
		r = pl_zero(p, s->off, s->len, e);
		break;
	case PL_CLONE:
		r = pl_commit_clone(p, s, e);
		break;
	default:
		r = pl_commit_data(p, s, e);
		break;
	}
	if (r)
		return r;
	p->done += s->len;
	if (p->o->progress) {
		struct vdk_progress pr = {.done = p->done, .total = p->in->size};
		p->o->progress(p->o->progress_ctx, &pr);
	}
	return 0;
}

/* Setup and the main loop ------------------------------------------- */

static bool pl_chain_is_stream(const struct vdk_image *img)
{
	for (; img; img = img->backing)
		if (img->src->flags & VDK_SRC_STREAM)
			return true;
	return false;
}

/* Workers reading from a network mostly wait on replies: the default is
 * then as many as the ring allows rather than one per CPU. */
static bool pl_chain_is_remote(const struct vdk_image *img)
{
	for (; img; img = img->backing)
		if (img->src->flags & VDK_SRC_REMOTE)
			return true;
	return false;
}

static int pl_setup(struct pl *p, struct vdk_err *e)
{
	const struct vdk_convert_opts *o = p->o;
	p->g = VDK_MAX((uint64_t)PL_DIGEST_BLOCK, (uint64_t)p->out->granularity);
	if (o->min_sparse)
		p->g = VDK_MAX(p->g, pl_pow2_ceil(o->min_sparse));
	p->detect_zero = o->min_sparse != 0;
	bool remote = pl_chain_is_remote(p->in);
	uint32_t chunk = o->chunk ? o->chunk : remote ? PL_REMOTE_CHUNK : PL_DEFAULT_CHUNK;
	p->chunk = (uint32_t)VDK_MAX(vdk_round_up(chunk, p->g), p->g);
	p->clone_ok =
	    o->clone != VDK_CLONE_NEVER && (p->out->caps & VDK_WCAP_CLONE) && p->out->fmt->clone;
	p->par = (p->out->caps & VDK_WCAP_PARALLEL) && !(p->out->caps & VDK_WCAP_ENCODE);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned max = remote ? PL_REMOTE_THREADS : PL_MAX_THREADS;
	unsigned t = (unsigned)(ncpu > 0 ? ncpu : 1);
	if (remote)
		t = (unsigned)VDK_MAX((uint64_t)PL_MAX_THREADS, PL_REMOTE_RING / p->chunk / 2 - 1);
	if (o->threads)
		t = o->threads;
	p->nthreads = pl_chain_is_stream(p->in) ? 0 : VDK_MIN(t, max);
	/* Local: ten slots for two workers (measured 0.36 s against 0.39 s
	 * with six for a 1 GiB streamOptimized VMDK to raw in tmpfs, where the
	 * commit would otherwise wait for a worker and the workers for free
	 * slots). Remote: two per worker, which is PL_REMOTE_RING already
	 * (twice that doubled an NBD read's peak RSS for no speed). */
	p->nslots = !p->nthreads ? 1 : remote ? 2 * p->nthreads + 2 : 4 * p->nthreads + 2;
	/* One extra slot for inline copies on the main thread. */
	p->slots = calloc(p->nslots + 1, sizeof(*p->slots));
	if (!p->slots)
		return vdk_ioerr(e, ENOMEM, NULL, "out of memory");
	size_t maxruns = p->chunk / p->g + 1;
	for (unsigned i = 0; i <= p->nslots; i++) {
		p->slots[i].buf = malloc(p->chunk);
		p->slots[i].runs = calloc(maxruns, sizeof(struct pl_run));
		p->slots[i].known = calloc(maxruns, sizeof(struct pl_span));
		if (!p->slots[i].buf || !p->slots[i].runs || !p->slots[i].known)
			return vdk_ioerr(e, ENOMEM, NULL, "out of memory");
	}
	if (o->digest) {
		p->md = EVP_MD_CTX_new();
		if (!p->md || !EVP_DigestInit_ex(p->md, EVP_sha256(), NULL))
			return vdk_ioerr(e, ENOMEM, NULL, "cannot set up SHA-256");
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_mutex_init(&p->wlock, NULL);
	pthread_cond_init(&p->work_cv, NULL);
	pthread_cond_init(&p->done_cv, NULL);
	p->threads = calloc(p->nthreads ? p->nthreads : 1, sizeof(pthread_t));
	if (!p->threads)
		return vdk_ioerr(e, ENOMEM, NULL, "out of memory");
	for (unsigned i = 0; i < p->nthreads; i++)
		if (pthread_create(&p->threads[i], NULL, pl_worker, p) != 0) {
			p->nthreads = i;
			break;
		}
	return 0;
}

static void pl_teardown(struct pl *p)
{
	if (p->threads) {
		pthread_mutex_lock(&p->mu);
		p->stop = true;
		pthread_cond_broadcast(&p->work_cv);
		pthread_mutex_unlock(&p->mu);
		for (unsigned i = 0; i < p->nthreads; i++)
			pthread_join(p->threads[i], NULL);
		free(p->threads);
		pthread_mutex_destroy(&p->mu);
		pthread_mutex_destroy(&p->wlock);
		pthread_cond_destroy(&p->work_cv);
		pthread_cond_destroy(&p->done_cv);
	}
	size_t maxruns = p->g ? p->chunk / p->g + 1 : 0;
	for (unsigned i = 0; p->slots && i <= p->nslots; i++) {
		free(p->slots[i].buf);
		for (size_t j = 0; p->slots[i].runs && j < maxruns; j++)
			free(p->slots[i].runs[j].enc.data);
		free(p->slots[i].runs);
		free(p->slots[i].known);
	}
	free(p->slots);
	vdk_extents_free(&p->x);
	EVP_MD_CTX_free(p->md);
}

/* Workers scan slot states under mu, so every change goes through it. */
static void pl_set_state(struct pl *p, struct pl_slot *s, enum pl_state st)
{
	pthread_mutex_lock(&p->mu);
	s->state = st;
	if (st == SLOT_QUEUED)
		pthread_cond_signal(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
}

/* Fill free slots from the producer; queue DATA for the workers. */
static int pl_produce(struct pl *p, struct vdk_err *e)
{
	while (p->count < p->nslots && p->pos < p->in->size) {
		struct pl_slot *s = &p->slots[(p->head + p->count) % p->nslots];
		int r = pl_next(p, s, e);
		if (r)
			return r;
		p->count++;
		if (s->kind != PL_DATA || !p->nthreads) {
			if (s->kind == PL_DATA)
				pl_work_inline(p, s);
			pl_set_state(p, s, SLOT_DONE);
			continue;
		}
		pl_set_state(p, s, SLOT_QUEUED);
	}
	return 0;
}

static int pl_run(struct pl *p, struct vdk_err *e)
{
	while (p->pos < p->in->size || p->count) {
		if (p->o->cancel && *p->o->cancel)
			return vdk_err_set(e, VDK_E_IO, ECANCELED, NULL, NULL, VDK_NO_OFFSET,
			                   "interrupted");
		int r = pl_produce(p, e);
		if (r)
			return r;
		struct pl_slot *s = &p->slots[p->head];
		pthread_mutex_lock(&p->mu);
		while (s->state != SLOT_DONE)
			pthread_cond_wait(&p->done_cv, &p->mu);
		pthread_mutex_unlock(&p->mu);
		r = pl_commit(p, s, e);
		pl_set_state(p, s, SLOT_FREE);
		p->head = (p->head + 1) % p->nslots;
		p->count--;
		if (r)
			return r;
	}
	return 0;
}

int vdk_convert(struct vdk_image *in, struct vdk_writer *out, const struct vdk_convert_opts *o,
                struct vdk_convert_stats *st, struct vdk_err *e)
{
	struct vdk_convert_opts defaults;
	if (!o) {
		vdk_convert_opts_init(&defaults);
		o = &defaults;
	}
	memset(st, 0, sizeof(*st));
	if (out->size < in->size)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, out->sink->name, out->fmt->name,
		                   VDK_NO_OFFSET, "output is smaller than the input");
	struct pl p = {.in = in, .out = out, .o = o, .st = st};
	int r = pl_setup(&p, e);
	if (!r)
		r = pl_run(&p, e);
	/* Workers must be idle before the slots go away, even on error. */
	if (p.threads) {
		pthread_mutex_lock(&p.mu);
		for (unsigned i = 0; i < p.nslots; i++)
			while (p.slots[i].state == SLOT_RUNNING)
				pthread_cond_wait(&p.done_cv, &p.mu);
		pthread_mutex_unlock(&p.mu);
	}
	if (!r && out->size > in->size)
		r = pl_zero(&p, in->size, out->size - in->size, e);
	for (struct vdk_image *c = in; !r && c; c = c->backing)
		r = vdk_src_check_unchanged(c->src, e);
	if (!r && p.md) {
		uint8_t le[8];
		vdk_put_le64(le, in->size);
		EVP_DigestUpdate(p.md, le, sizeof(le));
		unsigned n = 0;
		EVP_DigestFinal_ex(p.md, st->digest, &n);
	}
	pl_teardown(&p);
	return r;
}
