/* Opening files beneath a folder, race-free (io_beneath.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "io_beneath.h"

/* Set once openat2 answered ENOSYS (kernels before 5.6, or a seccomp
 * filter that does not know it), or by a test. */
static atomic_bool bn_no_openat2;

void vdk_beneath_force_walk(bool on)
{
	atomic_store(&bn_no_openat2, on);
}

/* glibc 2.36 has no openat2 wrapper. */
static int bn_openat2(int dirfd, const char *rel, int flags)
{
	struct open_how how = {
	    .flags = (unsigned long long)flags,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	for (int tries = 0; tries < 16; tries++) {
		long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		/* EAGAIN: a rename raced with ".." resolution (openat2(2)). */
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	return -EAGAIN;
}

/* The next path component of *p (skipping slashes and "."), copied into
 * comp; false at the end. */
static bool bn_next(const char **p, char *comp, size_t size, int *err)
{
	for (;;) {
		while (**p == '/')
			(*p)++;
		if (!**p)
			return false;
		size_t n = strcspn(*p, "/");
		if (n >= size) {
			*err = -ENAMETOOLONG;
			return false;
		}
		memcpy(comp, *p, n);
		comp[n] = '\0';
		*p += n;
		if (strcmp(comp, "."))
			return true;
	}
}

static bool bn_last(const char *p)
{
	for (;;) {
		while (*p == '/')
			p++;
		if (p[0] != '.' || (p[1] != '/' && p[1] != '\0'))
			return *p == '\0';
		p++;
	}
}

/* One component below cur, never following it if it is a symlink. A
 * folder wanted (dir) is opened O_PATH and checked, so that a symlink reads
 * as -ELOOP rather than as O_DIRECTORY's -ENOTDIR. */
static int bn_step(int cur, const char *comp, int flags, bool dir)
{
	if (!strcmp(comp, ".."))
		return -EXDEV;
	int fd = openat(cur, comp, (dir ? O_PATH | O_CLOEXEC : flags) | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	struct stat st;
	int r = fstat(fd, &st) != 0           ? -errno
	        : S_ISLNK(st.st_mode)         ? -ELOOP
	        : dir && !S_ISDIR(st.st_mode) ? -ENOTDIR
	                                      : 0;
	if (r) {
		close(fd);
		return r;
	}
	return fd;
}

/* Without openat2: one component at a time, never following a symlink.
 * ".." is refused outright rather than tracked: the callers resolve names
 * that hold any with realpath first and pass the result. */
static int bn_walk(int dirfd, const char *rel, int flags)
{
	int cur = openat(dirfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return -errno;
	char comp[NAME_MAX + 1];
	int err = 0;
	const char *p = rel;
	while (bn_next(&p, comp, sizeof(comp), &err)) {
		bool last = bn_last(p);
		bool dir = !last || (flags & O_DIRECTORY);
		int fd = bn_step(cur, comp, flags & ~O_DIRECTORY, dir);
		close(cur);
		if (fd < 0 || last)
			return fd;
		cur = fd;
	}
	/* Nothing but "." and slashes: the folder itself, as a folder only. */
	if (!err && (flags & O_DIRECTORY))
		return cur;
	close(cur);
	return err ? err : -EISDIR;
}
static int bn_open(int dirfd, const char *rel, int flags)
{
	if (rel[0] == '/')
		return -EXDEV;
	if (!atomic_load(&bn_no_openat2)) {
		int fd = bn_openat2(dirfd, rel, flags);
		if (fd != -ENOSYS)
			return fd;
		atomic_store(&bn_no_openat2, true);
	}
	return bn_walk(dirfd, rel, flags);
}

int vdk_beneath_path(int dirfd, const char *rel, bool dir, int *fd)
{
	int r = bn_open(dirfd, rel, O_PATH | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
	if (r < 0)
		return r;
	*fd = r;
	return 0;
}

/* The file behind the O_PATH descriptor pfd, opened for reading. Through
 * /proc/self/fd the same inode opens again, whatever the path names now;
 * without /proc, the path is resolved once more beneath the folder and must
 * lead to the same inode. O_NONBLOCK and O_NOCTTY only guard against what
 * a swap could put there; the identity check refuses it. */
static int bn_reopen(int pfd, int dirfd, const char *rel, const struct stat *st)
{
	const int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	int fd = open(proc, flags);
	if (fd < 0 && errno == ENOENT)
		fd = bn_open(dirfd, rel, flags);
	else if (fd < 0)
		fd = -errno;
	if (fd < 0)
		return fd;
	struct stat now;
	if (fstat(fd, &now) != 0 || now.st_dev != st->st_dev || now.st_ino != st->st_ino) {
		close(fd);
		return -ESTALE;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int vdk_beneath_open(int dirfd, const char *rel, int *fd, struct stat *st)
{
	int pfd;
	int r = vdk_beneath_path(dirfd, rel, false, &pfd);
	if (r)
		return r;
	if (fstat(pfd, st) != 0)
		r = -errno;
	else if (!S_ISREG(st->st_mode))
		r = -EPERM;
	else if ((r = bn_reopen(pfd, dirfd, rel, st)) >= 0) {
		*fd = r;
		r = 0;
	}
	close(pfd);
	return r;
}
