/* The hosted sparse header (VMware Virtual Disk Format 1.1, "Hosted
 * Sparse Extent Header") as both sparse writers lay it out: a leaf shared
 * by vmdk_write.c and vmdk_write_stream.c. */
#include <stdint.h>
#include <string.h>

#include "util.h"
#include "vmdk.h"

void vmdk_put_header(uint8_t *h, uint32_t version, uint32_t flags, uint64_t capacity_sectors,
                     uint64_t grain_sectors, uint64_t desc_off, uint64_t desc_sectors, uint64_t rgd,
                     uint64_t gd, uint64_t overhead, uint16_t compress)
{
	memset(h, 0, VMDK_SECTOR);
	vdk_put_le32(h + VMDK_H_MAGIC, VMDK_MAGIC_KDMV);
	vdk_put_le32(h + VMDK_H_VERSION, version);
	vdk_put_le32(h + VMDK_H_FLAGS, flags);
	vdk_put_le64(h + VMDK_H_CAPACITY, capacity_sectors);
	vdk_put_le64(h + VMDK_H_GRAIN, grain_sectors);
	vdk_put_le64(h + VMDK_H_DESC_OFF, desc_off);
	vdk_put_le64(h + VMDK_H_DESC_SIZE, desc_sectors);
	vdk_put_le32(h + VMDK_H_GTES, VMDK_GTES);
	vdk_put_le64(h + VMDK_H_RGD, rgd);
	vdk_put_le64(h + VMDK_H_GD, gd);
	vdk_put_le64(h + VMDK_H_OVERHEAD, overhead);
	/* The newline-detection bytes let VMware spot FTP text-mode damage. */
	memcpy(h + VMDK_H_EOL, "\n \r\n", 4);
	vdk_put_le16(h + VMDK_H_COMPRESS, compress);
}
