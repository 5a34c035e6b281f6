/* Temporary outputs that cannot outlive a crash. An output is written into
 * an anonymous file (O_TMPFILE) in the destination folder, so a SIGKILL or
 * a power cut leaves nothing with a name; at commit it is linked under a
 * locked temporary name and renamed into place. Where the filesystem has no
 * O_TMPFILE (NFS), the temporary is named from the start and held under an
 * flock while it is written: the next run in that folder removes the ones
 * no live process holds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io_tmp.h"

/* ".NAME.vdkit-XXXXXX": the suffix mkostemp fills in. */
static bool tmp_is_ours(const char *name)
{
	size_t n = strlen(name);
	return name[0] == '.' && n > 14 && !strncmp(name + n - 13, ".vdkit-", 7);
}

int vdk_tmp_create(const char *dir, const char *base, struct vdk_tmp *t, struct vdk_err *e)
{
	int n = snprintf(t->path, sizeof(t->path), "%s/.%s.vdkit-XXXXXX", dir, base);
	if (n < 0 || (size_t)n >= sizeof(t->path))
		return vdk_err_set(e, VDK_E_USAGE, ENAMETOOLONG, base, NULL, VDK_NO_OFFSET,
		                   "output path too long");
	mode_t um = umask(0);
	umask(um);
	t->anon = true;
	t->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0666 & ~um);
	if (t->fd < 0) {
		/* No anonymous files here: a named one, locked before anything
		 * else can see it unlocked for long (the sweep spares young ones). */
		t->anon = false;
		t->fd = mkostemp(t->path, O_CLOEXEC);
		if (t->fd < 0)
			return -errno;
		/* mkstemp makes 0600; an image is an ordinary file under the umask. */
		fchmod(t->fd, 0666 & ~um);
	}
	flock(t->fd, LOCK_EX | LOCK_NB);
	return 0;
}

/* Give the anonymous file the temporary name (it stays locked), so the
 * rename into place is atomic. */
static int tmp_link(struct vdk_tmp *t)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", t->fd);
	size_t len = strlen(t->path);
	for (unsigned try = 0; try < 100; try++) {
		static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789";
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t x = (uint64_t)ts.tv_nsec * 2654435761u + try * 40503u + (uint64_t)getpid();
		for (size_t i = len - 6; i < len; i++, x /= 36)
			t->path[i] = al[x % 36];
		if (linkat(AT_FDCWD, proc, AT_FDCWD, t->path, AT_SYMLINK_FOLLOW) == 0) {
			t->anon = false;
			return 0;
		}
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

int vdk_tmp_publish(struct vdk_tmp *t, const char *final)
{
	int r = t->anon ? tmp_link(t) : 0;
	if (r)
		return r;
	if (rename(t->path, final) != 0) {
		r = -errno;
		unlink(t->path);
		t->anon = true; /* no name left to remove */
		return r;
	}
	t->anon = true;
	return 0;
}

void vdk_tmp_discard(struct vdk_tmp *t)
{
	if (!t->anon)
		unlink(t->path);
	t->anon = true;
}

/* A temporary nobody holds a lock on was left by a process that died. One
 * younger than a few seconds may belong to a run that has not locked it
 * yet (the named fallback): left for the next sweep. */
static void tmp_sweep_one(int dfd, const char *name, time_t now)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && now - st.st_mtime >= 3 &&
	    flock(fd, LOCK_EX | LOCK_NB) == 0)
		unlinkat(dfd, name, 0);
	close(fd);
}

void vdk_tmp_sweep(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dup(dfd)) : NULL;
	time_t now = time(NULL);
	for (struct dirent *de; d && (de = readdir(d));)
		if (tmp_is_ours(de->d_name))
			tmp_sweep_one(dfd, de->d_name, now);
	if (d)
		closedir(d);
	if (dfd >= 0)
		close(dfd);
}
