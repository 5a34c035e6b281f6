/* convert/codec.c: round trips at every level and wrap, zlib itself as
 * the oracle both ways, and the error results callers rely on (does not
 * fit, short, truncated, bad checksum). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

#include "codec.h"
#include "test.h"

#define TC_LEN (256u * 1024)

static uint64_t tc_rng = 0x9e3779b97f4a7c15ull;

static uint32_t tc_rand(void)
{
	tc_rng ^= tc_rng << 13;
	tc_rng ^= tc_rng >> 7;
	tc_rng ^= tc_rng << 17;
	return (uint32_t)(tc_rng >> 32);
}

/* Disk-like: text runs, random runs, zero runs, 4 KiB each. */
static void tc_fill(uint8_t *p, size_t n)
{
	static const char words[] = "lib ssh kernel mount proc sys user root etc var ";
	for (size_t i = 0; i < n; i++) {
		size_t kind = (i / 4096) % 3;
		p[i] = kind == 0   ? (uint8_t)words[(i * 7 + i / 13) % (sizeof(words) - 1)]
		       : kind == 1 ? (uint8_t)tc_rand()
		                   : 0;
	}
}

/* zlib as the oracle: windowBits 15 (zlib wrapper) or -15 (raw). */
static int tc_zinflate(int wbits, const uint8_t *in, size_t inlen, uint8_t *out, size_t cap,
                       size_t *got)
{
	z_stream z = {0};
	if (inflateInit2(&z, wbits) != Z_OK)
		return -1;
	z.next_in = (uint8_t *)in;
	z.avail_in = (uInt)inlen;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	int r = inflate(&z, Z_FINISH);
	*got = z.total_out;
	inflateEnd(&z);
	return r == Z_STREAM_END ? 0 : -1;
}

static size_t tc_zdeflate(int wbits, int level, const uint8_t *in, size_t inlen, uint8_t *out,
                          size_t cap)
{
	z_stream z = {0};
	if (deflateInit2(&z, level, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return 0;
	z.next_in = (uint8_t *)in;
	z.avail_in = (uInt)inlen;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	int r = deflate(&z, Z_FINISH);
	size_t n = z.total_out;
	deflateEnd(&z);
	return r == Z_STREAM_END ? n : 0;
}

static void tc_round_trips(const uint8_t *src, uint8_t *cbuf, size_t ccap, uint8_t *dst)
{
	for (int wrap = VDK_WRAP_RAW; wrap <= VDK_WRAP_ZLIB; wrap++) {
		const char *wn = wrap == VDK_WRAP_RAW ? "raw" : "zlib";
		struct vdk_inflater *f = vdk_inflater_new(wrap);
		for (int lvl = 1; lvl <= VDK_CODEC_LEVEL_MAX; lvl++) {
			struct vdk_deflater *d = vdk_deflater_new(wrap, lvl);
			size_t n = 0, got = 0;
			int r = d ? vdk_deflate(d, src, TC_LEN, cbuf, ccap, &n) : -1;
			memset(dst, 0xa5, TC_LEN);
			int ri = r ? -1 : vdk_inflate(f, cbuf, n, dst, TC_LEN, NULL);
			CHECK(r == 0 && ri == 0 && n < TC_LEN && !memcmp(dst, src, TC_LEN),
			      "%s level %d (%s): %zu -> %zu bytes, inflates back", wn, lvl,
			      d ? vdk_deflater_engine(d) : "?", (size_t)TC_LEN, n);
			memset(dst, 0xa5, TC_LEN);
			int zr = tc_zinflate(wrap == VDK_WRAP_RAW ? -15 : 15, cbuf, n, dst, TC_LEN,
			                     &got);
			CHECK(zr == 0 && got == TC_LEN && !memcmp(dst, src, TC_LEN),
			      "%s level %d: zlib's inflate reads it identically", wn, lvl);
			vdk_deflater_free(d);
		}
		vdk_inflater_free(f);
	}
}

/* The other direction: zlib's uncompress on our zlib stream, and our
 * inflate on zlib's streams (compress2, and qemu's raw windowBits -12). */
static void tc_oracle(const uint8_t *src, uint8_t *cbuf, size_t ccap, uint8_t *dst)
{
	struct vdk_deflater *d = vdk_deflater_new(VDK_WRAP_ZLIB, 1);
	size_t n = 0;
	uLongf dl = TC_LEN;
	CHECK(d && vdk_deflate(d, src, TC_LEN, cbuf, ccap, &n) == 0 &&
	          uncompress(dst, &dl, cbuf, n) == Z_OK && dl == TC_LEN &&
	          !memcmp(dst, src, TC_LEN),
	      "zlib uncompress() reads the level 1 (%s) zlib stream",
	      d ? vdk_deflater_engine(d) : "?");
	vdk_deflater_free(d);

	struct vdk_inflater *fz = vdk_inflater_new(VDK_WRAP_ZLIB);
	uLongf cl = (uLongf)ccap;
	memset(dst, 0, TC_LEN);
	CHECK(compress2(cbuf, &cl, src, TC_LEN, 6) == Z_OK &&
	          vdk_inflate(fz, cbuf, cl, dst, TC_LEN, NULL) == 0 && !memcmp(dst, src, TC_LEN),
	      "zlib compress2() level 6 stream inflates");
	/* A flipped adler32 byte: the zlib wrapper's checksum is verified. */
	cbuf[cl - 1] ^= 1;
	CHECK(vdk_inflate(fz, cbuf, cl, dst, TC_LEN, NULL) == VDK_CODEC_BAD,
	      "zlib stream with a bad adler32 is an error");
	vdk_inflater_free(fz);

	struct vdk_inflater *fr = vdk_inflater_new(VDK_WRAP_RAW);
	size_t rl = tc_zdeflate(-12, 6, src, TC_LEN, cbuf, ccap);
	memset(dst, 0, TC_LEN);
	/* qemu's clusters end mid-sector: the rest of the sector is ignored. */
	memset(cbuf + rl, 0x5a, 511);
	CHECK(rl && vdk_inflate(fr, cbuf, rl + 511, dst, TC_LEN, NULL) == 0 &&
	          !memcmp(dst, src, TC_LEN),
	      "qemu-like raw deflate (windowBits -12) inflates, trailing bytes ignored");
	vdk_inflater_free(fr);
}

static void tc_errors(const uint8_t *src, uint8_t *cbuf, size_t ccap, uint8_t *dst)
{
	CHECK(!vdk_deflater_new(VDK_WRAP_RAW, 0) && !vdk_deflater_new(VDK_WRAP_RAW, 13),
	      "levels 0 and 13 are refused");
	int lv[] = {1, 3, 6, 12};
	uint8_t *rnd = malloc(65536);
	for (size_t i = 0; i < 65536; i++)
		rnd[i] = (uint8_t)tc_rand();
	for (size_t i = 0; i < sizeof(lv) / sizeof(lv[0]); i++) {
		struct vdk_deflater *d = vdk_deflater_new(VDK_WRAP_RAW, lv[i]);
		size_t n = 0;
		CHECK(d && vdk_deflate(d, rnd, 65536, cbuf, 65535, &n) == VDK_CODEC_NOFIT,
		      "level %d: random 64 KiB into 65535 bytes does not fit", lv[i]);
		CHECK(d && vdk_deflate(d, rnd, 65536, cbuf, vdk_deflate_bound(65536), &n) == 0,
		      "level %d: random 64 KiB fits vdk_deflate_bound() (%zu bytes)", lv[i], n);
		vdk_deflater_free(d);
	}
	free(rnd);

	for (int wrap = VDK_WRAP_RAW; wrap <= VDK_WRAP_ZLIB; wrap++) {
		const char *wn = wrap == VDK_WRAP_RAW ? "raw" : "zlib";
		struct vdk_deflater *d = vdk_deflater_new(wrap, 1);
		struct vdk_inflater *f = vdk_inflater_new(wrap);
		size_t n = 0, got = 1;
		vdk_deflate(d, src, TC_LEN / 2, cbuf, ccap, &n);
		CHECK(vdk_inflate(f, cbuf, n, dst, TC_LEN, NULL) == VDK_CODEC_SHORT,
		      "%s: exact inflate of a stream that ends early is VDK_CODEC_SHORT", wn);
		CHECK(vdk_inflate(f, cbuf, n, dst, TC_LEN, &got) == 0 && got == TC_LEN / 2 &&
		          !memcmp(dst, src, TC_LEN / 2),
		      "%s: at-most inflate reports the %zu bytes it produced", wn, got);
		CHECK(vdk_inflate(f, cbuf, n, dst, TC_LEN / 4, NULL) == VDK_CODEC_NOFIT,
		      "%s: a stream longer than the output is VDK_CODEC_NOFIT", wn);
		int rt = vdk_inflate(f, cbuf, n / 2, dst, TC_LEN / 2, NULL);
		int rg = vdk_inflate(f, cbuf, n / 2, dst, TC_LEN / 2, &got);
		CHECK(rt == VDK_CODEC_BAD && rg == VDK_CODEC_BAD,
		      "%s: a truncated stream is VDK_CODEC_BAD in both modes", wn);
		memset(cbuf, 0xff, 64);
		CHECK(vdk_inflate(f, cbuf, 64, dst, TC_LEN, &got) == VDK_CODEC_BAD,
		      "%s: garbage is VDK_CODEC_BAD", wn);
		vdk_inflater_free(f);
		vdk_deflater_free(d);
	}
}

int main(void)
{
	size_t ccap = vdk_deflate_bound(TC_LEN);
	uint8_t *src = malloc(TC_LEN), *dst = malloc(TC_LEN), *cbuf = malloc(ccap);
	if (!src || !dst || !cbuf)
		return 2;
	tc_fill(src, TC_LEN);
#if VDK_HAVE_ISAL
	struct vdk_deflater *d1 = vdk_deflater_new(VDK_WRAP_RAW, 1);
	struct vdk_deflater *d6 = vdk_deflater_new(VDK_WRAP_RAW, 6);
	CHECK(d1 && d6 && !strcmp(vdk_deflater_engine(d1), "isa-l") &&
	          !strcmp(vdk_deflater_engine(d6), "libdeflate"),
	      "with ISA-L: level 1 is igzip, level 6 libdeflate");
	vdk_deflater_free(d1);
	vdk_deflater_free(d6);
#else
	SKIP("built without ISA-L: every level is libdeflate");
#endif
	tc_round_trips(src, cbuf, ccap, dst);
	tc_oracle(src, cbuf, ccap, dst);
	tc_errors(src, cbuf, ccap, dst);
	free(src);
	free(dst);
	free(cbuf);
	TEST_EXIT();
}
