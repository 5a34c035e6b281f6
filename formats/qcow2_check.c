/* qcow2 check: rebuild every host cluster's reference count from the
 * image's own structures (header, active and snapshot L1 tables, L2
 * tables, data and compressed clusters, snapshot table, refcount table and
 * blocks, bitmaps) and compare it with the stored refcounts. Counting
 * follows qemu-img check (qemu's block/qcow2-refcount.c): a stored
 * refcount below the references is a corruption, above them a leak; the
 * COPIED flags of the active tables must say "refcount == 1"; reserved
 * bits and misaligned offsets are corruptions. Metadata past the end of
 * the file reads as zeroes, as qemu's file driver serves it. Repairs only
 * rewrite refcount block entries, in place, then fsync. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2.h"
#include "util.h"

#define FMT                  "qcow2"
#define QCOW2C_MAX_CLUSTERS  (1ull << 31) /* qemu refuses more (INT_MAX) */
#define QCOW2C_MAX_BM_DIR    (64u << 20)
#define QCOW2C_MAX_NOTES     100u
#define QCOW2C_BM_RESERVED   0xff000000000001feull
#define QCOW2C_BM_ALL_ONES   1ull
#define QCOW2C_BM_OFFSET     0x00fffffffffffe00ull
#define QCOW2C_AUTOCLEAR_BMP QCOW2_AUTOCLEAR_BITMAPS

struct qcow2c {
	struct vdk_image *img;
	struct qcow2_state *s;
	struct vdk_check *r;
	uint64_t fsize, cs;
	uint64_t nb;    /* clusters compared (the file's, grown by references) */
	uint64_t alloc; /* entries of ref and kind */
	uint32_t *ref;  /* references found */
	uint8_t *kind;  /* what first referenced the cluster */
	uint64_t ref_cap;
	uint64_t refcount_max;
	uint64_t *rt;
	uint64_t rt_n;
	uint32_t rb_shift; /* log2 of entries per refcount block */
	uint8_t *blk;      /* cached refcount block */
	uint64_t blk_idx;
	bool blk_valid, blk_dirty;
	uint8_t *tab; /* one L2 table */
	uint64_t dropped;
	unsigned fix;
	int fd; /* opened for repairs */
	bool data_file;
	struct vdk_err *e;
};

const char *qcow2_meta_name(unsigned kind)
{
	static const char *const n[QCOW2_M_NKINDS] = {
	    "free",           "header",         "L1 table",       "L2 table",
	    "refcount table", "refcount block", "snapshot table", "snapshot L1 table",
	    "bitmap data",    "data cluster",
	};
	return kind < QCOW2_M_NKINDS ? n[kind] : "?";
}

__attribute__((format(printf, 2, 3))) static void qcow2c_note(struct qcow2c *c, const char *fmt,
                                                              ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* A hostile image can have millions of findings: the counts say how
	 * many, the first ones say what. */
	if (c->r->findings.n >= QCOW2C_MAX_NOTES) {
		c->dropped++;
		return;
	}
	bool leak = !strncmp(line, "Leaked", 6);
	vdk_findings_add(&c->r->findings, leak ? VDK_WARN : VDK_ERROR, NULL, VDK_NO_OFFSET, "%s",
	                 line);
}

#define ULL(x) ((unsigned long long)(x))

/* Read [off, off+len) of the image file; bytes past its end read as zero. */
static int qcow2c_read(struct qcow2c *c, void *buf, uint64_t len, uint64_t off)
{
	uint64_t have = off < c->fsize ? VDK_MIN(len, c->fsize - off) : 0;
	memset((uint8_t *)buf + have, 0, (size_t)(len - have));
	return have ? vdk_src_pread(c->img->src, buf, (size_t)have, off, c->e) : 0;
}

static void qcow2c_inc(struct qcow2c *c, uint64_t off, uint64_t size, unsigned kind)
{
	if (size == 0)
		return;
	/* qemu: the last cluster may be partly past the end, no more. */
	if (off > UINT64_MAX - size || (off + size > c->fsize && off + size - c->fsize >= c->cs)) {
		qcow2c_note(c,
		            "ERROR %s at offset 0x%llx (0x%llx bytes) reaches a cluster or more "
		            "past the end of the file",
		            qcow2_meta_name(kind), ULL(off), ULL(size));
		c->r->corruptions++;
		return;
	}
	for (uint64_t k = off / c->cs; k <= (off + size - 1) / c->cs; k++) {
		if (k >= c->nb)
			c->nb = k + 1; /* k < alloc: bounded just above */
		if (c->ref[k] >= c->ref_cap) {
			qcow2c_note(c, "ERROR refcount overflow for cluster %llu (offset 0x%llx)",
			            ULL(k), ULL(k * c->cs));
			c->r->corruptions++;
			continue;
		}
		if (c->ref[k] && c->kind[k] != kind)
			qcow2c_note(c,
			            "overlap: cluster %llu (offset 0x%llx) is used as %s and as %s",
			            ULL(k), ULL(k * c->cs), qcow2_meta_name(c->kind[k]),
			            qcow2_meta_name(kind));
		if (!c->ref[k])
			c->kind[k] = (uint8_t)kind;
		c->ref[k]++;
	}
}

/* ---- stored refcounts ---- */

static uint64_t qcow2c_decode(const struct qcow2c *c, uint64_t j)
{
	uint32_t order = c->s->refcount_order, bits = 1u << order;
	if (order < 3) {
		uint64_t bit = j * bits;
		return (c->blk[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
	}
	const uint8_t *p = c->blk + j * (bits / 8);
	uint64_t v = 0;
	for (uint32_t i = 0; i < bits / 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void qcow2c_encode(struct qcow2c *c, uint64_t j, uint64_t v)
{
	uint32_t order = c->s->refcount_order, bits = 1u << order;
	if (order < 3) {
		uint64_t bit = j * bits;
		uint8_t m = (uint8_t)(((1u << bits) - 1) << (bit % 8));
		c->blk[bit / 8] = (uint8_t)((c->blk[bit / 8] & ~m) | ((v << (bit % 8)) & m));
		return;
	}
	uint8_t *p = c->blk + j * (bits / 8);
	for (uint32_t i = bits / 8; i-- > 0; v >>= 8)
		p[i] = (uint8_t)v;
}

static int qcow2c_flush(struct qcow2c *c)
{
	if (!c->blk_dirty)
		return 0;
	uint64_t off = c->rt[c->blk_idx] & QCOW2_RT_OFFSET;
	c->blk_dirty = false;
	if (pwrite(c->fd, c->blk, c->cs, (off_t)off) != (ssize_t)c->cs)
		return vdk_err_set(c->e, VDK_E_IO, errno ? errno : EIO, c->img->src->name, FMT, off,
		                   "cannot write refcount block %llu", ULL(c->blk_idx));
	return 0;
}

/* Refcount block idx into c->blk; *ok false when it cannot be read (an
 * unaligned offset: qemu's "Can't get refcount"). *absent when none. */
static int qcow2c_load_block(struct qcow2c *c, uint64_t idx, bool *ok, bool *absent)
{
	*ok = true;
	*absent = idx >= c->rt_n || !(c->rt[idx] & QCOW2_RT_OFFSET);
	if (*absent)
		return 0;
	uint64_t off = c->rt[idx] & QCOW2_RT_OFFSET;
	if (off % c->cs) {
		*ok = false;
		return 0;
	}
	if (c->blk_valid && c->blk_idx == idx)
		return 0;
	int r = qcow2c_flush(c);
	c->blk_valid = false;
	if (r || (r = qcow2c_read(c, c->blk, c->cs, off)))
		return r;
	c->blk_idx = idx;
	c->blk_valid = true;
	return 0;
}

static int qcow2c_stored(struct qcow2c *c, uint64_t k, uint64_t *v, bool *ok)
{
	bool absent;
	int r = qcow2c_load_block(c, k >> c->rb_shift, ok, &absent);
	*v = (!r && *ok && !absent) ? qcow2c_decode(c, k & ((1ull << c->rb_shift) - 1)) : 0;
	return r;
}

static int qcow2c_open_rw(struct qcow2c *c)
{
	struct vdk_src *src = c->img->src;
	struct stat a, b;
	if (c->fd >= 0)
		return 0;
	if (src->fd < 0 || src->fd_off != 0 || fstat(src->fd, &a) || !S_ISREG(a.st_mode))
		return vdk_unsup(c->e, src->name, FMT, VDK_NO_OFFSET,
		                 "refcounts can only be repaired in a plain file");
	c->fd = open(src->name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (c->fd < 0)
		return vdk_err_set(c->e, VDK_E_IO, errno, src->name, FMT, VDK_NO_OFFSET,
		                   "cannot open for writing");
	if (fstat(c->fd, &b) || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return vdk_err_set(c->e, VDK_E_IO, ESTALE, src->name, FMT, VDK_NO_OFFSET,
		                   "the file changed while it was being checked");
	return 0;
}

/* Set cluster k's stored refcount to v when its refcount block is a sound
 * one (inside the file, referenced exactly once, as a refcount block).
 * 1 when done, 0 when it cannot be done this way, < 0 on error. */
static int qcow2c_set(struct qcow2c *c, uint64_t k, uint64_t v)
{
	uint64_t idx = k >> c->rb_shift;
	if (idx >= c->rt_n || v > c->refcount_max)
		return 0;
	uint64_t off = c->rt[idx] & QCOW2_RT_OFFSET, bc = off / c->cs;
	if (!off || off % c->cs || !vdk_range_ok(off, c->cs, c->fsize) || c->ref[bc] != 1 ||
	    c->kind[bc] != QCOW2_M_RB)
		return 0;
	bool ok, absent;
	int r = qcow2c_open_rw(c);
	if (r || (r = qcow2c_load_block(c, idx, &ok, &absent)))
		return r;
	qcow2c_encode(c, k & ((1ull << c->rb_shift) - 1), v);
	c->blk_dirty = true;
	return 1;
}

/* ---- references ---- */

static void qcow2c_l2_entry(struct qcow2c *c, uint64_t at, uint64_t ent, uint64_t bmp, bool active,
                            uint64_t *next)
{
	struct qcow2_state *s = c->s;
	struct vdk_check *r = c->r;
	if (ent & QCOW2_OFLAG_COMPRESSED) {
		if (ent & QCOW2_OFLAG_COPIED) {
			qcow2c_note(c,
			            "ERROR L2 entry at 0x%llx: COPIED set on a compressed cluster",
			            ULL(at));
			r->corruptions++;
		}
		if (c->data_file || bmp) {
			qcow2c_note(c, "ERROR L2 entry at 0x%llx: compressed cluster with %s",
			            ULL(at), c->data_file ? "a data file" : "a subcluster bitmap");
			r->corruptions++;
			return;
		}
		uint64_t coff = ent & s->coff_mask;
		uint64_t nsec = ((ent >> s->csize_shift) & s->csize_mask) + 1;
		qcow2c_inc(c, coff, nsec * 512 - (coff & 511), QCOW2_M_DATA);
		if (active) {
			r->allocated_clusters++;
			r->compressed_clusters++;
			r->fragmented_clusters++; /* qemu counts every one */
		}
		return;
	}
	if (ent & QCOW2_L2_RESERVED) {
		qcow2c_note(c, "ERROR L2 entry at 0x%llx has reserved bits set: 0x%016llx", ULL(at),
		            ULL(ent));
		r->corruptions++;
	}
	uint64_t off = ent & QCOW2_OFFSET_MASK;
	bool zero = !s->extl2 && (ent & QCOW2_OFLAG_ZERO);
	bool alloc = off || (!zero && c->data_file && (ent & QCOW2_OFLAG_COPIED));
	if (!alloc) {
		if (!zero && (bmp & QCOW2_L2_ALL_ALLOC)) {
			qcow2c_note(c,
			            "ERROR L2 entry at 0x%llx: unallocated cluster with "
			            "allocated subclusters",
			            ULL(at));
			r->corruptions++;
		}
		return;
	}
	if ((bmp >> 32) & bmp) {
		qcow2c_note(c, "ERROR L2 entry at 0x%llx: subcluster bitmap 0x%016llx is corrupted",
		            ULL(at), ULL(bmp));
		r->corruptions++;
	}
	if (off % c->cs) {
		qcow2c_note(c, "ERROR L2 entry at 0x%llx: cluster offset 0x%llx is not aligned",
		            ULL(at), ULL(off));
		r->corruptions++;
	}
	if (active) {
		r->allocated_clusters++;
		if (*next && off != *next)
			r->fragmented_clusters++;
		*next = off + c->cs;
	}
	if (!c->data_file)
		qcow2c_inc(c, off, c->cs, QCOW2_M_DATA);
}

static int qcow2c_l2(struct qcow2c *c, uint64_t l2_off, bool active)
{
	struct qcow2_state *s = c->s;
	int rr = qcow2c_read(c, c->tab, c->cs, l2_off);
	if (rr)
		return rr;
	unsigned w = s->extl2 ? 16 : 8;
	uint64_t next = 0;
	for (uint32_t i = 0; i < s->l2_entries; i++) {
		const uint8_t *p = c->tab + (size_t)i * w;
		qcow2c_l2_entry(c, l2_off + (uint64_t)i * w, vdk_be64(p),
		                w == 16 ? vdk_be64(p + 8) : 0, active, &next);
	}
	return 0;
}

static int qcow2c_l1(struct qcow2c *c, uint64_t l1_off, uint32_t l1_size, bool active)
{
	uint64_t bytes = (uint64_t)l1_size * 8;
	qcow2c_inc(c, l1_off, bytes, active ? QCOW2_M_L1 : QCOW2_M_SNAPL1);
	if (!l1_size)
		return 0;
	if (bytes > QCOW2_MAX_L1_BYTES) {
		qcow2c_note(c, "cannot check the L1 table at 0x%llx (%u entries)", ULL(l1_off),
		            l1_size);
		c->r->check_errors++;
		return 0;
	}
	if (l1_off >= c->fsize)
		return 0;
	/* Entries past the end of the file read as zero: not allocated. */
	uint32_t n = (uint32_t)(VDK_MIN(bytes, c->fsize - l1_off) / 8);
	uint8_t *raw = malloc(n ? (size_t)n * 8 : 1);
	if (!raw)
		return vdk_err_set(c->e, VDK_E_IO, ENOMEM, c->img->src->name, FMT, l1_off,
		                   "no memory for an L1 table of %u entries", l1_size);
	int r = qcow2c_read(c, raw, (uint64_t)n * 8, l1_off);
	for (uint32_t i = 0; r == 0 && i < n; i++) {
		uint64_t ent = vdk_be64(raw + 8 * (size_t)i), l2 = ent & QCOW2_OFFSET_MASK;
		if (!ent)
			continue;
		if (ent & QCOW2_L1_RESERVED) {
			qcow2c_note(c,
			            "ERROR L1 entry %u at 0x%llx has reserved bits set: 0x%016llx",
			            i, ULL(l1_off + 8ull * i), ULL(ent));
			c->r->corruptions++;
		}
		qcow2c_inc(c, l2, c->cs, QCOW2_M_L2);
		if (l2 % c->cs) {
			qcow2c_note(c,
			            "ERROR L1 entry %u at 0x%llx: L2 table 0x%llx is not aligned",
			            i, ULL(l1_off + 8ull * i), ULL(l2));
			c->r->corruptions++;
		}
		r = qcow2c_l2(c, l2, active);
	}
	free(raw);
	return r;
}

/* One bitmap directory entry at p (n bytes left): its table and data. */
static int qcow2c_bitmap(struct qcow2c *c, const uint8_t *p, uint64_t n, uint64_t at,
                         uint64_t *used)
{
	if (n < 24)
		return 1;
	uint64_t toff = vdk_be64(p);
	uint32_t tsize = vdk_be32(p + 8), xlen = vdk_be32(p + 20);
	uint16_t nlen = vdk_be16(p + 18);
	*used = vdk_round_up(24ull + xlen + nlen, 8);
	if (*used > n)
		return 1;
	uint64_t bytes = (uint64_t)tsize * 8;
	qcow2c_inc(c, toff, bytes, QCOW2_M_BITMAPS);
	if (!vdk_range_ok(toff, bytes, c->fsize) || toff % c->cs)
		return 1;
	uint8_t *t = malloc(bytes ? bytes : 1);
	if (!t)
		return vdk_err_set(c->e, VDK_E_IO, ENOMEM, c->img->src->name, FMT, at,
		                   "no memory for a bitmap table");
	int r = qcow2c_read(c, t, bytes, toff);
	for (uint32_t i = 0; r == 0 && i < tsize; i++) {
		uint64_t ent = vdk_be64(t + 8 * (size_t)i), off = ent & QCOW2C_BM_OFFSET;
		if ((ent & QCOW2C_BM_RESERVED) || off % c->cs ||
		    (off && (ent & QCOW2C_BM_ALL_ONES))) {
			qcow2c_note(c, "ERROR bitmap table entry at 0x%llx is invalid: 0x%016llx",
			            ULL(toff + 8ull * i), ULL(ent));
			c->r->corruptions++;
		} else if (off) {
			qcow2c_inc(c, off, c->cs, QCOW2_M_BITMAPS);
		}
	}
	free(t);
	return r;
}

static int qcow2c_bitmaps(struct qcow2c *c)
{
	struct qcow2_state *s = c->s;
	if (!s->have_bitmaps || !(s->autoclear & QCOW2C_AUTOCLEAR_BMP) || !s->nb_bitmaps)
		return 0;
	qcow2c_inc(c, s->bm_dir_off, s->bm_dir_size, QCOW2_M_BITMAPS);
	if (s->bm_dir_size > QCOW2C_MAX_BM_DIR ||
	    !vdk_range_ok(s->bm_dir_off, s->bm_dir_size, c->fsize)) {
		qcow2c_note(c, "ERROR bitmap directory at 0x%llx (%llu bytes) is unreadable",
		            ULL(s->bm_dir_off), ULL(s->bm_dir_size));
		c->r->corruptions++;
		return 0;
	}
	uint8_t *d = malloc(s->bm_dir_size ? s->bm_dir_size : 1);
	if (!d)
		return -ENOMEM;
	int r = qcow2c_read(c, d, s->bm_dir_size, s->bm_dir_off);
	uint64_t pos = 0;
	for (uint32_t i = 0; r == 0 && i < s->nb_bitmaps; i++) {
		uint64_t used = 0;
		r = qcow2c_bitmap(c, d + pos, s->bm_dir_size - pos, s->bm_dir_off + pos, &used);
		if (r > 0) {
			qcow2c_note(c, "ERROR bitmap %u at 0x%llx is invalid", i,
			            ULL(s->bm_dir_off + pos));
			c->r->corruptions++;
			r = 0;
			break;
		}
		pos += used;
	}
	free(d);
	return r;
}

static int qcow2c_refblocks(struct qcow2c *c)
{
	for (uint64_t i = 0; i < c->rt_n; i++) {
		uint64_t raw = c->rt[i], off = raw & QCOW2_RT_OFFSET, k = off / c->cs;
		if (raw & ~QCOW2_RT_OFFSET) {
			qcow2c_note(c, "ERROR refcount table entry %llu has reserved bits set",
			            ULL(i));
			c->r->corruptions++;
		} else if (off % c->cs) {
			qcow2c_note(c, "ERROR refcount block %llu at 0x%llx is not cluster aligned",
			            ULL(i), ULL(off));
			c->r->corruptions++;
		} else if (k >= c->nb) {
			qcow2c_note(c, "ERROR refcount block %llu at 0x%llx is outside the image",
			            ULL(i), ULL(off));
			c->r->corruptions++;
		} else if (off) {
			qcow2c_inc(c, off, c->cs, QCOW2_M_RB);
			if (c->ref[k] != 1) {
				qcow2c_note(c, "ERROR refcount block %llu at 0x%llx refcount=%u",
				            ULL(i), ULL(off), c->ref[k]);
				c->r->corruptions++;
			}
		}
	}
	return 0;
}

static int qcow2c_load_rt(struct qcow2c *c)
{
	struct qcow2_state *s = c->s;
	uint64_t bytes = (uint64_t)s->rt_clusters * c->cs;
	if (bytes > QCOW2_MAX_RT_BYTES || s->rt_off % c->cs) {
		qcow2c_note(c, "cannot check: refcount table at 0x%llx (%u clusters) is invalid",
		            ULL(s->rt_off), s->rt_clusters);
		c->r->check_errors++;
		return 1;
	}
	/* Entries past the end of the file read as zero: no block. */
	bytes = s->rt_off < c->fsize ? VDK_MIN(bytes, c->fsize - s->rt_off) / 8 * 8 : 0;
	c->rt_n = bytes / 8;
	uint8_t *raw = malloc(bytes ? bytes : 1);
	c->rt = malloc(bytes ? bytes : 8);
	if (!raw || !c->rt) {
		free(raw);
		return -ENOMEM;
	}
	int r = qcow2c_read(c, raw, bytes, s->rt_off);
	for (uint64_t i = 0; r == 0 && i < c->rt_n; i++)
		c->rt[i] = vdk_be64(raw + 8 * i);
	free(raw);
	return r;
}

static int qcow2c_count(struct qcow2c *c)
{
	struct qcow2_state *s = c->s;
	qcow2c_inc(c, 0, c->cs, QCOW2_M_HEADER);
	int r = qcow2c_l1(c, s->l1_off, s->l1_size, true);
	for (uint32_t i = 0; r == 0 && i < s->nb_snapshots; i++)
		r = qcow2c_l1(c, s->snaps[i].l1_off, s->snaps[i].l1_size, false);
	if (r)
		return r;
	qcow2c_inc(c, s->snapshots_off, s->snapshots_size, QCOW2_M_SNAPTAB);
	qcow2c_inc(c, s->rt_off, (uint64_t)s->rt_clusters * c->cs, QCOW2_M_RT);
	if ((r = qcow2c_bitmaps(c)))
		return r;
	return qcow2c_refblocks(c);
}

/* ---- comparison ---- */

static int qcow2c_mismatch(struct qcow2c *c, uint64_t k, uint64_t st, uint64_t ref)
{
	bool leak = st > ref;
	unsigned need = leak ? VDK_FIX_LEAKS : VDK_FIX_ERRORS;
	if (c->fix & need) {
		int r = qcow2c_set(c, k, ref);
		if (r < 0)
			return r;
		if (r > 0) {
			qcow2c_note(
			    c, "Repaired cluster %llu (offset 0x%llx) refcount=%llu reference=%llu",
			    ULL(k), ULL(k * c->cs), ULL(st), ULL(ref));
			(*(leak ? &c->r->leaks_fixed : &c->r->fixed))++;
			return 0;
		}
		qcow2c_note(c,
		            "cannot repair cluster %llu: its refcount block is missing or unsound",
		            ULL(k));
	}
	qcow2c_note(c, "%s cluster %llu (offset 0x%llx) refcount=%llu reference=%llu",
	            leak ? "Leaked" : "ERROR", ULL(k), ULL(k * c->cs), ULL(st), ULL(ref));
	(*(leak ? &c->r->leaks : &c->r->corruptions))++;
	return 0;
}

static int qcow2c_compare(struct qcow2c *c, uint64_t *highest)
{
	uint64_t bad_blocks = 0, last_bad = UINT64_MAX;
	*highest = 0;
	for (uint64_t k = 0; k < c->nb; k++) {
		uint64_t st;
		bool ok;
		int r = qcow2c_stored(c, k, &st, &ok);
		if (r)
			return r;
		if (!ok) {
			c->r->check_errors++;
			if (last_bad != k >> c->rb_shift && bad_blocks++ < 4)
				qcow2c_note(
				    c, "cannot get refcounts from refcount block %llu (0x%llx)",
				    ULL(k >> c->rb_shift), ULL(c->rt[k >> c->rb_shift]));
			last_bad = k >> c->rb_shift;
			continue;
		}
		if (st || c->ref[k])
			*highest = k;
		if (st != c->ref[k] && (r = qcow2c_mismatch(c, k, st, c->ref[k])))
			return r;
	}
	return qcow2c_flush(c);
}

static void qcow2c_copied(struct qcow2c *c, uint64_t at, const char *what, uint64_t ent, uint64_t k)
{
	uint64_t st = 1;
	bool ok = true;
	if (!c->data_file || strcmp(what, "L2 table") == 0)
		if (qcow2c_stored(c, k, &st, &ok) || !ok)
			return;
	if ((st == 1) == ((ent & QCOW2_OFLAG_COPIED) != 0))
		return;
	qcow2c_note(c, "ERROR OFLAG_COPIED %s: entry 0x%016llx at 0x%llx, refcount=%llu%s", what,
	            ULL(ent), ULL(at), ULL(st), c->fix & VDK_FIX_ERRORS ? " (cannot repair)" : "");
	c->r->corruptions++;
}

/* The COPIED bits of the active L1 table and its L2 tables. */
static int qcow2c_oflag(struct qcow2c *c)
{
	struct qcow2_state *s = c->s;
	unsigned w = s->extl2 ? 16 : 8;
	for (uint32_t i = 0; i < s->l1_size; i++) {
		uint64_t l2 = s->l1[i] & QCOW2_OFFSET_MASK;
		if (!l2)
			continue;
		qcow2c_copied(c, s->l1_off + 8ull * i, "L2 table", s->l1[i], l2 / c->cs);
		int r = qcow2c_read(c, c->tab, c->cs, l2);
		if (r)
			return r;
		for (uint32_t j = 0; j < s->l2_entries; j++) {
			uint64_t ent = vdk_be64(c->tab + (size_t)j * w),
			         off = ent & QCOW2_OFFSET_MASK;
			bool zero = !s->extl2 && (ent & QCOW2_OFLAG_ZERO);
			if (ent & QCOW2_OFLAG_COMPRESSED)
				continue;
			if (off || (!zero && c->data_file && (ent & QCOW2_OFLAG_COPIED)))
				qcow2c_copied(c, l2 + (uint64_t)j * w, "data cluster", ent,
				              off / c->cs);
		}
	}
	return 0;
}

/* ---- entry point ---- */

static int qcow2c_setup(struct qcow2c *c)
{
	struct qcow2_state *s = c->s;
	uint64_t nb = c->fsize / c->cs + (c->fsize % c->cs != 0);
	if (nb >= QCOW2C_MAX_CLUSTERS) {
		qcow2c_note(c, "cannot check: %llu host clusters (qemu's limit is 2^31)", ULL(nb));
		c->r->check_errors++;
		return 1;
	}
	c->nb = nb;
	c->alloc = nb + 2; /* references may reach into one cluster past the end */
	c->ref = calloc(c->alloc, sizeof(*c->ref));
	c->kind = calloc(c->alloc, 1);
	c->blk = malloc(c->cs);
	c->tab = malloc(c->cs);
	if (!c->ref || !c->kind || !c->blk || !c->tab)
		return vdk_err_set(c->e, VDK_E_IO, ENOMEM, c->img->src->name, FMT, VDK_NO_OFFSET,
		                   "no memory to check %llu clusters", ULL(nb));
	uint32_t bits = 1u << s->refcount_order;
	c->refcount_max = bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
	c->ref_cap = VDK_MIN(c->refcount_max, (uint64_t)UINT32_MAX);
	c->rb_shift = s->cluster_bits + 3 - s->refcount_order;
	c->data_file = (s->incompat & QCOW2_INCOMPAT_DATA_FILE) != 0;
	return qcow2c_load_rt(c);
}

static int qcow2c_run(struct qcow2c *c)
{
	uint64_t highest = 0;
	int r = qcow2c_setup(c);
	if (r)
		return r > 0 ? 0 : r;
	if ((r = qcow2c_count(c)) || (r = qcow2c_compare(c, &highest)) || (r = qcow2c_oflag(c)))
		return r;
	c->r->image_end_offset = (highest + 1) * c->cs;
	if (c->fd >= 0 && fsync(c->fd))
		return vdk_err_set(c->e, VDK_E_IO, errno, c->img->src->name, FMT, VDK_NO_OFFSET,
		                   "fsync after the repair failed");
	return 0;
}

int qcow2_check(struct vdk_image *img, struct vdk_check *r, bool repair, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	struct qcow2c c = {.img = img,
	                   .s = s,
	                   .r = r,
	                   .fsize = img->src->size,
	                   .cs = s->cluster_size,
	                   .fd = -1,
	                   .e = e};
	c.fix = repair ? (r->fix ? r->fix : VDK_FIX_LEAKS | VDK_FIX_ERRORS) : 0;
	r->total_clusters = img->size / c.cs + (img->size % c.cs != 0);
	int rc = qcow2c_run(&c);
	if (c.dropped)
		vdk_findings_add(&r->findings, VDK_NOTE, NULL, VDK_NO_OFFSET,
		                 "(%llu more findings not shown)", ULL(c.dropped));
	if (c.fd >= 0) {
		close(c.fd);
		vdk_src_restat(img->src); /* our own writes are not a change */
	}
	free(c.ref);
	free(c.kind);
	free(c.rt);
	free(c.blk);
	free(c.tab);
	return rc;
}
