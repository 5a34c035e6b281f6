/* Shared by the disk-reader harnesses: once an image opened, exercise what
 * a conversion would (extents, reads of data ranges, a read across blocks
 * at an odd offset), then info and check, all bounded in work. */
#ifndef VDK_FUZZ_WALK_H
#define VDK_FUZZ_WALK_H

#include <stdlib.h>
#include <string.h>

#include "format.h"

static void fuzz_walk_image(struct vdk_image *img, const char *name)
{
	struct vdk_err e = {0};
	struct vdk_extents x = {0};
	uint8_t *buf = malloc(1 << 20);
	unsigned reads = 0;
	for (uint64_t off = 0; buf && off < img->size && reads < 4096;) {
		vdk_extents_reset(&x);
		if (vdk_image_extents(img, off, img->size - off, &x, &e) || x.n == 0)
			break;
		for (size_t i = 0; i < x.n && reads < 64; i++) {
			uint64_t n = x.v[i].len < (1 << 20) ? x.v[i].len : (1 << 20);
			if (!(x.v[i].flags & (VDK_EXT_ZERO | VDK_EXT_HOLE)) &&
			    vdk_image_pread(img, buf, n, x.v[i].off, &e))
				break;
			reads++;
		}
		off = x.v[x.n - 1].off + x.v[x.n - 1].len;
		reads++;
	}
	vdk_extents_free(&x);
	if (buf && img->size > 1000) {
		memset(&e, 0, sizeof(e));
		vdk_image_pread(img, buf, img->size < 70000 ? img->size - 7 : 70000, 7, &e);
	}
	free(buf);
	struct vdk_json *j = vdk_image_info(img, name, &e);
	vdk_json_free(j);
	struct vdk_check r = {0};
	if (img->fmt->check)
		img->fmt->check(img, &r, false, &e);
}

#endif
