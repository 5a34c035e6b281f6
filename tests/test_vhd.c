/* VHD module: qemu-img's CHS sizing, checksums, writer/reader round trips
 * (dynamic, fixed, force_size, azure), refusal of damaged files,
 * differencing disks read through the sector bitmap with the parent
 * confined to the image's folder, and the in-place Azure conversion. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"
#include "test.h"
#include "update.h"
#include "test_img.h"
#include "util.h"
#include "vhd.h"

static char tmpdir[256];

static void path_in(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", tmpdir, name);
}

static int write_file(const char *path, const uint8_t *d, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	ssize_t k = write(fd, d, n);
	close(fd);
	return k == (ssize_t)n ? 0 : -1;
}

static uint8_t *read_file(const char *path, size_t *n)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	uint8_t *d = malloc((size_t)st.st_size + 1);
	*n = (size_t)pread(fd, d, (size_t)st.st_size, 0);
	close(fd);
	return d;
}

/* qemu-img 7.2 `create -f vpc` virtual sizes (measured). */
static void test_sizing(void)
{
	static const struct {
		uint64_t in, out;
	} t[] = {
	    {512, 34816},
	    {1000, 34816},
	    {1048576, 1079296},
	    {5255225, 5257216},
	    {10485760, 10514432},
	    {1073741824, 1073995776},
	    {136365211648ull, 136365219840ull},
	    {139586437120ull, 139586437120ull},
	    {2190433320960ull, 2190433320960ull},
	};
	int ok = 1;
	for (size_t i = 0; i < VDK_ARRAY_SIZE(t); i++) {
		uint64_t out;
		uint16_t c;
		uint8_t h, s;
		int r = vhd_plan_size(t[i].in, false, &out, &c, &h, &s);
		if (r || out != t[i].out) {
			printf("# %llu -> %llu, qemu-img says %llu\n", (unsigned long long)t[i].in,
			       (unsigned long long)out, (unsigned long long)t[i].out);
			ok = 0;
		}
	}
	CHECK(ok, "CHS rounding matches qemu-img for 9 sizes from 512 B to 2040 GiB");
	uint64_t out;
	uint16_t c;
	uint8_t h, s;
	CHECK(vhd_plan_size(5255225, true, &out, &c, &h, &s) == 0 && out == 5255680 && c == 65535 &&
	          h == 16 && s == 255,
	      "force_size keeps the size (sector-rounded) with the maximum geometry");
	CHECK(vhd_plan_size(2190433320960ull + 512, false, &out, &c, &h, &s) == -EFBIG,
	      "2040 GiB + 512 is refused like qemu-img");
}

static void test_checksum(void)
{
	uint8_t f[512];
	vhd_footer_build(f, VHD_TYPE_FIXED, 1048576, 65535, 16, 255, UINT64_MAX);
	CHECK(vhd_footer_csum_ok(f), "built footer has a valid checksum");
	struct vhd_footer d;
	CHECK(vhd_footer_decode(f, &d) && d.cur_size == 1048576 && d.type == 2,
	      "footer decodes back");
	CHECK_EQ_U64(vhd_footer_disk_size(&d), 1048576, "max geometry: size from the footer");
	f[100] ^= 1;
	CHECK(!vhd_footer_csum_ok(f), "a flipped reserved byte breaks the checksum");
	memcpy(d.creator_app, "vpc ", 4);
	d.cyls = 10;
	d.heads = 4;
	d.secs = 17;
	CHECK_EQ_U64(vhd_footer_disk_size(&d), 10 * 4 * 17 * 512,
	             "Virtual PC disks are sized by CHS");
	memcpy(d.creator_app, "win ", 4);
	CHECK_EQ_U64(vhd_footer_disk_size(&d), 1048576, "Hyper-V disks by current size");
}

static int open_mem(const uint8_t *d, size_t n, struct vdk_image **img, struct vdk_err *e)
{
	struct vdk_src *src;
	int r = vdk_src_open_mem(d, n, "mem.vhd", &src, e);
	return r ? r : vdk_image_open(src, true, "vpc", NULL, img, e);
}

/* Expected content: zero except the writes. */
static int content_ok(struct vdk_image *img, const struct wr *w, size_t nw)
{
	uint8_t *got = malloc(img->size), *want = expect(img->size, w, nw);
	struct vdk_err e = {0};
	int ok = vdk_image_pread(img, got, img->size, 0, &e) == 0;
	ok = ok && !memcmp(got, want, img->size);
	free(got);
	free(want);
	return ok;
}

static void test_dynamic_roundtrip(void)
{
	const struct wr w[] = {{0, 4096, 1}, {3 * MiB + 512, 70000, 2}, {9 * MiB, 512, 3}};
	size_t n;
	uint8_t *d = build(10 * MiB, NULL, w, 3, &n);
	CHECK(d != NULL, "dynamic VHD written in memory");
	if (!d)
		return;
	CHECK(!memcmp(d, "conectix", 8) && !memcmp(d + n - 512, d, 512),
	      "footer copy at 0 equals the footer at the end");
	struct vdk_err e = {0};
	struct vdk_image *img = NULL;
	int r = open_mem(d, n, &img, &e);
	CHECK(r == 0, "reopened: %s", e.msg);
	if (!r) {
		CHECK_EQ_U64(img->size, 10514432, "virtual size rounded to CHS like qemu-img");
		CHECK(content_ok(img, w, 3), "content reads back byte-identical");
		struct vdk_extents x = {0};
		r = vdk_image_extents(img, 0, img->size, &x, &e);
		int holes = 0, data = 0;
		for (size_t i = 0; !r && i < x.n; i++)
			(x.v[i].flags & VDK_EXT_HOLE) ? holes++ : data++;
		CHECK(!r && holes >= 2 && data >= 2 && (x.v[0].flags == 0),
		      "extents: written blocks are DATA, untouched blocks HOLE (%d/%d)", data,
		      holes);
		vdk_extents_free(&x);
		vdk_image_close(img);
	}
	/* 4 KiB-aligned block data, for later clones out of this file. */
	uint32_t bat0 = vdk_be32(d + 1536);
	CHECK(((uint64_t)bat0 * 512 + 512) % 4096 == 0, "block data starts 4 KiB-aligned");
	free(d);
}

static void test_fixed_and_azure(void)
{
	const struct wr w[] = {{0, 1000, 4}, {MiB, 4096, 5}};
	size_t n;
	uint8_t *d = build(3 * MiB + 1234, "subformat=fixed,force_size=on", w, 2, &n);
	CHECK(d && n == 3 * MiB + 1536 + 512, "fixed force_size: sector-rounded payload + footer");
	struct vdk_err e = {0};
	struct vdk_image *img = NULL;
	if (d && open_mem(d, n, &img, &e) == 0) {
		CHECK(content_ok(img, w, 2), "fixed content reads back");
		vdk_image_close(img);
	}
	free(d);
	d = build(3 * MiB + 1234, "azure=on", w, 2, &n);
	CHECK(d && n == 4 * MiB + 512, "azure: whole MiB + 512-byte footer (%zu)", d ? n : 0);
	if (d && open_mem(d, n, &img, &e) == 0) {
		CHECK_EQ_U64(img->size, 4 * MiB, "azure disk reads as 4 MiB");
		CHECK(content_ok(img, w, 2), "azure content reads back");
		vdk_image_close(img);
	}
	free(d);
	d = build(MiB, "azure=on,subformat=dynamic", NULL, 0, &n);
	CHECK(d == NULL, "azure=on with subformat=dynamic is refused");
	free(d);
}

/* Fix both checksums after patching an image built by the writer. */
static void reseal(uint8_t *d, size_t n)
{
	uint32_t hoff = (uint32_t)vdk_be64(d + VHD_F_DATA_OFFSET);
	vdk_put_be32(d + hoff + VHD_H_CHECKSUM,
	             vhd_checksum(d + hoff, VHD_DYNHDR_SIZE, VHD_H_CHECKSUM));
	vdk_put_be32(d + VHD_F_CHECKSUM, vhd_checksum(d, 512, VHD_F_CHECKSUM));
	memcpy(d + n - 512, d, 512);
}

static int open_err(const uint8_t *d, size_t n, struct vdk_err *e)
{
	struct vdk_image *img = NULL;
	memset(e, 0, sizeof(*e));
	int r = open_mem(d, n, &img, e);
	vdk_image_close(img);
	return r;
}

static void test_damaged(void)
{
	const struct wr w[] = {{0, 4096, 1}};
	size_t n;
	uint8_t *d = build(4 * MiB, NULL, w, 1, &n);
	if (!d)
		return;
	uint8_t *c = malloc(n);
	struct vdk_err e;
	memcpy(c, d, n);
	c[n - 512 + 50] ^= 0x40;
	c[50] ^= 0x40;
	CHECK(open_err(c, n, &e) == -EINVAL && strstr(e.msg, "checksum"),
	      "footer checksum mismatch refused: %s", e.msg);
	memcpy(c, d, n);
	c[n - 512 + 50] ^= 0x40;
	CHECK(open_err(c, n, &e) == 0, "a damaged end footer falls back to the copy at 0");
	memcpy(c, d, n);
	c[512 + 900] ^= 1;
	CHECK(open_err(c, n, &e) == -EINVAL && strstr(e.msg, "dynamic header checksum"),
	      "dynamic header checksum mismatch refused: %s", e.msg);
	memcpy(c, d, n);
	vdk_put_be32(c + 1536, 0x7ffffff0);
	CHECK(open_err(c, n, &e) == -EINVAL && strstr(e.msg, "past the end"),
	      "BAT entry past the end of the file refused: %s", e.msg);
	memcpy(c, d, n);
	vdk_put_be32(c + 512 + VHD_H_MAX_ENTRIES, 1);
	reseal(c, n);
	CHECK(open_err(c, n, &e) == -EINVAL && strstr(e.msg, "needs"),
	      "BAT smaller than the disk refused: %s", e.msg);
	memcpy(c, d, n);
	vdk_put_be64(c + 512 + VHD_H_TABLE_OFFSET, UINT64_MAX - 8);
	reseal(c, n);
	CHECK(open_err(c, n, &e) == -EINVAL, "BAT offset overflowing refused: %s", e.msg);
	memcpy(c, d, n);
	vdk_put_be32(c + 512 + VHD_H_BLOCK_SIZE, 3000);
	reseal(c, n);
	CHECK(open_err(c, n, &e) == -EINVAL, "block size not a power of two refused");
	memcpy(c, d, n);
	vdk_put_be64(c + VHD_F_CUR_SIZE, 1ull << 50);
	vdk_put_be16(c + VHD_F_CYLS, 65535);
	c[VHD_F_HEADS] = 16;
	c[VHD_F_SECS] = 255;
	reseal(c, n);
	CHECK(open_err(c, n, &e) < 0, "a 1 PiB disk is refused, nothing allocated: %s", e.msg);
	CHECK(open_err(d, 300, &e) < 0, "a 300-byte file is refused");
	free(c);
	free(d);
}

/* A differencing child of parent.vhd: block 0 allocated with only sectors
 * 8..15 present; the rest of the disk shows the parent. */
static uint8_t *make_child(const uint8_t *parent, size_t pn, const char *loc_code,
                           const char *loc_path, const char *pname, size_t *n)
{
	const struct wr w[] = {{0, 2 * MiB, 9}};
	uint8_t *d = build(4 * MiB, NULL, w, 1, n);
	if (!d)
		return NULL;
	vdk_put_be32(d + VHD_F_TYPE, VHD_TYPE_DIFF);
	uint8_t *h = d + 512;
	memcpy(h + VHD_H_PARENT_UUID, parent + pn - 512 + VHD_F_UUID, 16);
	for (size_t i = 0; pname[i]; i++)
		vdk_put_be16(h + VHD_H_PARENT_NAME + 2 * i, (uint8_t)pname[i]);
	if (loc_code) {
		/* Locator data in the free space between the BAT and block 0. */
		uint8_t *l = h + VHD_H_LOCATORS;
		memcpy(l, loc_code, 4);
		size_t len = strlen(loc_path);
		vdk_put_be32(l + 4, 1);
		vdk_put_be32(l + 8, (uint32_t)(2 * len));
		vdk_put_be64(l + 16, 2048);
		for (size_t i = 0; i < len; i++)
			vdk_put_le16(d + 2048 + 2 * i, (uint8_t)loc_path[i]);
	}
	uint32_t bm = vdk_be32(d + 1536) * 512;
	memset(d + bm, 0, 512);
	d[bm + 1] = 0xff; /* sectors 8..15, most significant bit first */
	reseal(d, *n);
	return d;
}

static void test_differencing(void)
{
	const struct wr pw[] = {{0, 4 * MiB, 7}};
	size_t pn, cn;
	uint8_t *p = build(4 * MiB, NULL, pw, 1, &pn);
	char pp[300], cp[300], op[300];
	path_in(pp, sizeof(pp), "parent.vhd");
	path_in(cp, sizeof(cp), "child.vhd");
	if (!p || write_file(pp, p, pn))
		return;
	uint8_t *c = make_child(p, pn, "W2ru", ".\\parent.vhd", "parent.vhd", &cn);
	write_file(cp, c, cn);
	struct vdk_err e = {0};
	struct vdk_image *img = NULL;
	int r = vdk_image_open_path(cp, NULL, NULL, &img, &e);
	CHECK(r == 0 && img->backing, "differencing disk opens its parent: %s", e.msg);
	if (!r) {
		uint8_t *got = malloc(4 * MiB), *want = malloc(4 * MiB), *mine = malloc(2 * MiB);
		fill(want, 4 * MiB, 7);
		fill(mine, 2 * MiB, 9);
		memcpy(want + 8 * 512, mine + 8 * 512, 8 * 512);
		r = vdk_image_pread(img, got, 4 * MiB, 0, &e);
		CHECK(r == 0 && !memcmp(got, want, 4 * MiB),
		      "sector bitmap decides: 8 sectors from the child, the rest from the parent");
		free(got);
		free(want);
		free(mine);
		vdk_image_close(img);
	}
	struct vdk_update *u = NULL;
	vdk_err_clear(&e);
	r = vdk_update_open(cp, NULL, &u, &e);
	CHECK(r < 0 && strstr(e.msg, "differencing") && strstr(e.msg, "child.vhd"),
	      "a differencing VHD is refused for update: %s", e.msg);
	vdk_update_close(u);
	free(c);
	/* Wrong parent UUID. */
	c = make_child(p, pn, "W2ru", ".\\parent.vhd", "parent.vhd", &cn);
	c[512 + VHD_H_PARENT_UUID] ^= 1;
	reseal(c, cn);
	write_file(cp, c, cn);
	memset(&e, 0, sizeof(e));
	img = NULL;
	r = vdk_image_open_path(cp, NULL, NULL, &img, &e);
	CHECK(r < 0 && strstr(e.msg, "UUID"), "parent UUID mismatch refused: %s", e.msg);
	vdk_image_close(img);
	free(c);
	/* A parent outside the folder is refused even though it exists. */
	path_in(op, sizeof(op), "sub");
	mkdir(op, 0755);
	path_in(op, sizeof(op), "sub/child.vhd");
	c = make_child(p, pn, "W2ru", "..\\parent.vhd", "nothere.vhd", &cn);
	write_file(op, c, cn);
	memset(&e, 0, sizeof(e));
	img = NULL;
	r = vdk_image_open_path(op, NULL, NULL, &img, &e);
	CHECK(r < 0, "parent '..\\parent.vhd' outside the image's folder refused: %s", e.msg);
	vdk_image_close(img);
	free(c);
	/* No locator: the parent's file name next to the child. */
	c = make_child(p, pn, NULL, NULL, "parent.vhd", &cn);
	write_file(cp, c, cn);
	memset(&e, 0, sizeof(e));
	img = NULL;
	r = vdk_image_open_path(cp, NULL, NULL, &img, &e);
	CHECK(r == 0, "parent found by its unicode name alone: %s", e.msg);
	vdk_image_close(img);
	free(c);
	free(p);
}

static void test_inplace(void)
{
	char raw[300], fin[300];
	path_in(raw, sizeof(raw), "disk.raw");
	path_in(fin, sizeof(fin), "disk.vhd");
	size_t n = 3 * MiB + 777, got;
	uint8_t *d = malloc(n);
	fill(d, n, 11);
	write_file(raw, d, n);
	struct vdk_err e = {0};
	int r = vhd_inplace_azure(raw, fin, &e);
	CHECK(r == 0, "raw converted in place: %s", e.msg);
	struct stat st;
	CHECK(stat(raw, &st) != 0 && stat(fin, &st) == 0 && st.st_size == 4 * MiB + 512,
	      "renamed; size is 4 MiB + 512");
	struct vdk_image *img = NULL;
	r = vdk_image_open_path(fin, "vpc", NULL, &img, &e);
	CHECK(r == 0 && img->size == 4 * MiB, "reads as a 4 MiB fixed VHD: %s", e.msg);
	if (!r) {
		uint8_t *b = malloc(4 * MiB);
		CHECK(vdk_image_pread(img, b, 4 * MiB, 0, &e) == 0 && !memcmp(b, d, n) &&
		          vdk_is_zero(b + n, 4 * MiB - n),
		      "data kept, tail zero");
		free(b);
	}
	vdk_image_close(img);
	memset(&e, 0, sizeof(e));
	CHECK(vhd_inplace_azure(raw, fin, &e) == 1, "rerun after the rename: already done");
	CHECK(vhd_inplace_azure(fin, NULL, &e) == 1, "a converted file is left as is");
	/* Interrupted footer write: torn checksum; a rerun repairs it. */
	uint8_t *f = read_file(fin, &got);
	f[got - 512 + VHD_F_CHECKSUM] ^= 0xff;
	write_file(fin, f, got);
	memset(&e, 0, sizeof(e));
	CHECK(vhd_inplace_azure(fin, NULL, &e) == 0 && stat(fin, &st) == 0 &&
	          st.st_size == 4 * MiB + 512,
	      "torn footer rewritten, size unchanged: %s", e.msg);
	free(f);
	/* Never replaces an existing target. */
	write_file(raw, d, n);
	memset(&e, 0, sizeof(e));
	r = vhd_inplace_azure(raw, fin, &e);
	CHECK(r == -EEXIST && stat(raw, &st) == 0, "existing target not replaced: %s", e.msg);
	/* A VHD that is not Azure-shaped is not treated as raw. */
	uint8_t *v = build(MiB + 4096, "subformat=fixed", NULL, 0, &got);
	write_file(raw, v, got);
	memset(&e, 0, sizeof(e));
	CHECK(vhd_inplace_azure(raw, NULL, &e) < 0, "a fixed VHD is not re-wrapped: %s", e.msg);
	free(v);
	free(d);
}

int main(void)
{
	fmt = vdk_format_find("vpc");
	CHECK(fmt != NULL && vdk_format_find("vhd") == fmt, "vpc registered, alias vhd");
	if (!fmt)
		TEST_EXIT();
	snprintf(tmpdir, sizeof(tmpdir), "%s/vdk-vhd-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir))
		return 1;
	test_sizing();
	test_checksum();
	test_dynamic_roundtrip();
	test_fixed_and_azure();
	test_damaged();
	test_differencing();
	test_inplace();
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		return 1;
	TEST_EXIT();
}
