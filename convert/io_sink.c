/* Sinks: new files under a temporary name (renamed into place on commit,
 * removed otherwise), streams (stdout, pipes) and memory. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "io.h"
#include "io_tmp.h"
#include "util.h"

#define ZERO_BUF_SIZE (1u << 20)
static const uint8_t zero_buf[ZERO_BUF_SIZE];

struct vdk_sink *vdk_sink_alloc(const struct vdk_sink_ops *ops, const char *name)
{
	struct vdk_sink *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->name = strdup(name ? name : "(output)");
	if (!k->name) {
		free(k);
		return NULL;
	}
	k->ops = ops;
	k->fd = -1;
	k->blksize = 4096;
	return k;
}

int vdk_sink_pwrite(struct vdk_sink *k, const void *buf, size_t len, uint64_t off,
                    struct vdk_err *e)
{
	if (len == 0)
		return 0;
	if (k->limit && (off > k->limit || len > k->limit - off))
		return vdk_err_set(e, VDK_E_IO, ENOSPC, k->name, NULL, off,
		                   "write past the end of the output (%llu bytes)",
		                   (unsigned long long)k->limit);
	int r = k->ops->pwrite(k, buf, len, off, e);
	if (r == 0)
		vdk_sink_advance(k, off + len);
	return r;
}

void vdk_sink_advance(struct vdk_sink *k, uint64_t end)
{
	uint64_t cur = atomic_load(&k->pos);
	while (end > cur && !atomic_compare_exchange_weak(&k->pos, &cur, end))
		;
}

int vdk_sink_write(struct vdk_sink *k, const void *buf, size_t len, struct vdk_err *e)
{
	return vdk_sink_pwrite(k, buf, len, k->pos, e);
}

static int sink_write_zeroes(struct vdk_sink *k, uint64_t off, uint64_t len, struct vdk_err *e)
{
	while (len) {
		size_t n = (size_t)VDK_MIN(len, (uint64_t)ZERO_BUF_SIZE);
		int r = vdk_sink_pwrite(k, zero_buf, n, off, e);
		if (r)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

int vdk_sink_zero(struct vdk_sink *k, uint64_t off, uint64_t len, struct vdk_err *e)
{
	if (len == 0)
		return 0;
	if (!(k->flags & VDK_SINK_SEQUENTIAL) && k->ops->punch) {
		int r = k->ops->punch(k, off, len, e);
		if (r != -EOPNOTSUPP) {
			if (r == 0)
				vdk_sink_advance(k, off + len);
			return r;
		}
	}
	return sink_write_zeroes(k, off, len, e);
}

int vdk_sink_truncate(struct vdk_sink *k, uint64_t size, struct vdk_err *e)
{
	if (k->ops->truncate)
		return k->ops->truncate(k, size, e);
	if (size < k->pos)
		return vdk_ioerr(e, EINVAL, k->name, "cannot shrink a stream");
	return sink_write_zeroes(k, k->pos, size - k->pos, e);
}

int vdk_sink_open_related(struct vdk_sink *k, const char *name, struct vdk_sink **out,
                          struct vdk_err *e)
{
	if (!k->ops->open_related)
		return vdk_err_set(e, VDK_E_USAGE, EOPNOTSUPP, k->name, NULL, VDK_NO_OFFSET,
		                   "this output cannot have companion files (needed for '%s')",
		                   name);
	return k->ops->open_related(k, name, out, e);
}

int vdk_sink_commit(struct vdk_sink *k, struct vdk_err *e)
{
	int r = k->ops->commit ? k->ops->commit(k, e) : 0;
	if (r == 0)
		k->committed = true;
	return r;
}

void vdk_sink_withdraw(struct vdk_sink *k)
{
	if (k && k->committed && k->ops->withdraw)
		k->ops->withdraw(k);
}

void vdk_sink_close(struct vdk_sink *k)
{
	if (!k)
		return;
	if (!k->committed && k->ops->abort)
		k->ops->abort(k);
	if (k->ops->close)
		k->ops->close(k);
	free(k->name);
	free(k);
}

/* Files ------------------------------------------------------------- */

/* Start write-back of what was written every this many bytes, so the fsync
 * before the rename finds little left to do and disk writes overlap with
 * the conversion. The kick runs on the committing thread and blocks there
 * while ext4 allocates and queues the pages, longer per byte the bigger the
 * batch. Measured on this VM's ext4 (virtio disk, shared and busy), 1 GiB
 * raw -> raw (464 MiB of data), 7-9 alternating runs, best / median:
 * whole-file kicks every 32 MiB 1.22-1.26 / 1.63 s, 0.45-0.87 s of it
 * blocked in sync_file_range; kicks of the range written since the last
 * one every 2 MiB 0.48-0.49 / 0.88-1.28 s, 0.10-0.18 s blocked (1 MiB 0.68,
 * 8 MiB 0.65 best); no kicks 0.78 / 1.16 s (0.4 s in the final fsync); cp
 * --sparse=always + sync 0.71 / 1.26 s. qcow2 -> vhdx: 1.54 -> 0.59 s best. */
#define SINK_WRITEBACK (2u << 20)

/* O_DIRECT writes go through an aligned bounce buffer of this size; this
 * alignment suits 512-byte and 4 KiB logical sectors alike. */
#define SINK_DIRECT_BUF   (1u << 20)
#define SINK_DIRECT_ALIGN 4096u

struct sink_file {
	pthread_mutex_t wb_lock; /* concurrent pwrites share the kick state */
	uint64_t dirty;          /* bytes written since the last write-back kick */
	uint64_t wb_lo, wb_hi;   /* the range those bytes lie in */
	struct vdk_tmp tmp;      /* a new output until commit puts it in place */
	bool pending;            /* tmp not yet published or discarded */
	struct vdk_sink **related;
	size_t nrelated;
	bool in_place; /* a device or -n: no temporary, nothing to undo */
	bool is_dev;
	bool unsafe; /* no fsync */
	int dfd;     /* O_DIRECT descriptor of the same file, or -1 */
	uint8_t *bounce;
};

/* As vdk_pwrite_full, and *at is where the write stopped: a full disk is
 * reported at the byte it refused, not at the start of a large buffer. */
static int file_sink_write_at(int fd, const uint8_t *p, size_t len, uint64_t off, uint64_t *at)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*at = off;
			return n < 0 ? -errno : -ENOSPC;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int file_sink_direct(struct vdk_sink *k, const uint8_t *buf, size_t len, uint64_t off,
                            uint64_t *at)
{
	struct sink_file *f = k->priv;
	if (!f->bounce && posix_memalign((void **)&f->bounce, SINK_DIRECT_ALIGN, SINK_DIRECT_BUF))
		return -ENOMEM;
	while (len) {
		size_t n = VDK_MIN(len, (size_t)SINK_DIRECT_BUF);
		memcpy(f->bounce, buf, n);
		int r = file_sink_write_at(f->dfd, f->bounce, n, off, at);
		if (r)
			return r;
		buf += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* Count a buffered write; queue the range written so far for write-back
 * once it holds SINK_WRITEBACK bytes (asynchronous: never waits for it). */
static void file_sink_kick(struct sink_file *f, int fd, uint64_t off, size_t len)
{
	pthread_mutex_lock(&f->wb_lock);
	f->wb_lo = VDK_MIN(f->wb_lo, off);
	f->wb_hi = VDK_MAX(f->wb_hi, off + len);
	f->dirty += len;
	uint64_t lo = f->wb_lo, hi = f->wb_hi;
	bool kick = f->dirty >= SINK_WRITEBACK;
	if (kick) {
		f->dirty = 0;
		f->wb_lo = UINT64_MAX;
		f->wb_hi = 0;
	}
	pthread_mutex_unlock(&f->wb_lock);
	if (kick)
		sync_file_range(fd, (off_t)lo, (off_t)(hi - lo), SYNC_FILE_RANGE_WRITE);
}

static int file_sink_pwrite(struct vdk_sink *k, const void *buf, size_t len, uint64_t off,
                            struct vdk_err *e)
{
	struct sink_file *f = k->priv;
	bool direct = f->dfd >= 0 && off % SINK_DIRECT_ALIGN == 0 && len % SINK_DIRECT_ALIGN == 0;
	uint64_t at = off;
	int r = direct ? file_sink_direct(k, buf, len, off, &at)
	               : file_sink_write_at(k->fd, buf, len, off, &at);
	if (r)
		return vdk_err_set(e, VDK_E_IO, -r, k->name, NULL, at,
		                   "write failed: %s (a write of %zu bytes at offset %llu)",
		                   strerror(-r), len, (unsigned long long)off);
	if (!direct)
		file_sink_kick(f, k->fd, off, len);
	return 0;
}

/* A device: fallocate(PUNCH_HOLE) on a block device zeroes (discarding
 * where the device can and reads back zero); BLKZEROOUT next; else the
 * core writes zero buffers. */
static int dev_sink_punch(struct vdk_sink *k, uint64_t off, uint64_t len, struct vdk_err *e)
{
	(void)e;
	if (fallocate(k->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) ==
	    0)
		return 0;
	uint64_t range[2] = {off, len};
	if (ioctl(k->fd, BLKZEROOUT, range) == 0)
		return 0;
	return -EOPNOTSUPP;
}

static int file_sink_punch(struct vdk_sink *k, uint64_t off, uint64_t len, struct vdk_err *e)
{
	if (((struct sink_file *)k->priv)->is_dev)
		return dev_sink_punch(k, off, len, e);
	struct stat st;
	if (fstat(k->fd, &st) != 0)
		return vdk_ioerr(e, errno, k->name, "stat failed: %s", strerror(errno));
	/* Past EOF of a new file there is nothing to punch: truncate covers it. */
	if (off >= (uint64_t)st.st_size)
		return 0;
	if (fallocate(k->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) ==
	    0)
		return 0;
	if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)
		return -EOPNOTSUPP;
	return vdk_err_set(e, VDK_E_IO, errno, k->name, NULL, off, "punching a hole failed: %s",
	                   strerror(errno));
}

static int file_sink_truncate(struct vdk_sink *k, uint64_t size, struct vdk_err *e)
{
	struct sink_file *f = k->priv;
	struct stat st;
	if (f->is_dev)
		return size <= k->limit
		           ? 0
		           : vdk_err_set(e, VDK_E_IO, ENOSPC, k->name, NULL, VDK_NO_OFFSET,
		                         "the device holds %llu bytes, the output "
		                         "needs %llu",
		                         (unsigned long long)k->limit, (unsigned long long)size);
	/* -n, as qemu-img: an existing target grows but is never cut. */
	if (f->in_place && fstat(k->fd, &st) == 0 && (uint64_t)st.st_size >= size)
		return 0;
	if (ftruncate(k->fd, (off_t)size) != 0)
		return vdk_ioerr(e, errno, k->name, "setting the size failed: %s", strerror(errno));
	return 0;
}

int vdk_fsync_dir_of(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	/* Some filesystems cannot fsync a directory (EINVAL): nothing to do. */
	int r = fsync(fd) == 0 || errno == EINVAL ? 0 : -errno;
	close(fd);
	return r;
}

static int file_sink_commit(struct vdk_sink *k, struct vdk_err *e)
{
	struct sink_file *f = k->priv;
	/* Companions first, so the file that names them appears last. */
	for (size_t i = 0; i < f->nrelated; i++) {
		int r = vdk_sink_commit(f->related[i], e);
		if (r)
			return r;
	}
	if (!f->unsafe && fsync(k->fd) != 0)
		return vdk_ioerr(e, errno, k->name, "fsync failed: %s", strerror(errno));
	if (f->pending) {
		int r = vdk_tmp_publish(&f->tmp, k->name);
		f->pending = false;
		if (r)
			return vdk_ioerr(e, -r, k->name, "rename into place failed: %s",
			                 strerror(-r));
		vdk_fsync_dir_of(k->name);
	}
	return 0;
}

static void file_sink_abort(struct vdk_sink *k)
{
	struct sink_file *f = k->priv;
	for (size_t i = 0; i < f->nrelated; i++)
		if (!f->related[i]->committed && f->related[i]->ops->abort)
			f->related[i]->ops->abort(f->related[i]);
	if (f->pending)
		vdk_tmp_discard(&f->tmp);
	f->pending = false;
}

/* The file that names the companions goes first: a descriptor never
 * outlives its extent files. */
static void file_sink_withdraw(struct vdk_sink *k)
{
	struct sink_file *f = k->priv;
	if (f->in_place) /* a device or -n target stays: nothing to undo */
		return;
	unlink(k->name);
	for (size_t i = 0; i < f->nrelated; i++)
		vdk_sink_withdraw(f->related[i]);
	vdk_fsync_dir_of(k->name);
}

static void file_sink_close(struct vdk_sink *k)
{
	struct sink_file *f = k->priv;
	for (size_t i = 0; i < f->nrelated; i++) {
		f->related[i]->committed = true; /* aborted above with the parent */
		vdk_sink_close(f->related[i]);
	}
	free(f->related);
	if (k->fd >= 0)
		close(k->fd);
	if (f->dfd >= 0)
		close(f->dfd);
	free(f->bounce);
	pthread_mutex_destroy(&f->wb_lock);
	free(f);
}

static int file_sink_open_related(struct vdk_sink *k, const char *name, struct vdk_sink **out,
                                  struct vdk_err *e);

static const struct vdk_sink_ops file_sink_ops = {
    .pwrite = file_sink_pwrite,
    .punch = file_sink_punch,
    .truncate = file_sink_truncate,
    .commit = file_sink_commit,
    .abort = file_sink_abort,
    .close = file_sink_close,
    .open_related = file_sink_open_related,
    .withdraw = file_sink_withdraw,
};

/* The sink around an open fd; adopts fd and the temporary tmp (removed on
 * failure), NULL when written in place. */
static int file_sink_wrap(const char *name, int fd, struct vdk_tmp *tmp, struct vdk_sink **out,
                          struct vdk_err *e)
{
	struct vdk_sink *k = vdk_sink_alloc(&file_sink_ops, name);
	struct sink_file *f = calloc(1, sizeof(*f));
	if (f && pthread_mutex_init(&f->wb_lock, NULL)) {
		free(f);
		f = NULL;
	}
	if (!k || !f) {
		if (tmp)
			vdk_tmp_discard(tmp);
		close(fd);
		free(f);
		if (k) {
			free(k->name);
			free(k);
		}
		return vdk_nomem(e, name, NULL, "the output's state");
	}
	if (tmp) {
		f->tmp = *tmp;
		f->pending = true;
	}
	f->dfd = -1;
	f->wb_lo = UINT64_MAX;
	k->priv = f;
	k->fd = fd;
	/* pwrite(2) at disjoint offsets needs no ordering; only the O_DIRECT
	 * bounce buffer (-t none) is single-threaded. */
	k->flags |= VDK_SINK_CONCURRENT;
	struct statfs sfs;
	if (fstatfs(fd, &sfs) == 0 && sfs.f_bsize >= 512 && sfs.f_bsize <= (1 << 20))
		k->blksize = (uint32_t)sfs.f_bsize;
	*out = k;
	return 0;
}

/* -t none: a second, O_DIRECT descriptor for the aligned writes. */
static int file_sink_open_direct(struct vdk_sink *k, struct vdk_err *e)
{
	struct sink_file *f = k->priv;
	/* Through /proc: the temporary may have no name yet (O_TMPFILE). */
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", k->fd);
	f->dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
	k->flags &= ~(unsigned)VDK_SINK_CONCURRENT;
	if (f->dfd < 0)
		return vdk_ioerr(e, errno, k->name, "cannot open for O_DIRECT (-t none): %s",
		                 strerror(errno));
	return 0;
}

/* The file a symlink destination points at (the temporary goes beside
 * it, and the rename replaces it, not the link). NULL: not a symlink. */
static char *target_resolve(const char *path, struct vdk_err *e, int *r)
{
	struct stat lst;
	*r = 0;
	if (lstat(path, &lst) != 0 || !S_ISLNK(lst.st_mode))
		return NULL;
	char *real = realpath(path, NULL);
	if (!real)
		*r = vdk_err_set(e, VDK_E_USAGE, errno, path, NULL, VDK_NO_OFFSET,
		                 "the output is a symlink that leads nowhere: %s", strerror(errno));
	return real;
}

/* Written in place: a block device, or an existing file (-n). */
static int target_in_place(const char *path, const struct stat *st, const struct vdk_target_opts *o,
                           struct vdk_sink **out, struct vdk_err *e)
{
	bool dev = S_ISBLK(st->st_mode);
	if (!dev && !S_ISREG(st->st_mode))
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, path, NULL, VDK_NO_OFFSET,
		                   "-n needs an existing regular file or block device");
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return vdk_ioerr(e, errno, path, "cannot open the output: %s", strerror(errno));
	uint64_t devsize = 0;
	if (dev && ioctl(fd, BLKGETSIZE64, &devsize) != 0) {
		int err = errno;
		close(fd);
		return vdk_ioerr(e, err, path, "cannot read the device size: %s", strerror(err));
	}
	int r = file_sink_wrap(path, fd, NULL, out, e);
	if (r)
		return r;
	struct vdk_sink *k = *out;
	struct sink_file *f = k->priv;
	f->in_place = true;
	f->is_dev = dev;
	k->limit = devsize;
	if (dev)
		k->blksize = 4096;
	if (o && o->target_is_zero)
		k->flags |= VDK_SINK_ZEROED;
	return 0;
}

/* A new file, anonymous or under a locked temporary name beside the real
 * destination (io_tmp.c); when it replaces a file, that file's owner, group
 * and mode carry over. */
static int target_new(const char *path, const char *real, struct vdk_sink **out, struct vdk_err *e)
{
	char *copy = strdup(real);
	if (!copy)
		return vdk_nomem(e, path, NULL, "the output's name");
	const char *base = strrchr(real, '/') ? strrchr(real, '/') + 1 : real;
	const char *dir = dirname(copy);
	struct vdk_tmp t;
	vdk_tmp_sweep(dir);
	int r = vdk_tmp_create(dir, base, &t, e);
	free(copy);
	if (r < 0)
		return e->cls ? r
		              : vdk_ioerr(e, -r, path, "cannot create output: %s", strerror(-r));
	struct stat old;
	if (stat(real, &old) == 0 && S_ISREG(old.st_mode)) {
		/* Best effort: without the right to chown, the group may still do. */
		if (fchown(t.fd, old.st_uid, old.st_gid) != 0 &&
		    fchown(t.fd, (uid_t)-1, old.st_gid))
			(void)0;
		fchmod(t.fd, old.st_mode & 07777);
	}
	r = file_sink_wrap(real, t.fd, &t, out, e);
	if (!r)
		(*out)->flags |= VDK_SINK_ZEROED;
	return r;
}

int vdk_sink_open_target(const char *path, const struct vdk_target_opts *o, struct vdk_sink **out,
                         struct vdk_err *e)
{
	struct stat st;
	bool exists = stat(path, &st) == 0;
	if (exists && S_ISDIR(st.st_mode))
		return vdk_err_set(e, VDK_E_USAGE, EISDIR, path, NULL, VDK_NO_OFFSET,
		                   "output is a directory");
	if (!exists && o && o->existing)
		return vdk_err_set(e, VDK_E_USAGE, ENOENT, path, NULL, VDK_NO_OFFSET,
		                   "-n: the output must exist (it is written in place)");
	int r;
	if (exists && (S_ISBLK(st.st_mode) || (o && o->existing)))
		r = target_in_place(path, &st, o, out, e);
	else {
		char *real = target_resolve(path, e, &r);
		if (r)
			return r;
		r = target_new(path, real ? real : path, out, e);
		free(real);
	}
	if (!r && o) {
		((struct sink_file *)(*out)->priv)->unsafe = o->unsafe;
		if (o->direct)
			r = file_sink_open_direct(*out, e);
		if (r) {
			vdk_sink_close(*out);
			*out = NULL;
		}
	}
	return r;
}

int vdk_sink_create_file(const char *path, struct vdk_sink **out, struct vdk_err *e)
{
	return vdk_sink_open_target(path, NULL, out, e);
}

static int file_sink_open_related(struct vdk_sink *k, const char *name, struct vdk_sink **out,
                                  struct vdk_err *e)
{
	struct sink_file *f = k->priv;
	if (f->in_place)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, k->name, NULL, VDK_NO_OFFSET,
		                   "an output written in place cannot have companion files "
		                   "(needed for '%s')",
		                   name);
	if (strchr(name, '/') || !strcmp(name, "..") || !strcmp(name, "."))
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, k->name, NULL, VDK_NO_OFFSET,
		                   "companion file name '%s' must be a plain name", name);
	char path[PATH_MAX];
	char *copy = strdup(k->name);
	if (!copy)
		return vdk_ioerr(e, ENOMEM, k->name, "out of memory");
	int n = snprintf(path, sizeof(path), "%s/%s", dirname(copy), name);
	free(copy);
	if (n < 0 || (size_t)n >= sizeof(path))
		return vdk_ioerr(e, ENAMETOOLONG, k->name, "path too long");
	struct vdk_sink **nr = realloc(f->related, (f->nrelated + 1) * sizeof(*nr));
	if (!nr)
		return vdk_ioerr(e, ENOMEM, k->name, "out of memory");
	f->related = nr;
	int r = vdk_sink_create_file(path, out, e);
	if (r == 0)
		f->related[f->nrelated++] = *out;
	return r;
}

/* Streams ----------------------------------------------------------- */

static int stream_sink_pwrite(struct vdk_sink *k, const void *buf, size_t len, uint64_t off,
                              struct vdk_err *e)
{
	if (off < k->pos)
		return vdk_err_set(e, VDK_E_IO, ESPIPE, k->name, NULL, off,
		                   "cannot seek back in a stream (at %llu)",
		                   (unsigned long long)k->pos);
	if (off > k->pos) {
		int r = sink_write_zeroes(k, k->pos, off - k->pos, e);
		if (r)
			return r;
	}
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write((int)(intptr_t)k->priv, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return vdk_err_set(e, VDK_E_IO, n < 0 ? errno : EIO, k->name, NULL, k->pos,
			                   "write failed: %s", strerror(n < 0 ? errno : EIO));
		p += n;
		len -= (size_t)n;
		k->pos += (uint64_t)n;
	}
	return 0;
}

static const struct vdk_sink_ops stream_sink_ops = {.pwrite = stream_sink_pwrite};

int vdk_sink_open_stream(int fd, const char *name, struct vdk_sink **out, struct vdk_err *e)
{
	struct vdk_sink *k = vdk_sink_alloc(&stream_sink_ops, name ? name : "(stdout)");
	if (!k)
		return vdk_ioerr(e, ENOMEM, name, "out of memory");
	k->flags = VDK_SINK_SEQUENTIAL;
	/* Not a verbatim location: nothing may be cloned into a pipe. */
	k->priv = (void *)(intptr_t)fd;
	k->fd = -1;
	*out = k;
	return 0;
}

/* Memory ------------------------------------------------------------ */

struct sink_mem {
	uint8_t *data;
	size_t len, cap, max;
};

static int mem_sink_pwrite(struct vdk_sink *k, const void *buf, size_t len, uint64_t off,
                           struct vdk_err *e)
{
	struct sink_mem *m = k->priv;
	uint64_t end;
	if (vdk_add_overflow(off, len, &end) || end > m->max)
		return vdk_ioerr(e, ENOSPC, k->name, "memory output limit reached");
	if (end > m->cap) {
		size_t cap = (size_t)VDK_MIN(VDK_MAX(end, (uint64_t)m->cap * 2), (uint64_t)m->max);
		uint8_t *d = realloc(m->data, cap);
		if (!d)
			return vdk_ioerr(e, ENOMEM, k->name, "out of memory");
		memset(d + m->cap, 0, cap - m->cap);
		m->data = d;
		m->cap = cap;
	}
	memcpy(m->data + off, buf, len);
	if (end > m->len)
		m->len = (size_t)end;
	return 0;
}

static int mem_sink_truncate(struct vdk_sink *k, uint64_t size, struct vdk_err *e)
{
	struct sink_mem *m = k->priv;
	if (size > m->len) {
		uint8_t z = 0;
		int r = mem_sink_pwrite(k, &z, 1, size - 1, e);
		if (r)
			return r;
	}
	m->len = (size_t)size;
	return 0;
}

static void mem_sink_close(struct vdk_sink *k)
{
	struct sink_mem *m = k->priv;
	free(m->data);
	free(m);
}

static const struct vdk_sink_ops mem_sink_ops = {
    .pwrite = mem_sink_pwrite,
    .truncate = mem_sink_truncate,
    .close = mem_sink_close,
};

int vdk_sink_open_mem(size_t max, struct vdk_sink **out, struct vdk_err *e)
{
	struct vdk_sink *k = vdk_sink_alloc(&mem_sink_ops, "(memory)");
	struct sink_mem *m = calloc(1, sizeof(*m));
	if (!k || !m) {
		free(m);
		if (k) {
			free(k->name);
			free(k);
		}
		return vdk_ioerr(e, ENOMEM, NULL, "out of memory");
	}
	m->max = max;
	k->priv = m;
	k->flags = VDK_SINK_ZEROED;
	*out = k;
	return 0;
}

const uint8_t *vdk_sink_mem_data(const struct vdk_sink *k, size_t *len)
{
	const struct sink_mem *m = k->priv;
	*len = m->len;
	return m->data;
}
