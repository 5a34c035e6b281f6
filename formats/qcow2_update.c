/* qcow2 updater (convert/update.h): guest data written into an existing
 * image in place. Allocated clusters are overwritten where they are; new
 * clusters, L2 tables and refcount blocks go at the end of the file.
 *
 * Crash order, per flush (qcow2.txt: a reference must never precede what
 * it references, or a crash leaves a corruption instead of a leak):
 *   A  new data, new L2 tables (not yet referenced), refcount blocks
 *      (new ones whole, increments of existing ones)          fdatasync
 *   B  refcount table entries naming new refcount blocks      fdatasync
 *   C  entries of existing L2 tables                          fdatasync
 *   D  L1 entries naming new L2 tables, and the refcount drops of the
 *      clusters the L2 changes released (compressed ones)    fdatasync
 * A crash leaves at worst allocated clusters nothing references: leaks,
 * which qemu-img check -r leaks (and qcow2_check) repairs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2.h"
#include "update.h"
#include "util.h"

#define FMT "qcow2"
/* Tables ------------------------------------------------------------ */

static void qcow2_upd_tab_free(struct qcow2_upd_tab *t)
{
	free(t->raw);
	free(t->dirty);
	memset(t, 0, sizeof(*t));
}

static void qcow2_upd_set_clear(struct qcow2_upd_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		qcow2_upd_tab_free(&s->v[i]);
	s->n = 0;
}

static int qcow2_upd_tab_alloc(struct qcow2_upd_tab *t, size_t len)
{
	t->len = len;
	t->raw = calloc(1, len);
	t->dirty = calloc(1, len / QCOW2_UPD_SEC + 1);
	return t->raw && t->dirty ? 0 : -ENOMEM;
}

static void qcow2_upd_mark(struct qcow2_upd_tab *t, size_t byte)
{
	t->dirty[byte / QCOW2_UPD_SEC] = 1;
}

/* Write the dirty sectors of t (all of it when fresh), in runs. */
static int qcow2_upd_tab_write(struct vdk_update *u, struct qcow2_upd_tab *t, bool *wrote,
                               struct vdk_err *e)
{
	size_t ns = (t->len + QCOW2_UPD_SEC - 1) / QCOW2_UPD_SEC;
	for (size_t i = 0; i < ns;) {
		if (!t->fresh && !t->dirty[i]) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < ns && (t->fresh || t->dirty[j]))
			t->dirty[j++] = 0;
		size_t off = i * QCOW2_UPD_SEC, n = VDK_MIN(j * QCOW2_UPD_SEC, t->len) - off;
		int r = vdk_update_pwrite(u, t->raw + off, n, t->host + off, true, e);
		if (r)
			return r;
		*wrote = true;
		i = j;
	}
	t->fresh = false;
	return 0;
}

static struct qcow2_upd_tab *qcow2_upd_find(struct qcow2_upd_set *s, uint64_t key)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].key == key)
			return &s->v[i];
	return NULL;
}

/* A table of this set: from memory, else read at host (or zeroed when
 * fresh: space this update allocated). */
static int qcow2_upd_load(struct vdk_update *u, struct qcow2_upd_set *s, uint64_t key,
                          uint64_t host, bool fresh, struct qcow2_upd_tab **out, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	if ((*out = qcow2_upd_find(s, key)))
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		struct qcow2_upd_tab *v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return vdk_nomem(e, u->path, FMT, "the update's table cache");
		s->v = v;
		s->cap = cap;
	}
	struct qcow2_upd_tab *t = &s->v[s->n];
	memset(t, 0, sizeof(*t));
	if (qcow2_upd_tab_alloc(t, q->cs)) {
		qcow2_upd_tab_free(t);
		return vdk_nomem(e, u->path, FMT, "a metadata table");
	}
	t->key = key;
	t->host = host;
	t->fresh = fresh;
	int r = fresh ? 0 : vdk_pread_full(u->fd, t->raw, q->cs, host);
	if (r) {
		qcow2_upd_tab_free(t);
		return vdk_ioerr(e, -r, u->path, "reading the table at offset %llu failed: %s",
		                 (unsigned long long)host, strerror(-r));
	}
	s->n++;
	*out = t;
	return 0;
}

/* Refcounts ---------------------------------------------------------- */

static uint64_t qcow2_upd_rc_get(const struct qcow2_ustate *q, const uint8_t *p)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < q->rc_bytes; i++)
		v = v << 8 | p[i];
	return v;
}

static void qcow2_upd_rc_put(const struct qcow2_ustate *q, uint8_t *p, uint64_t v)
{
	for (unsigned i = q->rc_bytes; i-- > 0; v >>= 8)
		p[i] = (uint8_t)v;
}

/* The refcount block for host cluster k (it must exist). */
static int qcow2_upd_rb(struct vdk_update *u, uint64_t k, struct qcow2_upd_tab **out,
                        struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	uint64_t b = k / q->rb_entries;
	uint64_t host = b < q->rt_n ? vdk_be64(q->rt.raw + 8 * b) & QCOW2_RT_OFFSET : 0;
	if (!host || host % q->cs)
		return vdk_bad(e, u->path, FMT, q->rt.host + 8 * b,
		               "refcount block %llu for host cluster %llu is missing or unaligned",
		               (unsigned long long)b, (unsigned long long)k);
	return qcow2_upd_load(u, &q->rb, b, host, false, out, e);
}

static int qcow2_upd_rc_set(struct vdk_update *u, uint64_t k, int delta, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	struct qcow2_upd_tab *t;
	int r = qcow2_upd_rb(u, k, &t, e);
	if (r)
		return r;
	size_t at = (size_t)(k % q->rb_entries) * q->rc_bytes;
	uint64_t v = qcow2_upd_rc_get(q, t->raw + at);
	if (delta < 0 && v == 0)
		return vdk_bad(e, u->path, FMT, t->host + at,
		               "refcount of host cluster %llu is already 0", (unsigned long long)k);
	qcow2_upd_rc_put(q, t->raw + at, delta < 0 ? v - 1 : 1);
	qcow2_upd_mark(t, at);
	return 0;
}

/* One new cluster at the end of the file, its refcount 1. A missing
 * refcount block is placed first, at the start of the range it covers,
 * and counts itself. */
static int qcow2_upd_alloc(struct vdk_update *u, uint64_t *host, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	for (;;) {
		uint64_t k = q->end >> q->cbits, b = k / q->rb_entries;
		if (b >= q->rt_n)
			return vdk_unsup(e, u->path, FMT, q->rt.host,
			                 "the refcount table is full (%llu blocks); growing it is "
			                 "not supported",
			                 (unsigned long long)q->rt_n);
		if (q->end > QCOW2_OFFSET_MASK - q->cs)
			return vdk_unsup(e, u->path, FMT, q->end, "host offset out of range");
		uint64_t rbh = vdk_be64(q->rt.raw + 8 * b) & QCOW2_RT_OFFSET;
		if (rbh) {
			*host = q->end;
			q->end += q->cs;
			return qcow2_upd_rc_set(u, k, 1, e);
		}
		struct qcow2_upd_tab *t;
		int r = qcow2_upd_load(u, &q->rb, b, q->end, true, &t, e);
		if (r)
			return r;
		vdk_put_be64(q->rt.raw + 8 * b, q->end);
		qcow2_upd_mark(&q->rt, 8 * b);
		q->end += q->cs;
		r = qcow2_upd_rc_set(u, k, 1, e);
		if (r)
			return r;
	}
}

static int qcow2_upd_drop_add(struct vdk_update *u, uint64_t k, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	if (q->ndrop == q->capdrop) {
		size_t cap = q->capdrop ? 2 * q->capdrop : 64;
		uint64_t *v = realloc(q->drop, cap * sizeof(*v));
		if (!v)
			return vdk_nomem(e, u->path, FMT, "the list of released clusters");
		q->drop = v;
		q->capdrop = cap;
	}
	q->drop[q->ndrop++] = k;
	return 0;
}

/* The host clusters a replaced entry held (qcow2.txt "Compressed Clusters
 * Descriptor": the sectors counted from the 512-byte-aligned offset). */
static int qcow2_upd_release(struct vdk_update *u, uint64_t ent, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	struct qcow2_state *s = q->img->state;
	uint64_t first, last;
	if (ent & QCOW2_OFLAG_COMPRESSED) {
		uint64_t coff = (ent & s->coff_mask) & ~511ull;
		uint64_t nsec = ((ent >> s->csize_shift) & s->csize_mask) + 1;
		first = coff >> q->cbits;
		last = (coff + nsec * 512 - 1) >> q->cbits;
	} else {
		first = last = (ent & QCOW2_OFFSET_MASK) >> q->cbits;
	}
	for (uint64_t k = first; k <= last; k++) {
		int r = qcow2_upd_drop_add(u, k, e);
		if (r)
			return r;
	}
	return 0;
}

/* L2 entries --------------------------------------------------------- */

/* The L2 table for guest cluster g; NULL in *out when there is none and
 * create is false. */
static int qcow2_upd_l2(struct vdk_update *u, uint64_t g, bool create, struct qcow2_upd_tab **out,
                        struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	uint64_t i = g / q->l2n;
	*out = qcow2_upd_find(&q->l2, i);
	if (*out)
		return 0;
	uint64_t l1e = vdk_be64(q->l1.raw + 8 * i);
	uint64_t host = l1e & QCOW2_OFFSET_MASK;
	if (host) {
		int r = host < q->orig_end ? qcow2_meta_l2_ok(q->img, i, host, e) : 0;
		return r ? r : qcow2_upd_load(u, &q->l2, i, host, false, out, e);
	}
	if (!create)
		return 0;
	int r = qcow2_upd_alloc(u, &host, e);
	if (!r)
		r = qcow2_upd_load(u, &q->l2, i, host, true, out, e);
	if (r)
		return r;
	vdk_put_be64(q->l1.raw + 8 * i, host | QCOW2_OFLAG_COPIED);
	qcow2_upd_mark(&q->l1, 8 * i);
	return 0;
}

static uint64_t qcow2_upd_ent(const struct qcow2_upd_tab *t, const struct qcow2_ustate *q,
                              uint64_t g)
{
	return t ? vdk_be64(t->raw + 8 * (g % q->l2n)) : 0;
}

static void qcow2_upd_set_ent(struct qcow2_upd_tab *t, const struct qcow2_ustate *q, uint64_t g,
                              uint64_t ent)
{
	size_t at = 8 * (size_t)(g % q->l2n);
	vdk_put_be64(t->raw + at, ent);
	qcow2_upd_mark(t, at);
}

/* Reads as zeroes with no backing file: unallocated, or the zero flag on a
 * standard entry (in a compressed descriptor bit 0 belongs to the offset). */
static bool qcow2_upd_reads_zero(uint64_t ent)
{
	if (ent & QCOW2_OFLAG_COMPRESSED)
		return false;
	return !(ent & QCOW2_OFFSET_MASK) || (ent & QCOW2_OFLAG_ZERO);
}

/* A standard cluster this image owns alone: writable where it is. */
static bool qcow2_upd_in_place(uint64_t ent)
{
	return !(ent & QCOW2_OFLAG_COMPRESSED) && (ent & QCOW2_OFFSET_MASK) &&
	       (ent & QCOW2_OFLAG_COPIED);
}

static int qcow2_upd_check_host(struct vdk_update *u, uint64_t host, uint64_t g, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	if (host >= q->orig_end)
		return 0; /* ours, allocated by this update */
	if (host % q->cs)
		return vdk_bad(e, u->path, FMT, VDK_NO_OFFSET,
		               "cluster at guest offset %llu maps to unaligned host offset %llu",
		               (unsigned long long)(g << q->cbits), (unsigned long long)host);
	return qcow2_meta_data_ok(q->img, host, q->cs, g << q->cbits, e);
}

/* Bytes of guest cluster g inside the disk (the last may be short). */
static size_t qcow2_upd_clen(const struct vdk_update *u, uint64_t g)
{
	const struct qcow2_ustate *q = u->state;
	uint64_t start = g << q->cbits;
	return (size_t)VDK_MIN((uint64_t)q->cs, u->size - start);
}

/* A new cluster for g holding its old content patched with buf at within:
 * the old content is read through the reader only for what the entry
 * still names (compressed, shared), zeroes otherwise (the new cluster
 * lies past the old end of the file, which reads as zeroes). */
static int qcow2_upd_cow(struct vdk_update *u, struct qcow2_upd_tab *t, uint64_t g, uint64_t ent,
                         const void *buf, size_t within, size_t n, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	bool old = (ent & QCOW2_OFLAG_COMPRESSED) ||
	           ((ent & QCOW2_OFFSET_MASK) && !(ent & QCOW2_OFLAG_ZERO));
	size_t clen = qcow2_upd_clen(u, g);
	uint64_t host;
	int r = qcow2_upd_alloc(u, &host, e);
	if (r)
		return r;
	if (old && n < clen) {
		r = vdk_image_pread(q->img, q->buf, clen, g << q->cbits, e);
		memcpy(q->buf + within, buf, n);
		if (!r)
			r = vdk_update_pwrite(u, q->buf, clen, host, false, e);
	} else {
		r = vdk_update_pwrite(u, buf, n, host + within, false, e);
	}
	if (!r && (ent & (QCOW2_OFLAG_COMPRESSED | QCOW2_OFFSET_MASK)))
		r = qcow2_upd_release(u, ent, e);
	if (!r)
		qcow2_upd_set_ent(t, q, g, host | QCOW2_OFLAG_COPIED);
	return r;
}

static int qcow2_upd_pressure(struct vdk_update *u, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	size_t n = q->l2.n + q->rb.n;
	if (n < QCOW2_UPD_MAX_TABS && (uint64_t)n * q->cs < QCOW2_UPD_MAX_BYTES)
		return 0;
	return qcow2_update_flush(u, e);
}

static int qcow2_upd_write_cluster(struct vdk_update *u, const uint8_t *buf, uint64_t g,
                                   size_t within, size_t n, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	struct qcow2_upd_tab *t;
	int r = qcow2_upd_pressure(u, e);
	if (!r)
		r = qcow2_upd_l2(u, g, true, &t, e);
	if (r)
		return r;
	uint64_t ent = qcow2_upd_ent(t, q, g), host = ent & QCOW2_OFFSET_MASK;
	if (!qcow2_upd_in_place(ent))
		return qcow2_upd_cow(u, t, g, ent, buf, within, n, e);
	r = qcow2_upd_check_host(u, host, g, e);
	if (r)
		return r;
	size_t clen = qcow2_upd_clen(u, g);
	if ((ent & QCOW2_OFLAG_ZERO) && n < clen) {
		/* A preallocated zero cluster: its stored bytes are stale. */
		memset(q->buf, 0, clen);
		memcpy(q->buf + within, buf, n);
		r = vdk_update_pwrite(u, q->buf, clen, host, false, e);
	} else {
		r = vdk_update_pwrite(u, buf, n, host + within, false, e);
	}
	if (!r && (ent & QCOW2_OFLAG_ZERO))
		qcow2_upd_set_ent(t, q, g, ent & ~QCOW2_OFLAG_ZERO);
	return r;
}

int qcow2_update_write(struct vdk_update *u, const void *buf, size_t len, uint64_t off,
                       struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	const uint8_t *p = buf;
	while (len) {
		uint64_t g = off >> q->cbits;
		size_t within = (size_t)(off & (q->cs - 1));
		size_t n = VDK_MIN((size_t)q->cs - within, len);
		int r = qcow2_upd_write_cluster(u, p, g, within, n, e);
		if (r)
			return r;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* A whole cluster made zero. Unallocated already reads as zeroes (a
 * target has no backing file); an owned cluster keeps its space with the
 * v3 zero flag (qcow2.txt "preallocated zero cluster"), v2 writes zeroes;
 * a compressed or shared one is released. */
static int qcow2_upd_zero_cluster(struct vdk_update *u, uint64_t g, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	struct qcow2_upd_tab *t;
	int r = qcow2_upd_pressure(u, e);
	if (!r)
		r = qcow2_upd_l2(u, g, false, &t, e);
	if (r || !t)
		return r;
	uint64_t ent = qcow2_upd_ent(t, q, g);
	if (qcow2_upd_reads_zero(ent))
		return 0;
	if (qcow2_upd_in_place(ent)) {
		if (q->version >= 3) {
			qcow2_upd_set_ent(t, q, g, ent | QCOW2_OFLAG_ZERO);
			return 0;
		}
		memset(q->buf, 0, q->cs);
		return qcow2_upd_write_cluster(u, q->buf, g, 0, qcow2_upd_clen(u, g), e);
	}
	r = qcow2_upd_release(u, ent, e);
	if (!r)
		qcow2_upd_set_ent(t, q, g, q->version >= 3 ? QCOW2_OFLAG_ZERO : 0);
	return r;
}

int qcow2_update_zero(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	while (len) {
		uint64_t g = off >> q->cbits;
		size_t within = (size_t)(off & (q->cs - 1));
		size_t clen = qcow2_upd_clen(u, g);
		size_t n = (size_t)VDK_MIN((uint64_t)clen - within, len);
		int r;
		if (within == 0 && n == clen) {
			r = qcow2_upd_zero_cluster(u, g, e);
		} else {
			struct qcow2_upd_tab *t;
			r = qcow2_upd_l2(u, g, false, &t, e);
			uint64_t ent = r ? 0 : qcow2_upd_ent(t, q, g);
			if (!r && !qcow2_upd_reads_zero(ent)) {
				uint8_t *z = calloc(1, n);
				r = z ? qcow2_upd_write_cluster(u, z, g, within, n, e)
				      : vdk_nomem(e, u->path, FMT, "a zero buffer");
				free(z);
			}
		}
		if (r)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

/* Flush ----------------------------------------------------------------- */

static int qcow2_upd_write_set(struct vdk_update *u, struct qcow2_upd_set *s, bool fresh_only,
                               bool *wrote, struct vdk_err *e)
{
	for (size_t i = 0; i < s->n; i++) {
		if (fresh_only && !s->v[i].fresh)
			continue;
		int r = qcow2_upd_tab_write(u, &s->v[i], wrote, e);
		if (r)
			return r;
	}
	return 0;
}

static int qcow2_upd_sync_if(struct vdk_update *u, bool wrote, struct vdk_err *e)
{
	return wrote ? vdk_update_sync(u, e) : 0;
}

/* Phase A: the file reaches its new end (a cluster's unwritten tail reads
 * as zeroes), data and new tables are written, refcounts are durable. */
static int qcow2_upd_phase_a(struct vdk_update *u, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	struct stat st;
	if (fstat(u->fd, &st))
		return vdk_ioerr(e, errno, u->path, "stat failed: %s", strerror(errno));
	if ((uint64_t)st.st_size < q->end && ftruncate(u->fd, (off_t)q->end))
		return vdk_ioerr(e, errno, u->path, "cannot extend the file to %llu bytes: %s",
		                 (unsigned long long)q->end, strerror(errno));
	bool wrote = true; /* guest data may have been written in place */
	int r = qcow2_upd_write_set(u, &q->l2, true, &wrote, e);
	if (!r)
		r = qcow2_upd_write_set(u, &q->rb, false, &wrote, e);
	return r ? r : vdk_update_sync(u, e);
}

static int qcow2_upd_phase_d(struct vdk_update *u, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	bool wrote = false;
	int r = qcow2_upd_tab_write(u, &q->l1, &wrote, e);
	for (size_t i = 0; !r && i < q->ndrop; i++)
		r = qcow2_upd_rc_set(u, q->drop[i], -1, e);
	if (!r)
		r = qcow2_upd_write_set(u, &q->rb, false, &wrote, e);
	if (!r)
		q->ndrop = 0;
	return r ? r : qcow2_upd_sync_if(u, wrote, e);
}

int qcow2_update_flush(struct vdk_update *u, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	bool wrote_rt = false, wrote_l2 = false;
	int r = qcow2_upd_phase_a(u, e);
	if (!r)
		r = qcow2_upd_tab_write(u, &q->rt, &wrote_rt, e);
	if (!r)
		r = qcow2_upd_sync_if(u, wrote_rt, e);
	if (!r)
		r = qcow2_upd_write_set(u, &q->l2, false, &wrote_l2, e);
	if (!r)
		r = qcow2_upd_sync_if(u, wrote_l2, e);
	if (!r)
		r = qcow2_upd_phase_d(u, e);
	if (!r) {
		qcow2_upd_set_clear(&q->l2);
		qcow2_upd_set_clear(&q->rb);
	}
	return r;
}

/* Open ------------------------------------------------------------------ */

/* What this updater does not handle is refused before anything is
 * written, naming the header field. */
static int qcow2_upd_refuse(struct vdk_update *u, const struct vdk_image *img, struct vdk_err *e)
{
	const struct qcow2_state *s = img->state;
	const char *p = u->path;
	if (img->dirty)
		return vdk_unsup(e, p, FMT, 72,
		                 "the dirty bit is set (refcounts may be stale): run 'qemu-img "
		                 "check -r all' first");
	if (s->incompat & QCOW2_INCOMPAT_CORRUPT)
		return vdk_unsup(e, p, FMT, 72, "the image is marked corrupt");
	if (s->backing_name)
		return vdk_unsup(e, p, FMT, 8,
		                 "the image has a backing file ('%s'); an update target must "
		                 "hold the whole disk",
		                 s->backing_name);
	if (s->nb_snapshots)
		return vdk_unsup(e, p, FMT, 60, "the image has %u internal snapshot(s)",
		                 s->nb_snapshots);
	if (s->data_name || (s->incompat & QCOW2_INCOMPAT_DATA_FILE))
		return vdk_unsup(e, p, FMT, 72, "the image uses an external data file");
	if (s->extl2)
		return vdk_unsup(e, p, FMT, 72,
		                 "extended L2 entries are not supported for updates");
	if (s->have_bitmaps && (s->autoclear & QCOW2_AUTOCLEAR_BITMAPS))
		return vdk_unsup(e, p, FMT, 88,
		                 "the image has persistent dirty bitmaps (an update would make "
		                 "them wrong)");
	if (s->refcount_order < 3)
		return vdk_unsup(e, p, FMT, 96, "refcount_order %u (under 8 bits) is not supported",
		                 s->refcount_order);
	return 0;
}

/* The L1 and refcount tables in memory, as on disk; a shared L2 table
 * (L1 entry without COPIED) would need copying: refused. */
static int qcow2_upd_tables(struct vdk_update *u, const struct qcow2_state *s, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	uint64_t rt_bytes = (uint64_t)s->rt_clusters << q->cbits;
	if (rt_bytes == 0 || rt_bytes > QCOW2_MAX_RT_BYTES)
		return vdk_bad(e, u->path, FMT, 56, "refcount table of %u clusters",
		               s->rt_clusters);
	size_t l1_bytes = (size_t)s->l1_size * 8;
	if (qcow2_upd_tab_alloc(&q->l1, l1_bytes ? l1_bytes : 8) ||
	    qcow2_upd_tab_alloc(&q->rt, (size_t)rt_bytes) || !(q->buf = malloc(q->cs)))
		return vdk_nomem(e, u->path, FMT, "the L1 and refcount tables");
	q->l1.len = l1_bytes;
	q->l1.host = s->l1_off;
	q->rt.host = s->rt_off;
	q->rt_n = rt_bytes / 8;
	for (uint32_t i = 0; i < s->l1_size; i++) {
		if ((s->l1[i] & QCOW2_OFFSET_MASK) && !(s->l1[i] & QCOW2_OFLAG_COPIED))
			return vdk_unsup(e, u->path, FMT, s->l1_off + 8ull * i,
			                 "L2 table %u is shared (no COPIED flag); not supported",
			                 i);
		vdk_put_be64(q->l1.raw + 8 * (size_t)i, s->l1[i]);
	}
	int r = vdk_pread_full(u->fd, q->rt.raw, (size_t)rt_bytes, s->rt_off);
	if (r)
		return vdk_ioerr(e, -r, u->path, "reading the refcount table at %llu failed: %s",
		                 (unsigned long long)s->rt_off, strerror(-r));
	return 0;
}

int qcow2_update_open(struct vdk_update *u, struct vdk_err *e)
{
	struct qcow2_ustate *q = u->state;
	struct vdk_open_opts oo = {.no_backing = true};
	int r = vdk_image_open_path(u->path, FMT, &oo, &q->img, e);
	if (r)
		return r;
	const struct qcow2_state *s = q->img->state;
	if ((r = qcow2_upd_refuse(u, q->img, e)))
		return r;
	q->cs = s->cluster_size;
	q->cbits = s->cluster_bits;
	q->l2n = s->l2_entries;
	q->version = s->version;
	q->rc_bytes = 1u << (s->refcount_order - 3);
	q->rb_entries = q->cs / q->rc_bytes;
	if ((r = qcow2_upd_tables(u, s, e)))
		return r;
	struct stat st;
	if (fstat(u->fd, &st))
		return vdk_ioerr(e, errno, u->path, "stat failed: %s", strerror(errno));
	/* New clusters go at the end of the file: a device has no end to
	 * grow (and reports no size in st_size). */
	if (!S_ISREG(st.st_mode))
		return vdk_unsup(e, u->path, FMT, VDK_NO_OFFSET,
		                 "a qcow2 image on a block device cannot be updated in place");
	q->orig_end = q->end = vdk_round_up((uint64_t)st.st_size, q->cs);
	u->size = q->img->size;
	u->granularity = q->cs;
	return 0;
}

void qcow2_update_close(struct vdk_update *u)
{
	struct qcow2_ustate *q = u->state;
	qcow2_upd_set_clear(&q->l2);
	qcow2_upd_set_clear(&q->rb);
	free(q->l2.v);
	free(q->rb.v);
	qcow2_upd_tab_free(&q->l1);
	qcow2_upd_tab_free(&q->rt);
	free(q->drop);
	free(q->buf);
	vdk_image_close(q->img);
}
