/* Damaged metadata in vdkit-made images is refused at open, with the file,
 * the format and the offset of the bad field in the message; the undamaged
 * image opens and reads back what was written (tests/it_damage.sh does the
 * same with qemu-made images). */
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "test.h"
#include "test_img.h"
#include "util.h"
#include "vhd.h"
#include "vhdx.h"
#include "vmdk.h"

extern const struct vdk_format vdk_format_vhd, vdk_format_vhdx, vdk_format_vmdk;

static const struct wr damage_writes[] = {
    {0, 2 * MiB, 1},
    {3 * MiB, MiB, 2},
};

static struct vdk_image *damage_open(const uint8_t *b, size_t n, const char *f, struct vdk_err *e)
{
	struct vdk_src *s;
	struct vdk_image *im = NULL;
	vdk_err_clear(e);
	if (vdk_src_open_mem(b, n, "dmg.img", &s, e) == 0 &&
	    vdk_image_open(s, true, f, NULL, &im, e))
		im = NULL;
	return im;
}

/* Opens and reads back the writes. */
static void damage_good(const uint8_t *b, size_t n, const char *f, uint64_t size)
{
	struct vdk_err e;
	struct vdk_image *im = damage_open(b, n, f, &e);
	uint8_t *want = expect(size, damage_writes, 2), *got = malloc(size);
	int r = im && got ? vdk_image_pread(im, got, size, 0, &e) : -1;
	CHECK(r == 0 && !memcmp(got, want, size), "%s: vdkit-made image reads back (%s)", f, e.msg);
	free(want);
	free(got);
	vdk_image_close(im);
}

static void damage_refused(const uint8_t *b, size_t n, const char *f, const char *what,
                           const char *want)
{
	struct vdk_err e;
	struct vdk_image *im = damage_open(b, n, f, &e);
	CHECK(!im && e.cls == VDK_E_INPUT && strstr(e.msg, "dmg.img") && strstr(e.msg, "offset") &&
	          strstr(e.msg, want),
	      "%s: %s refused: %s", f, what, e.msg);
	vdk_image_close(im);
}

/* Byte offset of the first allocated grain table entry (GD at its sector). */
static size_t vmdk_first_gte(const uint8_t *b)
{
	uint64_t gd = vdk_le64(b + VMDK_H_GD) * VMDK_SECTOR;
	uint64_t gt = (uint64_t)vdk_le32(b + gd) * VMDK_SECTOR;
	for (size_t j = 0; j < 512; j++)
		if (vdk_le32(b + gt + 4 * j) > 1)
			return (size_t)(gt + 4 * j);
	return 0;
}

static void test_vmdk(void)
{
	size_t n = 0;
	uint64_t size = 4 * MiB;
	fmt = &vdk_format_vmdk;
	uint8_t *img = build(size, "subformat=monolithicSparse", damage_writes, 2, &n);
	if (!img) {
		CHECK(0, "vmdk: build");
		return;
	}
	damage_good(img, n, "vmdk", size);
	uint8_t *d = malloc(n);
	size_t slot = vmdk_first_gte(img);
	CHECK(slot != 0, "vmdk: found an allocated grain");
	struct {
		const char *what, *want;
		uint32_t sector;
	} gte[] = {
	    {"grain in the embedded descriptor", "embedded descriptor", 2},
	    {"grain in the grain directory", "grain directory",
	     (uint32_t)vdk_le64(img + VMDK_H_GD)},
	    {"grain in its grain table", "inside the grain table", (uint32_t)(slot / VMDK_SECTOR)},
	    {"grain past the end", "past the end", 0x7fffff00u},
	};
	for (size_t i = 0; slot && i < VDK_ARRAY_SIZE(gte); i++) {
		memcpy(d, img, n);
		vdk_put_le32(d + slot, gte[i].sector);
		damage_refused(d, n, "vmdk", gte[i].what, gte[i].want);
	}
	memcpy(d, img, n);
	vdk_put_le64(d + VMDK_H_GRAIN, 96);
	damage_refused(d, n, "vmdk", "grainSize 96", "power of two");
	memcpy(d, img, n);
	vdk_put_le32(d + VMDK_H_GTES, 128);
	damage_refused(d, n, "vmdk", "numGTEsPerGT 128", "numGTEsPerGT");
	damage_refused(img, n - 4096, "vmdk", "truncated last grain", "truncated");
	free(d);
	free(img);
}

static void test_vhd(void)
{
	size_t n = 0;
	uint64_t size = 4 * MiB;
	fmt = &vdk_format_vhd;
	uint8_t *img = build(size, "subformat=dynamic", damage_writes, 2, &n);
	if (!img) {
		CHECK(0, "vhd: build");
		return;
	}
	damage_good(img, n, "vpc", size);
	uint64_t hoff = vdk_be64(img + VHD_F_DATA_OFFSET);
	uint64_t bat = vdk_be64(img + hoff + VHD_H_TABLE_OFFSET);
	uint8_t *d = malloc(n);
	memcpy(d, img, n);
	vdk_put_be32(d + bat, (uint32_t)(bat / VHD_SECTOR));
	damage_refused(d, n, "vpc", "block over the BAT", "into the BAT");
	memcpy(d, img, n);
	vdk_put_be32(d + bat, (uint32_t)(hoff / VHD_SECTOR));
	damage_refused(d, n, "vpc", "block over the dynamic header", "dynamic header");
	memcpy(d, img, n);
	vdk_put_be32(d + hoff + VHD_H_MAX_ENTRIES, 0xffffffffu);
	vdk_put_be32(d + hoff + VHD_H_CHECKSUM,
	             vhd_checksum(d + hoff, VHD_DYNHDR_SIZE, VHD_H_CHECKSUM));
	damage_refused(d, n, "vpc", "max table entries 0xffffffff", "0xffffffff");
	free(d);
	free(img);
}

static void test_vhdx(void)
{
	size_t n = 0;
	uint64_t size = 4 * MiB;
	fmt = &vdk_format_vhdx;
	uint8_t *img = build(size, NULL, damage_writes, 2, &n);
	if (!img) {
		CHECK(0, "vhdx: build");
		return;
	}
	damage_good(img, n, "vhdx", size);
	uint64_t bat = 0, meta = 0;
	for (uint32_t i = 0; i < vdk_le32(img + VHDX_RT1_OFF + 8); i++) {
		const uint8_t *ent = img + VHDX_RT1_OFF + 16 + 32 * i;
		*(memcmp(ent, vhdx_guid_bat, 16) ? &meta : &bat) = vdk_le64(ent + 16);
	}
	uint8_t *d = malloc(n);
	uint64_t targets[] = {meta, bat, (uint64_t)n + 64 * MiB};
	const char *want[] = {"inside the metadata region", "inside the BAT region",
	                      "beyond the end"};
	for (size_t i = 0; i < VDK_ARRAY_SIZE(targets); i++) {
		memcpy(d, img, n);
		vdk_put_le64(d + bat, targets[i] | VHDX_PB_FULLY_PRESENT);
		damage_refused(d, n, "vhdx", "block 0 moved", want[i]);
	}
	free(d);
	free(img);
}

int main(void)
{
	test_vmdk();
	test_vhd();
	test_vhdx();
	TEST_EXIT();
}
