/* Shared by the disk-reader harnesses: once an image opened, exercise what
 * a conversion would, on a sample so that every input stays fast (>= 2,000
 * execs/s): extents of two 8 MiB windows (the start and the middle),
 * reads of the head and tail of a bounded number of their DATA extents,
 * reads at a few offsets spread over the whole disk (deep tables without
 * walking them), a read across blocks at an odd offset, info and check. */
#ifndef VDK_FUZZ_WALK_H
#define VDK_FUZZ_WALK_H

#include <stdlib.h>
#include <string.h>

#include "format.h"

#define FUZZ_WALK_BUF    (64u << 10)
#define FUZZ_WALK_WINDOW (8ull << 20) /* virtual bytes per extents call */
#define FUZZ_WALK_READS  24           /* DATA extents sampled */
#define FUZZ_WALK_PIECE  4096         /* bytes read at each end of a sampled extent */

static void fuzz_walk_read(struct vdk_image *img, uint8_t *buf, uint64_t off, uint64_t n)
{
	struct vdk_err e = {0};
	if (off >= img->size)
		return;
	n = n < img->size - off ? n : img->size - off;
	n = n < FUZZ_WALK_BUF ? n : FUZZ_WALK_BUF;
	vdk_image_pread(img, buf, (size_t)n, off, &e);
}

/* Extents of a window of the disk, reads of a sample of its DATA. */
static void fuzz_walk_window(struct vdk_image *img, uint8_t *buf, uint64_t off)
{
	struct vdk_err e = {0};
	struct vdk_extents x = {0};
	uint64_t len = img->size - off < FUZZ_WALK_WINDOW ? img->size - off : FUZZ_WALK_WINDOW;
	unsigned reads = 0;
	if (off < img->size && vdk_image_extents(img, off, len, &x, &e) == 0) {
		/* every k-th extent, so that long lists are sampled end to end */
		size_t k = x.n / FUZZ_WALK_READS + 1;
		for (size_t i = 0; i < x.n && reads < FUZZ_WALK_READS; i += k) {
			const struct vdk_extent *v = &x.v[i];
			if (v->flags & (VDK_EXT_ZERO | VDK_EXT_HOLE))
				continue;
			fuzz_walk_read(img, buf, v->off, FUZZ_WALK_PIECE);
			if (v->len > FUZZ_WALK_PIECE)
				fuzz_walk_read(img, buf, v->off + v->len - FUZZ_WALK_PIECE,
				               FUZZ_WALK_PIECE);
			reads++;
		}
	}
	vdk_extents_free(&x);
}

static void fuzz_walk_image(struct vdk_image *img, const char *name)
{
	struct vdk_err e = {0};
	uint8_t *buf = malloc(FUZZ_WALK_BUF);
	if (buf) {
		/* the start, where metadata-heavy damage sits, and the middle */
		fuzz_walk_window(img, buf, 0);
		fuzz_walk_window(img, buf, img->size / 2 - img->size / 2 % 4096);
		for (unsigned i = 1; i < 4; i++)
			fuzz_walk_read(img, buf, img->size / 4 * i - img->size / 4 * i % 512, 8192);
		if (img->size > 1000)
			fuzz_walk_read(img, buf, 7, FUZZ_WALK_BUF - 7);
		fuzz_walk_read(img, buf, img->size - (img->size < 4096 ? img->size : 4096), 4096);
	}
	free(buf);
	struct vdk_json *j = vdk_image_info(img, name, &e);
	vdk_json_free(j);
	struct vdk_check r = {0};
	if (img->fmt->check)
		img->fmt->check(img, &r, false, &e);
	vdk_findings_free(&r.findings);
}

#endif
