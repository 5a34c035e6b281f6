/* Sources: files, memory, windows and forward-only streams. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "io_beneath.h"
#include "util.h"

static int64_t io_mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

struct vdk_src *vdk_src_alloc(const struct vdk_src_ops *ops, const char *name)
{
	struct vdk_src *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->name = strdup(name ? name : "(unnamed)");
	if (!s->name) {
		free(s);
		return NULL;
	}
	if (pthread_mutex_init(&s->seek_lock, NULL)) {
		free(s->name);
		free(s);
		return NULL;
	}
	s->ops = ops;
	s->fd = -1;
	return s;
}

static void src_free(struct vdk_src *s)
{
	pthread_mutex_destroy(&s->seek_lock);
	free(s->name);
	free(s);
}

int vdk_src_pread_upto(struct vdk_src *s, void *buf, size_t len, uint64_t off, size_t *got,
                       struct vdk_err *e)
{
	*got = 0;
	if (s->size != VDK_SIZE_UNKNOWN) {
		if (off >= s->size)
			return 0;
		len = (size_t)VDK_MIN((uint64_t)len, s->size - off);
	}
	int r = s->ops->pread(s, buf, len, off, e);
	if (r == 0)
		*got = len;
	return r;
}

int vdk_src_pread(struct vdk_src *s, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	if (s->size != VDK_SIZE_UNKNOWN && !vdk_range_ok(off, len, s->size))
		return vdk_bad(e, s->name, NULL, off,
		               "read of %zu bytes past the end of the file "
		               "(size %llu)",
		               len, (unsigned long long)s->size);
	if (len == 0)
		return 0;
	return s->ops->pread(s, buf, len, off, e);
}

int vdk_src_open_related(struct vdk_src *s, const char *name, const struct vdk_access *acc,
                         struct vdk_src **out, struct vdk_err *e)
{
	if (!s->ops->open_related)
		return vdk_err_set(e, VDK_E_INPUT, ENOENT, s->name, NULL, VDK_NO_OFFSET,
		                   "refers to '%s', but this source cannot open other files", name);
	static const struct vdk_access none = {0};
	return s->ops->open_related(s, name, acc ? acc : &none, out, e);
}

void vdk_src_close(struct vdk_src *s)
{
	if (!s)
		return;
	if (s->ops->close)
		s->ops->close(s);
	src_free(s);
}

/* Files ------------------------------------------------------------- */

struct src_file {
	char *dir; /* real path of the folder holding the file */
	int dirfd; /* that folder (O_PATH): related files open beneath it */
	bool own_fd;
};

static int file_pread(struct vdk_src *s, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	int r = vdk_pread_full(s->fd, buf, len, off);
	if (r == -ENODATA)
		return vdk_bad(e, s->name, NULL, off, "unexpected end of file");
	if (r)
		return vdk_err_set(e, VDK_E_IO, -r, s->name, NULL, off, "read failed: %s",
		                   strerror(-r));
	return 0;
}

static void file_close(struct vdk_src *s)
{
	struct src_file *f = s->priv;
	if (f && f->own_fd && s->fd >= 0)
		close(s->fd);
	if (f && f->dirfd >= 0)
		close(f->dirfd);
	if (f)
		free(f->dir);
	free(f);
}

static int file_open_related(struct vdk_src *s, const char *name, const struct vdk_access *acc,
                             struct vdk_src **out, struct vdk_err *e);

static const struct vdk_src_ops file_ops = {
    .pread = file_pread,
    .open_related = file_open_related,
    .close = file_close,
};

/* Adopt fd as a source named name; dir and dirfd (adopted on success) are
 * the folder for related files, or NULL and -1. */
static int src_from_fd(int fd, const char *name, const char *dir, int dirfd, bool own,
                       struct vdk_src **out, struct vdk_err *e)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return vdk_err_set(e, VDK_E_IO, errno, name, NULL, VDK_NO_OFFSET, "%s",
		                   strerror(errno));
	if (S_ISDIR(st.st_mode))
		return vdk_err_set(e, VDK_E_INPUT, EISDIR, name, NULL, VDK_NO_OFFSET,
		                   "is a directory, not an image");
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return vdk_err_set(e, VDK_E_INPUT, EINVAL, name, NULL, VDK_NO_OFFSET,
		                   "not a regular file or block device");
	struct vdk_src *s = vdk_src_alloc(&file_ops, name);
	struct src_file *f = calloc(1, sizeof(*f));
	if (!s || !f || (dir && !(f->dir = strdup(dir)))) {
		free(f);
		if (s)
			src_free(s);
		return vdk_ioerr(e, ENOMEM, name, "out of memory");
	}
	f->own_fd = own;
	f->dirfd = dir ? dirfd : -1;
	s->priv = f;
	s->fd = fd;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->mtime_ns = io_mtime_ns(&st);
	s->size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);
		s->size = end < 0 ? 0 : (uint64_t)end;
	}
	*out = s;
	return 0;
}

/* The folder that holds path: its real path (malloc'd) and an O_PATH fd
 * of it, or NULL and -1 when it cannot be opened. */
static char *src_folder(const char *path, int *dirfd)
{
	*dirfd = -1;
	char *copy = strdup(path);
	if (!copy)
		return NULL;
	char *slash = strrchr(copy, '/');
	const char *d = ".";
	if (slash == copy)
		d = "/";
	else if (slash) {
		*slash = '\0';
		d = copy;
	}
	char *real = realpath(d, NULL);
	if (real && (*dirfd = open(d, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
		free(real);
		real = NULL;
	}
	free(copy);
	return real;
}

static int src_open_path(const char *path, const char *name, struct vdk_src **out,
                         struct vdk_err *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		int err = errno;
		enum vdk_err_class cls = (err == ENOENT || err == EACCES || err == EISDIR ||
		                          err == ENOTDIR || err == ELOOP)
		                             ? VDK_E_INPUT
		                             : VDK_E_IO;
		return vdk_err_set(e, cls, err, name, NULL, VDK_NO_OFFSET, "cannot open: %s",
		                   strerror(err));
	}
	/* O_NONBLOCK only protected the open against FIFOs. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	int dirfd;
	char *dir = src_folder(path, &dirfd);
	int r = src_from_fd(fd, name, dir, dirfd, true, out, e);
	free(dir);
	if (r) {
		close(fd);
		if (dirfd >= 0)
			close(dirfd);
	}
	return r;
}

int vdk_src_open_file(const char *path, struct vdk_src **out, struct vdk_err *e)
{
	return src_open_path(path, path, out, e);
}

int vdk_src_open_fd(int fd, const char *name, struct vdk_src **out, struct vdk_err *e)
{
	return src_from_fd(fd, name, NULL, -1, true, out, e);
}

/* True when real path p is dir itself or lies below it. */
static bool path_within(const char *p, const char *dir)
{
	size_t n = strlen(dir);
	if (n == 1 && dir[0] == '/')
		return true;
	return !strncmp(p, dir, n) && (p[n] == '/' || p[n] == '\0');
}

/* p below root, without the separating slash ("" for root itself). */
static const char *path_below(const char *p, const char *root)
{
	p += strcmp(root, "/") ? strlen(root) : 0;
	return p + (*p == '/');
}

static bool path_has_dotdot(const char *name)
{
	for (const char *p = name; (p = strstr(p, "..")); p += 2)
		if ((p == name || p[-1] == '/') && (p[2] == '/' || p[2] == '\0'))
			return true;
	return false;
}

/* The folder of the file fd, opened rel below root, itself beneath root:
 * where the kernel says the file is (/proc/self/fd, so a symlink in the
 * folder leads to its target's folder, as realpath did), else rel's own
 * folder. *dir is its path (malloc'd) or NULL. */
static int src_related_folder(int rootfd, const char *root, const char *rel, int fd, char **dir)
{
	char lnk[PATH_MAX], proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(proc, lnk, sizeof(lnk) - 1);
	const char *sub = rel;
	if (n > 0) {
		lnk[n] = '\0';
		if (path_within(lnk, root))
			sub = path_below(lnk, root);
	}
	const char *slash = strrchr(sub, '/');
	int len = slash ? (int)(slash - sub) : 0;
	int dirfd = -1;
	*dir = NULL;
	if (asprintf(dir, "%s%s%.*s", root, strcmp(root, "/") && len ? "/" : "", len, sub) < 0) {
		*dir = NULL;
		return -1;
	}
	char *subdir = strndup(sub, (size_t)len);
	if (!subdir || vdk_beneath_path(rootfd, len ? subdir : ".", true, &dirfd)) {
		free(*dir);
		*dir = NULL;
	}
	free(subdir);
	return dirfd;
}

/* Open rel beneath the folder rootfd (whose path is root) as a source
 * named name. A negative errno (vdk_beneath_open's) leaves e empty. */
static int src_related_at(int rootfd, const char *root, const char *rel, const char *name,
                          struct vdk_src **out, struct vdk_err *e)
{
	int fd;
	struct stat st;
	int r = vdk_beneath_open(rootfd, rel, &fd, &st);
	if (r)
		return r;
	char *dir;
	int dirfd = src_related_folder(rootfd, root, rel, fd, &dir);
	r = src_from_fd(fd, name, dir, dirfd, true, out, e);
	free(dir);
	if (r) {
		close(fd);
		if (dirfd >= 0)
			close(dirfd);
	}
	return r;
}

/* A name that does not resolve inside the image's folder directly (an
 * absolute name, "..", an absolute symlink): its real path says which
 * allowed folder it lies in, and it is opened beneath that folder, so a
 * symlink swapped in after realpath still cannot lead out of it. */
static int src_related_roots(const struct src_file *f, const char *cand,
                             const struct vdk_access *acc, struct vdk_src **out, struct vdk_err *e)
{
	char *real = realpath(cand, NULL);
	if (!real)
		return -errno;
	int r = -EXDEV;
	if (path_within(real, f->dir))
		r = src_related_at(f->dirfd, f->dir, path_below(real, f->dir), cand, out, e);
	for (const char *const *d = acc->allow_dirs; r == -EXDEV && d && *d; d++) {
		char *rd = realpath(*d, NULL);
		int rfd =
		    rd && path_within(real, rd) ? open(rd, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
		if (rfd >= 0) {
			r = src_related_at(rfd, rd, path_below(real, rd), cand, out, e);
			close(rfd);
		}
		free(rd);
	}
	if (r == -EXDEV && acc->allow_any) {
		int rfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		r = rfd < 0 ? -errno : src_related_at(rfd, "/", real + 1, cand, out, e);
		if (rfd >= 0)
			close(rfd);
	}
	free(real);
	return r;
}

static int file_related_error(struct vdk_src *s, const char *name, int r, struct vdk_err *e)
{
	if (e->cls != VDK_E_NONE)
		return r;
	if (r == -EXDEV || r == -ELOOP)
		return vdk_err_set(e, VDK_E_INPUT, EPERM, s->name, NULL, VDK_NO_OFFSET,
		                   "refers to '%s', which resolves outside the allowed folders: "
		                   "refused",
		                   name);
	if (r == -EPERM || r == -ESTALE)
		return vdk_err_set(e, VDK_E_INPUT, EPERM, s->name, NULL, VDK_NO_OFFSET,
		                   "refers to '%s', which is not a regular file: refused", name);
	bool input =
	    r == -ENOENT || r == -EACCES || r == -ENOTDIR || r == -EISDIR || r == -ENAMETOOLONG;
	return vdk_err_set(e, input ? VDK_E_INPUT : VDK_E_IO, -r, s->name, NULL, VDK_NO_OFFSET,
	                   "refers to '%s', which cannot be opened: %s", name, strerror(-r));
}

static int file_open_related(struct vdk_src *s, const char *name, const struct vdk_access *acc,
                             struct vdk_src **out, struct vdk_err *e)
{
	struct src_file *f = s->priv;
	bool explicit = acc->allow_any || (acc->allow_dirs && acc->allow_dirs[0]);
	if (!name[0])
		return vdk_bad(e, s->name, NULL, VDK_NO_OFFSET, "refers to an empty file name");
	if (!f->dir)
		return vdk_err_set(e, VDK_E_INPUT, ENOENT, s->name, NULL, VDK_NO_OFFSET,
		                   "refers to '%s', but its own folder cannot be opened", name);
	if (!explicit && (name[0] == '/' || path_has_dotdot(name)))
		return vdk_err_set(e, VDK_E_INPUT, EPERM, s->name, NULL, VDK_NO_OFFSET,
		                   "refers to '%s' outside its own folder: refused (allow a folder "
		                   "explicitly with --allow-dir)",
		                   name);
	char cand[PATH_MAX];
	if ((size_t)snprintf(cand, sizeof(cand), "%s/%s", name[0] == '/' ? "" : f->dir, name) >=
	    sizeof(cand))
		return vdk_bad(e, s->name, NULL, VDK_NO_OFFSET, "file name too long");
	const char *shown = name[0] == '/' ? name : cand;
	int r = name[0] == '/' ? -EXDEV : src_related_at(f->dirfd, f->dir, name, shown, out, e);
	if (r == -EXDEV || r == -ELOOP)
		r = src_related_roots(f, shown, acc, out, e);
	return r ? file_related_error(s, name, r, e) : 0;
}

int vdk_src_check_unchanged(struct vdk_src *s, struct vdk_err *e)
{
	struct stat st;
	if (s->ops->check_unchanged)
		return s->ops->check_unchanged(s, e);
	if (s->ops != &file_ops || fstat(s->fd, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	if ((uint64_t)st.st_size != s->size || io_mtime_ns(&st) != s->mtime_ns)
		return vdk_err_set(
		    e, VDK_E_INPUT, EBUSY, s->name, NULL, VDK_NO_OFFSET,
		    "changed while being read (size %llu -> %llu): is it still being "
		    "written? Nothing was kept",
		    (unsigned long long)s->size, (unsigned long long)st.st_size);
	return 0;
}

void vdk_src_restat(struct vdk_src *s)
{
	struct stat st;
	if (s->ops != &file_ops || fstat(s->fd, &st) != 0 || !S_ISREG(st.st_mode))
		return;
	s->size = (uint64_t)st.st_size;
	s->mtime_ns = io_mtime_ns(&st);
}

/* Memory ------------------------------------------------------------ */

static int mem_pread(struct vdk_src *s, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	(void)e;
	memcpy(buf, (const uint8_t *)s->priv + off, len);
	return 0;
}

static const struct vdk_src_ops mem_ops = {.pread = mem_pread};

int vdk_src_open_mem(const void *buf, size_t len, const char *name, struct vdk_src **out,
                     struct vdk_err *e)
{
	struct vdk_src *s = vdk_src_alloc(&mem_ops, name ? name : "(memory)");
	if (!s)
		return vdk_ioerr(e, ENOMEM, name, "out of memory");
	s->priv = (void *)(uintptr_t)buf;
	s->size = len;
	*out = s;
	return 0;
}

/* Windows ----------------------------------------------------------- */

struct src_window {
	struct vdk_src *parent;
	uint64_t off;
};

static int window_pread(struct vdk_src *s, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	struct src_window *w = s->priv;
	return vdk_src_pread(w->parent, buf, len, w->off + off, e);
}

static int window_open_related(struct vdk_src *s, const char *name, const struct vdk_access *acc,
                               struct vdk_src **out, struct vdk_err *e)
{
	struct src_window *w = s->priv;
	return vdk_src_open_related(w->parent, name, acc, out, e);
}

static void window_close(struct vdk_src *s)
{
	free(s->priv);
}

static const struct vdk_src_ops window_ops = {
    .pread = window_pread,
    .open_related = window_open_related,
    .close = window_close,
};

int vdk_src_open_window(struct vdk_src *parent, uint64_t off, uint64_t len, const char *name,
                        struct vdk_src **out, struct vdk_err *e)
{
	if (parent->size != VDK_SIZE_UNKNOWN && !vdk_range_ok(off, len, parent->size))
		return vdk_bad(e, parent->name, NULL, off,
		               "member of %llu bytes extends past the end of the file",
		               (unsigned long long)len);
	struct vdk_src *s = vdk_src_alloc(&window_ops, name ? name : parent->name);
	struct src_window *w = calloc(1, sizeof(*w));
	if (!s || !w) {
		free(w);
		if (s)
			src_free(s);
		return vdk_ioerr(e, ENOMEM, parent->name, "out of memory");
	}
	w->parent = parent;
	w->off = off;
	s->priv = w;
	s->size = len;
	s->flags = parent->flags;
	s->dev = parent->dev;
	s->ino = parent->ino;
	if (parent->fd >= 0) {
		s->fd = parent->fd;
		s->fd_off = parent->fd_off + off;
	}
	*out = s;
	return 0;
}

/* Streams ----------------------------------------------------------- */

static int stream_read(struct vdk_src *s, uint8_t *p, size_t len, struct vdk_err *e)
{
	int fd = (int)(intptr_t)s->priv;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vdk_err_set(e, VDK_E_IO, errno, s->name, NULL, s->pos,
			                   "read failed: %s", strerror(errno));
		if (n == 0)
			return vdk_bad(e, s->name, NULL, s->pos, "unexpected end of stream");
		if (p)
			p += n;
		len -= (size_t)n;
		s->pos += (uint64_t)n;
	}
	return 0;
}

static int stream_pread(struct vdk_src *s, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	if (off < s->pos)
		return vdk_err_set(e, VDK_E_INPUT, ESPIPE, s->name, NULL, off,
		                   "this reader needs to seek backwards in a stream (at %llu)",
		                   (unsigned long long)s->pos);
	uint8_t skip[65536];
	while (s->pos < off) {
		size_t n = (size_t)VDK_MIN((uint64_t)sizeof(skip), off - s->pos);
		int r = stream_read(s, skip, n, e);
		if (r)
			return r;
	}
	return stream_read(s, buf, len, e);
}

static const struct vdk_src_ops stream_ops = {.pread = stream_pread};

int vdk_src_open_stream(int fd, const char *name, struct vdk_src **out, struct vdk_err *e)
{
	struct vdk_src *s = vdk_src_alloc(&stream_ops, name ? name : "(stdin)");
	if (!s)
		return vdk_ioerr(e, ENOMEM, name, "out of memory");
	s->priv = (void *)(intptr_t)fd;
	s->size = VDK_SIZE_UNKNOWN;
	s->flags = VDK_SRC_STREAM;
	*out = s;
	return 0;
}

/* What the last lookups found about off: true when [off, ...) lies in a
 * remembered run (*data, *hole set, clipped to end). */
static bool src_seek_known(struct vdk_src *s, uint64_t off, uint64_t end, uint64_t *data,
                           uint64_t *hole)
{
	pthread_mutex_lock(&s->seek_lock);
	uint64_t d0 = s->seek_data[0], d1 = s->seek_data[1];
	uint64_t h0 = s->seek_hole[0], h1 = s->seek_hole[1];
	pthread_mutex_unlock(&s->seek_lock);
	if (off >= h0 && off < h1) {
		if (h1 >= end) {
			*data = *hole = end;
			return true;
		}
		if (h1 != d0 || d1 <= d0) /* the data after the hole is not known */
			return false;
		off = h1;
	}
	if (off < d0 || off >= d1)
		return false;
	*data = VDK_MIN(off, end);
	*hole = VDK_MIN(d1, end);
	return true;
}

static void src_seek_remember(struct vdk_src *s, uint64_t hole_from, uint64_t d, uint64_t h)
{
	pthread_mutex_lock(&s->seek_lock);
	s->seek_hole[0] = hole_from;
	s->seek_hole[1] = d;
	s->seek_data[0] = d;
	s->seek_data[1] = h;
	pthread_mutex_unlock(&s->seek_lock);
}

void vdk_src_next_data(struct vdk_src *s, uint64_t off, uint64_t end, uint64_t *data,
                       uint64_t *hole)
{
	if (s->size != VDK_SIZE_UNKNOWN)
		end = VDK_MIN(end, s->size);
	/* Unless the filesystem says otherwise, all of it is data. */
	*data = VDK_MIN(off, end);
	*hole = end;
	if (s->size == VDK_SIZE_UNKNOWN || off >= end)
		return;
	if (s->ops->block_status) {
		uint64_t d, h;
		struct vdk_err ignore = {0};
		/* A wrong answer must never hide data: keep only a sane one. */
		if (s->ops->block_status(s, off, end, &d, &h, &ignore) == 0 && d >= off &&
		    d <= end && h <= end && (d == end || h > d)) {
			*data = d;
			*hole = d == end ? end : h;
		}
		return;
	}
	if (s->fd < 0 || src_seek_known(s, off, end, data, hole))
		return;
	off_t d = lseek(s->fd, (off_t)(s->fd_off + off), SEEK_DATA);
	if (d < 0) {
		if (errno == ENXIO) { /* only a hole up to EOF */
			*data = end;
			src_seek_remember(s, off, s->size, s->size);
		}
		return;
	}
	uint64_t dd = (uint64_t)d - s->fd_off;
	*data = VDK_MIN(dd, end);
	if (*data >= end)
		return;
	off_t h = lseek(s->fd, (off_t)(s->fd_off + *data), SEEK_HOLE);
	if (h >= 0 && (uint64_t)h - s->fd_off > *data) {
		*hole = VDK_MIN((uint64_t)h - s->fd_off, end);
		src_seek_remember(s, off, dd, VDK_MIN((uint64_t)h - s->fd_off, s->size));
	}
}
