/* Opening files beneath a folder (io_beneath.c): the related files of an
 * image (extents, parents, backing and data files) are named by untrusted
 * metadata, so no symlink, ".." or magic link swapped in while they are
 * opened may lead out of the folder the check allowed. */
#ifndef VDK_IO_BENEATH_H
#define VDK_IO_BENEATH_H

#include <stdbool.h>
#include <sys/stat.h>

/* An O_PATH descriptor (as *fd) of rel resolved beneath the folder dirfd:
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), or where the kernel
 * lacks openat2 a walk that opens one component at a time with O_NOFOLLOW
 * and follows no symlink at all. 0, or a negative errno: -EXDEV when rel
 * leads out of the folder (absolute, "..", a symlink out), -ELOOP for a
 * symlink the walk would not follow. */
int vdk_beneath_path(int dirfd, const char *rel, bool dir, int *fd);

/* rel beneath dirfd opened for reading (*fd, O_RDONLY|O_CLOEXEC, blocking)
 * with *st its status. What is not a regular file (a FIFO, a device, a
 * socket, a folder) is refused with -EPERM (st says what it is) before
 * anything opens it for reading: a FIFO never blocks, a device driver never
 * sees an open. Other errors as vdk_beneath_path. */
int vdk_beneath_open(int dirfd, const char *rel, int *fd, struct stat *st);

/* For tests: resolve as on a kernel without openat2 (the component walk). */
void vdk_beneath_force_walk(bool on);

#endif
