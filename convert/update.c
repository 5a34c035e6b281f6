/* In-place updates (update.h): opening a target for update, counting what
 * reaches the file, and copying an image's own extents into it. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "update.h"
#include "util.h"

#define UPDATE_CHUNK (1u << 20)

static int update_pick_format(const char *path, const char *fmt_name,
                              const struct vdk_format **out, struct vdk_err *e)
{
	const struct vdk_format *f = NULL;
	if (fmt_name) {
		f = vdk_format_find(fmt_name);
		if (!f)
			return vdk_err_set(e, VDK_E_USAGE, EINVAL, path, NULL, VDK_NO_OFFSET,
			                   "unknown format '%s'", fmt_name);
	} else {
		struct vdk_src *s;
		int r = vdk_src_open_file(path, &s, e);
		if (r)
			return r;
		r = vdk_format_probe(s, &f, e);
		vdk_src_close(s);
		if (r)
			return r;
	}
	if (!f->update_open)
		return vdk_unsup(e, path, f->name, VDK_NO_OFFSET,
		                 "this format cannot be updated in place");
	*out = f;
	return 0;
}

/* A regular file or a block device, never a link swapped in, a FIFO or a
 * directory; locked so that two updates of one target cannot interleave. */
static int update_open_fd(const char *path, int *fd_out, struct vdk_err *e)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return vdk_ioerr(e, errno, path, "cannot open for update: %s", strerror(errno));
	struct stat st;
	if (fstat(fd, &st) || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
		close(fd);
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, path, NULL, VDK_NO_OFFSET,
		                   "not a regular file or block device");
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int err = errno;
		close(fd);
		return vdk_ioerr(e, err, path, "another process is updating this image (%s)",
		                 strerror(err));
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		(void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	*fd_out = fd;
	return 0;
}

static const struct vdk_access update_own_folder;

int vdk_update_open(const char *path, const char *fmt_name, struct vdk_update **out,
                    struct vdk_err *e)
{
	return vdk_update_open_access(path, fmt_name, NULL, out, e);
}

int vdk_update_open_access(const char *path, const char *fmt_name, const struct vdk_access *acc,
                           struct vdk_update **out, struct vdk_err *e)
{
	const struct vdk_format *f = NULL;
	int r = update_pick_format(path, fmt_name, &f, e);
	if (r)
		return r;
	struct vdk_update *u = calloc(1, sizeof(*u));
	if (!u)
		return vdk_nomem(e, path, f->name, "the update state");
	u->fmt = f;
	u->path = path;
	u->access = acc ? acc : &update_own_folder;
	u->fd = -1;
	if (f->ustate_size && !(u->state = calloc(1, f->ustate_size))) {
		free(u);
		return vdk_nomem(e, path, f->name, "the update state");
	}
	r = update_open_fd(path, &u->fd, e);
	if (!r)
		r = vdk_err_ensure(e, f->update_open(u, e), path, f->name, "opening for update");
	if (!r && (u->size == 0 || u->granularity == 0))
		r = vdk_err_set(e, VDK_E_IO, EPROTO, path, f->name, VDK_NO_OFFSET,
		                "internal error: updater set no size or granularity");
	if (r) {
		vdk_update_close(u);
		return r;
	}
	*out = u;
	return 0;
}

static int update_check_range(struct vdk_update *u, uint64_t off, uint64_t len,
                              struct vdk_err *e)
{
	if (off > u->size || len > u->size - off)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, u->path, u->fmt->name, off,
		                   "write of %llu bytes past the end of the disk",
		                   (unsigned long long)len);
	if (off % 512 || (len % 512 && off + len != u->size))
		return vdk_err_set(e, VDK_E_IO, EPROTO, u->path, u->fmt->name, off,
		                   "internal error: update not aligned to 512 bytes");
	return 0;
}

int vdk_update_write(struct vdk_update *u, const void *buf, size_t len, uint64_t off,
                     struct vdk_err *e)
{
	int r = update_check_range(u, off, len, e);
	if (r || len == 0)
		return r;
	return vdk_err_ensure(e, u->fmt->update_write(u, buf, len, off, e), u->path, u->fmt->name,
	                      "writing");
}

static int update_zero_by_writes(struct vdk_update *u, uint64_t off, uint64_t len,
                                 struct vdk_err *e)
{
	size_t n = (size_t)VDK_MIN((uint64_t)UPDATE_CHUNK, len);
	void *z = calloc(1, n);
	if (!z)
		return vdk_nomem(e, u->path, u->fmt->name, "a zero buffer");
	int r = 0;
	while (!r && len) {
		size_t k = (size_t)VDK_MIN((uint64_t)n, len);
		r = u->fmt->update_write(u, z, k, off, e);
		off += k;
		len -= k;
	}
	free(z);
	return r;
}

int vdk_update_zero(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e)
{
	int r = update_check_range(u, off, len, e);
	if (r || len == 0)
		return r;
	r = u->fmt->update_zero ? u->fmt->update_zero(u, off, len, e)
	                        : update_zero_by_writes(u, off, len, e);
	return vdk_err_ensure(e, r, u->path, u->fmt->name, "zeroing");
}

int vdk_update_flush(struct vdk_update *u, struct vdk_err *e)
{
	int r = u->fmt->update_flush ? u->fmt->update_flush(u, e) : vdk_update_sync(u, e);
	return vdk_err_ensure(e, r, u->path, u->fmt->name, "flushing");
}

void vdk_update_close(struct vdk_update *u)
{
	if (!u)
		return;
	if (u->fmt->update_close && u->fd >= 0)
		u->fmt->update_close(u);
	if (u->fd >= 0)
		close(u->fd);
	free(u->state);
	free(u);
}

int vdk_update_pwrite(struct vdk_update *u, const void *buf, size_t len, uint64_t off, bool meta,
                      struct vdk_err *e)
{
	if (vdk_pwrite_full(u->fd, buf, len, off))
		return vdk_ioerr(e, errno, u->path, "write of %zu bytes at offset %llu failed: %s", len,
		                 (unsigned long long)off, strerror(errno));
	if (meta)
		u->st.meta_bytes += len;
	else
		u->st.data_bytes += len;
	return 0;
}

int vdk_update_sync(struct vdk_update *u, struct vdk_err *e)
{
	u->st.syncs++;
	if (fdatasync(u->fd))
		return vdk_ioerr(e, errno, u->path, "fdatasync failed: %s", strerror(errno));
	return 0;
}

/* The copy ------------------------------------------------------------ */

static int update_copy_data(struct vdk_update *u, struct vdk_image *img, uint8_t *buf,
                            uint64_t off, uint64_t len, struct vdk_err *e)
{
	while (len) {
		size_t n = (size_t)VDK_MIN((uint64_t)UPDATE_CHUNK, len);
		int r = vdk_err_ensure(e, img->fmt->pread(img, buf, n, off, e), img->src->name,
		                       img->fmt->name, "reading");
		if (!r)
			r = vdk_update_write(u, buf, n, off, e);
		if (r)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

static int update_copy_extent(struct vdk_update *u, struct vdk_image *img, uint8_t *buf,
                              const struct vdk_extent *x, struct vdk_err *e)
{
	if (x->flags & VDK_EXT_HOLE)
		return 0;
	if (x->flags & VDK_EXT_ZERO)
		return vdk_update_zero(u, x->off, x->len, e);
	return update_copy_data(u, img, buf, x->off, x->len, e);
}

int vdk_update_copy_own(struct vdk_update *u, struct vdk_image *img, vdk_update_progress progress,
                        void *ctx, struct vdk_err *e)
{
	/* A target may be longer (VHD rounds its size up to a CHS geometry):
	 * its tail is not the delta's to write. */
	if (img->size > u->size)
		return vdk_bad(e, img->src->name, img->fmt->name, VDK_NO_OFFSET,
		               "virtual size %llu exceeds %s's %llu",
		               (unsigned long long)img->size, u->path, (unsigned long long)u->size);
	uint8_t *buf = malloc(UPDATE_CHUNK);
	if (!buf)
		return vdk_nomem(e, img->src->name, img->fmt->name, "the copy buffer");
	struct vdk_extents x = {0};
	uint64_t off = 0;
	int r = 0;
	while (!r && off < img->size) {
		r = vdk_image_own_extents(img, off, img->size - off, &x, e);
		for (size_t i = 0; !r && i < x.n; i++)
			r = update_copy_extent(u, img, buf, &x.v[i], e);
		if (!r && x.n)
			off = x.v[x.n - 1].off + x.v[x.n - 1].len;
		if (progress)
			progress(ctx, off, img->size);
	}
	vdk_extents_free(&x);
	free(buf);
	return r;
}
