/* seSparse unit tests, in memory: every grain entry type decoded (the
 * allocated index split across the entry, above 4096), runs of contiguous
 * grains merged, reads, probe, info and check; hostile header fields each
 * refused with their offset. Chains and qemu-img are in it_sesparse.sh. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "test.h"
#include "util.h"
#include "vmdk.h"

#define SE_GD   8u  /* sectors */
#define SE_GT   16u /* 64 sectors */
#define SE_GR   80u
#define SE_HIGH 5000u /* a grain index above 4096 */
#define SE_CAP  512u  /* sectors: 64 grains */

static uint64_t se_alloc(uint64_t idx)
{
	return 0x3000000000000000ull | ((idx & 0xfff) << 48) | (idx >> 12);
}

static uint8_t *se_build(size_t *len)
{
	*len = (SE_GR + (SE_HIGH + 1) * 8) * 512;
	uint8_t *b = calloc(1, *len);
	if (!b)
		return NULL;
	vdk_put_le64(b, VMDK_SE_MAGIC);
	vdk_put_le64(b + 8, VMDK_SE_VERSION);
	vdk_put_le64(b + 16, SE_CAP);
	vdk_put_le64(b + 24, 8);
	vdk_put_le64(b + 32, 64);
	uint64_t reg[8][2] = {{1, 1},      {2, 1}, {3, 1}, {SE_GD, 1},
	                      {SE_GT, 64}, {4, 1}, {5, 1}, {SE_GR, (SE_HIGH + 1) * 8}};
	for (int i = 0; i < 8; i++) {
		vdk_put_le64(b + 80 + 16 * i, reg[i][0]);
		vdk_put_le64(b + 88 + 16 * i, reg[i][1]);
	}
	vdk_put_le64(b + 512, VMDK_SE_VMAGIC);
	vdk_put_le64(b + SE_GD * 512, 0x1000000000000000ull); /* table 0 */
	uint8_t *gt = b + SE_GT * 512;
	vdk_put_le64(gt + 8, 0x1000000000000000ull);          /* grain 1: unmapped */
	vdk_put_le64(gt + 16, 0x2000000000000000ull | 0x123); /* grain 2: zero */
	vdk_put_le64(gt + 24, se_alloc(0));                   /* grains 3, 4: a run */
	vdk_put_le64(gt + 32, se_alloc(1));
	vdk_put_le64(gt + 40, se_alloc(SE_HIGH));
	vdk_put_le64(gt + 48, se_alloc(2));
	uint64_t idx[] = {0, 1, SE_HIGH, 2};
	for (unsigned i = 0; i < 4; i++)
		memset(b + (SE_GR + idx[i] * 8) * 512, 0x41 + (int)i, 4096);
	return b;
}

static struct vdk_image *se_open(const uint8_t *b, size_t len, struct vdk_err *e)
{
	struct vdk_src *src;
	struct vdk_image *img = NULL;
	vdk_err_clear(e);
	if (vdk_src_open_mem(b, len, "mem-sesparse.vmdk", &src, e))
		return NULL;
	if (vdk_image_open(src, true, NULL, NULL, &img, e))
		return NULL;
	return img;
}

static void test_decode(void)
{
	size_t len;
	uint8_t *b = se_build(&len);
	struct vdk_err e;
	CHECK(vdk_format_vmdk.probe(b, 4096, len) == 100, "probe: seSparse constant magic");
	struct vdk_image *img = se_open(b, len, &e);
	CHECK(img && img->fmt == &vdk_format_vmdk && img->size == SE_CAP * 512 &&
	          img->cluster_size == 4096,
	      "opens alone, probed as vmdk, 256 KiB, 4 KiB grains (%s)", e.msg);
	if (!img) {
		free(b);
		return;
	}
	const struct vmdk_state *st = img->state;
	const struct vmdk_sesparse *se = &st->ext[0].se;
	uint64_t at, n = vmdk_se_run(se, 0, 1 << 20, &at);
	CHECK(n == 4096 && at == VMDK_SE_E_HOLE, "grain 0 unallocated");
	n = vmdk_se_run(se, 4096, 1 << 20, &at);
	CHECK(n == 8192 && at == VMDK_SE_E_ZERO, "unmapped and zero grains: one zero run");
	n = vmdk_se_run(se, 3 * 4096 + 100, 1 << 20, &at);
	CHECK(n == 8192 - 100 && at == SE_GR * 512 + 100, "grains 3-4: one run in the file");
	n = vmdk_se_run(se, 5 * 4096, 1 << 20, &at);
	CHECK(n == 4096 && at == (SE_GR + SE_HIGH * 8) * 512,
	      "index %u decoded across the entry's two fields", SE_HIGH);
	n = vmdk_se_run(se, 7 * 4096, 1 << 30, &at);
	CHECK(n == SE_CAP * 512 - 7 * 4096 && at == VMDK_SE_E_HOLE,
	      "the rest of the table: one hole, clipped to the capacity");

	struct vdk_extents x = {0};
	int r = vdk_image_extents(img, 0, img->size, &x, &e);
	CHECK(r == 0 && x.n >= 4 && x.v[0].flags == (VDK_EXT_HOLE | VDK_EXT_ZERO) &&
	          x.v[1].flags == VDK_EXT_ZERO && x.v[1].len == 8192 && x.v[2].flags == 0 &&
	          x.v[2].off == 3 * 4096,
	      "extents: hole (zeroes, no parent), zero, data");
	vdk_extents_free(&x);
	uint8_t *buf = malloc(7 * 4096);
	r = buf ? vdk_image_pread(img, buf, 7 * 4096, 0, &e) : -1;
	bool ok = r == 0 && vdk_is_zero(buf, 3 * 4096);
	for (unsigned i = 0; ok && i < 4; i++)
		ok = buf[(3 + i) * 4096] == 0x41 + i && buf[(3 + i) * 4096 + 4095] == 0x41 + i;
	CHECK(ok, "reads: zeroes, then grains 0, 1, %u, 2 from the file", SE_HIGH);
	free(buf);

	struct vdk_json *j = vdk_image_info(img, "mem-sesparse.vmdk", &e);
	const struct vdk_json *fs = j ? vdk_json_get(j, "format-specific") : NULL;
	const struct vdk_json *d = fs ? vdk_json_get(fs, "data") : NULL;
	const char *ct = d ? vdk_json_get_str(d, "create-type") : NULL;
	CHECK(ct && !strcmp(ct, "seSparse"), "info: create-type seSparse");
	vdk_json_free(j);
	struct vdk_check c = {0};
	CHECK(img->fmt->check(img, &c, false, &e) == 0 && c.corruptions == 0, "check: clean");
	vdk_image_close(img);

	/* Two entries sharing a grain: check counts it. */
	vdk_put_le64(b + SE_GT * 512 + 48, se_alloc(0));
	img = se_open(b, len, &e);
	memset(&c, 0, sizeof(c));
	CHECK(img && img->fmt->check(img, &c, false, &e) == 0 && c.corruptions == 1 &&
	          c.findings.n && strstr(c.findings.v[0].msg, "referenced twice"),
	      "check: a grain referenced twice is a corruption");
	vdk_image_close(img);
	free(b);
}

struct se_bad {
	const char *what;
	uint64_t at, val;
	const char *msg;
};

static void test_hostile(void)
{
	static const struct se_bad cases[] = {
	    {"version", 8, 0x100000001ull, "version"},
	    {"grain size 16 sectors", 24, 16, "grain size"},
	    {"grain table size", 32, 128, "grain table size"},
	    {"flags", 40, 1, "flags"},
	    {"reserved", 56, 7, "reserved"},
	    {"capacity 2^60 sectors", 16, 1ull << 60, "larger than the largest disk"},
	    {"capacity larger than the directory covers", 16, 1ull << 22, "the capacity needs"},
	    {"volatile header past the end", 80, 1ull << 30, "volatile header"},
	    {"no grain tables", 152, 0, "grain tables is empty"},
	    {"grain directory over the header", 128, 0, "constant header"},
	    {"grains over the grain tables", 192, SE_GT + 8, "overlaps the grain tables"},
	    {"volatile magic", 512, 0xcafebabeull, "volatile header magic"},
	    {"journal replay pending", 512 + 24, 1, "journal"},
	    {"directory entry not a table", SE_GD * 512, 0x2000000000000000ull, "table reference"},
	    {"table index past the region", SE_GD * 512, 0x1000000000000001ull,
	     "past the grain tables region"},
	    {"grain entry type 7", SE_GT * 512 + 8, 0x7000000000000000ull, "unknown grain entry"},
	    {"grain past the grains region", SE_GT * 512 + 8, 0x3000000000000000ull | 9999,
	     "outside the grains region"},
	};
	size_t len;
	uint8_t *b = se_build(&len);
	uint8_t *c = malloc(len);
	for (size_t i = 0; b && c && i < VDK_ARRAY_SIZE(cases); i++) {
		const struct se_bad *t = &cases[i];
		memcpy(c, b, len);
		vdk_put_le64(c + t->at, t->val);
		struct vdk_err e;
		struct vdk_image *img = se_open(c, len, &e);
		CHECK(!img && e.cls == VDK_E_INPUT && strstr(e.msg, t->msg) &&
		          strstr(e.msg, "at offset"),
		      "refused: %s (%s)", t->what, e.msg);
		vdk_image_close(img);
	}
	/* Tables may be reserved past the end of the file; using one is not. */
	if (b && c) {
		memcpy(c, b, len);
		vdk_put_le64(c + 152, 64 * 1000);
		vdk_put_le64(c + 192, SE_GT + 64 * 1000);
		vdk_put_le64(c + SE_GD * 512, 0x1000000000000000ull | 999);
		struct vdk_err e;
		struct vdk_image *img = se_open(c, len, &e);
		CHECK(!img && strstr(e.msg, "grain table 999 at byte") &&
		          strstr(e.msg, "at offset 4096"),
		      "refused: a grain table past the end of the file (%s)", e.msg);
		vdk_image_close(img);
	}
	/* Truncated: the last allocated grain lies past the end. */
	struct vdk_err e;
	struct vdk_image *img = b ? se_open(b, len - 4096, &e) : NULL;
	CHECK(!img && strstr(e.msg, "past the end of the file"), "truncated: %s", e.msg);
	vdk_image_close(img);
	free(b);
	free(c);
}

int main(void)
{
	test_decode();
	test_hostile();
	TEST_EXIT();
}
