/* Content digest and comparison of two images through their readers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "util.h"

/* A writer that discards: the pipeline then only reads and hashes. */
static int null_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                      struct vdk_err *e)
{
	(void)w, (void)buf, (void)len, (void)off, (void)e;
	return 0;
}

static const struct vdk_format null_format = {
    .name = "null",
    .wcaps = VDK_WCAP_ZEROED | VDK_WCAP_SEQUENTIAL,
    .write = null_write,
};

int vdk_image_digest(struct vdk_image *img, unsigned threads, uint8_t out[VDK_DIGEST_MAX],
                     struct vdk_err *e)
{
	struct vdk_writer w = {
	    .fmt = &null_format,
	    .size = img->size,
	    .caps = null_format.wcaps,
	    .granularity = 4096,
	};
	struct vdk_convert_opts o;
	vdk_convert_opts_init(&o);
	o.clone = VDK_CLONE_NEVER;
	o.digest = true;
	o.threads = threads;
	struct vdk_convert_stats st;
	int r = vdk_convert(img, &w, &o, &st, e);
	if (!r)
		memcpy(out, st.digest, VDK_DIGEST_MAX);
	return r;
}

#define CMP_CHUNK (1u << 20)

/* A cursor over an image's resolved extents; past the end reads as zero. */
struct cmp_cursor {
	struct vdk_image *img;
	struct vdk_extents x;
	size_t i;
};

/* Is [pos, ...) zero in this image, and up to where (exclusive)? */
static int cmp_peek(struct cmp_cursor *c, uint64_t pos, bool *zero, uint64_t *until,
                    struct vdk_err *e)
{
	if (pos >= c->img->size) {
		*zero = true;
		*until = UINT64_MAX;
		return 0;
	}
	while (c->i < c->x.n && c->x.v[c->i].off + c->x.v[c->i].len <= pos)
		c->i++;
	if (c->i >= c->x.n || c->x.v[c->i].off > pos) {
		vdk_extents_reset(&c->x);
		c->i = 0;
		int r = vdk_image_extents(c->img, pos, c->img->size - pos, &c->x, e);
		if (r)
			return r;
		if (!c->x.n)
			return vdk_err_set(e, VDK_E_IO, EPROTO, NULL, NULL, pos, "no extents");
	}
	const struct vdk_extent *x = &c->x.v[c->i];
	*zero = x->flags & (VDK_EXT_ZERO | VDK_EXT_HOLE);
	*until = x->off + x->len;
	return 0;
}

static int cmp_read(struct vdk_image *img, uint8_t *buf, uint64_t len, uint64_t pos,
                    struct vdk_err *e)
{
	if (pos >= img->size) {
		memset(buf, 0, len);
		return 0;
	}
	uint64_t n = VDK_MIN(len, img->size - pos);
	memset(buf + n, 0, len - n);
	return vdk_image_pread(img, buf, n, pos, e);
}

static int cmp_chunk(struct cmp_cursor *ca, struct cmp_cursor *cb, uint8_t *ba, uint8_t *bb,
                     uint64_t pos, uint64_t n, bool *differ, uint64_t *first, struct vdk_err *e)
{
	int r = cmp_read(ca->img, ba, n, pos, e);
	if (!r)
		r = cmp_read(cb->img, bb, n, pos, e);
	if (r || !memcmp(ba, bb, n))
		return r;
	for (uint64_t k = 0; k < n; k++)
		if (ba[k] != bb[k]) {
			*differ = true;
			*first = pos + k;
			break;
		}
	return 0;
}

int vdk_compare(struct vdk_image *a, struct vdk_image *b, bool *differ, uint64_t *first,
                struct vdk_err *e)
{
	struct cmp_cursor ca = {.img = a}, cb = {.img = b};
	uint8_t *ba = malloc(CMP_CHUNK), *bb = malloc(CMP_CHUNK);
	uint64_t end = VDK_MAX(a->size, b->size), pos = 0;
	int r = ba && bb ? 0 : vdk_nomem(e, a->src->name, NULL, "the compare buffers");
	*differ = false;
	while (!r && !*differ && pos < end) {
		bool za, zb;
		uint64_t ua, ub;
		r = cmp_peek(&ca, pos, &za, &ua, e);
		if (!r)
			r = cmp_peek(&cb, pos, &zb, &ub, e);
		if (r)
			break;
		uint64_t until = VDK_MIN(VDK_MIN(ua, ub), end);
		if (za && zb) {
			pos = until;
			continue;
		}
		uint64_t n = VDK_MIN(until - pos, (uint64_t)CMP_CHUNK);
		r = cmp_chunk(&ca, &cb, ba, bb, pos, n, differ, first, e);
		pos += n;
	}
	vdk_extents_free(&ca.x);
	vdk_extents_free(&cb.x);
	free(ba);
	free(bb);
	return r;
}

int vdk_image_is_zero(struct vdk_image *img, uint64_t off, uint64_t len, bool *zero,
                      struct vdk_err *e)
{
	struct cmp_cursor c = {.img = img};
	uint8_t *buf = NULL;
	uint64_t end = VDK_MIN(img->size, off + len), pos = off;
	int r = 0;
	*zero = true;
	while (!r && *zero && pos < end) {
		bool z;
		uint64_t until;
		r = cmp_peek(&c, pos, &z, &until, e);
		until = VDK_MIN(until, end);
		if (r || z) {
			pos = until;
			continue;
		}
		if (!buf && !(buf = malloc(CMP_CHUNK))) {
			r = vdk_nomem(e, img->src->name, img->fmt->name, "a read buffer");
			break;
		}
		uint64_t n = VDK_MIN(until - pos, (uint64_t)CMP_CHUNK);
		r = vdk_image_pread(img, buf, (size_t)n, pos, e);
		*zero = !r && vdk_is_zero(buf, (size_t)n);
		pos += n;
	}
	vdk_extents_free(&c.x);
	free(buf);
	return r;
}
