/* Fuzz the qcow2 reader from memory: open (header, extensions, L1,
 * snapshots), info, then walk the extents and read what they call DATA,
 * with bounded work per input. */
#include <stdint.h>
#include <stdlib.h>

#include "format.h"

#define FUZZ_MAX_CALLS 64
#define FUZZ_MAX_READ  (4u << 20)

static void fuzz_walk(struct vdk_image *img)
{
	struct vdk_err e = {0};
	struct vdk_extents x = {0};
	uint8_t *buf = malloc(65536);
	uint64_t pos = 0, read = 0;
	for (int calls = 0; buf && pos < img->size && calls < FUZZ_MAX_CALLS; calls++) {
		vdk_extents_reset(&x);
		if (img->fmt->extents(img, pos, img->size - pos, &x, &e) || x.n == 0)
			break;
		for (size_t i = 0; i < x.n && read < FUZZ_MAX_READ; i++) {
			if (x.v[i].flags)
				continue;
			size_t n = (size_t)(x.v[i].len < 65536 ? x.v[i].len : 65536);
			if (img->fmt->pread(img, buf, n, x.v[i].off, &e))
				break;
			read += n;
		}
		pos = x.v[x.n - 1].off + x.v[x.n - 1].len;
	}
	vdk_extents_free(&x);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vdk_err e = {0};
	struct vdk_src *src = NULL;
	struct vdk_image *img = NULL;
	if (vdk_src_open_mem(data, size, "fuzz.qcow2", &src, &e))
		return 0;
	if (vdk_image_open(src, true, "qcow2", NULL, &img, &e))
		return 0;
	struct vdk_json *j = vdk_image_info(img, "fuzz.qcow2", &e);
	vdk_json_free(j);
	fuzz_walk(img);
	vdk_image_close(img);
	return 0;
}
