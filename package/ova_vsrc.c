/* The verifying source of ova unpack: a disk's tar member(s), read in
 * place, whose bytes go into the manifest digest as the conversion reads
 * them, so each byte is read from the package once.
 *
 * The member is read ahead in VS_RA requests into a ring that covers the
 * next VS_RING bytes after the hashed position, and the readers (the
 * pipeline's workers, reading grains slightly out of file order) are
 * served from it; the digest hashes the same bytes. A read far ahead (the
 * stream VMDK reader's footer, read first) or behind the ring is done on
 * its own and placed by its offset: into the ring when it fits, with the
 * filled ranges beyond the contiguous prefix kept as a short interval
 * list, or aside (the stash) until the ring reaches it. Bytes nobody read
 * (holes between such placed reads) are read once more just to be hashed:
 * at once when the hole is small, later when memory asks for it or at the
 * end.
 *
 * The digest itself runs on a thread of its own at idle priority; see
 * vs_digest_main for why. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ova_private.h"
#include "util.h"

/* Covers the spread of the pipeline's reads in flight (2 x threads + 2
 * chunks of 1 MiB, less once compressed) so they rarely need the stash;
 * 16 MiB measured no faster and cost 6 MiB more RSS. */
#define VS_RING (8u << 20)
/* The digest thread is woken once this much is ready, not per grain. */
#define VS_WAKE (1u << 20)
/* Hashing goes in pieces this small, so whoever needs the hashing token
 * (a reader when the ring is full) never waits long for its holder. */
#define VS_PIECE (256u << 10)
/* Holes this small before the next filled range are read and hashed at
 * once (a GT block and its marker, sector padding). Measured on a 128 MiB
 * streamOptimized disk: 256 KiB here re-read 31% of the member, 4 KiB
 * re-reads nothing. */
#define VS_SMALL_GAP (4u << 10)
#define VS_NIV       64
/* Read-ahead: the member is read in requests of this size (NFS shares want
 * large sequential reads, not one per grain) and readers are served from
 * the ring; a read more than half a ring ahead is done on its own. */
#define VS_RA (1u << 20)
/* Past this much stashed data, holes are filled by reading them so memory
 * stays bounded; past the hard limit, reads are dropped and read again. */
#define VS_STASH_SOFT (8u << 20)
#define VS_STASH_MAX  (64u << 20)

struct vs_part {
	struct vdk_src *src;
	uint64_t start, size; /* logical range */
	const struct ova_mf_entry *want;
	struct ova_hash *h;
	bool done;
};

struct vs_iv {
	uint64_t a, b;
};

struct vs_stash {
	uint64_t off;
	size_t len;
	uint8_t *data;
};

struct vs {
	pthread_mutex_t mu;
	pthread_cond_t hcv; /* the digest thread: work is ready, or stop */
	pthread_cond_t cv;  /* the hashing token was released */
	struct vs_part *parts;
	size_t nparts;
	uint64_t size;
	bool hashing;
	int bad_part; /* first part whose digest differed, or -1 */
	uint8_t *ring;
	uint64_t rhead;          /* every byte before this is hashed */
	uint64_t rtail;          /* the ring holds every byte in [rhead, rtail) */
	struct vs_iv iv[VS_NIV]; /* filled beyond rtail: sorted, disjoint */
	size_t niv;
	struct vs_stash *stash;
	size_t nstash, stash_bytes;
	uint64_t hiwater; /* end of the highest range ever put in the ring */
	struct ova_vsrc_stats st;
	/* The digest: only the holder of the token touches hpos and parts[].h. */
	bool htoken, hidle, hstop, hth_on;
	pthread_t hth;
	uint64_t hpos;
};

static int vs_read_parts(struct vs *v, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < v->nparts && len; i++) {
		struct vs_part *pt = &v->parts[i];
		if (off >= pt->start + pt->size)
			continue;
		size_t n = (size_t)VDK_MIN((uint64_t)len, pt->start + pt->size - off);
		int r = vdk_src_pread(pt->src, p, n, off - pt->start, e);
		if (r < 0)
			return r;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* The digest ----------------------------------------------------------- */

static void vs_part_final(struct vs *v, size_t i)
{
	struct vs_part *pt = &v->parts[i];
	uint8_t d[OVA_DIGEST_MAX];
	ova_hash_final(pt->h, d);
	pt->done = true;
	if (memcmp(d, pt->want->digest, ova_alg_len(pt->want->alg)) && v->bad_part < 0)
		v->bad_part = (int)i;
}

/* Token holder: feed bytes at logical offset v->hpos to the parts. */
static void vs_digest(struct vs *v, const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < v->nparts && len; i++) {
		struct vs_part *pt = &v->parts[i];
		if (v->hpos >= pt->start + pt->size)
			continue;
		size_t n = (size_t)VDK_MIN((uint64_t)len, pt->start + pt->size - v->hpos);
		if (pt->h)
			ova_hash_update(pt->h, buf, n);
		buf += n;
		len -= n;
		v->hpos += n;
		if (v->hpos == pt->start + pt->size && pt->h && !pt->done)
			vs_part_final(v, i);
	}
}

/* Under mu: hash the next piece of the ring unless someone else is. */
static bool vs_hash_piece(struct vs *v)
{
	uint64_t avail = v->rtail - v->rhead;
	if (v->htoken || !avail)
		return false;
	v->htoken = true;
	size_t at = (size_t)(v->rhead % VS_RING);
	size_t n = (size_t)VDK_MIN(VDK_MIN(avail, (uint64_t)(VS_RING - at)), (uint64_t)VS_PIECE);
	pthread_mutex_unlock(&v->mu);
	vs_digest(v, v->ring + at, n);
	pthread_mutex_lock(&v->mu);
	v->rhead += n;
	v->htoken = false;
	pthread_cond_broadcast(&v->cv);
	return true;
}

/* Under mu: make the ring's window move, by hashing or by waiting for
 * whoever holds the token. */
static void vs_make_room(struct vs *v)
{
	if (!vs_hash_piece(v))
		pthread_cond_wait(&v->cv, &v->mu);
}

/* The digest thread soaks up idle CPU only (SCHED_IDLE): on two cores the
 * conversion keeps both busy much of the time, and at normal priority the
 * hashing preempts the thread committing writes, the critical path
 * (measured: unpack of a 1 GiB disk 0.46 s against 0.44 s). It cannot
 * starve the conversion: readers hash at their own priority once the ring
 * is half full, and vs_finish hashes the rest. */
static void *vs_digest_main(void *arg)
{
	struct vs *v = arg;
	struct sched_param sp = {0};
	pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	pthread_mutex_lock(&v->mu);
	while (!v->hstop) {
		if (v->rtail - v->rhead < VS_WAKE) {
			v->hidle = true;
			pthread_cond_wait(&v->hcv, &v->mu);
			v->hidle = false;
		} else if (!vs_hash_piece(v)) {
			pthread_cond_wait(&v->cv, &v->mu);
		}
	}
	pthread_mutex_unlock(&v->mu);
	return NULL;
}

static void vs_digest_stop(struct vs *v)
{
	if (!v->hth_on)
		return;
	pthread_mutex_lock(&v->mu);
	v->hstop = true;
	pthread_cond_broadcast(&v->hcv);
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->mu);
	pthread_join(v->hth, NULL);
	v->hth_on = false;
}

/* Placing bytes ---------------------------------------------------------- */

static void vs_ring_copy(struct vs *v, uint64_t off, const uint8_t *buf, size_t len)
{
	v->hiwater = VDK_MAX(v->hiwater, off + len);
	while (len) {
		size_t at = (size_t)(off % VS_RING);
		size_t n = VDK_MIN(len, VS_RING - at);
		memcpy(v->ring + at, buf, n);
		buf += n;
		off += n;
		len -= n;
	}
}

/* Read [off, off+len) of the member into its place in the ring. */
static int vs_ring_fetch(struct vs *v, uint64_t off, size_t len, struct vdk_err *e)
{
	v->hiwater = VDK_MAX(v->hiwater, off + len);
	v->st.file_reads++;
	v->st.file_bytes += len;
	while (len) {
		size_t at = (size_t)(off % VS_RING);
		size_t n = VDK_MIN(len, VS_RING - at);
		int r = vs_read_parts(v, v->ring + at, n, off, e);
		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

/* The same for bytes no reader asked for, read only to be hashed. */
static int vs_ring_read(struct vs *v, uint64_t off, size_t len, struct vdk_err *e)
{
	v->st.reread += len;
	return vs_ring_fetch(v, off, len, e);
}

/* Record [a, b) as filled; false when the list is full. */
static bool vs_iv_add(struct vs *v, uint64_t a, uint64_t b)
{
	size_t i = 0;
	while (i < v->niv && v->iv[i].b < a)
		i++;
	size_t j = i; /* intervals i..j-1 touch [a, b) and merge with it */
	while (j < v->niv && v->iv[j].a <= b) {
		a = VDK_MIN(a, v->iv[j].a);
		b = VDK_MAX(b, v->iv[j].b);
		j++;
	}
	if (i == j && v->niv == VS_NIV)
		return false;
	size_t keep = v->niv - j;
	memmove(&v->iv[i + 1], &v->iv[j], keep * sizeof(v->iv[0]));
	v->iv[i] = (struct vs_iv){a, b};
	v->niv = i + 1 + keep;
	return true;
}

static void vs_stash_add(struct vs *v, const uint8_t *buf, size_t len, uint64_t off)
{
	if (v->stash_bytes + len > VS_STASH_MAX)
		return; /* read again when the window reaches it */
	struct vs_stash *n = realloc(v->stash, (v->nstash + 1) * sizeof(*n));
	if (!n)
		return;
	v->stash = n;
	uint8_t *d = malloc(len);
	if (!d)
		return;
	memcpy(d, buf, len);
	v->stash[v->nstash++] = (struct vs_stash){.off = off, .len = len, .data = d};
	v->stash_bytes += len;
}

/* Under mu: place bytes a reader got (at most VS_RING / 4 of them); false
 * if they had to be stashed. Bytes that continue the contiguous prefix
 * wait for room (hashing makes it), so in-order reads never stash. */
static bool vs_place(struct vs *v, const uint8_t *buf, size_t len, uint64_t off, bool may_stash)
{
	for (;;) {
		if (off + len <= v->rtail)
			return true;
		if (off < v->rtail) {
			buf += v->rtail - off;
			len -= (size_t)(v->rtail - off);
			off = v->rtail;
		}
		if (off + len <= v->rhead + VS_RING)
			break;
		if (off > v->rtail || !may_stash) {
			if (may_stash)
				vs_stash_add(v, buf, len, off);
			return false;
		}
		vs_make_room(v); /* drops mu: look again */
	}
	if (off == v->rtail) {
		vs_ring_copy(v, off, buf, len);
		v->rtail += len;
		return true;
	}
	if (vs_iv_add(v, off, off + len)) {
		vs_ring_copy(v, off, buf, len);
		return true;
	}
	if (may_stash)
		vs_stash_add(v, buf, len, off);
	return false;
}

/* Under mu: move the contiguous prefix forward over filled ranges and
 * small holes, taking in stashed reads the window now covers. */
static int vs_advance(struct vs *v, struct vdk_err *e)
{
	for (bool moved = true; moved;) {
		moved = false;
		while (v->niv && v->iv[0].a <= v->rtail + VS_SMALL_GAP) {
			if (v->iv[0].a > v->rtail) {
				int r =
				    vs_ring_read(v, v->rtail, (size_t)(v->iv[0].a - v->rtail), e);
				if (r < 0)
					return r;
			}
			v->rtail = VDK_MAX(v->rtail, v->iv[0].b);
			memmove(&v->iv[0], &v->iv[1], --v->niv * sizeof(v->iv[0]));
			moved = true;
		}
		for (size_t i = 0; i < v->nstash; i++) {
			struct vs_stash *s = &v->stash[i];
			if (s->off + s->len > v->rhead + VS_RING ||
			    !vs_place(v, s->data, s->len, s->off, false))
				continue;
			free(s->data);
			v->stash_bytes -= s->len;
			*s = v->stash[--v->nstash];
			moved = true;
			break;
		}
	}
	if (v->hidle && v->rtail - v->rhead >= VS_WAKE)
		pthread_cond_signal(&v->hcv);
	return 0;
}

/* Under mu: fill the ring's first hole by reading it, or let the window
 * move when a stashed read waits for it. Progress whatever is queued. */
static int vs_fill_hole(struct vs *v, struct vdk_err *e)
{
	uint64_t to = v->niv ? v->iv[0].a : v->size;
	for (size_t i = 0; i < v->nstash; i++)
		to = VDK_MIN(to, VDK_MAX(v->stash[i].off, v->rtail));
	to = VDK_MIN(to, v->rhead + VS_RING);
	if (to > v->rtail) {
		int r = vs_ring_read(v, v->rtail, (size_t)(to - v->rtail), e);
		if (r < 0)
			return r;
		v->rtail = to;
	} else if (v->rtail > v->rhead) {
		vs_make_room(v);
	}
	return vs_advance(v, e);
}

/* Under mu, after a read: keep the hashing and the memory in bounds. */
static int vs_settle(struct vs *v, struct vdk_err *e)
{
	int r = vs_advance(v, e);
	while (r == 0 && v->stash_bytes > VS_STASH_SOFT)
		r = vs_fill_hole(v, e);
	/* Behind by half the ring (the idle thread found no idle CPU, or
	 * there is no thread): hash at the reader's priority. */
	while (v->rtail - v->rhead > (v->hth_on ? VS_RING / 2 : 0) && vs_hash_piece(v))
		;
	return r;
}

/* Under mu: read ahead until the contiguous prefix reaches `to`, in
 * VS_RA-aligned requests as far as the window allows. */
static int vs_readahead(struct vs *v, uint64_t to, struct vdk_err *e)
{
	/* to <= size (vs_serve), so target >= to */
	uint64_t target = VDK_MIN(vdk_round_up(VDK_MAX(to, v->rtail + VS_RA), VS_RA), v->size);
	while (v->rtail < to) {
		if (!v->hashing)
			v->rhead = v->rtail; /* nothing to hash: the whole ring is free */
		uint64_t room = v->rhead + VS_RING - v->rtail;
		if (room < VDK_MIN((uint64_t)VS_RA, target - v->rtail)) {
			vs_make_room(v); /* whole VS_RA requests, not what fits */
			continue;
		}
		uint64_t end = VDK_MIN(target, v->rtail + room);
		int r = vs_ring_fetch(v, v->rtail, (size_t)(end - v->rtail), e);
		if (r < 0)
			return r;
		v->rtail = end; /* what was placed beyond it merges in vs_advance */
		if (v->hashing && (r = vs_advance(v, e)) < 0)
			return r;
	}
	return 0;
}

/* Under mu: serve a read from the ring, reading ahead if it continues
 * the member. 1 when served, 0 when the caller must read it itself. */
static int vs_serve(struct vs *v, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	if (off + len > v->size || len > VS_RING / 4)
		return 0;
	if (off + len > v->rtail) {
		if (off + len > v->rtail + VS_RING / 2)
			return 0;
		int r = vs_readahead(v, off + len, e);
		if (r < 0)
			return r;
	}
	/* Ring slots are reused once a range VS_RING further on is put in. */
	if (off + VS_RING < v->hiwater)
		return 0;
	uint8_t *p = buf;
	for (uint64_t o = off; o < off + len;) {
		size_t at = (size_t)(o % VS_RING);
		size_t n = (size_t)VDK_MIN(off + len - o, (uint64_t)(VS_RING - at));
		memcpy(p, v->ring + at, n);
		p += n;
		o += n;
	}
	return 1;
}

static int vs_pread(struct vdk_src *s, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	struct vs *v = s->priv;
	pthread_mutex_lock(&v->mu);
	int served = vs_serve(v, buf, len, off, e);
	int r = served > 0 && v->hashing ? vs_settle(v, e) : 0;
	pthread_mutex_unlock(&v->mu);
	if (served != 0)
		return served < 0 ? served : r;
	/* Far ahead of the ring (a footer), behind it, or large: read alone. */
	r = vs_read_parts(v, buf, len, off, e);
	pthread_mutex_lock(&v->mu);
	v->st.file_reads++;
	v->st.file_bytes += len;
	if (r < 0 || !v->hashing) {
		pthread_mutex_unlock(&v->mu);
		return r;
	}
	for (size_t o = 0; o < len; o += VS_RING / 4)
		vs_place(v, (const uint8_t *)buf + o, VDK_MIN(len - o, VS_RING / 4), off + o, true);
	r = vs_settle(v, e);
	pthread_mutex_unlock(&v->mu);
	return r;
}

static void vs_close(struct vdk_src *s)
{
	struct vs *v = s->priv;
	if (!v)
		return;
	vs_digest_stop(v);
	for (size_t i = 0; i < v->nparts; i++) {
		vdk_src_close(v->parts[i].src);
		ova_hash_free(v->parts[i].h);
	}
	for (size_t i = 0; i < v->nstash; i++)
		free(v->stash[i].data);
	free(v->stash);
	free(v->parts);
	free(v->ring);
	pthread_mutex_destroy(&v->mu);
	pthread_cond_destroy(&v->hcv);
	pthread_cond_destroy(&v->cv);
	free(v);
}

static const struct vdk_src_ops vs_ops = {.pread = vs_pread, .close = vs_close};

/* Opening ------------------------------------------------------------- */

static int vs_add_part(struct vs *v, struct ova_pkg *p, int idx, const char *name, bool verify,
                       struct vdk_err *e)
{
	struct vs_part *np = realloc(v->parts, (v->nparts + 1) * sizeof(*np));
	if (!np)
		return vdk_ioerr(e, ENOMEM, name, "out of memory");
	v->parts = np;
	struct vs_part *pt = &np[v->nparts];
	memset(pt, 0, sizeof(*pt));
	pt->start = v->size;
	int r = ova_member_src(p, idx, &pt->src, e);
	if (r < 0)
		return r;
	v->nparts++;
	pt->size = pt->src->size;
	v->size += pt->size;
	pt->want = verify ? ova_mf_find(&p->man, name) : NULL;
	if (pt->want && !(pt->h = ova_hash_new(pt->want->alg)))
		return vdk_ioerr(e, ENOMEM, name, "out of memory");
	v->hashing |= pt->want != NULL;
	return 0;
}

static int vs_start(struct vs *v, const char *name, struct vdk_err *e)
{
	if (!(v->ring = malloc(VS_RING)))
		return vdk_ioerr(e, ENOMEM, name, "out of memory");
	if (!v->hashing)
		return 0;
	/* Without the thread, readers hash everything (vs_settle). */
	v->hth_on = pthread_create(&v->hth, NULL, vs_digest_main, v) == 0;
	return 0;
}

int ova_vsrc_open(struct ova_pkg *p, const struct ova_file *f, bool verify, struct vdk_src **out,
                  struct vdk_err *e)
{
	struct vdk_src *s = vdk_src_alloc(&vs_ops, f->href);
	struct vs *v = calloc(1, sizeof(*v));
	if (!s || !v) {
		free(v);
		free(s ? s->name : NULL);
		free(s);
		return vdk_ioerr(e, ENOMEM, f->href, "out of memory");
	}
	pthread_mutex_init(&v->mu, NULL);
	pthread_cond_init(&v->hcv, NULL);
	pthread_cond_init(&v->cv, NULL);
	v->bad_part = -1;
	s->priv = v;
	char label[OVA_NAME_MAX + 64];
	snprintf(label, sizeof(label), "%s:%s", p->label, f->href);
	free(s->name);
	s->name = strdup(label);
	int r = 0;
	for (size_t k = 0; r == 0; k++) {
		char name[OVA_NAME_MAX + 16];
		snprintf(name, sizeof(name), f->chunk ? "%s.%09zu" : "%s", f->href, k);
		int idx = ova_pkg_find(p, name);
		if (idx < 0) {
			if (k == 0)
				r = vdk_bad(e, p->label, "ova", VDK_NO_OFFSET, "%s is missing",
				            name);
			break;
		}
		r = vs_add_part(v, p, idx, name, verify, e);
		if (!f->chunk)
			break;
	}
	if (r == 0)
		r = vs_start(v, f->href, e);
	if (r < 0) {
		vdk_src_close(s);
		return r;
	}
	s->size = v->size;
	/* fd stays -1: a clone would bypass the digest. */
	*out = s;
	return 0;
}

int ova_vsrc_finish(struct vdk_src *s, const char **bad, struct ova_vsrc_stats *st,
                    struct vdk_err *e)
{
	struct vs *v = s->priv;
	*bad = NULL;
	if (st)
		*st = v->st;
	if (!v->hashing)
		return 0;
	int r = 0;
	pthread_mutex_lock(&v->mu);
	while (r == 0 && v->rhead < v->size) {
		if (v->rtail < v->size)
			r = vs_fill_hole(v, e);
		else
			vs_make_room(v);
	}
	pthread_mutex_unlock(&v->mu);
	vs_digest_stop(v);
	for (size_t i = 0; r == 0 && i < v->nparts; i++)
		if (v->parts[i].h && !v->parts[i].done) /* empty members */
			vs_part_final(v, i);
	if (st)
		*st = v->st;
	if (r == 0 && v->bad_part >= 0)
		*bad = v->parts[v->bad_part].want->name;
	return r;
}
