/* libFuzzer harness for rebase -u's in-place edits of hostile files: the
 * VMDK descriptor located (text file or embedded in a sparse extent's
 * reserved sectors), edited and re-parsed, and the qcow2 header cluster
 * with its extensions rebuilt. Both work on a path opened without
 * following links, so the input goes into a real temporary file. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "format.h"
#include "qcow2.h"
#include "util.h"
#include "vmdk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_path[256];

static int fuzz_put(const uint8_t *data, size_t size)
{
	int fd = open(fuzz_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	int r = vdk_pwrite_full(fd, data, size, 0);
	close(fd);
	return r;
}

static void fuzz_cleanup(void)
{
	unlink(fuzz_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (4u << 20))
		return 0;
	if (!fuzz_path[0]) {
		const char *t = getenv("TMPDIR");
		snprintf(fuzz_path, sizeof(fuzz_path), "%s/fuzz-rebase.%d", t ? t : "/tmp",
		         (int)getpid());
		atexit(fuzz_cleanup);
	}
	static const char *const names[] = {"../new/base.vmdk", NULL, "b.vmdk"};
	for (size_t i = 0; i < 3; i++) {
		struct vdk_err e = {0};
		if (fuzz_put(data, size) == 0)
			vmdk_set_backing(fuzz_path, names[i], NULL, &e);
	}
	static const char *const q[] = {"../b/base.raw", NULL};
	for (size_t i = 0; i < 2; i++) {
		struct vdk_err e = {0};
		if (fuzz_put(data, size) == 0)
			qcow2_set_backing(fuzz_path, q[i], q[i] ? "raw" : NULL, &e);
	}
	return 0;
}
