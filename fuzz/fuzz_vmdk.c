/* Fuzz the VMDK reader from memory: hosted sparse and stream-optimized
 * extents (header, footer, GD/GT, metadata overlap checks, grain markers,
 * inflate), COWD, embedded and text descriptors. Opens the image, then
 * samples extents and reads (fuzz_walk.h), info and check. Large seeds are
 * stored sparse (fuzz_sparse.h): libFuzzer copies and hashes every input,
 * so 200 KiB seeds of mostly zeroes cost more than the parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "fuzz_sparse.h"
#include "fuzz_walk.h"
#include "vmdk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vdk_src *src;
	struct vdk_image *img;
	struct vdk_err e = {0};
	struct fuzz_sparse sp;
	if (fuzz_sparse_open(&sp, data, size, "fuzz.vmdk", &src, &e))
		return 0;
	if (vdk_image_open(src, true, "vmdk", NULL, &img, &e) == 0) {
		fuzz_walk_image(img, "fuzz.vmdk");
		vdk_image_close(img);
	}
	return 0;
}
