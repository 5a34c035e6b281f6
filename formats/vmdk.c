/* VMDK reader: the vtable, probing, opening (descriptor + extents + parent),
 * extents and reads. A VMDK image is a descriptor (a text file, or text
 * embedded in a sparse extent) and a list of extents laid end to end.
 * Extent files and parents are opened only through the core, which keeps
 * them inside the image's folder unless the user allowed more. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "util.h"
#include "vmdk.h"

#define VMDK_NO_PARENT_CID 0xffffffffu

static int vmdk_probe(const uint8_t *buf, size_t len, uint64_t size)
{
	(void)size;
	if (len >= 4 && (vdk_le32(buf) == VMDK_MAGIC_KDMV || vdk_le32(buf) == VMDK_MAGIC_COWD))
		return 100;
	if (vmdk_se_magic(buf, len))
		return 100;
	/* A text descriptor: "# Disk DescriptorFile" or a version line before
	 * anything else, as qemu accepts it. */
	static const char head[] = "# Disk DescriptorFile";
	if (len >= sizeof(head) - 1 && !memcmp(buf, head, sizeof(head) - 1))
		return 100;
	size_t i = 0;
	while (i < len) {
		if (buf[i] == '#') {
			while (i < len && buf[i] != '\n')
				i++;
			i++;
			continue;
		}
		if (buf[i] == '\n' || buf[i] == '\r' || buf[i] == ' ') {
			i++;
			continue;
		}
		return len - i >= 9 && !memcmp(buf + i, "version=", 8) && buf[i + 8] >= '1' &&
		               buf[i + 8] <= '3'
		           ? 100
		           : 0;
	}
	return 0;
}

static const struct vdk_access vmdk_no_access;

static const struct vdk_access *vmdk_access(const struct vdk_image *img)
{
	return img->opts ? &img->opts->access : &vmdk_no_access;
}

static int vmdk_oom(struct vdk_image *img, struct vdk_err *e)
{
	return vdk_err_set(e, VDK_E_IO, ENOMEM, img->src->name, "vmdk", VDK_NO_OFFSET,
	                   "out of memory");
}

/* createType values: which we read, and which we refuse and why. */
static int vmdk_check_create_type(struct vdk_image *img, const char *ct, struct vdk_err *e)
{
	static const char *const device[] = {"vmfsRawDeviceMap", "vmfsPassthroughRawDeviceMap",
	                                     "fullDevice", "partitionedDevice", "vmfsRaw"};
	static const char *const known[] = {"monolithicSparse",
	                                    "monolithicFlat",
	                                    "twoGbMaxExtentSparse",
	                                    "twoGbMaxExtentFlat",
	                                    "streamOptimized",
	                                    "vmfs",
	                                    "vmfsThin",
	                                    "vmfsSparse",
	                                    "seSparse",
	                                    "vmfsPreallocated",
	                                    "vmfsEagerZeroedThick",
	                                    "vmfsThick",
	                                    "custom"};
	if (!ct)
		return vdk_bad(e, img->src->name, "vmdk", 0, "descriptor has no createType");
	for (size_t i = 0; i < VDK_ARRAY_SIZE(device); i++)
		if (!strcasecmp(ct, device[i]))
			return vdk_unsup(e, img->src->name, "vmdk", VDK_NO_OFFSET,
			                 "createType \"%s\" maps a raw device: its data is on a "
			                 "device, not in a file, so it cannot be read or converted",
			                 ct);
	for (size_t i = 0; i < VDK_ARRAY_SIZE(known); i++)
		if (!strcasecmp(ct, known[i]))
			return 0;
	return vdk_unsup(e, img->src->name, "vmdk", VDK_NO_OFFSET, "unknown createType \"%s\"", ct);
}

static int vmdk_refuse_extent(struct vdk_image *img, const struct vmdk_desc_extent *d,
                              struct vdk_err *e)
{
	const char *f = img->src->name;
	if (d->access == VMDK_ACC_NOACCESS)
		return vdk_unsup(e, f, "vmdk", VDK_NO_OFFSET,
		                 "descriptor line %u: extent is NOACCESS (no data to read)",
		                 d->line);
	if (d->kind == VMDK_EK_VMFSRDM || d->kind == VMDK_EK_VMFSRAW)
		return vdk_unsup(e, f, "vmdk", VDK_NO_OFFSET,
		                 "descriptor line %u: %s extent maps a raw device: its data is on "
		                 "a device, not in a file",
		                 d->line, vmdk_ext_kind_name(d->kind));
	return 0;
}

/* A sparse extent's header says how many sectors it holds; the descriptor
 * line says it too. qemu-img sizes the extent from the header, vdkit from
 * the descriptor: when they differ, the disk's size and layout are
 * ambiguous (found by `make fuzz-diff`; VMware writes them equal). */
static int vmdk_ext_capacity_agrees(struct vdk_image *img, const struct vmdk_desc_extent *d,
                                    const struct vmdk_ext *x, struct vdk_err *e)
{
	bool se = d->kind == VMDK_EK_SESPARSE;
	uint64_t cap = se ? x->se.capacity : x->sp.capacity;
	if (cap == x->len)
		return 0;
	/* the capacity field: seSparse constant header byte 16, KDMV and COWD 12 */
	return vdk_bad(e, x->src->name, "vmdk", se ? 16 : VMDK_H_CAPACITY,
	               "capacity of %llu sectors, but %s line %u gives the extent %llu sectors: "
	               "the disk's size is ambiguous",
	               (unsigned long long)(cap / VMDK_SECTOR), img->src->name, d->line,
	               (unsigned long long)(x->len / VMDK_SECTOR));
}

static int vmdk_open_one(struct vdk_image *img, const struct vmdk_desc_extent *d,
                         struct vmdk_ext *x, struct vdk_err *e)
{
	int r = vmdk_refuse_extent(img, d, e);
	if (r < 0)
		return r;
	x->kind = d->kind;
	x->len = d->sectors * VMDK_SECTOR; /* sectors <= 2^50: no overflow */
	if (d->kind == VMDK_EK_ZERO) {
		x->zero = true;
		return 0;
	}
	if (!(x->file = strdup(d->file)))
		return vmdk_oom(img, e);
	r = vdk_src_open_related(img->src, d->file, vmdk_access(img), &x->src, e);
	if (r < 0)
		return r;
	x->own_src = true;
	if (d->kind == VMDK_EK_FLAT || d->kind == VMDK_EK_VMFS) {
		x->flat = true;
		x->flat_off = d->offset * VMDK_SECTOR;
		return 0;
	}
	r = d->kind == VMDK_EK_SESPARSE ? vmdk_se_open(x->src, &x->se, e)
	                                : vmdk_sparse_open(x->src, &x->sp, e);
	return r < 0 ? r : vmdk_ext_capacity_agrees(img, d, x, e);
}

static int vmdk_open_extents(struct vdk_image *img, struct vdk_err *e)
{
	struct vmdk_state *st = img->state;
	if (!st->desc.n_ext)
		return vdk_bad(e, img->src->name, "vmdk", 0, "descriptor lists no extent");
	if (!(st->ext = calloc(st->desc.n_ext, sizeof(*st->ext))))
		return vmdk_oom(img, e);
	uint64_t start = 0;
	for (size_t i = 0; i < st->desc.n_ext; i++) {
		struct vmdk_ext *x = &st->ext[i];
		st->n_ext = i + 1;
		int r = vmdk_open_one(img, &st->desc.ext[i], x, e);
		if (r < 0)
			return r;
		x->start = start;
		if (vdk_add_overflow(start, x->len, &start) ||
		    start > VMDK_MAX_SECTORS * VMDK_SECTOR)
			return vdk_bad(e, img->src->name, "vmdk", VDK_NO_OFFSET,
			               "extents add up to more than the largest disk");
	}
	return 0;
}

static int vmdk_read_text(struct vdk_image *img, uint64_t off, uint64_t len, char **out,
                          struct vdk_err *e)
{
	char *t = malloc(len + 1);
	if (!t)
		return vmdk_oom(img, e);
	int r = vdk_src_pread(img->src, t, len, off, e);
	if (r < 0) {
		free(t);
		return r;
	}
	t[len] = 0;
	*out = t;
	return 0;
}

static int vmdk_parse_at(struct vdk_image *img, uint64_t off, uint64_t len, struct vdk_err *e)
{
	struct vmdk_state *st = img->state;
	char *t = NULL;
	int r = vmdk_read_text(img, off, len, &t, e);
	if (r < 0)
		return r;
	r = vmdk_desc_parse(t, len, img->src->name, off, &st->desc, e);
	free(t);
	if (r == 0)
		st->has_desc = true;
	return r;
}

/* An image that is its own single extent, read from the image's source. */
static struct vmdk_ext *vmdk_single_extent(struct vdk_image *img, enum vmdk_ext_kind kind)
{
	struct vmdk_state *st = img->state;
	if (!(st->ext = calloc(1, sizeof(*st->ext))))
		return NULL;
	st->n_ext = 1;
	st->ext[0].src = img->src;
	st->ext[0].kind = kind;
	return &st->ext[0];
}

/* A sparse extent opened directly (monolithicSparse, streamOptimized, a
 * lone extent or COWD delta): it is its own single extent, and its embedded
 * descriptor (if any) gives CIDs, parent and ddb. */
static int vmdk_open_sparse_image(struct vdk_image *img, struct vdk_err *e)
{
	struct vmdk_state *st = img->state;
	struct vmdk_ext *x = vmdk_single_extent(img, VMDK_EK_SPARSE);
	if (!x)
		return vmdk_oom(img, e);
	int r = vmdk_sparse_open(img->src, &x->sp, e);
	if (r < 0)
		return r;
	x->len = x->sp.capacity;
	if (x->sp.cowd)
		x->kind = VMDK_EK_VMFSSPARSE;
	if (x->sp.desc_len && (r = vmdk_parse_at(img, x->sp.desc_off, x->sp.desc_len, e)) < 0)
		return r;
	st->create_type = st->desc.create_type;
	if (!st->create_type)
		st->create_type = x->sp.cowd         ? "vmfsSparse"
		                  : x->sp.compressed ? "streamOptimized"
		                                     : "monolithicSparse";
	/* qemu: capacity 0 with a descriptor means the descriptor describes
	 * the extents (the file itself holds no grains). */
	if (x->len == 0 && st->has_desc && st->desc.n_ext) {
		vmdk_sparse_free(&x->sp);
		free(st->ext);
		st->ext = NULL;
		st->n_ext = 0;
		if ((r = vmdk_check_create_type(img, st->desc.create_type, e)) < 0)
			return r;
		return vmdk_open_extents(img, e);
	}
	return 0;
}

/* A seSparse extent opened on its own (qemu needs the descriptor): one
 * extent, no CIDs, no parent, so unallocated grains read as zeroes. */
static int vmdk_open_se_image(struct vdk_image *img, struct vdk_err *e)
{
	struct vmdk_state *st = img->state;
	struct vmdk_ext *x = vmdk_single_extent(img, VMDK_EK_SESPARSE);
	if (!x)
		return vmdk_oom(img, e);
	int r = vmdk_se_open(img->src, &x->se, e);
	x->len = x->se.capacity;
	st->create_type = "seSparse";
	return r;
}

static int vmdk_open_text(struct vdk_image *img, struct vdk_err *e)
{
	struct vmdk_state *st = img->state;
	uint64_t size = img->src->size;
	if (size == VDK_SIZE_UNKNOWN || size > VMDK_DESC_MAX)
		return vdk_bad(e, img->src->name, "vmdk", 0,
		               "not a VMDK descriptor (no sparse magic, and larger than %u bytes)",
		               VMDK_DESC_MAX);
	int r = vmdk_parse_at(img, 0, size, e);
	if (r < 0)
		return r;
	if ((r = vmdk_check_create_type(img, st->desc.create_type, e)) < 0)
		return r;
	st->create_type = st->desc.create_type;
	return vmdk_open_extents(img, e);
}

/* The delta's parentCID must be the parent's CID (VMware bumps the CID on
 * every write, so a mismatch means the parent changed under the delta). */
static int vmdk_check_parent(struct vdk_image *img, struct vdk_err *e)
{
	struct vmdk_state *st = img->state;
	const struct vdk_image *p = img->backing;
	if (!p || !st->desc.has_parent_cid || st->desc.parent_cid == VMDK_NO_PARENT_CID)
		return 0;
	if (img->opts && img->opts->force)
		return 0;
	const struct vmdk_state *ps = p->fmt == &vdk_format_vmdk ? p->state : NULL;
	if (!ps || !ps->desc.has_cid)
		return vdk_bad(e, img->src->name, "vmdk", VDK_NO_OFFSET,
		               "parent \"%s\" has no CID to match parentCID %08" PRIx32
		               " (use force to open anyway)",
		               st->desc.parent_hint, st->desc.parent_cid);
	if (ps->desc.cid != st->desc.parent_cid)
		return vdk_bad(e, img->src->name, "vmdk", VDK_NO_OFFSET,
		               "parentCID %08" PRIx32 " does not match the CID %08" PRIx32
		               " of parent \"%s\": the parent was modified after this snapshot "
		               "(use force to open anyway)",
		               st->desc.parent_cid, ps->desc.cid, st->desc.parent_hint);
	return 0;
}

static void vmdk_rctx_drop(void *arg, void *item)
{
	(void)arg;
	vmdk_rctx_free(item);
	free(item);
}

static int vmdk_open(struct vdk_image *img, struct vdk_err *e)
{
	struct vmdk_state *st = img->state;
	uint8_t m[8] = {0};
	if (vdk_pool_init(&st->rpool, vmdk_rctx_drop, NULL))
		return vmdk_oom(img, e);
	if (img->src->size != VDK_SIZE_UNKNOWN && img->src->size < 4)
		return vdk_bad(e, img->src->name, "vmdk", 0, "file too small to be a VMDK");
	size_t got = 0;
	int r = vdk_src_pread_upto(img->src, m, sizeof(m), 0, &got, e);
	if (r < 0)
		return r;
	if (vdk_le32(m) == VMDK_MAGIC_KDMV || vdk_le32(m) == VMDK_MAGIC_COWD)
		r = vmdk_open_sparse_image(img, e);
	else if (vmdk_se_magic(m, got))
		r = vmdk_open_se_image(img, e);
	else
		r = vmdk_open_text(img, e);
	if (r < 0)
		return r;
	uint64_t total = 0;
	for (size_t i = 0; i < st->n_ext; i++) {
		struct vmdk_ext *x = &st->ext[i];
		x->start = total;
		total += x->len;
		if (!x->flat && !x->zero && !img->cluster_size)
			img->cluster_size =
			    x->kind == VMDK_EK_SESPARSE ? VMDK_SE_GRAIN : x->sp.grain;
		img->dirty |= x->sp.unclean;
	}
	img->size = total;
	if (st->desc.parent_hint) {
		r = vdk_image_open_backing(img, st->desc.parent_hint, "vmdk", e);
		if (r < 0)
			return r;
		return vmdk_check_parent(img, e);
	}
	return 0;
}

static int vmdk_map_flat(const struct vmdk_ext *x, uint64_t off, uint64_t rel, uint64_t *n,
                         struct vdk_extents *out)
{
	uint64_t at = x->flat_off + rel, fsize = x->src->size;
	if (at >= fsize) /* past the end of a short flat file: zeroes, like qemu */
		return vdk_extents_add(out, off, *n, VDK_EXT_ZERO, -1, 0);
	*n = VDK_MIN(*n, fsize - at);
	/* Thin flat files (vmfsThin, or copied off a datastore with holes
	 * kept) read their holes as zeroes without reading them. */
	uint64_t d, h;
	vdk_src_next_data(x->src, at, at + *n, &d, &h);
	if (d > at) {
		*n = d - at;
		return vdk_extents_add(out, off, *n, VDK_EXT_ZERO, -1, 0);
	}
	*n = h - at;
	return vdk_extents_add(out, off, *n, 0, x->src->fd, x->src->fd_off + at);
}

static int vmdk_map_sparse(const struct vdk_image *img, const struct vmdk_ext *x, uint64_t off,
                           uint64_t rel, uint64_t *n, struct vdk_extents *out)
{
	const struct vmdk_sparse *sp = &x->sp;
	uint32_t hole = VDK_EXT_HOLE | (img->backing ? 0 : VDK_EXT_ZERO);
	if (rel >= sp->capacity)
		return vdk_extents_add(out, off, *n, hole, -1, 0);
	*n = VDK_MIN(*n, VDK_MIN(vmdk_sparse_span(sp, rel), sp->capacity - rel));
	uint32_t gte = vmdk_sparse_gte(sp, rel);
	if (gte == 0)
		return vdk_extents_add(out, off, *n, hole, -1, 0);
	/* GTE 1 is a zeroed grain: open (vmdk_check.c) refuses it in files
	 * that do not set the zeroed-grain flag. */
	if (gte == VMDK_GTE_ZEROED)
		return vdk_extents_add(out, off, *n, VDK_EXT_ZERO, -1, 0);
	uint64_t grain_at = (uint64_t)gte * VMDK_SECTOR;
	uint64_t phys = x->src->fd_off + grain_at + rel % sp->grain;
	if (sp->compressed || x->src->fd < 0 || (x->src->fd_off + grain_at) % 4096 ||
	    !vdk_range_ok(grain_at + rel % sp->grain, *n, x->src->size))
		return vdk_extents_add(out, off, *n, 0, -1, 0);
	return vdk_extents_add(out, off, *n, 0, x->src->fd, phys);
}

static int vmdk_map_se(const struct vdk_image *img, const struct vmdk_ext *x, uint64_t off,
                       uint64_t rel, uint64_t *n, struct vdk_extents *out)
{
	uint64_t at;
	*n = vmdk_se_run(&x->se, rel, *n, &at);
	if (at == VMDK_SE_E_HOLE)
		return vdk_extents_add(out, off, *n,
		                       VDK_EXT_HOLE | (img->backing ? 0 : VDK_EXT_ZERO), -1, 0);
	if (at == VMDK_SE_E_ZERO)
		return vdk_extents_add(out, off, *n, VDK_EXT_ZERO, -1, 0);
	if (x->src->fd < 0 || (x->src->fd_off + at) % 4096)
		return vdk_extents_add(out, off, *n, 0, -1, 0);
	return vdk_extents_add(out, off, *n, 0, x->src->fd, x->src->fd_off + at);
}

static int vmdk_extents(struct vdk_image *img, uint64_t off, uint64_t len, struct vdk_extents *out,
                        struct vdk_err *e)
{
	struct vmdk_state *st = img->state;
	uint64_t end = off + VDK_MIN(len, img->size - VDK_MIN(off, img->size));
	size_t i = vmdk_find(st, off);
	bool first = true;
	while (off < end && (first || !vdk_extents_full(out)) && i < st->n_ext) {
		const struct vmdk_ext *x = &st->ext[i];
		if (off >= x->start + x->len) {
			i++;
			continue;
		}
		uint64_t rel = off - x->start, n = VDK_MIN(end, x->start + x->len) - off;
		int r;
		if (x->zero)
			r = vdk_extents_add(out, off, n, VDK_EXT_ZERO, -1, 0);
		else if (x->flat)
			r = vmdk_map_flat(x, off, rel, &n, out);
		else if (x->kind == VMDK_EK_SESPARSE)
			r = vmdk_map_se(img, x, off, rel, &n, out);
		else
			r = vmdk_map_sparse(img, x, off, rel, &n, out);
		if (r < 0)
			return vmdk_oom(img, e);
		off += n;
		first = false;
	}
	return 0;
}

/* Uncompressed grains that follow each other in the file: one read. */
static uint64_t vmdk_run(const struct vmdk_sparse *sp, uint32_t gte, uint64_t rel, uint64_t n)
{
	uint64_t got = VDK_MIN(n, sp->grain - rel % sp->grain);
	while (got < n && rel + got < sp->capacity) {
		uint64_t next = (uint64_t)gte + (rel % sp->grain + got) / VMDK_SECTOR;
		if (vmdk_sparse_gte(sp, rel + got) != next)
			break;
		got += VDK_MIN(n - got, sp->grain);
	}
	return got;
}

/* Grain entries looked at past a request for the grain that follows it. */
#define VMDK_BOUND_SCAN 64

/* The request's read-ahead: c->ahead, the file offset of the last
 * compressed grain of [rel, rel+n) when the grains lie in the file in the
 * disk's order, as stream producers write them (0 when they do not), and
 * c->bound, the offset of the next grain after them in both orders, which
 * the last one cannot cross (0 when none is near). Both start at 0. */
static void vmdk_ahead(const struct vmdk_sparse *sp, uint64_t rel, uint64_t n, struct vmdk_rctx *c)
{
	uint32_t prev = 0;
	uint64_t end = VDK_MIN(rel + n, sp->capacity), g = rel - rel % sp->grain;
	for (; g < end; g += sp->grain) {
		uint32_t gte = vmdk_sparse_gte(sp, g);
		if (gte <= VMDK_GTE_ZEROED)
			continue;
		if (gte <= prev)
			return;
		prev = gte;
	}
	c->ahead = (uint64_t)prev * VMDK_SECTOR;
	for (unsigned i = 0; prev && i < VMDK_BOUND_SCAN && g < sp->capacity; i++, g += sp->grain) {
		uint32_t gte = vmdk_sparse_gte(sp, g);
		if (gte <= VMDK_GTE_ZEROED)
			continue;
		if (gte > prev)
			c->bound = (uint64_t)gte * VMDK_SECTOR;
		return;
	}
}

static int vmdk_read_sparse(const struct vmdk_ext *x, uint8_t *buf, uint64_t rel, uint64_t n,
                            struct vmdk_rctx *c, struct vdk_err *e)
{
	const struct vmdk_sparse *sp = &x->sp;
	c->ahead = c->bound = 0;
	if (sp->compressed && sp->markers)
		vmdk_ahead(sp, rel, n, c);
	while (n) {
		if (rel >= sp->capacity) {
			memset(buf, 0, n);
			return 0;
		}
		uint64_t k = VDK_MIN(VDK_MIN(n, sp->grain - rel % sp->grain), sp->capacity - rel);
		uint32_t gte = vmdk_sparse_gte(sp, rel);
		int r = 0;
		if (gte <= VMDK_GTE_ZEROED) {
			memset(buf, 0, k);
		} else if (!sp->compressed) {
			k = VDK_MIN(vmdk_run(sp, gte, rel, n), sp->capacity - rel);
			r = vdk_src_pread(x->src, buf, k,
			                  (uint64_t)gte * VMDK_SECTOR + rel % sp->grain, e);
		} else {
			r = vmdk_sparse_read(x->src, sp, gte, buf, k, rel, c, e);
		}
		if (r < 0)
			return r;
		buf += k;
		rel += k;
		n -= k;
	}
	return 0;
}

/* Holes read as zeroes here: the core serves a parent's data itself. */
static int vmdk_read_se(const struct vmdk_ext *x, uint8_t *buf, uint64_t rel, uint64_t n,
                        struct vdk_err *e)
{
	while (n) {
		uint64_t at, k = vmdk_se_run(&x->se, rel, n, &at);
		int r = 0;
		if (at <= VMDK_SE_E_ZERO)
			memset(buf, 0, k);
		else
			r = vdk_src_pread(x->src, buf, k, at, e);
		if (r < 0)
			return r;
		buf += k;
		rel += k;
		n -= k;
	}
	return 0;
}

static int vmdk_read_ext(const struct vmdk_ext *x, uint8_t *buf, uint64_t rel, uint64_t n,
                         struct vmdk_rctx *c, struct vdk_err *e)
{
	if (x->zero) {
		memset(buf, 0, n);
		return 0;
	}
	if (x->kind == VMDK_EK_SESPARSE)
		return vmdk_read_se(x, buf, rel, n, e);
	if (!x->flat)
		return vmdk_read_sparse(x, buf, rel, n, c, e);
	uint64_t at = x->flat_off + rel, fsize = x->src->size;
	uint64_t have = at >= fsize ? 0 : VDK_MIN(n, fsize - at);
	if (have < n)
		memset(buf + have, 0, n - have);
	return have ? vdk_src_pread(x->src, buf, have, at, e) : 0;
}

/* A request's read context (inflater, buffers) from the image's pool. */
static struct vmdk_rctx *vmdk_rctx_get(struct vmdk_state *st)
{
	struct vmdk_rctx *c = vdk_pool_take(&st->rpool);
	if (!c)
		return calloc(1, sizeof(*c));
	c->wsrc = NULL; /* file bytes are never reused from an earlier request */
	return c;
}

static int vmdk_pread(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	struct vmdk_state *st = img->state;
	struct vmdk_rctx *c = vmdk_rctx_get(st);
	if (!c)
		return vmdk_oom(img, e);
	uint8_t *p = buf;
	size_t i = vmdk_find(st, off);
	int r = 0;
	while (len && r == 0) {
		if (i >= st->n_ext || off < st->ext[i].start) {
			r = vdk_bad(e, img->src->name, "vmdk", VDK_NO_OFFSET,
			            "read past the last extent at %" PRIu64, off);
			break;
		}
		const struct vmdk_ext *x = &st->ext[i];
		if (off >= x->start + x->len) {
			i++;
			continue;
		}
		uint64_t n = VDK_MIN((uint64_t)len, x->start + x->len - off);
		r = vmdk_read_ext(x, p, off - x->start, n, c, e);
		p += n;
		off += n;
		len -= n;
	}
	vdk_pool_give(&st->rpool, c);
	return r;
}

static void vmdk_info_extent(struct vdk_json *arr, const struct vmdk_ext *x, const char *self)
{
	struct vdk_json *o = vdk_json_push_obj(arr);
	vdk_json_set_str(o, "filename", x->file ? x->file : self);
	vdk_json_set_str(o, "format", vmdk_ext_kind_name(x->kind));
	vdk_json_set_u64(o, "virtual-size", x->len);
	if (x->kind == VMDK_EK_SESPARSE)
		vdk_json_set_u64(o, "cluster-size", VMDK_SE_GRAIN);
	else if (!x->flat && !x->zero) {
		vdk_json_set_u64(o, "cluster-size", x->sp.grain);
		if (x->sp.compressed)
			vdk_json_set_bool(o, "compressed", true);
	}
	if (x->flat && x->flat_off)
		vdk_json_set_u64(o, "offset", x->flat_off);
}

static int vmdk_info(struct vdk_image *img, struct vdk_json *data, struct vdk_err *e)
{
	(void)e;
	struct vmdk_state *st = img->state;
	const struct vmdk_desc *d = &st->desc;
	vdk_json_set_u64(data, "cid", d->has_cid ? d->cid : 0);
	vdk_json_set_u64(data, "parent-cid",
	                 d->has_parent_cid ? d->parent_cid : VMDK_NO_PARENT_CID);
	vdk_json_set_str(data, "create-type", st->create_type);
	struct vdk_json *arr = vdk_json_set_arr(data, "extents");
	for (size_t i = 0; i < st->n_ext; i++)
		vmdk_info_extent(arr, &st->ext[i], img->src->name);
	const char *v;
	if ((v = vmdk_desc_get(d, "ddb.adapterType")))
		vdk_json_set_str(data, "adapter-type", v);
	if ((v = vmdk_desc_get(d, "ddb.virtualHWVersion")))
		vdk_json_set_str(data, "hwversion", v);
	if ((v = vmdk_desc_get(d, "ddb.thinProvisioned")))
		vdk_json_set_bool(data, "thin-provisioned", !strcmp(v, "1"));
	if (d->parent_hint)
		vdk_json_set_str(data, "parent-filename-hint", d->parent_hint);
	vdk_json_set_bool(data, "unclean-shutdown", img->dirty);
	return 0;
}

static void vmdk_finding(struct vdk_check *r, const char *file, const char *what, uint64_t n)
{
	if (n)
		vdk_findings_add(&r->findings, VDK_ERROR, file, VDK_NO_OFFSET, "%" PRIu64 " %s", n,
		                 what);
}

static int vmdk_check(struct vdk_image *img, struct vdk_check *r, bool repair, struct vdk_err *e)
{
	struct vmdk_state *st = img->state;
	if (repair)
		return vdk_unsup(e, img->src->name, "vmdk", VDK_NO_OFFSET,
		                 "repair is not supported (the source is never modified)");
	for (size_t i = 0; i < st->n_ext; i++) {
		const struct vmdk_ext *x = &st->ext[i];
		uint64_t dup = 0;
		if (x->kind == VMDK_EK_SESPARSE) {
			if (vmdk_se_check(&x->se, &dup) < 0)
				return vmdk_oom(img, e);
			r->corruptions += dup;
			vmdk_finding(r, x->file ? x->file : img->src->name,
			             "grains referenced twice", dup);
		}
		if (x->flat || x->zero || x->kind == VMDK_EK_SESPARSE)
			continue;
		if (vmdk_sparse_check(&x->sp, x->file ? x->file : img->src->name, r) < 0)
			return vmdk_oom(img, e);
	}
	if (img->dirty)
		vdk_findings_add(&r->findings, VDK_WARN, img->src->name, VDK_NO_OFFSET,
		                 "extent marked unclean (not shut down cleanly)");
	return 0;
}

static void vmdk_close(struct vdk_image *img)
{
	struct vmdk_state *st = img->state;
	for (size_t i = 0; i < st->n_ext; i++) {
		struct vmdk_ext *x = &st->ext[i];
		vmdk_sparse_free(&x->sp);
		vmdk_se_free(&x->se);
		if (x->own_src && x->src)
			vdk_src_close(x->src);
		free(x->file);
	}
	free(st->ext);
	vmdk_desc_free(&st->desc);
	vdk_pool_fini(&st->rpool);
	memset(st, 0, sizeof(*st));
}

/* VMware writes vmdk.html#streamOptimized (or #sparse, #monolithicSparse);
 * any URI that names VMDK is a VMDK. */
static const char *const vmdk_ovf_formats[] = {"vmdk", NULL};
static const struct vdk_opt_desc vmdk_wopts[] = {
    {"subformat", "enum", "monolithicSparse",
     "monolithicSparse, monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat, "
     "streamOptimized, vmfs",
     "extent layout"},
    {"adapter_type", "enum", "ide", "ide, buslogic, lsilogic, legacyESX, pvscsi",
     "virtual controller recorded in the descriptor"},
    {"hwversion", "number", "4", NULL, "ddb.virtualHWVersion"},
    {"toolsversion", "number", "2147483647", NULL, "ddb.toolsVersion"},
    {"zeroed_grain", "bool", "off", "on, off", "sparse: mark zero grains in the grain table"},
    {NULL, NULL, NULL, NULL, NULL},
};

const struct vdk_format vdk_format_vmdk = {
    .name = "vmdk",
    .description = "VMware virtual disk (sparse, flat, split, stream-optimized, ESXi)",
    .state_size = sizeof(struct vmdk_state),
    .probe = vmdk_probe,
    .open = vmdk_open,
    .extents = vmdk_extents,
    .pread = vmdk_pread,
    .info = vmdk_info,
    .check = vmdk_check,
    .close = vmdk_close,
    .wstate_size = sizeof(struct vmdk_wstate),
    /* SEQUENTIAL for streamOptimized; create() drops it for the others. */
    .wcaps = VDK_WCAP_ZEROED | VDK_WCAP_SEQUENTIAL,
    .create = vmdk_wcreate,
    .write = vmdk_wwrite,
    .encode = vmdk_wencode,
    .write_encoded = vmdk_wwrite_encoded,
    .clone = vmdk_wclone,
    .finalize = vmdk_wfinalize,
    .wclose = vmdk_wclose,
    .ovf_formats = vmdk_ovf_formats,
    .ovf_format_uri = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized",
    .wopts = vmdk_wopts,
    .ustate_size = sizeof(struct vmdk_upd),
    .update_open = vmdk_update_open,
    .update_write = vmdk_update_write,
    .update_zero = vmdk_update_zero,
    .update_flush = vmdk_update_flush,
    .update_close = vmdk_update_close,
    .set_backing = vmdk_set_backing,
};
