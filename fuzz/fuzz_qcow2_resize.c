/* libFuzzer harness for qcow2's in-place resize: the header, L1 and tail
 * L2 checks run on a memfd holding the input (resize works on a path), for
 * a few new sizes taken from the input, growing and shrinking. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format.h"
#include "qcow2.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (8u << 20))
		return 0;
	int fd = memfd_create("fuzz-qcow2-resize", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	uint64_t vsize = size >= 32 ? vdk_be64(data + 24) : 0;
	const uint64_t sizes[] = {vsize + 512, vsize * 2, vsize / 2 & ~511ull, 1ull << 40, 512};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		if (ftruncate(fd, 0) != 0 || vdk_pwrite_full(fd, data, size, 0) != 0)
			break;
		struct vdk_err e = {0};
		qcow2_resize(path, sizes[i], i % 2 == 0, NULL, &e);
	}
	close(fd);
	return 0;
}
