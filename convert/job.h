/* The conversion job: the one sequence every front end runs to turn an
 * image into another (vdkit convert, vmdk2vhdx, ova unpack, ova pack, the
 * nbdkit plugin's callers):
 *
 *   open the input  ->  open the output sink (temporary name)  ->  writer
 *   ->  pipeline  ->  finalize  ->  before_commit hook  ->  commit
 *   ->  verify (re-read the output through its own reader)  ->  withdraw
 *       everything it wrote when verification fails
 *
 * On any failure nothing is left at the destination: the sink's temporary
 * files are removed, and a committed output that failed verification is
 * withdrawn with its companion files. Only the tools print. */
#ifndef VDK_JOB_H
#define VDK_JOB_H

#include <stdbool.h>

#include "format.h"
#include "pipeline.h"

struct vdk_job;

/* Called after the writer finalized the output and before the sink is
 * committed (ova unpack checks the manifest digest there). 0 goes on;
 * negative is an error (e filled); positive abandons the output quietly
 * (the hook has recorded why) and vdk_job_run returns that value. */
typedef int (*vdk_job_hook)(struct vdk_job *j, struct vdk_err *e);

struct vdk_job {
	/* Input: an open image the caller keeps, or src (a path or URI) for
	 * the job to open with src_fmt (NULL: probe) and open. */
	struct vdk_image *in;
	const char *src, *src_fmt;
	struct vdk_open_opts open;

	/* Output: a format (fmt, or dst_fmt by name) and either a sink the
	 * caller owns (a tar member) or dst, a path written under a temporary
	 * name and renamed into place ("-": stdout). */
	const struct vdk_format *fmt;
	const char *dst_fmt;
	struct vdk_sink *sink;
	const char *dst;
	struct vdk_opts *wopts; /* -o; NULL: none */
	/* How a local dst is opened (block device in place, -n, -t modes);
	 * NULL: a new file. */
	const struct vdk_target_opts *target;

	struct vdk_convert_opts conv;
	bool verify; /* re-read dst through its reader and compare digests */
	/* convert --warm (apply.h): a VMDK source's identity is recorded in
	 * dst.vdkit-warm once dst is committed, for vdkit apply. */
	bool warm;
	vdk_job_hook before_commit;
	void *ctx; /* for the hook */

	/* Results. */
	struct vdk_convert_stats st;
	bool verified;
};

void vdk_job_init(struct vdk_job *j);
/* Run the job. 0 when the output is in place (and verified when asked);
 * negative with e filled; positive when before_commit abandoned it. */
int vdk_job_run(struct vdk_job *j, struct vdk_err *e);

/* In-place conversion: the file at path itself becomes an image of format
 * dst_fmt without copying its data (raw -> Azure fixed VHD appends a
 * footer), crash-safely; renamed to new_name (when not NULL) only once it
 * is durable. Returns 0 when converted, 1 when path already was such an
 * image (left as it is), negative on error. */
int vdk_convert_in_place(const char *path, const char *new_name, const char *src_fmt,
                         const char *dst_fmt, struct vdk_opts *wopts, struct vdk_err *e);

#endif
