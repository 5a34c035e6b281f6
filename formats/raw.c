/* raw: the virtual disk is the file. Extents come from SEEK_DATA/SEEK_HOLE
 * (holes are ZERO, not HOLE: there is no backing file to show through, and
 * qemu-img map calls them present zeroes too);
 * the writer keeps holes as holes and shares blocks at the same offsets. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "format.h"
#include "util.h"

static int raw_probe(const uint8_t *buf, size_t len, uint64_t size)
{
	(void)buf;
	(void)len;
	(void)size;
	return 1; /* anything is a raw image; everything else outranks it */
}

static int raw_open(struct vdk_image *img, struct vdk_err *e)
{
	if (img->src->size == VDK_SIZE_UNKNOWN)
		return vdk_err_set(e, VDK_E_USAGE, ESPIPE, img->src->name, "raw", VDK_NO_OFFSET,
		                   "a raw image read from a stream needs a known size");
	/* qemu-img counts in 512-byte sectors: a file of 1000 bytes is a disk of
	 * 1024 whose tail reads as zeroes. Match it, so sizes and digests agree. */
	if (img->src->size > UINT64_MAX - 511)
		return vdk_bad(e, img->src->name, "raw", VDK_NO_OFFSET, "size too large");
	img->size = vdk_round_up(img->src->size, 512);
	return 0;
}

static int raw_extents(struct vdk_image *img, uint64_t off, uint64_t len, struct vdk_extents *out,
                       struct vdk_err *e)
{
	struct vdk_src *s = img->src;
	uint64_t end = off + len;
	if (end > s->size) {
		/* The sub-sector tail past the end of the file. */
		if (off >= s->size)
			return vdk_extents_add(out, off, len, VDK_EXT_ZERO, -1, 0)
			           ? vdk_ioerr(e, ENOMEM, s->name, "out of memory")
			           : 0;
		end = s->size;
	}
	while (off < end && !vdk_extents_full(out)) {
		uint64_t d, h;
		int r = 0;
		vdk_src_next_data(s, off, end, &d, &h);
		if (d > off)
			r = vdk_extents_add(out, off, d - off, VDK_EXT_ZERO, -1, 0);
		if (!r && h > d)
			r = vdk_extents_add(out, d, h - d, 0, s->fd, s->fd_off + d);
		if (r)
			return vdk_ioerr(e, ENOMEM, s->name, "out of memory");
		off = h;
	}
	return 0;
}

static int raw_pread(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	uint64_t fsize = img->src->size;
	size_t n = off >= fsize ? 0 : (size_t)VDK_MIN((uint64_t)len, fsize - off);
	memset((uint8_t *)buf + n, 0, len - n);
	return vdk_src_pread(img->src, buf, n, off, e);
}

/* Writer --------------------------------------------------------------- */

extern const struct vdk_format vdk_format_raw;

/* A raw copy of a raw file is exact: the reader pads a 1000-byte file to
 * the 1024-byte disk qemu-img reports, but raw output needs no whole
 * sectors, so the writer stops at the source's last byte. */
struct raw_wstate {
	uint64_t end; /* bytes of output: w->size, or the raw source's size */
};

static uint64_t raw_clip(const struct vdk_writer *w, uint64_t off, uint64_t len)
{
	const struct raw_wstate *ws = w->state;
	return off >= ws->end ? 0 : VDK_MIN(len, ws->end - off);
}

static int raw_create(struct vdk_writer *w, struct vdk_err *e)
{
	(void)e;
	struct raw_wstate *ws = w->state;
	const struct vdk_image *src = w->source;
	ws->end = w->size;
	if (src && src->fmt == &vdk_format_raw && src->src && src->src->size < w->size &&
	    vdk_round_up(src->src->size, 512) == w->size)
		ws->end = src->src->size;
	w->caps = VDK_WCAP_SEQUENTIAL;
	if (w->sink->flags & VDK_SINK_ZEROED)
		w->caps |= VDK_WCAP_ZEROED;
	if (w->sink->fd >= 0)
		w->caps |= VDK_WCAP_CLONE;
	return 0;
}

static int raw_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                     struct vdk_err *e)
{
	size_t n = (size_t)raw_clip(w, off, len);
	return n ? vdk_sink_pwrite(w->sink, buf, n, off, e) : 0;
}

static int raw_write_zeroes(struct vdk_writer *w, uint64_t off, uint64_t len, struct vdk_err *e)
{
	uint64_t n = raw_clip(w, off, len);
	return n ? vdk_sink_zero(w->sink, off, n, e) : 0;
}

static int raw_clone(struct vdk_writer *w, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
                     enum vdk_clone_mode mode, struct vdk_err *e)
{
	if (raw_clip(w, off, len) != len)
		return -EOPNOTSUPP; /* the padded tail: copied (and clipped) by write */
	return vdk_sink_clone(w->sink, off, src_fd, src_off, len, mode, e);
}

static int raw_finalize(struct vdk_writer *w, struct vdk_err *e)
{
	const struct raw_wstate *ws = w->state;
	return vdk_sink_truncate(w->sink, ws->end, e);
}

const struct vdk_format vdk_format_raw = {
    .name = "raw",
    .description = "raw disk image (holes kept sparse)",
    .probe = raw_probe,
    .open = raw_open,
    .extents = raw_extents,
    .pread = raw_pread,
    .wstate_size = sizeof(struct raw_wstate),
    .wcaps = VDK_WCAP_SEQUENTIAL | VDK_WCAP_ZEROED | VDK_WCAP_CLONE,
    .create = raw_create,
    .write = raw_write,
    .write_zeroes = raw_write_zeroes,
    .clone = raw_clone,
    .finalize = raw_finalize,
};
