/* create, measure and resize: conversions of synthetic sources (all zero,
 * or another image's shape) and the formats' in-place resize callbacks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "create.h"
#include "pipeline.h"
#include "util.h"

/* Synthetic images ---------------------------------------------------- */

/* A source that is all zero (create), or one that has the allocation of
 * another image with stand-in bytes for its data (measure). */
struct cr_shape {
	struct vdk_image *inner; /* NULL: all zero */
	bool all_data;           /* every byte is data (fully-allocated) */
	bool read;               /* inner's real bytes, so zero runs stay sparse */
};

static int cr_extents(struct vdk_image *img, uint64_t off, uint64_t len, struct vdk_extents *out,
                      struct vdk_err *e)
{
	struct cr_shape *sh = img->state;
	if (!sh->inner || sh->all_data) {
		uint32_t fl = sh->all_data ? 0 : VDK_EXT_ZERO | VDK_EXT_HOLE;
		return vdk_extents_add(out, off, len, fl, -1, 0)
		           ? vdk_ioerr(e, ENOMEM, img->src->name, "out of memory")
		           : 0;
	}
	size_t first = out->n;
	int r = vdk_image_extents(sh->inner, off, len, out, e);
	for (size_t i = first; !r && i < out->n; i++)
		out->v[i].fd = -1; /* never cloned: the bytes are stand-ins */
	return r;
}

/* Stand-in data: never all zero, so the writer allocates what the source
 * allocates, as qemu-img measure counts it. all_data runs without zero
 * detection; one byte a sector keeps a writer's own zero checks off. */
static int cr_pread(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	struct cr_shape *sh = img->state;
	if (sh->read)
		return vdk_image_pread(sh->inner, buf, len, off, e);
	if (!sh->all_data) {
		memset(buf, 0x5a, len);
		return 0;
	}
	/* Writers that skip all-zero grains look at every sector. */
	for (size_t i = 0; i < len; i += 512)
		((uint8_t *)buf)[i] = 0x5a;
	return 0;
}

static const struct vdk_format cr_format = {
    .name = "synthetic",
    .extents = cr_extents,
    .pread = cr_pread,
};

static int cr_run(struct cr_shape *sh, uint64_t size, struct vdk_writer *w, struct vdk_err *e)
{
	struct vdk_src *src;
	int r = vdk_src_open_mem(NULL, 0, "(synthetic)", &src, e);
	if (r)
		return r;
	struct vdk_image img = {.fmt = &cr_format, .src = src, .state = sh, .size = size};
	struct vdk_convert_opts o;
	vdk_convert_opts_init(&o);
	o.clone = VDK_CLONE_NEVER;
	if (sh->all_data)
		o.min_sparse = 0;
	struct vdk_convert_stats st;
	r = vdk_convert(&img, w, &o, &st, e);
	vdk_src_close(src);
	return r;
}

int vdk_image_create(const struct vdk_format *fmt, struct vdk_sink *sink, uint64_t size,
                     struct vdk_opts *opts, struct vdk_err *e)
{
	struct vdk_writer *w;
	int r = vdk_writer_create(fmt, sink, size, opts, NULL, &w, e);
	if (r)
		return r;
	struct cr_shape sh = {0};
	r = cr_run(&sh, size, w, e);
	if (!r)
		r = vdk_writer_finish(w, e);
	vdk_writer_close(w);
	return r;
}

/* The counting sink ---------------------------------------------------- */

struct cr_count {
	uint64_t size;
	struct vdk_sink **related;
	size_t nrelated;
};

static int cr_count_pwrite(struct vdk_sink *k, const void *buf, size_t len, uint64_t off,
                           struct vdk_err *e)
{
	(void)buf;
	struct cr_count *c = k->priv;
	uint64_t end;
	if (vdk_add_overflow(off, len, &end))
		return vdk_ioerr(e, EFBIG, k->name, "offset overflow");
	c->size = VDK_MAX(c->size, end);
	return 0;
}

static int cr_count_punch(struct vdk_sink *k, uint64_t off, uint64_t len, struct vdk_err *e)
{
	(void)k;
	(void)off;
	(void)len;
	(void)e;
	return 0; /* a new file reads as zero; punching allocates nothing */
}

static int cr_count_truncate(struct vdk_sink *k, uint64_t size, struct vdk_err *e)
{
	(void)e;
	((struct cr_count *)k->priv)->size = size;
	return 0;
}

static int cr_count_open(const char *name, struct vdk_sink **out, struct vdk_err *e);

static int cr_count_related(struct vdk_sink *k, const char *name, struct vdk_sink **out,
                            struct vdk_err *e)
{
	struct cr_count *c = k->priv;
	struct vdk_sink **nr = realloc(c->related, (c->nrelated + 1) * sizeof(*nr));
	if (!nr)
		return vdk_ioerr(e, ENOMEM, k->name, "out of memory");
	c->related = nr;
	int r = cr_count_open(name, out, e);
	if (!r)
		c->related[c->nrelated++] = *out;
	return r;
}

static void cr_count_close(struct vdk_sink *k)
{
	struct cr_count *c = k->priv;
	for (size_t i = 0; i < c->nrelated; i++)
		vdk_sink_close(c->related[i]);
	free(c->related);
	free(c);
}

static const struct vdk_sink_ops cr_count_ops = {
    .pwrite = cr_count_pwrite,
    .punch = cr_count_punch,
    .truncate = cr_count_truncate,
    .open_related = cr_count_related,
    .close = cr_count_close,
};

static int cr_count_open(const char *name, struct vdk_sink **out, struct vdk_err *e)
{
	struct vdk_sink *k = vdk_sink_alloc(&cr_count_ops, name);
	struct cr_count *c = calloc(1, sizeof(*c));
	if (!k || !c) {
		free(c);
		if (k) {
			free(k->name);
			free(k);
		}
		return vdk_ioerr(e, ENOMEM, name, "out of memory");
	}
	k->priv = c;
	k->flags = VDK_SINK_ZEROED;
	*out = k;
	return 0;
}

static uint64_t cr_count_total(const struct vdk_sink *k)
{
	const struct cr_count *c = k->priv;
	uint64_t n = c->size;
	for (size_t i = 0; i < c->nrelated; i++)
		n += cr_count_total(c->related[i]);
	return n;
}

/* Measure --------------------------------------------------------------- */

static int cr_dry_run(const struct vdk_format *fmt, struct cr_shape *sh, uint64_t size,
                      const struct vdk_opts *opts, const char *extra, uint64_t *out,
                      struct vdk_err *e)
{
	struct vdk_opts o = {0};
	int r = 0;
	for (size_t i = 0; !r && opts && i < opts->n; i++)
		r = vdk_opts_set(&o, opts->v[i].key, opts->v[i].val, e);
	if (!r && extra)
		r = vdk_opts_parse(&o, extra, e);
	struct vdk_sink *k = NULL;
	if (!r)
		r = cr_count_open("(measure)", &k, e);
	struct vdk_writer *w = NULL;
	if (!r)
		r = vdk_writer_create(fmt, k, size, &o, sh->inner, &w, e);
	if (!r)
		r = cr_run(sh, size, w, e);
	if (!r)
		r = vdk_writer_finish(w, e);
	if (!r)
		*out = cr_count_total(k);
	vdk_writer_close(w);
	vdk_sink_close(k);
	vdk_opts_free(&o);
	return r;
}

/* Bytes of the cs-sized clusters that hold the source's data, each counted
 * once (qemu-img measure's count). */
static int cr_data_bytes(struct vdk_image *src, uint64_t cs, uint64_t *out, struct vdk_err *e)
{
	struct vdk_extents x = {0};
	uint64_t pos = 0, n = 0, last = UINT64_MAX;
	int r = 0;
	while (!r && src && pos < src->size) {
		vdk_extents_reset(&x);
		r = vdk_image_extents(src, pos, src->size - pos, &x, e);
		if (!r && !x.n)
			r = vdk_ioerr(e, EPROTO, src->src->name, "no extents");
		for (size_t i = 0; !r && i < x.n; i++) {
			const struct vdk_extent *v = &x.v[i];
			if (v->flags & (VDK_EXT_ZERO | VDK_EXT_HOLE))
				continue;
			uint64_t a = v->off / cs, b = (v->off + v->len - 1) / cs;
			n += b - a + 1 - (a == last);
			last = b;
		}
		if (!r)
			pos = x.v[x.n - 1].off + x.v[x.n - 1].len;
	}
	vdk_extents_free(&x);
	*out = n * cs;
	return r;
}

/* qcow2, as qemu-img measure: the metadata of a fully allocated image plus
 * the clusters the source has data in (an overestimate of what is written,
 * by the L2 tables and refcount blocks of unallocated ranges). */
static int cr_measure_qcow2(const struct vdk_format *fmt, struct vdk_image *src, uint64_t size,
                            const struct vdk_opts *opts, struct vdk_measure *out, struct vdk_err *e)
{
	uint64_t cs = 65536, data = 0;
	for (size_t i = 0; opts && i < opts->n; i++)
		if (!strcmp(opts->v[i].key, "cluster_size") && vdk_parse_size(opts->v[i].val, &cs))
			return vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, "qcow2", VDK_NO_OFFSET,
			                   "bad cluster_size '%s'", opts->v[i].val);
	if (cs < 512 || cs > (2u << 20))
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, "qcow2", VDK_NO_OFFSET,
		                   "cluster_size out of range");
	struct cr_shape zero = {0};
	int r =
	    cr_dry_run(fmt, &zero, size, opts, "preallocation=metadata", &out->fully_allocated, e);
	if (!r)
		r = cr_data_bytes(src, cs, &data, e);
	if (!r)
		out->required = out->fully_allocated - size + data;
	return r;
}

int vdk_image_measure(const struct vdk_format *fmt, struct vdk_image *src, uint64_t size,
                      const struct vdk_opts *opts, struct vdk_measure *out, struct vdk_err *e)
{
	if (src)
		size = src->size;
	bool given = false;
	for (size_t i = 0; opts && i < opts->n; i++)
		given |=
		    !strcmp(opts->v[i].key, "preallocation") || !strcmp(opts->v[i].key, "compress");
	if (!strcmp(fmt->name, "qcow2") && !given)
		return cr_measure_qcow2(fmt, src, size, opts, out, e);
	/* The other formats have no qemu-img figure to agree with: read the
	 * data, so zero runs stay sparse as in a real conversion (exact). */
	struct cr_shape sh = {.inner = src, .read = src && strcmp(fmt->name, "raw")};
	int r = cr_dry_run(fmt, &sh, size, opts, NULL, &out->required, e);
	if (r)
		return r;
	struct cr_shape full = {.inner = src, .all_data = true};
	if (!strcmp(fmt->name, "raw")) {
		out->fully_allocated = size;
		return 0;
	}
	full.inner = NULL;
	return cr_dry_run(fmt, &full, size, opts, NULL, &out->fully_allocated, e);
}

/* Resize ---------------------------------------------------------------- */

int vdk_image_resize(const char *path, const char *fmt_name, int sign, uint64_t size, bool shrink,
                     struct vdk_opts *opts, uint64_t *new_size, struct vdk_err *e)
{
	struct vdk_image *img;
	int r = vdk_image_open_path(path, fmt_name, NULL, &img, e);
	if (r)
		return r;
	const struct vdk_format *fmt = img->fmt;
	uint64_t cur = img->size;
	vdk_image_close(img);
	uint64_t target = size;
	if (sign > 0 && vdk_add_overflow(cur, size, &target))
		return vdk_err_set(e, VDK_E_USAGE, EFBIG, path, fmt->name, VDK_NO_OFFSET,
		                   "the new size overflows");
	if (sign < 0 && size > cur)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, path, fmt->name, VDK_NO_OFFSET,
		                   "cannot shrink by more than the image's size");
	if (sign < 0)
		target = cur - size;
	if (target < cur && !shrink)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, path, fmt->name, VDK_NO_OFFSET,
		                   "the new size is smaller than the current one: give --shrink "
		                   "(data past the new end is lost)");
	if (!fmt->resize)
		return vdk_err_set(e, VDK_E_USAGE, ENOTSUP, path, fmt->name, VDK_NO_OFFSET,
		                   "resizing this format in place is not supported (raw and qcow2 "
		                   "are); convert it to a new image of the size you need instead");
	r = fmt->resize(path, target, shrink, opts, e);
	if (!r)
		*new_size = target;
	return r;
}
