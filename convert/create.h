/* Whole-image operations beside conversion: create an empty image, measure
 * what a conversion would write, resize in place (qemu-img create, measure
 * and resize). The library never prints; tools/cmd_*.c do. */
#ifndef VDK_CREATE_H
#define VDK_CREATE_H

#include <stdbool.h>
#include <stdint.h>

#include "format.h"

/* Write an empty image of size bytes in format fmt on sink and commit it:
 * exactly a conversion of an all-zero source. opts: the writer's -o keys
 * (qcow2 takes backing_file/backing_fmt here). */
int vdk_image_create(const struct vdk_format *fmt, struct vdk_sink *sink, uint64_t size,
                     struct vdk_opts *opts, struct vdk_err *e);

struct vdk_measure {
	uint64_t required;        /* bytes the output file takes for this content */
	uint64_t fully_allocated; /* bytes with every block of the disk allocated */
};

/* What converting src (NULL: a new empty disk of size bytes) into fmt with
 * opts would write: a dry run of the writer into a sink that only counts
 * the highest offset (companion files of flat VMDKs included). The source's
 * allocated ranges stand in as data without being read, so it costs
 * nothing for holes and no I/O at all. fully_allocated runs every block as
 * data (qcow2: as preallocation=metadata; raw: the size) and so takes time
 * proportional to the virtual size for vhdx, vpc and vmdk. */
int vdk_image_measure(const struct vdk_format *fmt, struct vdk_image *src, uint64_t size,
                      const struct vdk_opts *opts, struct vdk_measure *out, struct vdk_err *e);

/* Resize the image file at path (fmt_name NULL: probe) to size bytes, or
 * grow/shrink by size when sign is +1/-1. Shrinking needs shrink. The new
 * size lands in *new_size. */
int vdk_image_resize(const char *path, const char *fmt_name, int sign, uint64_t size, bool shrink,
                     struct vdk_opts *opts, uint64_t *new_size, struct vdk_err *e);

#endif
