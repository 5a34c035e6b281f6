/* libFuzzer harness for the VHD reader: footer (and its copy at 0), dynamic
 * header, BAT, sector bitmaps and parent locators, from memory (a
 * differencing disk's parent cannot be opened from memory: that error path
 * is what runs); then extents, reads, info and check over a bounded part of
 * the disk. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "fuzz_walk.h"
#include "util.h"
#include "vhd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_vhd_one(const uint8_t *data, size_t size)
{
	struct vdk_err e = {0};
	struct vdk_src *src;
	if (vdk_src_open_mem(data, size, "fuzz.vhd", &src, &e))
		return;
	struct vdk_image *img = NULL;
	if (vdk_image_open(src, true, "vpc", NULL, &img, &e) == 0)
		fuzz_walk_image(img, "fuzz.vhd");
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
		             vhd_checksum(d + h, VHD_DYNHDR_SIZE, VHD_H_CHECKSUM));
	vdk_put_be32(foot + VHD_F_CHECKSUM, vhd_checksum(foot, VHD_FOOTER_SIZE, VHD_F_CHECKSUM));
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
