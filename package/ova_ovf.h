/* The OVF descriptor: parse (size-capped, no entities, no DTD) and write. Private to package/. */
#ifndef VDK_OVA_OVF_H
#define VDK_OVA_OVF_H

#include "ova.h"

/* OVF descriptor (ova_ovf.c) ----------------------------------------- */

struct ova_file {
	char *id, *href;
	uint64_t size;
	bool has_size;
	bool gzip;
	uint64_t chunk; /* chunkSize, 0 when not chunked */
};

struct ova_disk {
	char *id, *file_ref, *format;
	int file;          /* index into files, -1 when none (empty disk) */
	uint64_t capacity; /* bytes */
	uint64_t populated;
	bool has_populated;
	char *controller; /* "scsi", "ide", "sata", "nvme"... or NULL */
	char *ctrl_subtype;
	int64_t address; /* AddressOnParent, -1 unknown */
};

struct ova_nic {
	char *name, *type, *network;
};

struct ova_ctrl {
	char *id, *type, *subtype;
};

struct ova_ovf {
	const char *version; /* "0.9", "1.x", "2.x" */
	char *name;          /* VirtualSystem name (or id) */
	char *os;            /* vmw:osType or OperatingSystemSection description */
	char *firmware;      /* "bios" or "efi" */
	char *producer;      /* "vmware", "virtualbox" or NULL */
	uint64_t cpus;
	uint64_t memory; /* bytes */
	struct ova_file *files;
	size_t nfiles;
	struct ova_disk *disks;
	size_t ndisks;
	struct ova_nic *nics;
	size_t nnics;
	struct ova_ctrl *ctrls;
	size_t nctrls;
};

/* Parse a descriptor from a buffer (len <= OVA_OVF_MAX). No network, no
 * entity substitution, no DTD: a DOCTYPE is refused outright. */
int ova_ovf_parse(const uint8_t *buf, size_t len, const char *name, struct ova_ovf *o,
                  struct vdk_err *e);
void ova_ovf_free(struct ova_ovf *o);
void ova_ovf_json(const struct ova_ovf *o, struct vdk_json *obj);
/* "byte * 2^30" style units: the multiplier, or false when invalid. */
bool ova_ovf_units(const char *s, uint64_t *mult);

struct ova_pack_disk {
	const char *href;
	uint64_t file_size;
	uint64_t capacity;
	uint64_t populated;
};
/* An OVF 1.0 envelope (VMware's conventions) for pack. */
int ova_ovf_write(const char *vm_name, const struct ova_pack_disk *d, size_t n, uint8_t **out,
                  size_t *len, struct vdk_err *e);

#endif
