/* raw: the virtual disk is the file. Extents come from SEEK_DATA/SEEK_HOLE
 * (holes are ZERO, not HOLE: there is no backing file to show through, and
 * qemu-img map calls them present zeroes too);
 * the writer keeps holes as holes and shares blocks at the same offsets. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"
#include "update.h"
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
	bool full;    /* preallocation=full: zeroes are written, never punched */
	uint64_t end; /* bytes of output: w->size, or the raw source's size */
};

static uint64_t raw_clip(const struct vdk_writer *w, uint64_t off, uint64_t len)
{
	const struct raw_wstate *ws = w->state;
	return off >= ws->end ? 0 : VDK_MIN(len, ws->end - off);
}

/* preallocation (qemu-img's): falloc reserves every block up front (and
 * fails where the filesystem cannot, so a caller may fall back); full
 * writes zeroes wherever the source has none to give. */
static int raw_prealloc(struct vdk_writer *w, struct vdk_err *e)
{
	static const char *const modes[] = {"off", "falloc", "full", NULL};
	int m = 0;
	int r = vdk_opts_get_enum(w->opts, "preallocation", modes, 0, &m, e);
	if (r || m == 0)
		return r;
	if (w->sink->fd < 0)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, w->sink->name, "raw", VDK_NO_OFFSET,
		                   "preallocation needs a file output, not a stream");
	if (m == 2) {
		((struct raw_wstate *)w->state)->full = true;
		w->caps &= ~(unsigned)(VDK_WCAP_ZEROED | VDK_WCAP_CLONE);
		return 0;
	}
	if (w->size && fallocate(w->sink->fd, 0, (off_t)w->sink->fd_off, (off_t)w->size) != 0)
		return vdk_err_set(e, VDK_E_IO, errno, w->sink->name, "raw", VDK_NO_OFFSET,
		                   "preallocation=falloc failed: %s", strerror(errno));
	return 0;
}

static int raw_create(struct vdk_writer *w, struct vdk_err *e)
{
	w->caps = VDK_WCAP_SEQUENTIAL;
	if (w->sink->flags & VDK_SINK_ZEROED)
		w->caps |= VDK_WCAP_ZEROED;
	if (w->sink->fd >= 0)
		w->caps |= VDK_WCAP_CLONE;
	if (w->sink->flags & VDK_SINK_CONCURRENT)
		w->caps |= VDK_WCAP_PARALLEL;
	struct raw_wstate *ws = w->state;
	const struct vdk_image *src = w->source;
	ws->end = w->size;
	if (src && src->fmt == &vdk_format_raw && src->src && src->src->size < w->size &&
	    vdk_round_up(src->src->size, 512) == w->size)
		ws->end = src->src->size;
	if (w->sink->limit && w->size > w->sink->limit)
		return vdk_err_set(e, VDK_E_USAGE, ENOSPC, w->sink->name, "raw", VDK_NO_OFFSET,
		                   "the output holds %llu bytes, the disk needs %llu",
		                   (unsigned long long)w->sink->limit, (unsigned long long)w->size);
	return raw_prealloc(w, e);
}

static int raw_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                     struct vdk_err *e)
{
	size_t n = (size_t)raw_clip(w, off, len);
	return n ? vdk_sink_pwrite(w->sink, buf, n, off, e) : 0;
}

static int raw_write_zeroes(struct vdk_writer *w, uint64_t off, uint64_t len, struct vdk_err *e)
{
	static const uint8_t z[65536];
	len = raw_clip(w, off, len);
	if (!len)
		return 0;
	if (!((struct raw_wstate *)w->state)->full)
		return vdk_sink_zero(w->sink, off, len, e);
	while (len) {
		size_t n = (size_t)VDK_MIN(len, (uint64_t)sizeof(z));
		int r = vdk_sink_pwrite(w->sink, z, n, off, e);
		if (r)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

static int raw_clone(struct vdk_writer *w, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
                     enum vdk_clone_mode mode, struct vdk_err *e)
{
	if (raw_clip(w, off, len) != len)
		return -EOPNOTSUPP; /* the padded tail: copied (and clipped) by write */
	return vdk_sink_clone(w->sink, off, len, src_fd, src_off, mode, e);
}

static int raw_finalize(struct vdk_writer *w, struct vdk_err *e)
{
	const struct raw_wstate *ws = w->state;
	return vdk_sink_truncate(w->sink, ws->end, e);
}

/* In place: ftruncate, and for preallocation=falloc|full reserve or zero
 * the part that grew (qemu-img resize --preallocation). */
static int raw_resize_prealloc(int fd, const char *path, uint64_t from, uint64_t to,
                               struct vdk_opts *opts, struct vdk_err *e)
{
	static const char *const modes[] = {"off", "falloc", "full", NULL};
	int m = 0;
	int r = vdk_opts_get_enum(opts, "preallocation", modes, 0, &m, e);
	if (r || m == 0 || to <= from)
		return r;
	if (fallocate(fd, 0, (off_t)from, (off_t)(to - from)) == 0)
		return 0;
	if (m == 1)
		return vdk_err_set(e, VDK_E_IO, errno, path, "raw", from,
		                   "preallocation=falloc failed: %s", strerror(errno));
	static const uint8_t z[65536];
	for (uint64_t off = from; off < to;) {
		size_t n = (size_t)VDK_MIN(to - off, (uint64_t)sizeof(z));
		if ((r = vdk_pwrite_full(fd, z, n, off)))
			return vdk_err_set(e, VDK_E_IO, -r, path, "raw", off, "write failed: %s",
			                   strerror(-r));
		off += n;
	}
	return 0;
}

static int raw_resize(const char *path, uint64_t size, bool shrink, struct vdk_opts *opts,
                      struct vdk_err *e)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		return vdk_ioerr(e, err, path, "cannot open for resizing: %s", strerror(err));
	}
	int r = 0;
	if (!S_ISREG(st.st_mode))
		r = vdk_err_set(e, VDK_E_USAGE, EINVAL, path, "raw", VDK_NO_OFFSET,
		                "only a regular file can be resized (a device has its own size)");
	else if (size < (uint64_t)st.st_size && !shrink)
		r = vdk_err_set(e, VDK_E_USAGE, EINVAL, path, "raw", VDK_NO_OFFSET,
		                "the new size is smaller: give --shrink to cut the disk (data "
		                "past the new end is lost)");
	else if (ftruncate(fd, (off_t)size) != 0)
		r = vdk_ioerr(e, errno, path, "setting the size failed: %s", strerror(errno));
	if (!r)
		r = raw_resize_prealloc(fd, path, (uint64_t)st.st_size, size, opts, e);
	if (!r && fsync(fd) != 0)
		r = vdk_ioerr(e, errno, path, "fsync failed: %s", strerror(errno));
	close(fd);
	return r;
}

/* Update in place (vdkit apply): the file is the disk. */
static int raw_update_open(struct vdk_update *u, struct vdk_err *e)
{
	struct stat st;
	if (fstat(u->fd, &st))
		return vdk_ioerr(e, errno, u->path, "stat failed: %s", strerror(errno));
	uint64_t size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode) && ioctl(u->fd, BLKGETSIZE64, &size))
		return vdk_ioerr(e, errno, u->path, "cannot read the device size: %s",
		                 strerror(errno));
	if (size == 0)
		return vdk_bad(e, u->path, "raw", VDK_NO_OFFSET,
		               "an empty file is no disk to update");
	u->size = size;
	u->granularity = 512;
	return 0;
}

static int raw_update_write(struct vdk_update *u, const void *buf, size_t len, uint64_t off,
                            struct vdk_err *e)
{
	return vdk_update_pwrite(u, buf, len, off, false, e);
}

/* ZERO_RANGE keeps the blocks allocated (a preallocated target stays so)
 * and works on block devices; where it is missing, zeroes are written. */
static int raw_update_zero(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e)
{
	if (fallocate(u->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) ==
	    0)
		return 0;
	static const uint8_t z[65536];
	while (len) {
		size_t n = (size_t)VDK_MIN(len, (uint64_t)sizeof(z));
		int r = vdk_update_pwrite(u, z, n, off, false, e);
		if (r)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

static const struct vdk_opt_desc raw_wopts[] = {
    {"preallocation", "enum", "off", "off, falloc, full",
     "off: sparse; falloc: reserve every block (fallocate); full: write zeroes everywhere"},
    {NULL, NULL, NULL, NULL, NULL},
};

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
    .wopts = raw_wopts,
    .resize = raw_resize,
    .update_open = raw_update_open,
    .update_write = raw_update_write,
    .update_zero = raw_update_zero,
};
