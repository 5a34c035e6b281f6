/* Temporary outputs (io_tmp.c): anonymous until committed, locked while
 * named, swept when a crashed run left one behind. */
#ifndef VDK_IO_TMP_H
#define VDK_IO_TMP_H

#include <limits.h>
#include <stdbool.h>

#include "err.h"

struct vdk_tmp {
	int fd;
	bool anon; /* no name on disk (O_TMPFILE, or already renamed) */
	char path[PATH_MAX];
};

/* A new temporary in dir for the output named base: t->fd is open for
 * writing and locked. Negative errno on failure (e set only for names). */
int vdk_tmp_create(const char *dir, const char *base, struct vdk_tmp *t, struct vdk_err *e);
/* Put it in place as final (atomically replacing what was there). */
int vdk_tmp_publish(struct vdk_tmp *t, const char *final);
/* Remove its name, if it has one. The fd stays open. */
void vdk_tmp_discard(struct vdk_tmp *t);
/* Remove the temporaries in dir that crashed runs left (unlocked). */
void vdk_tmp_sweep(const char *dir);

#endif
