/* Warm migration by snapshot deltas (vdkit convert --warm, vdkit apply).
 *
 * `convert --warm` of a VMDK writes, beside its committed output TARGET,
 * the identity record TARGET.vdkit-warm: what TARGET holds (the source's
 * CID and content digest, its virtual size), the target format, and
 * TARGET's size and mtime after the commit. `apply DELTA TARGET` then
 * writes only what a snapshot delta of that disk stores into TARGET, in
 * place (convert/update.h), once it has checked that the delta's
 * parentCID is the CID TARGET holds and that TARGET was not changed since
 * the record was written (a target that was booted or edited is refused).
 *
 * Crash safety: the record names the delta being applied ("pending-cid")
 * and is durable before TARGET is touched; a rerun of the same apply
 * writes the same data again (the updater's crash contract makes that
 * exact), repairs the leaks a kill may have left, then records the delta's
 * CID as TARGET's. */
#ifndef VDK_APPLY_H
#define VDK_APPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "format.h"
#include "pipeline.h"
#include "update.h"

#define VDK_WARM_SUFFIX  ".vdkit-warm"
#define VDK_WARM_VERSION 1u

struct vdk_warm_record {
	uint32_t cid;      /* the VMDK CID TARGET's content is */
	uint32_t base_cid; /* the base's, from convert --warm */
	bool has_pending;
	uint32_t pending; /* the delta an interrupted apply was writing */
	uint8_t base_digest[VDK_DIGEST_MAX];
	uint64_t virtual_size;
	char format[32];      /* TARGET's format */
	uint64_t target_size; /* TARGET's size and mtime when last written by us */
	uint64_t target_mtime_ns;
	uint64_t applied; /* deltas applied since the base */
};

/* The record of target (read from TARGET.vdkit-warm). Bad input (class
 * VDK_E_INPUT) when it is missing or malformed. */
int vdk_warm_record_read(const char *target, struct vdk_warm_record *r, struct vdk_err *e);
/* Write it durably: temporary file, fsync, rename, fsync of the folder. */
int vdk_warm_record_write(const char *target, const struct vdk_warm_record *r, struct vdk_err *e);

/* The VMDK identity of img (its descriptor's CID and parentCID, through
 * the format's info). has_parent false: not a snapshot delta. Bad input
 * when img's format records no CID. */
int vdk_image_cid(struct vdk_image *img, uint32_t *cid, bool *has_parent, uint32_t *parent,
                  struct vdk_err *e);

/* For the conversion job (whose output dst is a local file): refuse
 * --warm early (src has no CID, fmt cannot be updated in place), then, after the commit, write
 * target's record. */
int vdk_warm_precheck(struct vdk_image *src, const struct vdk_format *fmt, const char *dst,
                      struct vdk_err *e);
int vdk_warm_record_init(struct vdk_image *src, const char *target, const char *fmt,
                         const uint8_t digest[VDK_DIGEST_MAX], struct vdk_err *e);

struct vdk_apply {
	const char *delta, *delta_fmt; /* delta_fmt NULL: probe */
	const char *target, *target_fmt;
	struct vdk_open_opts open; /* for the delta (no_backing is forced) */
	bool force; /* accept a TARGET whose size or mtime changed since the record */
	vdk_update_progress progress;
	void *progress_ctx;

	/* Results. */
	struct vdk_update_stats st;
	uint32_t cid, parent_cid;
	uint64_t delta_allocated; /* bytes the delta stores (DATA and ZERO extents) */
	bool rerun;               /* completed an interrupted apply of this delta */
	bool already;             /* the delta was already applied: nothing written */
	uint64_t leaks_fixed;
	const char *format; /* TARGET's format name */
};

/* Apply a->delta to a->target. 0 when done; negative with e filled (bad
 * input: wrong parent, modified target, other size, not a delta). */
int vdk_apply_run(struct vdk_apply *a, struct vdk_err *e);

#endif
