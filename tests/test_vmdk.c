/* VMDK unit tests: the descriptor parser on real producers' quirks, the
 * writers round-tripping through the reader in memory, the on-disk layout
 * of streamOptimized, and hostile sparse extents (table bombs, grain
 * bombs, truncation). File-level and qemu-img checks are in it_vmdk.sh. */
#include <errno.h>
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "test.h"
#include "util.h"
#include "vmdk.h"

#define GRAIN 65536u

static int parse(const char *text, struct vmdk_desc *d, struct vdk_err *e)
{
	vdk_err_clear(e);
	return vmdk_desc_parse(text, strlen(text), "t.vmdk", 0, d, e);
}

static void test_desc_quirks(void)
{
	struct vdk_err e;
	struct vmdk_desc d;
	const char *t = "# Disk DescriptorFile\r\n"
	                "version=1\r\n"
	                "encoding=\"UTF-8\"\r\n"
	                "CID=6a3b2c1d\r\n"
	                "parentCID=ffffffff \r\n"
	                "createType=monolithicFlat\r\n"
	                "\r\n"
	                "# Extent description\r\n"
	                "RW 2048 FLAT \"my disk-flat.vmdk\" 0\r\n"
	                "RDONLY 100 ZERO\r\n"
	                "RW 300 VMFS \"x.vmdk\"\r\n"
	                "\r\n"
	                "#DDB\r\n"
	                "ddb.adapterType = \"lsilogic\"\r\n"
	                "  ddb.virtualHWVersion = \"8\"  \r\n"
	                "# The Disk Data Base\r\n"
	                "ddb.geometry.heads=\"255\"";
	CHECK(parse(t, &d, &e) == 0, "CRLF descriptor with quirks parses (%s)", e.msg);
	CHECK(d.has_cid && d.cid == 0x6a3b2c1d, "CID");
	CHECK(d.has_parent_cid && d.parent_cid == 0xffffffffu, "parentCID with trailing space");
	CHECK(d.create_type && !strcmp(d.create_type, "monolithicFlat"), "unquoted createType");
	CHECK_EQ_U64(d.n_ext, 3, "three extents");
	if (d.n_ext == 3) {
		CHECK(!strcmp(d.ext[0].file, "my disk-flat.vmdk") && d.ext[0].sectors == 2048 &&
		          d.ext[0].kind == VMDK_EK_FLAT && d.ext[0].offset == 0,
		      "quoted file name with a space");
		CHECK(d.ext[1].kind == VMDK_EK_ZERO && !d.ext[1].file &&
		          d.ext[1].access == VMDK_ACC_RDONLY,
		      "ZERO extent without file");
		CHECK(d.ext[2].kind == VMDK_EK_VMFS && d.ext[2].sectors == 300, "VMFS extent");
	}
	const char *v = vmdk_desc_get(&d, "ddb.virtualhwversion");
	CHECK(v && !strcmp(v, "8"), "ddb key, any case, value trimmed");
	v = vmdk_desc_get(&d, "ddb.geometry.heads");
	CHECK(v && !strcmp(v, "255"), "ddb key after a second heading, no spaces");

	char *out;
	size_t n;
	CHECK(vmdk_desc_render(&d, &out, &n) == 0, "render");
	struct vmdk_desc d2;
	CHECK(vmdk_desc_parse(out, n, "r", 0, &d2, &e) == 0, "rendered text parses again");
	CHECK(d2.cid == d.cid && d2.n_ext == d.n_ext && d2.n_kv == d.n_kv &&
	          !strcmp(d2.ext[0].file, d.ext[0].file),
	      "render round trip keeps CID, extents and ddb");
	free(out);
	vmdk_desc_free(&d2);
	vmdk_desc_free(&d);

	CHECK(parse("version=1\nparentFileNameHint=\"base.vmdk\"\nCID=1\n", &d, &e) == 0 &&
	          d.parent_hint && !strcmp(d.parent_hint, "base.vmdk"),
	      "parentFileNameHint");
	vmdk_desc_free(&d);
}

static void test_desc_errors(void)
{
	static const char *const bad[] = {
	    "CID=xyz\n",
	    "parentCID=123456789\n",
	    "RW abc FLAT \"f\" 0\n",
	    "RW 0 FLAT \"f\" 0\n",
	    "RW 99999999999999999999999 FLAT \"f\"\n",
	    "RW 10 BOGUS \"f\"\n",
	    "RW 10 FLAT \"unterminated\n",
	    "RW 10 FLAT\n",
	    "RW 10 FLAT \"f\" -5\n",
	    "just some words\n",
	    "version=9\n",
	};
	for (size_t i = 0; i < VDK_ARRAY_SIZE(bad); i++) {
		struct vmdk_desc d;
		struct vdk_err e;
		int r = parse(bad[i], &d, &e);
		CHECK(r < 0 && strstr(e.msg, "t.vmdk") && strstr(e.msg, "vmdk"),
		      "refused with a message naming the file: %.*s", (int)strcspn(bad[i], "\n"),
		      bad[i]);
	}
	/* Too many extents: bounded before anything grows without end. */
	size_t cap = (VMDK_MAX_EXTENTS + 2) * 16;
	char *big = malloc(cap), *p = big;
	for (unsigned i = 0; i < VMDK_MAX_EXTENTS + 1; i++)
		p += sprintf(p, "RW 1 ZERO\n");
	struct vmdk_desc d;
	struct vdk_err e;
	vdk_err_clear(&e);
	CHECK(vmdk_desc_parse(big, (size_t)(p - big), "t.vmdk", 0, &d, &e) < 0,
	      "more than %u extents refused", VMDK_MAX_EXTENTS);
	free(big);
	/* NULs pad an embedded descriptor to its sectors; text after a NUL
	 * would be dropped silently, so it is refused. */
	static const char emb[] = "CID=5\n\0\0\0\0";
	vdk_err_clear(&e);
	CHECK(vmdk_desc_parse(emb, sizeof(emb), "t", 0, &d, &e) == 0 && d.cid == 5,
	      "NUL-padded embedded descriptor");
	vmdk_desc_free(&d);
	static const char cut[] = "CID=5\n\0createType=\"monolithicFlat\"\n";
	vdk_err_clear(&e);
	CHECK(vmdk_desc_parse(cut, sizeof(cut), "t", 0, &d, &e) < 0 && strstr(e.msg, "NUL"),
	      "text after a NUL in a descriptor refused: %s", e.msg);
	vmdk_desc_free(&d);
}

/* Deterministic content: data grains, zero grains, pseudo-random grains. */
static uint8_t *pattern(uint64_t size)
{
	uint8_t *b = calloc(1, size);
	uint32_t x = 12345;
	for (uint64_t g = 0; g * GRAIN < size; g++) {
		uint64_t n = VDK_MIN((uint64_t)GRAIN, size - g * GRAIN);
		uint8_t *p = b + g * GRAIN;
		if (g % 5 == 1)
			continue; /* zero grain */
		for (uint64_t i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			p[i] = g % 3 ? (uint8_t)(x >> 24) : (uint8_t)(i / 97 + g);
		}
		if (g % 7 == 3)
			memset(p + n / 3, 0, n / 3); /* zero run inside a grain */
	}
	return b;
}

/* Write data through the writer, skipping all-zero grains as the pipeline
 * does for ZEROED writers. Returns the image bytes (malloc'ed). */
static uint8_t *make_image(const char *sub, const char *zg, const uint8_t *data, uint64_t size,
                           size_t *len)
{
	struct vdk_err e;
	vdk_err_clear(&e);
	struct vdk_sink *k;
	struct vdk_writer *w = NULL;
	struct vdk_opts o = {0};
	uint8_t *img = NULL;
	if (vdk_sink_open_mem(64u << 20, &k, &e))
		return NULL;
	vdk_opts_set(&o, "subformat", sub, &e);
	if (zg)
		vdk_opts_set(&o, "zeroed_grain", zg, &e);
	int r = vdk_writer_create(&vdk_format_vmdk, k, size, &o, NULL, &w, &e);
	for (uint64_t off = 0; r == 0 && off < size; off += GRAIN) {
		size_t n = (size_t)VDK_MIN((uint64_t)GRAIN, size - off);
		if (!vdk_is_zero(data + off, n) || zg)
			r = vdk_writer_write(w, data + off, n, off, &e);
	}
	if (r == 0)
		r = vdk_writer_finish(w, &e);
	if (r == 0) {
		const uint8_t *p = vdk_sink_mem_data(k, len);
		img = malloc(*len);
		memcpy(img, p, *len);
	} else {
		printf("# %s\n", e.msg);
	}
	vdk_writer_close(w);
	vdk_sink_close(k);
	vdk_opts_free(&o);
	return img;
}

static struct vdk_image *open_mem(const uint8_t *buf, size_t len, struct vdk_err *e)
{
	struct vdk_src *src;
	struct vdk_image *img = NULL;
	vdk_err_clear(e);
	if (vdk_src_open_mem(buf, len, "mem.vmdk", &src, e))
		return NULL;
	if (vdk_image_open(src, true, "vmdk", NULL, &img, e))
		return NULL;
	return img;
}

static void check_roundtrip(const char *sub, const char *zg, uint64_t size)
{
	uint8_t *data = pattern(size);
	size_t len = 0;
	uint8_t *img = make_image(sub, zg, data, size, &len);
	CHECK(img != NULL, "%s: written in memory (%zu bytes)", sub, len);
	if (!img) {
		free(data);
		return;
	}
	struct vdk_err e;
	struct vdk_image *im = open_mem(img, len, &e);
	CHECK(im != NULL, "%s: reopened (%s)", sub, e.msg);
	if (im) {
		uint64_t vsize = vdk_round_up(size, 512);
		CHECK_EQ_U64(im->size, vsize, "%s: virtual size rounded to a sector", sub);
		uint8_t *back = malloc(vsize);
		int r = vdk_image_pread(im, back, vsize, 0, &e);
		CHECK(r == 0 && !memcmp(back, data, size) && vdk_is_zero(back + size, vsize - size),
		      "%s: content reads back identical", sub);
		struct vdk_extents x = {0};
		r = vdk_image_extents(im, 0, vsize, &x, &e);
		bool ok = r == 0 && x.n > 0;
		uint64_t pos = 0;
		for (size_t i = 0; ok && i < x.n; i++) {
			ok = x.v[i].off == pos;
			/* Zero grains are never stored as data by the writer. */
			if (!(x.v[i].flags & (VDK_EXT_ZERO | VDK_EXT_HOLE)))
				for (uint64_t g = x.v[i].off; g < x.v[i].off + x.v[i].len;
				     g += GRAIN)
					ok = ok &&
					     !vdk_is_zero(data + g,
					                  VDK_MIN(GRAIN, size - VDK_MIN(g, size)));
			pos += x.v[i].len;
		}
		CHECK(ok && pos == vsize, "%s: extents contiguous, zero grains not stored", sub);
		if (zg) {
			bool zero = false;
			for (size_t i = 0; i < x.n; i++)
				zero |= x.v[i].flags == VDK_EXT_ZERO;
			CHECK(zero, "%s: zeroed_grain=on stores zero grains as GTE 1 (ZERO)", sub);
		}
		vdk_extents_free(&x);
		free(back);
		vdk_image_close(im);
	}
	free(img);
	free(data);
}

static void test_stream_layout(void)
{
	uint64_t size = 40 * GRAIN + 4096;
	uint8_t *data = pattern(size);
	size_t len = 0;
	uint8_t *img = make_image("streamOptimized", NULL, data, size, &len);
	free(data);
	if (!img)
		return;
	CHECK(vdk_le32(img) == VMDK_MAGIC_KDMV && vdk_le32(img + VMDK_H_VERSION) == 3,
	      "stream: KDMV version 3");
	CHECK(vdk_le32(img + VMDK_H_FLAGS) ==
	          (VMDK_FLAG_NL_DETECT | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS),
	      "stream: compressed + markers flags");
	CHECK(vdk_le64(img + VMDK_H_GD) == VMDK_GD_AT_END, "stream: header gdOffset = GD_AT_END");
	CHECK(vdk_le16(img + VMDK_H_COMPRESS) == 1, "stream: deflate");
	CHECK(len % 512 == 0 && len > 1536, "stream: whole sectors");
	const uint8_t *eos = img + len - 512, *foot = img + len - 1024, *fm = img + len - 1536;
	CHECK(vdk_is_zero(eos, 512), "stream: ends with an end-of-stream marker");
	CHECK(vdk_le32(fm + 12) == VMDK_MARKER_FOOTER && vdk_le64(fm) == 1,
	      "stream: footer marker");
	uint64_t gd = vdk_le64(foot + VMDK_H_GD);
	CHECK(vdk_le32(foot) == VMDK_MAGIC_KDMV && gd * 512 < len,
	      "stream: footer holds the real gdOffset");
	CHECK(gd >= 1 && vdk_le32(img + (gd - 1) * 512 + 12) == VMDK_MARKER_GD,
	      "stream: GD marker before the directory");
	const char *desc = (const char *)img + 512;
	CHECK(strstr(desc, "createType=\"streamOptimized\"") && strstr(desc, "ddb.uuid") &&
	          strstr(desc, "ddb.toolsVersion") && strstr(desc, "ddb.geometry.cylinders") &&
	          strstr(desc, "ddb.adapterType") && strstr(desc, "ddb.virtualHWVersion") &&
	          strstr(desc, "CID="),
	      "stream: descriptor has the keys vSphere wants");
	/* First grain: its marker carries lba 0 and the deflated size. */
	uint64_t over = vdk_le64(img + VMDK_H_OVERHEAD) * 512;
	CHECK(vdk_le64(img + over) == 0 && vdk_le32(img + over + 8) > 0 &&
	          vdk_le32(img + over + 8) < GRAIN * 2,
	      "stream: first grain marker");
	free(img);

	/* An all-zero disk still gets GD, footer and end-of-stream marker. */
	uint8_t *zero = calloc(1, 1 << 20);
	img = make_image("streamOptimized", NULL, zero, 1 << 20, &len);
	free(zero);
	CHECK(img && vdk_is_zero(img + len - 512, 512) &&
	          vdk_le32(img + len - 1536 + 12) == VMDK_MARKER_FOOTER,
	      "stream: all-zero disk is complete");
	struct vdk_err e;
	struct vdk_image *im = img ? open_mem(img, len, &e) : NULL;
	CHECK(im && im->size == 1 << 20, "stream: all-zero disk reopens");
	vdk_image_close(im);
	free(img);
}

/* A hand-made hosted sparse header. */
static void put_hdr(uint8_t *h, uint64_t cap, uint64_t gd, uint32_t flags, uint16_t alg)
{
	vmdk_put_header(h, 1, flags, cap, 128, 0, 0, 0, gd, 0, alg);
}

static void test_hostile(void)
{
	struct vdk_err e;
	/* 1000 GD entries all naming the same grain table: a table bomb. */
	size_t len = 64 * 512;
	uint8_t *b = calloc(1, len);
	put_hdr(b, 1000ull * 512 * 128, 1, 0, 0);
	for (int i = 0; i < 1000; i++)
		vdk_put_le32(b + 512 + 4 * i, 20);
	vdk_put_le32(b + 20 * 512, 30); /* one used entry */
	struct vdk_image *im = open_mem(b, len, &e);
	CHECK(!im && strstr(e.msg, "overlap"), "shared grain tables refused: %s", e.msg);
	vdk_image_close(im);

	/* GD past the end of the file. */
	put_hdr(b, 1000ull * 512 * 128, 60, 0, 0);
	im = open_mem(b, len, &e);
	CHECK(!im && strstr(e.msg, "past the end"), "GD past EOF refused: %s", e.msg);
	vdk_image_close(im);

	/* Absurd capacity and grain. */
	put_hdr(b, UINT64_MAX / 2, 1, 0, 0);
	im = open_mem(b, len, &e);
	CHECK(!im, "huge capacity refused: %s", e.msg);
	vdk_image_close(im);
	put_hdr(b, 1024, 1, 0, 0);
	vdk_put_le64(b + VMDK_H_GRAIN, 1u << 30);
	im = open_mem(b, len, &e);
	CHECK(!im, "1 GiB grains refused: %s", e.msg);
	vdk_image_close(im);

	/* Truncated header. */
	im = open_mem(b, 100, &e);
	CHECK(!im, "truncated header refused: %s", e.msg);
	vdk_image_close(im);

	/* A compressed grain that inflates to more than a grain. */
	memset(b, 0, len);
	put_hdr(b, 128, 1, VMDK_FLAG_MARKERS, 1);
	vdk_put_le32(b + 512, 2);   /* GD[0] -> GT at sector 2 */
	vdk_put_le32(b + 1024, 10); /* GT[0] -> grain marker at sector 10 */
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(9);
	uint8_t *zeros = calloc(1, 2 * GRAIN);
	size_t z =
	    libdeflate_zlib_compress(c, zeros, 2 * GRAIN, b + 10 * 512 + 12, len - 10 * 512 - 12);
	libdeflate_free_compressor(c);
	free(zeros);
	vdk_put_le64(b + 10 * 512, 0);
	vdk_put_le32(b + 10 * 512 + 8, (uint32_t)z);
	im = open_mem(b, len, &e);
	CHECK(im != NULL, "bomb image opens (%s)", e.msg);
	if (im) {
		uint8_t *out = malloc(GRAIN);
		vdk_err_clear(&e);
		int r = vdk_image_pread(im, out, GRAIN, 0, &e);
		CHECK(r < 0 && strstr(e.msg, "more than one grain"),
		      "decompression bomb refused: %s", e.msg);
		free(out);
		/* A marker whose size runs past the file. */
		vdk_put_le32(b + 10 * 512 + 8, (uint32_t)len);
		out = malloc(GRAIN);
		vdk_err_clear(&e);
		r = vdk_image_pread(im, out, GRAIN, 0, &e);
		CHECK(r < 0, "grain marker size past EOF refused: %s", e.msg);
		free(out);
		vdk_image_close(im);
	}
	free(b);

	/* A text descriptor naming extents cannot be opened from memory (no
	 * folder): refused, not read from anywhere. */
	static const char d[] = "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n"
	                        "RW 8 FLAT \"/etc/passwd\" 0\n";
	im = open_mem((const uint8_t *)d, sizeof(d) - 1, &e);
	CHECK(!im, "extent from a memory descriptor refused: %s", e.msg);
	vdk_image_close(im);
	static const char rdm[] = "# Disk DescriptorFile\nversion=1\ncreateType=\"fullDevice\"\n"
	                          "RW 8 FLAT \"/dev/sda\" 0\n";
	im = open_mem((const uint8_t *)rdm, sizeof(rdm) - 1, &e);
	CHECK(!im && strstr(e.msg, "device"), "fullDevice refused with the reason: %s", e.msg);
	vdk_image_close(im);
}

static void test_unclean_and_cowd(void)
{
	struct vdk_err e;
	uint64_t size = 4 * GRAIN;
	uint8_t *data = pattern(size);
	size_t len = 0;
	uint8_t *img = make_image("monolithicSparse", NULL, data, size, &len);
	if (img) {
		img[VMDK_H_UNCLEAN] = 1;
		struct vdk_image *im = open_mem(img, len, &e);
		CHECK(im && im->dirty, "unclean-shutdown flag reported, image still opens");
		struct vdk_json *j = vdk_json_new_obj();
		if (im && j && im->fmt->info(im, j, &e) == 0) {
			const struct vdk_json *u = vdk_json_get(j, "unclean-shutdown");
			const char *ct = vdk_json_get_str(j, "create-type");
			CHECK(u != NULL && ct && !strcmp(ct, "monolithicSparse"),
			      "info: unclean-shutdown and create-type present");
		}
		vdk_json_free(j);
		vdk_image_close(im);
		free(img);
	}
	free(data);

	/* ESX vmfsSparse (COWD): 4096 GTEs per table, grain from the header. */
	size_t clen = 2048 + 16384 + 8192;
	uint8_t *c = calloc(1, clen);
	memcpy(c, "COWD", 4);
	vdk_put_le32(c + 4, 1);
	vdk_put_le32(c + 12, 4096); /* sectors */
	vdk_put_le32(c + 16, 8);    /* grain: 4 KiB */
	vdk_put_le32(c + 20, 4);    /* GD at sector 4 */
	vdk_put_le32(c + 24, 1);
	vdk_put_le32(c + 4 * 512, 8);      /* GD[0] -> GT at sector 8 */
	vdk_put_le32(c + 8 * 512 + 4, 40); /* grain 1 -> sector 40 */
	memset(c + 40 * 512, 0xab, 4096);
	struct vdk_image *im = open_mem(c, clen, &e);
	CHECK(im && im->size == 4096 * 512 && im->cluster_size == 4096, "COWD opens (%s)", e.msg);
	if (im) {
		uint8_t buf[8192];
		int r = vdk_image_pread(im, buf, sizeof(buf), 0, &e);
		CHECK(r == 0 && vdk_is_zero(buf, 4096) && buf[4096] == 0xab && buf[8191] == 0xab,
		      "COWD grain 1 reads from its sector, grain 0 is a hole");
		vdk_image_close(im);
	}
	free(c);
}

static void test_probe(void)
{
	static const char d1[] = "# Disk DescriptorFile\nversion=1\n";
	static const char d2[] = "\n# comment\nversion=1\r\nCID=1\n";
	static const char no[] = "hello world";
	uint8_t kdmv[8] = {'K', 'D', 'M', 'V', 1, 0, 0, 0};
	CHECK(vdk_format_vmdk.probe((const uint8_t *)d1, sizeof(d1) - 1, 100) == 100,
	      "probe: descriptor heading");
	CHECK(vdk_format_vmdk.probe((const uint8_t *)d2, sizeof(d2) - 1, 100) == 100,
	      "probe: version line after comments");
	CHECK(vdk_format_vmdk.probe(kdmv, sizeof(kdmv), 100) == 100, "probe: KDMV magic");
	CHECK(vdk_format_vmdk.probe((const uint8_t *)no, sizeof(no) - 1, 100) == 0,
	      "probe: not mine");
}

int main(void)
{
	test_desc_quirks();
	test_desc_errors();
	test_probe();
	check_roundtrip("streamOptimized", NULL, 37 * GRAIN + 12345);
	check_roundtrip("monolithicSparse", NULL, 37 * GRAIN + 12345);
	check_roundtrip("monolithicSparse", "on", 21 * GRAIN + 512);
	check_roundtrip("streamOptimized", NULL, 600 * GRAIN); /* several grain tables */
	test_stream_layout();
	test_hostile();
	test_unclean_and_cowd();
	TEST_EXIT();
}
