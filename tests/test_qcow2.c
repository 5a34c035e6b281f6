/* qcow2 unit tests through the library API, in memory: the writer's output
 * read back by the reader (plain, compressed zlib/zstd, v2, small and large
 * clusters), the extents it reports, and malformed headers refused with a
 * message naming the format and offset. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "test.h"
#include "util.h"

#define DISK (3u * 1024 * 1024 + 4096)

static uint8_t *pattern(void)
{
	uint8_t *p = calloc(1, DISK);
	uint32_t x = 12345;
	for (size_t i = 0; i < DISK; i++) {
		x = x * 1103515245u + 12345u;
		/* data in the first MiB, zeroes in the second, text after */
		if (i < (1u << 20))
			p[i] = (uint8_t)(x >> 16);
		else if (i >= (2u << 20))
			p[i] = (uint8_t)("qcow2 test "[i % 11]);
	}
	return p;
}

/* Write pat through the qcow2 writer into memory; returns the image bytes. */
static uint8_t *make_image(const uint8_t *pat, const char *opts, bool use_encode, size_t *len)
{
	struct vdk_err e = {0};
	struct vdk_sink *k = NULL;
	struct vdk_opts o = {0};
	struct vdk_writer *w = NULL;
	uint8_t *out = NULL;
	const struct vdk_format *f = vdk_format_find("qcow2");
	if (!f || vdk_sink_open_mem(64u << 20, &k, &e) || (opts && vdk_opts_parse(&o, opts, &e)) ||
	    vdk_writer_create(f, k, DISK, &o, NULL, &w, &e)) {
		printf("# create: %s\n", e.msg);
		goto done;
	}
	uint32_t g = w->granularity, chunk = 256 * 1024;
	int r = 0;
	for (uint64_t off = 0; off < DISK && !r; off += chunk) {
		size_t n = (size_t)VDK_MIN(chunk, DISK - off);
		if (off >= (1u << 20) && off < (2u << 20))
			continue; /* the zero MiB: the writer starts zeroed */
		if (use_encode && f->encode) {
			struct vdk_buf b = {0};
			r = f->encode(w, pat + off, n, off, &b, &e);
			if (!r)
				r = f->write_encoded(w, &b, off, n, &e);
			free(b.data);
		} else {
			r = vdk_writer_write(w, pat + off, n, off, &e);
		}
	}
	(void)g;
	if (r || vdk_writer_finish(w, &e)) {
		printf("# write: %s\n", e.msg);
		goto done;
	}
	const uint8_t *d = vdk_sink_mem_data(k, len);
	out = malloc(*len);
	memcpy(out, d, *len);
done:
	if (w)
		vdk_writer_close(w);
	if (k)
		vdk_sink_close(k);
	vdk_opts_free(&o);
	return out;
}

static int open_mem(const uint8_t *img, size_t len, struct vdk_image **out, struct vdk_err *e)
{
	struct vdk_src *src = NULL;
	int r = vdk_src_open_mem(img, len, "mem.qcow2", &src, e);
	if (r)
		return r;
	return vdk_image_open(src, true, "qcow2", NULL, out, e);
}

static void roundtrip(const uint8_t *pat, const char *opts, bool enc)
{
	size_t len = 0;
	uint8_t *img = make_image(pat, opts, enc, &len);
	CHECK(img != NULL, "[%s] writer produced an image", opts ? opts : "default");
	if (!img)
		return;
	struct vdk_err e = {0};
	struct vdk_image *im = NULL;
	int r = open_mem(img, len, &im, &e);
	CHECK(r == 0, "[%s] reader opens it (%s)", opts ? opts : "default", e.msg);
	if (r) {
		free(img);
		return;
	}
	CHECK_EQ_U64(im->size, DISK, "[%s] virtual size", opts ? opts : "default");
	uint8_t *back = malloc(DISK);
	r = vdk_image_pread(im, back, DISK, 0, &e);
	CHECK(r == 0 && !memcmp(back, pat, DISK), "[%s] content read back identical",
	      opts ? opts : "default");
	struct vdk_extents x = {0};
	/* Preallocated metadata maps every cluster, and a 2 MiB cluster holds the
	 * data before it: DATA there, else unallocated zeroes. */
	uint32_t want = opts && (strstr(opts, "prealloc") || strstr(opts, "2M"))
	                    ? 0
	                    : VDK_EXT_ZERO | VDK_EXT_HOLE;
	r = vdk_image_extents(im, 1u << 20, 1u << 20, &x, &e);
	CHECK(r == 0 && x.n >= 1 && x.v[0].flags == want && x.v[0].off == (1u << 20) &&
	          x.v[0].len == (1u << 20),
	      "[%s] the unwritten MiB is one extent, flags %u", opts ? opts : "default", want);
	x.n = 0;
	r = vdk_image_extents(im, 0, 4096, &x, &e);
	CHECK(r == 0 && x.n >= 1 && x.v[0].flags == 0 && (!want || x.v[0].fd == -1),
	      "[%s] written data is a DATA extent", opts ? opts : "default");
	vdk_extents_free(&x);
	/* The refcount check finds exact refcounts; a memory image cannot be
	 * repaired in place, but a clean one needs no write. */
	struct vdk_check ck = {0};
	r = im->fmt->check(im, &ck, true, &e);
	CHECK(r == 0 && !ck.corruptions && !ck.leaks && !ck.check_errors &&
	          ck.image_end_offset == vdk_round_up(len, im->cluster_size),
	      "[%s] check: %llu corruptions, %llu leaks, image end %llu of %zu (%s%s)",
	      opts ? opts : "default", (unsigned long long)ck.corruptions,
	      (unsigned long long)ck.leaks, (unsigned long long)ck.image_end_offset, len,
	      ck.findings.n ? ck.findings.v[0].msg : "", e.msg);
	vdk_findings_free(&ck.findings);
	free(back);
	vdk_image_close(im);
	free(img);
}

/* The header cluster's refcount raised to 2: one leak, counted by check;
 * a repair of a memory image is refused with a message, not attempted. */
static void check_leak(const uint8_t *good, size_t len)
{
	uint8_t *img = malloc(len);
	memcpy(img, good, len);
	uint64_t rb = vdk_be64(img + vdk_be64(img + 48));
	vdk_put_be16(img + rb, 2);
	struct vdk_err e = {0};
	struct vdk_image *im = NULL;
	int r = open_mem(img, len, &im, &e);
	CHECK(r == 0, "leaky image opens (%s)", e.msg);
	if (r == 0) {
		struct vdk_check ck = {0};
		r = im->fmt->check(im, &ck, false, &e);
		const char *first = ck.findings.n ? ck.findings.v[0].msg : "";
		CHECK(r == 0 && ck.leaks == 1 && ck.corruptions == 0 &&
		          strstr(first, "Leaked cluster 0"),
		      "check counts one leak: %s", first);
		vdk_findings_free(&ck.findings);
		struct vdk_check fx = {.fix = VDK_FIX_LEAKS};
		r = im->fmt->check(im, &fx, true, &e);
		CHECK(r < 0 && strstr(e.msg, "qcow2") && strstr(e.msg, "plain file") &&
		          !fx.leaks_fixed,
		      "repair of a memory image refused: %s", e.msg);
		vdk_image_close(im);
	}
	free(img);
}

static void put_be32(uint8_t *img, size_t off, uint32_t v)
{
	vdk_put_be32(img + off, v);
}

/* Each corruption must be refused by open with a message naming qcow2. */
static void refuse(const uint8_t *good, size_t len, size_t off, uint32_t v, const char *what)
{
	uint8_t *img = malloc(len);
	memcpy(img, good, len);
	put_be32(img, off, v);
	struct vdk_err e = {0};
	struct vdk_image *im = NULL;
	int r = open_mem(img, len, &im, &e);
	CHECK(r < 0 && strstr(e.msg, "qcow2"), "%s refused: %s", what, e.msg);
	if (!r)
		vdk_image_close(im);
	free(img);
}

int main(void)
{
	uint8_t *pat = pattern();
	roundtrip(pat, NULL, false);
	roundtrip(pat, NULL, true);
	roundtrip(pat, "compat=0.10", true);
	roundtrip(pat, "cluster_size=512", false);
	roundtrip(pat, "cluster_size=2M", false);
	roundtrip(pat, "compress=on", true);
	roundtrip(pat, "compress=on,cluster_size=4k,compat=0.10", true);
	roundtrip(pat, "compress=on,compression_type=zstd", true);
	roundtrip(pat, "preallocation=metadata", false);

	size_t len = 0;
	uint8_t *good = make_image(pat, NULL, false, &len);
	if (!good) {
		SKIP("no image to corrupt");
		TEST_EXIT();
	}
	refuse(good, len, 0, 0x12345678, "bad magic");
	refuse(good, len, 4, 4, "version 4");
	refuse(good, len, 20, 30, "cluster_bits 30");
	refuse(good, len, 20, 8, "cluster_bits 8");
	refuse(good, len, 32, 1, "AES encryption");
	refuse(good, len, 36, 0x7fffffff, "huge L1 table");
	refuse(good, len, 36, 0, "L1 too small for the size");
	refuse(good, len, 44, 0x7fff0000, "L1 table outside the file");
	refuse(good, len, 76, 0x20, "unknown incompatible bit");
	refuse(good, len, 100, 7, "header_length 7");
	refuse(good, len, 96, 9, "refcount_order 9");
	refuse(good, len, 60, 70000, "too many snapshots");
	check_leak(good, len);
	/* Truncated file: the L2 tables are gone. */
	struct vdk_err e = {0};
	struct vdk_image *im = NULL;
	size_t cut = 2 * 65536 + 100; /* inside the first L2 table */
	int r = open_mem(good, cut, &im, &e);
	if (r == 0) {
		uint8_t buf[4096];
		r = vdk_image_pread(im, buf, sizeof(buf), 0, &e);
		vdk_image_close(im);
	}
	CHECK(r < 0 && strstr(e.msg, "qcow2"), "truncated image refused: %s", e.msg);
	free(good);
	free(pat);
	TEST_EXIT();
}
