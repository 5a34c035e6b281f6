/* Fuzz the VMDK reader from memory: hosted sparse and stream-optimized
 * extents (header, footer, GD/GT, grain markers, inflate), COWD, embedded
 * and text descriptors. Opens the image, walks its extents and reads the
 * DATA ranges (bounded, so each input stays fast). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "vmdk.h"

#define FUZZ_READ_MAX (4u << 20)

static void fuzz_walk(struct vdk_image *img)
{
	struct vdk_extents x = {0};
	struct vdk_err e = {0};
	uint64_t off = 0, budget = FUZZ_READ_MAX;
	uint8_t *buf = malloc(1 << 16);
	for (int batch = 0; buf && off < img->size && batch < 64; batch++) {
		vdk_extents_reset(&x);
		if (img->fmt->extents(img, off, img->size - off, &x, &e) || !x.n)
			break;
		for (size_t i = 0; i < x.n && budget; i++) {
			if (x.v[i].flags)
				continue;
			uint64_t n = x.v[i].len < (1 << 16) ? x.v[i].len : (1 << 16);
			n = n < budget ? n : budget;
			budget -= n;
			vdk_err_clear(&e);
			img->fmt->pread(img, buf, n, x.v[i].off, &e);
		}
		off = x.v[x.n - 1].off + x.v[x.n - 1].len;
	}
	free(buf);
	vdk_extents_free(&x);
	struct vdk_json *j = vdk_json_new_obj();
	if (j) {
		img->fmt->info(img, j, &e);
		vdk_json_free(j);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vdk_src *src;
	struct vdk_image *img;
	struct vdk_err e = {0};
	if (vdk_src_open_mem(data, size, "fuzz.vmdk", &src, &e))
		return 0;
	if (vdk_image_open(src, true, "vmdk", NULL, &img, &e) == 0) {
		fuzz_walk(img);
		vdk_image_close(img);
	}
	return 0;
}
