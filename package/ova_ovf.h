/* The OVF descriptor: parse (size-capped, no entities, no DTD) and write. Private to package/. */
#ifndef VDK_OVA_OVF_H
#define VDK_OVA_OVF_H

#include "ova.h"
#include "vmx.h"

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
/* The VM an OVA is packed from (ova_vm.c): its hardware as a .vmx
 * describes it (or generic hardware for bare disks) and, for each packed
 * disk, the hardware disk it is. */
struct ova_vm {
	const char *id; /* VirtualSystem ovf:id: the package name */
	struct vmx_vm hw;
	struct vmx_folder *folder; /* the .vmx, or NULL for bare disks */
	const struct vmx_dev **disks;
	size_t ndisks;
};
/* Generic hardware for n bare disks: 1 CPU, 1024 MiB, vmx-10, otherGuest64,
 * LSI Logic SCSI controllers with 15 disks each. */
int ova_vm_generic(size_t n, struct ova_vm *vm, struct vdk_err *e);
/* A .vmx: every present hard disk opened (chains resolved) into imgs. */
int ova_vm_from_vmx(const char *path, struct ova_vm *vm, struct vdk_image ***imgs, size_t *n,
                    struct vdk_err *e);
/* What pack opens: one .vmx (its hardware and present disks), or bare
 * disks (generic hardware; imgs left NULL for the caller to open). */
int ova_vm_pack_open(struct ova_vm *vm, const char *const *disks, size_t *n,
                     struct vdk_image ***imgs, struct vdk_err *e);
void ova_vm_free(struct ova_vm *vm);
/* The VMDK writer options that make packed disk i agree with the OVF:
 * ddb.adapterType for its controller, ddb.virtualHWVersion. */
int ova_vm_disk_opts(const struct ova_vm *vm, size_t i, struct vdk_opts *o, struct vdk_err *e);
unsigned ova_vm_hw_version(const struct ova_vm *vm);

/* An OVF 1.0 envelope (VMware's conventions) for pack (ova_ovf_write.c). */
int ova_ovf_write(const struct ova_vm *vm, const struct ova_pack_disk *d, size_t n,
                  uint8_t **out, size_t *len, struct vdk_err *e);

#endif
