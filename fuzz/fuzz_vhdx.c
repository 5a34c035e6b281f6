/* libFuzzer harness for the VHDX reader: headers, region table, metadata,
 * BAT and log replay, from memory; then extents, reads, info and check over
 * a bounded part of the disk. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "fuzz_sparse.h"
#include "fuzz_walk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vdk_err e = {0};
	struct vdk_src *src;
	struct vdk_image *img;
	struct fuzz_sparse sp;
	if (fuzz_sparse_open(&sp, data, size, "fuzz.vhdx", &src, &e) == 0 &&
	    vdk_image_open(src, true, "vhdx", NULL, &img, &e) == 0) {
		fuzz_walk_image(img, "fuzz.vhdx");
		vdk_image_close(img);
	}
	return 0;
}
