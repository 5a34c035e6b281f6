/* libFuzzer harness for convert/codec.c: the first byte picks the wrap
 * (raw or zlib), exact or at-most inflate, and a deflate level; the rest is
 * inflated as an untrusted stream (grain or cluster data), then deflated
 * at that level and inflated back, which must give the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CODEC_OUT 65536u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	enum vdk_codec_wrap wrap = data[0] & 1 ? VDK_WRAP_ZLIB : VDK_WRAP_RAW;
	bool exact = data[0] & 2;
	int level = 1 + (data[0] >> 2) % VDK_CODEC_LEVEL_MAX;
	data++, size--;
	uint8_t *out = malloc(FUZZ_CODEC_OUT), *back = malloc(FUZZ_CODEC_OUT);
	size_t cap = vdk_deflate_bound(size);
	uint8_t *z = malloc(cap);
	struct vdk_inflater *f = vdk_inflater_new(wrap);
	struct vdk_deflater *d = vdk_deflater_new(wrap, level);
	if (out && back && z && f && d) {
		size_t got = 0, n = 0;
		int r = vdk_inflate(f, data, size, out, FUZZ_CODEC_OUT, exact ? NULL : &got);
		if (r == 0 && !exact && got > FUZZ_CODEC_OUT)
			abort();
		size_t m = size < FUZZ_CODEC_OUT ? size : FUZZ_CODEC_OUT;
		if (vdk_deflate(d, data, m, z, cap, &n) != 0)
			abort(); /* the bound always fits */
		if (vdk_inflate(f, z, n, back, m, NULL) != 0 || memcmp(back, data, m))
			abort();
	}
	vdk_deflater_free(d);
	vdk_inflater_free(f);
	free(z);
	free(back);
	free(out);
	return 0;
}
