/* The conversion pipeline: walk the source's extents in order, skip what the
 * target already reads as zero, clone what sits verbatim, and move the rest
 * through a bounded pool of chunk buffers on worker threads (read, detect
 * zeroes, encode), committing to the writer strictly in order. */
#ifndef VDK_PIPELINE_H
#define VDK_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "format.h"

struct vdk_progress {
	uint64_t done; /* bytes of virtual disk handled */
	uint64_t total;
};

struct vdk_convert_opts {
	enum vdk_clone_mode clone;
	/* Zero runs inside DATA at least this long (and aligned to it) stay
	 * sparse, like qemu-img -S. 0: no detection. Default 4096. */
	uint64_t min_sparse;
	/* 0: one per CPU, at most 8; remote sources: as many as a 16.5 MiB
	 * ring holds (32 on 256 KiB chunks), at least 8, at most 32 */
	unsigned threads;
	uint32_t chunk; /* bytes per work item; 0: 1 MiB, remote sources 256 KiB */
	/* Hash the virtual content as it passes (vdk_digest). */
	bool digest;
	void (*progress)(void *ctx, const struct vdk_progress *p);
	void *progress_ctx;
	volatile int *cancel; /* non-NULL and set: stop with -ECANCELED */
};

#define VDK_DIGEST_MAX 32

struct vdk_convert_stats {
	uint64_t cloned;    /* bytes shared with FICLONERANGE */
	uint64_t offloaded; /* bytes copied by copy_file_range */
	uint64_t copied;    /* bytes read and written */
	uint64_t sparse;    /* bytes left as holes/zeroes */
	uint8_t digest[VDK_DIGEST_MAX];
};

void vdk_convert_opts_init(struct vdk_convert_opts *o);
int vdk_convert(struct vdk_image *in, struct vdk_writer *out, const struct vdk_convert_opts *o,
                struct vdk_convert_stats *st, struct vdk_err *e);

/* The content digest: SHA-256 over (le64 offset, block) for every 4 KiB
 * block of the virtual disk that is not all zero, then le64 virtual size.
 * It depends only on the content, not on how zeroes are stored, and costs
 * nothing for holes, so an 8 TiB sparse disk hashes in no time. */
int vdk_image_digest(struct vdk_image *img, unsigned threads, uint8_t out[VDK_DIGEST_MAX],
                     struct vdk_err *e);

/* Whether [off, off+len) of img (clipped to its size) reads as zeroes. */
int vdk_image_is_zero(struct vdk_image *img, uint64_t off, uint64_t len, bool *zero,
                      struct vdk_err *e);

/* First offset where a and b differ (reading both through their readers);
 * sizes that differ compare the tail against zero, like qemu-img compare.
 * Returns 0 and *differ=false when equal. */
int vdk_compare(struct vdk_image *a, struct vdk_image *b, bool *differ, uint64_t *first,
                struct vdk_err *e);

#endif
