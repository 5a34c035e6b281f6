/* Fuzz the qcow2 check (refcount rebuild and comparison) from memory, with
 * and without repair (a memory image cannot be written: the repair path
 * must refuse cleanly). Inputs are bounded so that one run stays fast: the
 * check's work grows with L1 entries times L2 entries times snapshots. */
#include <stdint.h>
#include <string.h>

#include "format.h"
#include "util.h"

#define FUZZ_MAX_SIZE         (256u << 10)
#define FUZZ_MAX_CLUSTER_BITS 14u
#define FUZZ_MAX_SNAPSHOTS    2u
/* L1 entries (header offset 36) and refcount table clusters (56): the
 * check walks every L2 table an L1 names and every refcount block; a few
 * exercise every path, and at 120 runs/s more explored little. */
#define FUZZ_MAX_L1      64u
#define FUZZ_MAX_RT_CLUS 4u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 72 || size > FUZZ_MAX_SIZE || vdk_be32(data + 20) > FUZZ_MAX_CLUSTER_BITS ||
	    vdk_be32(data + 60) > FUZZ_MAX_SNAPSHOTS || vdk_be32(data + 36) > FUZZ_MAX_L1 ||
	    vdk_be32(data + 56) > FUZZ_MAX_RT_CLUS)
		return 0;
	struct vdk_err e = {0};
	struct vdk_src *src = NULL;
	struct vdk_image *img = NULL;
	if (vdk_src_open_mem(data, size, "fuzz.qcow2", &src, &e))
		return 0;
	if (vdk_image_open(src, true, "qcow2", NULL, &img, &e))
		return 0;
	for (int pass = 0; pass < 2; pass++) {
		struct vdk_check r = {0};
		struct vdk_err ce = {0};
		r.fix = pass ? VDK_FIX_LEAKS | VDK_FIX_ERRORS : 0;
		img->fmt->check(img, &r, pass == 1, &ce);
		if (r.findings.n > 200)
			__builtin_trap(); /* findings are capped, whatever the image */
		vdk_findings_free(&r.findings);
	}
	vdk_image_close(img);
	return 0;
}
