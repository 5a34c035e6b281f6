/* The VHD footer and geometry (Virtual Hard Disk Image Format
 * Specification, "Hard Disk Footer Format"), shared by the reader and
 * the writer. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

#include "util.h"
#include "vhd.h"

uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
	uint32_t sum = 0;
	for (size_t i = 0; i < len; i++)
		if (i < csum_off || i >= csum_off + 4)
			sum += buf[i];
	return ~sum;
}

bool vhd_footer_decode(const uint8_t *raw, struct vhd_footer *f)
{
	memset(f, 0, sizeof(*f));
	f->features = vdk_be32(raw + VHD_F_FEATURES);
	f->version = vdk_be32(raw + VHD_F_VERSION);
	f->data_offset = vdk_be64(raw + VHD_F_DATA_OFFSET);
	f->timestamp = vdk_be32(raw + VHD_F_TIMESTAMP);
	memcpy(f->creator_app, raw + VHD_F_CREATOR_APP, 4);
	f->creator_ver = vdk_be32(raw + VHD_F_CREATOR_VER);
	memcpy(f->creator_os, raw + VHD_F_CREATOR_OS, 4);
	f->orig_size = vdk_be64(raw + VHD_F_ORIG_SIZE);
	f->cur_size = vdk_be64(raw + VHD_F_CUR_SIZE);
	f->cyls = vdk_be16(raw + VHD_F_CYLS);
	f->heads = raw[VHD_F_HEADS];
	f->secs = raw[VHD_F_SECS];
	f->type = vdk_be32(raw + VHD_F_TYPE);
	f->checksum = vdk_be32(raw + VHD_F_CHECKSUM);
	memcpy(f->uuid, raw + VHD_F_UUID, 16);
	f->saved_state = raw[VHD_F_SAVED];
	return memcmp(raw, "conectix", 8) == 0;
}

bool vhd_footer_csum_ok(const uint8_t *raw)
{
	return vhd_checksum(raw, VHD_FOOTER_SIZE, VHD_F_CHECKSUM) == vdk_be32(raw + VHD_F_CHECKSUM);
}

bool vhd_uses_current_size(const struct vhd_footer *f)
{
	/* Which producers mean "current size" rather than CHS: the table in
	 * qemu's vpc driver ("tap\0" is XenServer, with its NUL). */
	static const char *const by_size[] = {"win ", "qem2", "d2v ", "CTXS"};
	uint64_t chs = (uint64_t)f->cyls * f->heads * f->secs;
	bool use_size = chs == VHD_MAX_GEOMETRY || memcmp(f->creator_app, "tap\0", 4) == 0;
	for (size_t i = 0; i < VDK_ARRAY_SIZE(by_size); i++)
		use_size |= memcmp(f->creator_app, by_size[i], 4) == 0;
	return use_size;
}

uint64_t vhd_footer_disk_size(const struct vhd_footer *f)
{
	uint64_t chs = (uint64_t)f->cyls * f->heads * f->secs;
	return (vhd_uses_current_size(f) ? f->cur_size / VHD_SECTOR : chs) * VHD_SECTOR;
}

void vhd_geometry(uint64_t sectors, uint16_t *c, uint8_t *h, uint8_t *s)
{
	uint64_t cth; /* cylinders times heads */
	sectors = VDK_MIN(sectors, VHD_MAX_GEOMETRY);
	if (sectors >= 65535ull * 16 * 63) {
		*s = 255;
		*h = 16;
		cth = sectors / *s;
	} else {
		*s = 17;
		cth = sectors / *s;
		uint64_t heads = VDK_MAX((cth + 1023) / 1024, 4);
		*h = (uint8_t)VDK_MIN(heads, 255);
		if (cth >= heads * 1024 || heads > 16) {
			*s = 31;
			*h = 16;
			cth = sectors / *s;
		}
		if (cth >= (uint64_t)*h * 1024) {
			*s = 63;
			*h = 16;
			cth = sectors / *s;
		}
	}
	*c = (uint16_t)(cth / *h);
}

int vhd_plan_size(uint64_t size, bool force, uint64_t *out, uint16_t *c, uint8_t *h, uint8_t *s)
{
	if (size > UINT64_MAX - (VHD_SECTOR - 1))
		return -EFBIG;
	size = vdk_round_up(size, VHD_SECTOR);
	uint64_t sectors = size / VHD_SECTOR;
	*c = 0;
	*h = 0;
	*s = 0;
	if (force) {
		*c = VHD_CHS_MAX_C;
		*h = VHD_CHS_MAX_H;
		*s = VHD_CHS_MAX_S;
	} else {
		/* Grow until the geometry holds the whole disk: qemu-img rounds
		 * up rather than truncate. */
		uint64_t want = VDK_MIN(VHD_MAX_GEOMETRY, sectors);
		for (uint64_t i = 0; want > (uint64_t)*c * *h * *s; i++)
			vhd_geometry(want + i, c, h, s);
	}
	uint64_t chs = (uint64_t)*c * *h * *s;
	if (chs == VHD_MAX_GEOMETRY) {
		if (sectors > VHD_MAX_SECTORS)
			return -EFBIG;
		*out = size;
	} else {
		*out = chs * VHD_SECTOR;
	}
	return 0;
}

void vhd_footer_build(uint8_t *raw, uint32_t type, uint64_t size, uint16_t c, uint8_t h, uint8_t s,
                      uint64_t data_offset)
{
	memset(raw, 0, VHD_FOOTER_SIZE);
	memcpy(raw + VHD_F_COOKIE, "conectix", 8);
	vdk_put_be32(raw + VHD_F_FEATURES, 2); /* "reserved", must be set */
	vdk_put_be32(raw + VHD_F_VERSION, 0x00010000);
	vdk_put_be64(raw + VHD_F_DATA_OFFSET, data_offset);
	time_t now = time(NULL);
	uint64_t ts = now > VHD_EPOCH ? (uint64_t)now - VHD_EPOCH : 0;
	vdk_put_be32(raw + VHD_F_TIMESTAMP, (uint32_t)ts);
	memcpy(raw + VHD_F_CREATOR_APP, "vdk ", 4);
	vdk_put_be32(raw + VHD_F_CREATOR_VER, 0x00010000);
	memcpy(raw + VHD_F_CREATOR_OS, "Wi2k", 4);
	vdk_put_be64(raw + VHD_F_ORIG_SIZE, size);
	vdk_put_be64(raw + VHD_F_CUR_SIZE, size);
	vdk_put_be16(raw + VHD_F_CYLS, c);
	raw[VHD_F_HEADS] = h;
	raw[VHD_F_SECS] = s;
	vdk_put_be32(raw + VHD_F_TYPE, type);
	uuid_t u;
	uuid_generate(u);
	memcpy(raw + VHD_F_UUID, u, 16);
	vdk_put_be32(raw + VHD_F_CHECKSUM, vhd_checksum(raw, VHD_FOOTER_SIZE, VHD_F_CHECKSUM));
}
