/* qcow2 metadata ranges for the reader: the header cluster, L1 tables
 * (active and snapshots'), active L2 tables, refcount table and blocks,
 * snapshot table and bitmap directory, sorted once at open. Every L2 table
 * and data cluster the reader uses is checked against them as it is
 * decoded (qemu's qcow2_check_metadata_overlap idea), so a damaged image
 * is refused instead of serving metadata as guest data. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util.h"

#define FMT                 "qcow2"
#define QCOW2_META_MAX_SCAN 64u

struct qcow2_mlist {
	struct qcow2_range *v;
	size_t n, cap;
};

static int qcow2_meta_add(struct qcow2_mlist *l, uint64_t off, uint64_t len, unsigned kind)
{
	if (len == 0)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct qcow2_range *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	uint64_t end = off > UINT64_MAX - len ? UINT64_MAX : off + len;
	l->v[l->n++] = (struct qcow2_range){.off = off, .end = end, .kind = kind};
	return 0;
}

static int qcow2_meta_cmp(const void *a, const void *b)
{
	const struct qcow2_range *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off ? 1 : 0;
}

/* Refcount blocks: the table is at most 8 MiB (qemu's limit); only what
 * lies inside the file is read. */
static int qcow2_meta_refblocks(struct vdk_image *img, struct qcow2_mlist *l, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	uint64_t bytes = (uint64_t)s->rt_clusters * s->cluster_size, fsize = img->src->size;
	if (bytes > QCOW2_MAX_RT_BYTES || s->rt_off >= fsize)
		return 0;
	bytes = VDK_MIN(bytes, fsize - s->rt_off) / 8 * 8;
	uint8_t *raw = malloc(bytes ? bytes : 1);
	if (!raw)
		return -ENOMEM;
	int r = vdk_src_pread(img->src, raw, (size_t)bytes, s->rt_off, e);
	for (uint64_t i = 0; r == 0 && i < bytes / 8; i++) {
		uint64_t off = vdk_be64(raw + 8 * i) & QCOW2_RT_OFFSET;
		if (off && off % s->cluster_size == 0)
			r = qcow2_meta_add(l, off, s->cluster_size, QCOW2_M_RB);
	}
	free(raw);
	return r;
}

static int qcow2_meta_collect(struct vdk_image *img, struct qcow2_mlist *l, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	uint64_t cs = s->cluster_size;
	int r = qcow2_meta_add(l, 0, cs, QCOW2_M_HEADER);
	r = r ? r : qcow2_meta_add(l, s->l1_off, (uint64_t)s->l1_size * 8, QCOW2_M_L1);
	r = r ? r : qcow2_meta_add(l, s->rt_off, (uint64_t)s->rt_clusters * cs, QCOW2_M_RT);
	r = r ? r : qcow2_meta_add(l, s->snapshots_off, s->snapshots_size, QCOW2_M_SNAPTAB);
	for (uint32_t i = 0; r == 0 && i < s->nb_snapshots; i++)
		r = qcow2_meta_add(l, s->snaps[i].l1_off, (uint64_t)s->snaps[i].l1_size * 8,
		                   QCOW2_M_SNAPL1);
	if (r == 0 && s->have_bitmaps && (s->autoclear & QCOW2_AUTOCLEAR_BITMAPS))
		r = qcow2_meta_add(l, s->bm_dir_off, s->bm_dir_size, QCOW2_M_BITMAPS);
	for (uint32_t i = 0; r == 0 && i < s->l1_size; i++) {
		uint64_t h = s->l1[i] & QCOW2_OFFSET_MASK;
		if (h)
			r = qcow2_meta_add(l, h, cs, QCOW2_M_L2);
	}
	return r ? r : qcow2_meta_refblocks(img, l, e);
}

int qcow2_meta_init(struct vdk_image *img, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	struct qcow2_mlist l = {0};
	int r = qcow2_meta_collect(img, &l, e);
	if (r == 0 && !(s->meta_maxend = malloc((l.n ? l.n : 1) * sizeof(uint64_t))))
		r = -ENOMEM;
	if (r) {
		free(l.v);
		return r;
	}
	qsort(l.v, l.n, sizeof(*l.v), qcow2_meta_cmp);
	for (size_t i = 0; i < l.n; i++)
		s->meta_maxend[i] = VDK_MAX(l.v[i].end, i ? s->meta_maxend[i - 1] : 0);
	s->meta = l.v;
	s->nmeta = l.n;
	return 0;
}

void qcow2_meta_free(struct qcow2_state *s)
{
	free(s->meta);
	free(s->meta_maxend);
}

/* Index of the first range whose running maximum end passes off: every
 * range overlapping [off, ...) is at or after it. */
static size_t qcow2_meta_first(const struct qcow2_state *s, uint64_t off)
{
	size_t lo = 0, hi = s->nmeta;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->meta_maxend[mid] > off)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Up to max ranges overlapping [off, end) into out; returns the count. */
static size_t qcow2_meta_hits(const struct qcow2_state *s, uint64_t off, uint64_t end,
                              const struct qcow2_range **out, size_t max)
{
	size_t n = 0, scanned = 0;
	for (size_t i = qcow2_meta_first(s, off);
	     i < s->nmeta && s->meta[i].off < end && n < max && scanned < QCOW2_META_MAX_SCAN;
	     i++, scanned++)
		if (s->meta[i].end > off)
			out[n++] = &s->meta[i];
	return n;
}

uint64_t qcow2_entry_off(const struct qcow2_state *s, uint64_t g)
{
	uint64_t cl = g >> s->cluster_bits, l1i = cl / s->l2_entries;
	if (l1i >= s->l1_size || !(s->l1[l1i] & QCOW2_OFFSET_MASK))
		return VDK_NO_OFFSET;
	return (s->l1[l1i] & QCOW2_OFFSET_MASK) + (cl % s->l2_entries) * (s->extl2 ? 16 : 8);
}

int qcow2_meta_l2_ok(struct vdk_image *img, uint64_t l1_idx, uint64_t host, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	const struct qcow2_range *h[3];
	size_t n = qcow2_meta_hits(s, host, host + s->cluster_size, h, 3);
	uint64_t at = s->l1_off + 8 * l1_idx;
	for (size_t i = 0; i < n; i++)
		if (h[i]->kind != QCOW2_M_L2)
			return vdk_bad(e, img->src->name, FMT, at,
			               "L1 entry %llu: L2 table at %llu overlaps the %s at %llu",
			               (unsigned long long)l1_idx, (unsigned long long)host,
			               qcow2_meta_name((unsigned)h[i]->kind),
			               (unsigned long long)h[i]->off);
	if (n > 1)
		return vdk_bad(e, img->src->name, FMT, at,
		               "L1 entry %llu: L2 table at %llu is used more than once",
		               (unsigned long long)l1_idx, (unsigned long long)host);
	return 0;
}

int qcow2_meta_data_ok(struct vdk_image *img, uint64_t off, uint64_t len, uint64_t guest,
                       struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	if (s->data)
		return 0; /* guest data lives in the external file */
	uint64_t at = qcow2_entry_off(s, guest);
	if (!vdk_range_ok(off, len, img->src->size))
		return vdk_bad(e, img->src->name, FMT, at,
		               "guest offset %llu: data at host %llu (%llu bytes) runs past the "
		               "end of the file (%llu bytes)",
		               (unsigned long long)guest, (unsigned long long)off,
		               (unsigned long long)len, (unsigned long long)img->src->size);
	const struct qcow2_range *h[1];
	if (qcow2_meta_hits(s, off, off + len, h, 1))
		return vdk_bad(e, img->src->name, FMT, at,
		               "guest offset %llu: data at host %llu lies in the %s at %llu",
		               (unsigned long long)guest, (unsigned long long)off,
		               qcow2_meta_name((unsigned)h[0]->kind),
		               (unsigned long long)h[0]->off);
	return 0;
}
