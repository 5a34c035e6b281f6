/* Consolidation of backing chains with qemu-img's meanings: commit (an
 * image's own data written down into its backing file, or into a base
 * further down its chain) and rebase -u (only the backing reference
 * changes). The work runs here; tools/cmd_commit.c only parses options. */
#ifndef VDK_COMMIT_H
#define VDK_COMMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "io.h"
#include "update.h"

struct vdk_commit_opts {
	const char *fmt;  /* IMAGE's format (NULL: probe) */
	const char *base; /* -b: the image to commit into (NULL: IMAGE's backing file) */
	bool keep;        /* -d: leave IMAGE as it is */
	bool force;       /* commit despite a parentCID mismatch above the base */
	struct vdk_access access;
	vdk_update_progress progress; /* may be NULL */
	void *ctx;
};

struct vdk_commit_result {
	struct vdk_update_stats st; /* what reached the base */
	unsigned layers;            /* images whose own data went down */
	uint64_t base_size;
	/* IMAGE was left as it was although -d was not given, and why (a
	 * static string), or NULL. */
	const char *kept_why;
};

/* Write the own data of IMAGE and of every image between it and the base
 * into the base, in place (the base's updater keeps the crash contract of
 * update.h: a rerun after a kill completes the commit exactly). */
int vdk_commit(const char *path, const struct vdk_commit_opts *o, struct vdk_commit_result *res,
               struct vdk_err *e);

struct vdk_rebase_opts {
	const char *fmt;         /* IMAGE's format (NULL: probe) */
	const char *backing;     /* the new backing file as it is written (NULL or "": none) */
	const char *backing_fmt; /* its format (NULL: unsaid; qcow2 requires it) */
	bool unsafe;             /* -u: only the reference changes */
	struct vdk_access access;
	vdk_update_progress progress; /* safe mode; may be NULL */
	void *ctx;
};

/* qemu-img rebase. Unsafe (-u): IMAGE's backing reference becomes
 * backing; no data is read or written. Safe: first every range IMAGE does
 * not hold itself and where the old backing chain and the new backing file
 * differ is written into IMAGE (the old content), so IMAGE reads the same
 * over its new backing file; then the reference changes. A kill leaves
 * IMAGE reading as before, over the old backing file; a rerun completes.
 * backing is opened relative to IMAGE's folder, as qemu-img does. */
int vdk_rebase(const char *path, const struct vdk_rebase_opts *o, struct vdk_update_stats *st,
               struct vdk_err *e);

#endif
