/* libFuzzer harness for seSparse extents, opened alone from memory: both
 * headers, the region checks, the grain directory and every grain table
 * entry; then extents, reads of data, info and check, bounded in work so
 * each input stays fast whatever capacity it claims. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "util.h"
#include "vmdk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_SE_BATCHES  16
#define FUZZ_SE_READ_MAX (256u << 10)

static void fuzz_se_walk(struct vdk_image *img)
{
	struct vdk_extents x = {0};
	struct vdk_err e = {0};
	uint64_t off = 0, budget = FUZZ_SE_READ_MAX;
	uint8_t *buf = malloc(1 << 16);
	for (int b = 0; buf && off < img->size && b < FUZZ_SE_BATCHES; b++) {
		vdk_extents_reset(&x);
		if (img->fmt->extents(img, off, img->size - off, &x, &e) || !x.n)
			break;
		for (size_t i = 0; i < x.n && budget; i++) {
			if (x.v[i].flags)
				continue;
			uint64_t n = VDK_MIN(VDK_MIN(x.v[i].len, 1u << 16), budget);
			budget -= n;
			vdk_err_clear(&e);
			img->fmt->pread(img, buf, n, x.v[i].off, &e);
		}
		off = x.v[x.n - 1].off + x.v[x.n - 1].len;
	}
	/* A read across grains at an odd offset. */
	if (buf && img->size > 9000) {
		vdk_err_clear(&e);
		img->fmt->pread(img, buf, 9000 - 7, 7, &e);
	}
	free(buf);
	vdk_extents_free(&x);
	struct vdk_json *j = vdk_json_new_obj();
	if (j) {
		img->fmt->info(img, j, &e);
		vdk_json_free(j);
	}
	struct vdk_check r = {0};
	img->fmt->check(img, &r, false, &e);
	vdk_findings_free(&r.findings);
}

static void fuzz_se_one(const uint8_t *data, size_t size)
{
	struct vdk_src *src;
	struct vdk_image *img;
	struct vdk_err e = {0};
	if (vdk_src_open_mem(data, size, "fuzz-sesparse.vmdk", &src, &e))
		return;
	if (vdk_image_open(src, true, "vmdk", NULL, &img, &e) == 0) {
		fuzz_se_walk(img);
		vdk_image_close(img);
	}
}

/* Mutations of the fixed fields (magic, version, grain and table sizes,
 * reserved words, padding) stop at the first check: also run a copy with
 * them restored, to reach the regions, the directory and the tables. */
static void fuzz_se_fix(uint8_t *d, size_t n)
{
	if (n < 1024)
		return;
	vdk_put_le64(d, VMDK_SE_MAGIC);
	vdk_put_le64(d + 8, VMDK_SE_VERSION);
	vdk_put_le64(d + 24, VMDK_SE_GRAIN / 512);
	vdk_put_le64(d + 32, VMDK_SE_GTES * 8 / 512);
	memset(d + 40, 0, 40);
	memset(d + 208, 0, 304);
	uint64_t vol = vdk_le64(d + 80);
	if (vol < n / 512 && vol) {
		uint8_t *v = d + vol * 512;
		if (vol * 512 + 512 <= n) {
			vdk_put_le64(v, VMDK_SE_VMAGIC);
			memset(v + 24, 0, 512 - 24);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_se_one(data, size);
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	fuzz_se_fix(copy, size);
	if (memcmp(copy, data, size) != 0)
		fuzz_se_one(copy, size);
	free(copy);
	return 0;
}
