/* libFuzzer harness for the VHDX reader: headers, region table, metadata,
 * BAT and log replay, from memory; then extents, reads, info and check over
 * a bounded part of the disk. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "fuzz_walk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A VHDX is at least 3 MiB of mostly zeroes (1 MiB-aligned regions), so
 * seeds may come sparse: "VXSP", le32 file size (<= 128 MiB), then records of
 * le32 offset, le16 length and the bytes, over a zeroed file. Anything else
 * is the file itself. */
static uint8_t *fuzz_vhdx_expand(const uint8_t *d, size_t n, size_t *out)
{
	if (n < 8 || memcmp(d, "VXSP", 4) != 0)
		return NULL;
	size_t total = (size_t)d[4] | (size_t)d[5] << 8 | (size_t)d[6] << 16 | (size_t)d[7] << 24;
	if (total > (128u << 20))
		return NULL;
	uint8_t *f = calloc(1, total ? total : 1);
	for (size_t p = 8; f && p + 6 <= n;) {
		size_t off = (size_t)d[p] | (size_t)d[p + 1] << 8 | (size_t)d[p + 2] << 16 |
		             (size_t)d[p + 3] << 24;
		size_t len = (size_t)d[p + 4] | (size_t)d[p + 5] << 8;
		p += 6;
		len = len < n - p ? len : n - p;
		if (off < total)
			memcpy(f + off, d + p, len < total - off ? len : total - off);
		p += len;
	}
	*out = total;
	return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vdk_err e = {0};
	struct vdk_src *src;
	struct vdk_image *img;
	size_t n = size;
	uint8_t *exp = fuzz_vhdx_expand(data, size, &n);
	if (vdk_src_open_mem(exp ? exp : data, n, "fuzz.vhdx", &src, &e) == 0 &&
	    vdk_image_open(src, true, "vhdx", NULL, &img, &e) == 0) {
		fuzz_walk_image(img, "fuzz.vhdx");
		vdk_image_close(img);
	}
	free(exp);
	return 0;
}
