/* libFuzzer harness for the VHD reader: footer (and its copy at 0), dynamic
 * header, BAT, sector bitmaps and parent locators, from memory (a
 * differencing disk's parent cannot be opened from memory: that error path
 * is what runs); then extents, reads, info and check over a bounded part of
 * the disk. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "util.h"
#include "vhd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_vhd_walk(struct vdk_image *img)
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
	/* Reads across block boundaries at odd offsets. */
	if (buf && img->size > 1000) {
		memset(&e, 0, sizeof(e));
		vdk_image_pread(img, buf, img->size < 70000 ? img->size - 7 : 70000, 7, &e);
	}
	free(buf);
	struct vdk_json *j = vdk_image_info(img, "fuzz.vhd", &e);
	vdk_json_free(j);
	struct vdk_check r = {0};
	if (img->fmt->check)
		img->fmt->check(img, &r, false, &e);
}

static void fuzz_vhd_one(const uint8_t *data, size_t size)
{
	struct vdk_err e = {0};
	struct vdk_src *src;
	if (vdk_src_open_mem(data, size, "fuzz.vhd", &src, &e))
		return;
	struct vdk_image *img = NULL;
	if (vdk_image_open(src, true, "vpc", NULL, &img, &e) == 0)
		fuzz_vhd_walk(img);
	vdk_image_close(img);
}

/* Random mutations rarely keep a checksum right: also run a copy whose
 * footers and dynamic header are resealed, to reach the BAT, bitmaps and
 * locators. */
static void fuzz_vhd_reseal(uint8_t *d, size_t n)
{
	if (n < VHD_FOOTER_SIZE)
		return;
	uint8_t *foot = d + n - VHD_FOOTER_SIZE;
	if (memcmp(foot, "conectix", 8) != 0)
		foot = d;
	uint64_t h = vdk_be64(foot + VHD_F_DATA_OFFSET);
	if (vdk_range_ok(h, VHD_DYNHDR_SIZE, n))
		vdk_put_be32(d + h + VHD_H_CHECKSUM,
		             vdk_vhd_checksum(d + h, VHD_DYNHDR_SIZE, VHD_H_CHECKSUM));
	vdk_put_be32(foot + VHD_F_CHECKSUM,
	             vdk_vhd_checksum(foot, VHD_FOOTER_SIZE, VHD_F_CHECKSUM));
	if (foot != d && !memcmp(d, "conectix", 8))
		memmove(d, foot, VHD_FOOTER_SIZE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_vhd_one(data, size);
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	fuzz_vhd_reseal(copy, size);
	if (memcmp(copy, data, size) != 0)
		fuzz_vhd_one(copy, size);
	free(copy);
	return 0;
}
