/* Opening images, backing chains, and the resolved view of a chain
 * (extents and reads with backing files looked through). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format.h"
#include "remote.h"
#include "util.h"

#define CHAIN_MAX 64

static const struct vdk_open_opts default_open_opts;

int vdk_extents_add(struct vdk_extents *x, uint64_t off, uint64_t len, uint32_t flags, int fd,
                    uint64_t phys)
{
	if (len == 0)
		return 0;
	if (flags & (VDK_EXT_ZERO | VDK_EXT_HOLE))
		fd = -1;
	if (x->n) {
		struct vdk_extent *p = &x->v[x->n - 1];
		bool cont = p->off + p->len == off && p->flags == flags && p->fd == fd &&
		            (fd < 0 || p->phys + p->len == phys);
		if (cont) {
			p->len += len;
			return 0;
		}
	}
	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 64;
		struct vdk_extent *v = realloc(x->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		x->v = v;
		x->cap = cap;
	}
	x->v[x->n++] = (struct vdk_extent){
	    .off = off, .len = len, .flags = flags, .fd = fd, .phys = fd >= 0 ? phys : 0};
	return 0;
}

void vdk_extents_reset(struct vdk_extents *x)
{
	x->n = 0;
}

void vdk_extents_free(struct vdk_extents *x)
{
	free(x->v);
	x->v = NULL;
	x->n = x->cap = 0;
}

int vdk_buf_reserve(struct vdk_buf *b, size_t cap)
{
	if (b->cap >= cap)
		return 0;
	uint8_t *d = realloc(b->data, cap);
	if (!d)
		return -ENOMEM;
	b->data = d;
	b->cap = cap;
	return 0;
}

/* Opening ----------------------------------------------------------- */

static void image_free(struct vdk_image *img)
{
	if (img->own_src)
		vdk_src_close(img->src);
	free(img->backing_name);
	free(img->backing_fmt_name);
	free(img->state);
	free(img);
}

static int image_open(struct vdk_src *src, bool own_src, const char *fmt_name,
                      const struct vdk_open_opts *opts, struct vdk_image *child,
                      struct vdk_image **out, struct vdk_err *e)
{
	const struct vdk_format *fmt;
	int r;
	if (fmt_name) {
		fmt = vdk_format_find(fmt_name);
		if (!fmt || !fmt->open)
			r = vdk_err_set(e, VDK_E_USAGE, EINVAL, src->name, NULL, VDK_NO_OFFSET,
			                "unknown image format '%s'", fmt_name);
		else
			r = 0;
	} else if (src->flags & VDK_SRC_STREAM) {
		/* Probing would consume the stream's first bytes. */
		r = vdk_err_set(e, VDK_E_USAGE, EINVAL, src->name, NULL, VDK_NO_OFFSET,
		                "a stream's format must be given with -f");
	} else {
		r = vdk_format_probe(src, &fmt, e);
	}
	struct vdk_image *img = r ? NULL : calloc(1, sizeof(*img));
	if (!r && (!img || (fmt->state_size && !(img->state = calloc(1, fmt->state_size))))) {
		free(img);
		img = NULL;
		r = vdk_ioerr(e, ENOMEM, src->name, "out of memory");
	}
	if (r) {
		if (own_src)
			vdk_src_close(src);
		return r;
	}
	img->fmt = fmt;
	img->src = src;
	img->own_src = own_src;
	img->opts = opts ? opts : &default_open_opts;
	img->child = child;
	img->depth = child ? child->depth + 1 : 0;
	r = vdk_err_ensure(e, fmt->open(img, e), src->name, fmt->name, "opening the image");
	if (r) {
		vdk_image_close(img);
		return r;
	}
	*out = img;
	return 0;
}

int vdk_image_open(struct vdk_src *src, bool own_src, const char *fmt_name,
                   const struct vdk_open_opts *opts, struct vdk_image **out, struct vdk_err *e)
{
	return image_open(src, own_src, fmt_name, opts, NULL, out, e);
}

int vdk_image_open_path(const char *path, const char *fmt_name, const struct vdk_open_opts *opts,
                        struct vdk_image **out, struct vdk_err *e)
{
	struct vdk_src *src;
	int r = vdk_src_open_uri(path, &src, e);
	if (r)
		return r;
	return image_open(src, true, fmt_name, opts, NULL, out, e);
}

int vdk_image_open_backing(struct vdk_image *img, const char *name, const char *fmt_name,
                           struct vdk_err *e)
{
	if (img->depth + 1 >= CHAIN_MAX)
		return vdk_bad(e, img->src->name, img->fmt->name, VDK_NO_OFFSET,
		               "backing chain deeper than %d files: refused", CHAIN_MAX);
	if (!img->backing_name) {
		img->backing_name = strdup(name);
		img->backing_fmt_name = fmt_name ? strdup(fmt_name) : NULL;
		if (!img->backing_name || (fmt_name && !img->backing_fmt_name))
			return vdk_ioerr(e, ENOMEM, img->src->name, "out of memory");
	}
	if (img->opts->no_backing)
		return 0;
	if (img->opts->backing_fmt && img->depth == 0)
		fmt_name = img->opts->backing_fmt;
	struct vdk_src *src;
	int r = vdk_src_open_related(img->src, name, &img->opts->access, &src, e);
	if (r)
		return r;
	for (const struct vdk_image *c = img; c; c = c->child) {
		if (c->src->dev == src->dev && c->src->ino == src->ino && src->ino) {
			vdk_src_close(src);
			return vdk_bad(e, img->src->name, img->fmt->name, VDK_NO_OFFSET,
			               "backing file '%s' loops back into its own chain", name);
		}
	}
	return image_open(src, true, fmt_name, img->opts, img, &img->backing, e);
}

void vdk_image_close(struct vdk_image *img)
{
	if (!img)
		return;
	if (img->backing)
		vdk_image_close(img->backing);
	if (img->fmt->close)
		img->fmt->close(img);
	image_free(img);
}

/* The resolved view ------------------------------------------------- */

/* Ask the format itself; check that what it says is well formed. */
static int image_raw_extents(struct vdk_image *img, uint64_t off, uint64_t len,
                             struct vdk_extents *x, struct vdk_err *e)
{
	vdk_extents_reset(x);
	if (!img->fmt->extents)
		return vdk_extents_add(x, off, len, 0, -1, 0)
		           ? vdk_nomem(e, img->src->name, img->fmt->name, "the extent list")
		           : 0;
	int r = vdk_err_ensure(e, img->fmt->extents(img, off, len, x, e), img->src->name,
	                       img->fmt->name, "mapping the image");
	if (r)
		return r;
	uint64_t pos = off;
	for (size_t i = 0; i < x->n; i++) {
		if (x->v[i].off != pos || x->v[i].len == 0)
			return vdk_err_set(e, VDK_E_IO, EPROTO, img->src->name, img->fmt->name, pos,
			                   "internal error: extents not contiguous");
		pos += x->v[i].len;
	}
	if (x->n == 0)
		return vdk_err_set(e, VDK_E_IO, EPROTO, img->src->name, img->fmt->name, off,
		                   "internal error: no extents");
	/* Clip what runs past the request. */
	struct vdk_extent *last = &x->v[x->n - 1];
	if (last->off + last->len > off + len) {
		while (x->n > 1 && x->v[x->n - 1].off >= off + len)
			x->n--;
		last = &x->v[x->n - 1];
		last->len = off + len - last->off;
	}
	return 0;
}

int vdk_image_own_extents(struct vdk_image *img, uint64_t off, uint64_t len,
                          struct vdk_extents *out, struct vdk_err *e)
{
	return image_raw_extents(img, off, len, out, e);
}

static int image_add(struct vdk_extents *out, const struct vdk_extent *x, uint32_t depth,
                     struct vdk_err *e)
{
	size_t n = out->n;
	if (vdk_extents_add(out, x->off, x->len, x->flags, x->fd, x->phys))
		return vdk_ioerr(e, ENOMEM, NULL, "out of memory");
	if (out->n > n)
		out->v[out->n - 1].depth = depth;
	return 0;
}

int vdk_image_extents(struct vdk_image *img, uint64_t off, uint64_t len, struct vdk_extents *out,
                      struct vdk_err *e)
{
	if (off >= img->size)
		return 0;
	len = VDK_MIN(len, img->size - off);
	struct vdk_extents own = {0};
	int r = image_raw_extents(img, off, len, &own, e);
	for (size_t i = 0; !r && i < own.n; i++) {
		struct vdk_extent x = own.v[i];
		struct vdk_image *b = img->backing;
		/* HOLE|ZERO hides the backing file (qcow2's zero flag does). */
		if (x.flags != VDK_EXT_HOLE || !b) {
			if (x.flags & VDK_EXT_HOLE)
				x.flags |= VDK_EXT_ZERO;
			r = image_add(out, &x, img->depth, e);
			continue;
		}
		/* Look through to the backing file, which may be shorter. */
		uint64_t end = x.off + x.len, pos = x.off;
		while (!r && pos < end && pos < b->size) {
			r = vdk_image_extents(b, pos, VDK_MIN(end, b->size) - pos, out, e);
			uint64_t next =
			    out->n ? out->v[out->n - 1].off + out->v[out->n - 1].len : 0;
			if (!r && next <= pos)
				break;
			pos = next;
		}
		if (!r && pos < end) {
			struct vdk_extent z = {.off = pos,
			                       .len = end - pos,
			                       .flags = VDK_EXT_HOLE | VDK_EXT_ZERO,
			                       .fd = -1};
			r = image_add(out, &z, img->depth, e);
		}
	}
	vdk_extents_free(&own);
	return r;
}

int vdk_image_pread(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	if (!vdk_range_ok(off, len, img->size))
		return vdk_bad(e, img->src->name, img->fmt->name, off,
		               "read past the end of the virtual disk");
	if (!img->fmt->extents)
		return vdk_err_ensure(e, img->fmt->pread(img, buf, len, off, e), img->src->name,
		                      img->fmt->name, "reading the image");
	struct vdk_extents x = {0};
	uint8_t *p = buf;
	int r = 0;
	uint64_t pos = off, end = off + len;
	while (!r && pos < end) {
		r = image_raw_extents(img, pos, end - pos, &x, e);
		for (size_t i = 0; !r && i < x.n; i++) {
			const struct vdk_extent *xe = &x.v[i];
			uint8_t *dst = p + (xe->off - off);
			struct vdk_image *b = img->backing;
			if (!(xe->flags & (VDK_EXT_ZERO | VDK_EXT_HOLE))) {
				r = vdk_err_ensure(
				    e, img->fmt->pread(img, dst, xe->len, xe->off, e),
				    img->src->name, img->fmt->name, "reading the image");
			} else if ((xe->flags & VDK_EXT_HOLE) && !(xe->flags & VDK_EXT_ZERO) && b &&
			           xe->off < b->size) {
				uint64_t n = VDK_MIN(xe->len, b->size - xe->off);
				r = vdk_image_pread(b, dst, n, xe->off, e);
				memset(dst + n, 0, xe->len - n);
			} else {
				memset(dst, 0, xe->len);
			}
			pos = xe->off + xe->len;
		}
	}
	vdk_extents_free(&x);
	return r;
}

/* qemu-img's pair: backing-filename as the header stores it, and
 * full-backing-filename resolved against the image's folder (the file
 * need not exist). */
static void image_info_backing(const struct vdk_image *img, struct vdk_json *j)
{
	const char *name = img->backing_name;
	if (!name && img->backing)
		name = img->backing->src->name;
	if (!name)
		return;
	vdk_json_set_str(j, "backing-filename", name);
	const char *slash = strrchr(img->src->name, '/');
	char full[4096];
	if (!img->backing_name)
		snprintf(full, sizeof(full), "%s", img->backing->src->name);
	else if (name[0] == '/' || !slash)
		snprintf(full, sizeof(full), "%s", name);
	else
		snprintf(full, sizeof(full), "%.*s/%s", (int)(slash - img->src->name),
		         img->src->name, name);
	vdk_json_set_str(j, "full-backing-filename", full);
	const char *fmt = img->backing ? img->backing->fmt->name : img->backing_fmt_name;
	if (fmt)
		vdk_json_set_str(j, "backing-filename-format", fmt);
}

struct vdk_json *vdk_image_info(struct vdk_image *img, const char *filename, struct vdk_err *e)
{
	struct vdk_json *j = vdk_json_new_obj();
	if (!j) {
		vdk_ioerr(e, ENOMEM, NULL, "out of memory");
		return NULL;
	}
	vdk_json_set_u64(j, "virtual-size", img->size);
	vdk_json_set_str(j, "filename", filename ? filename : img->src->name);
	if (img->cluster_size)
		vdk_json_set_u64(j, "cluster-size", img->cluster_size);
	vdk_json_set_str(j, "format", img->fmt->name);
	struct stat st;
	if (img->src->fd >= 0 && fstat(img->src->fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    img->src->fd_off == 0)
		vdk_json_set_u64(j, "actual-size", (uint64_t)st.st_blocks * 512);
	image_info_backing(img, j);
	if (img->fmt->info) {
		struct vdk_json *fs = vdk_json_set_obj(j, "format-specific");
		vdk_json_set_str(fs, "type", img->fmt->name);
		struct vdk_json *data = vdk_json_set_obj(fs, "data");
		if (data && img->fmt->info(img, data, e)) {
			vdk_json_free(j);
			return NULL;
		}
		vdk_json_move_first(data, "snapshots", j);
	}
	vdk_json_set_bool(j, "dirty-flag", img->dirty);
	return j;
}
