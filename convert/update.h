/* In-place updates of guest data in an existing image: vdkit apply (warm
 * migration: a snapshot delta written into a converted target) and commit
 * (a delta merged into its parent). A format that can be updated fills the
 * update half of struct vdk_format; this layer opens the file, counts the
 * bytes written and copies an image's own extents into it.
 *
 * Crash contract every updater keeps (docs/ARCHITECTURE.md, "Updates"):
 * killed at any point, the image is still valid for its own reader and for
 * qemu-img; each range written since the last flush reads either its old
 * or its new content; space allocated but not yet referenced may leak
 * (qemu-img check calls it a leak, never a corruption), and no metadata
 * ever points at space whose content or refcount is not yet durable.
 * Writing the same data again completes an interrupted update. */
#ifndef VDK_UPDATE_H
#define VDK_UPDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "format.h"

struct vdk_update_stats {
	uint64_t data_bytes; /* guest data written */
	uint64_t meta_bytes; /* tables, headers, logs, bitmaps written */
	uint64_t syncs;      /* fdatasync calls */
};

struct vdk_update {
	const struct vdk_format *fmt;
	const char *path; /* for messages */
	int fd;           /* the image, opened O_RDWR */
	uint64_t size;    /* virtual size: set by update_open */
	/* Set by update_open: the updater's unit of allocation (cluster,
	 * block; 512 for raw). Informational: every updater accepts writes
	 * aligned to 512 bytes and fills the rest of a unit it allocates with
	 * zeroes (a target has no backing file). */
	uint32_t granularity;
	void *state; /* fmt->ustate_size bytes, zeroed, owned by the core */
	/* Folders the updater may open related files from (extents, the
	 * target's own backing file), as readers do: never NULL. */
	const struct vdk_access *access;
	struct vdk_update_stats st;
};

/* Open path (a local regular file or block device) for update as fmt_name
 * (NULL: probe; only formats with update_open are accepted). */
int vdk_update_open(const char *path, const char *fmt_name, struct vdk_update **out,
                    struct vdk_err *e);
/* The same, with related files (a VMDK's extents, a delta target's own
 * parent) also reachable in the folders acc allows (NULL: the target's
 * own folder only). acc must outlive the update. */
int vdk_update_open_access(const char *path, const char *fmt_name, const struct vdk_access *acc,
                           struct vdk_update **out, struct vdk_err *e);
/* Guest data at off; off and len multiples of 512 (len may end at the
 * end of the disk). */
int vdk_update_write(struct vdk_update *u, const void *buf, size_t len, uint64_t off,
                     struct vdk_err *e);
/* Make [off, off+len) read as zeroes (aligned as writes are). */
int vdk_update_zero(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e);
/* Everything written so far is durable and referenced. */
int vdk_update_flush(struct vdk_update *u, struct vdk_err *e);
/* Frees; does not flush (a failed update is closed without one). */
void vdk_update_close(struct vdk_update *u);

/* For updaters: every byte they put in the file goes through these, so
 * the counts in u->st are what reached the file. */
int vdk_update_pwrite(struct vdk_update *u, const void *buf, size_t len, uint64_t off, bool meta,
                      struct vdk_err *e);
int vdk_update_sync(struct vdk_update *u, struct vdk_err *e);

/* Copy what img itself stores (its own extents: DATA written, ZERO made
 * zero, HOLE — not in this image — skipped) into u. img may be shorter
 * than u (a VHD's size rounded up), never longer. progress may be NULL. */
typedef void (*vdk_update_progress)(void *ctx, uint64_t done, uint64_t total);
int vdk_update_copy_own(struct vdk_update *u, struct vdk_image *img, vdk_update_progress progress,
                        void *ctx, struct vdk_err *e);

#endif
