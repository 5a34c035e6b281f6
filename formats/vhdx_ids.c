/* What every part of the VHDX module shares: the GUIDs that name regions
 * and metadata items (MS-VHDX 2.2.3, 2.6.2) and the CRC-32C computed with
 * its own field taken as zero (2.2.2). A leaf: it calls nothing else of
 * the module. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"
#include "vhdx.h"

/* GUIDs are stored little-endian in their first three fields (MS-VHDX
 * 2.1). */
#define VHDX_GUID(d1, d2, d3, b0, b1, b2, b3, b4, b5, b6, b7)                                      \
	{                                                                                          \
		(d1) & 0xff, ((d1) >> 8) & 0xff, ((d1) >> 16) & 0xff, ((d1) >> 24) & 0xff,         \
		    (d2)&0xff, ((d2) >> 8) & 0xff, (d3)&0xff, ((d3) >> 8) & 0xff, b0, b1, b2, b3,  \
		    b4, b5, b6, b7                                                                 \
	}

const vhdx_guid vhdx_guid_bat =
    VHDX_GUID(0x2DC27766, 0xF623, 0x4200, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08);
const vhdx_guid vhdx_guid_meta =
    VHDX_GUID(0x8B7CA206, 0x4790, 0x4B9A, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E);
const vhdx_guid vhdx_guid_fileparam =
    VHDX_GUID(0xCAA16737, 0xFA36, 0x4D43, 0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B);
const vhdx_guid vhdx_guid_vsize =
    VHDX_GUID(0x2FA54224, 0xCD1B, 0x4876, 0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8);
const vhdx_guid vhdx_guid_page83 =
    VHDX_GUID(0xBECA12AB, 0xB2E6, 0x4523, 0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46);
const vhdx_guid vhdx_guid_lss =
    VHDX_GUID(0x8141BF1D, 0xA96F, 0x4709, 0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F);
const vhdx_guid vhdx_guid_pss =
    VHDX_GUID(0xCDA348C7, 0x445D, 0x4471, 0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56);
const vhdx_guid vhdx_guid_parent =
    VHDX_GUID(0xA8D35F2D, 0xB30B, 0x454D, 0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C);
const vhdx_guid vhdx_guid_parent_type =
    VHDX_GUID(0xB04AEFB7, 0xD19E, 0x4A81, 0xB7, 0x89, 0x25, 0xB8, 0xE9, 0x44, 0x59, 0x13);

bool vhdx_guid_is_zero(const uint8_t *g)
{
	for (int i = 0; i < 16; i++)
		if (g[i])
			return false;
	return true;
}

uint32_t vhdx_crc(const uint8_t *buf, size_t len, size_t crc_off)
{
	static const uint8_t zero4[4];
	uint32_t c = vdk_crc32c(0, buf, crc_off);
	c = vdk_crc32c(c, zero4, 4);
	return vdk_crc32c(c, buf + crc_off + 4, len - crc_off - 4);
}
