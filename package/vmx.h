/* VMware VM folders: the .vmx configuration (the package layer, beside
 * OVA). A .vmx is unspecified; the rules here are what VMware products
 * write and what virt-v2v and libvirt read: `key = "value"` lines, '#'
 * comments, keys compared case-insensitively, "|XX" hex escapes in values,
 * the first of duplicate keys wins, and `NS.present = "FALSE"` turns the
 * device NS off. Disk fileNames are confined to the .vmx's folder like
 * every other reference (absolute paths and `..` only with a vdk_access
 * that allows them). */
#ifndef VDK_VMX_H
#define VDK_VMX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "pipeline.h"

/* A .vmx is a few KiB; anything past this is not one. */
#define VMX_MAX (1u << 20)

enum vmx_bus { VMX_SCSI = 0, VMX_NVME, VMX_SATA, VMX_IDE };

struct vmx_ctrl {
	enum vmx_bus bus;
	unsigned index; /* scsiN, sataN, ideN, nvmeN */
	char *model;    /* lsilogic, pvscsi, buslogic, lsisas1068, ahci, ide, nvme */
	bool present;
};

struct vmx_dev {
	enum vmx_bus bus;
	unsigned ctrl, unit; /* scsi0:1 -> 0, 1 */
	char *device_type;   /* as written (lower case), NULL when absent */
	char *file;          /* fileName as written, NULL when absent */
	bool present;        /* its own and its controller's present flags */
	bool cdrom;
};

struct vmx_nic {
	unsigned index; /* ethernetN */
	char *model;    /* e1000, e1000e, vmxnet3, vlance... (lower case) */
	char *network;  /* networkName, or "ethernetN" */
	char *mac;      /* static address or generatedAddress, NULL if none */
	char *address_type;
	char *connection_type;
	bool present;
};

struct vmx_vm {
	char *name;                /* displayName (NULL when absent) */
	uint64_t mem_mib;          /* memSize; 32 when absent, as VMware */
	unsigned cpus;             /* numvcpus, 1 when absent */
	unsigned cores_per_socket; /* 0 when absent */
	bool efi;                  /* firmware = "efi" */
	bool secure_boot;          /* uefi.secureBoot.enabled */
	char *guest_os;            /* guestOS (lower case), NULL when absent */
	unsigned hw_version;       /* virtualHW.version, 0 when absent */
	struct vmx_ctrl *ctrls;
	size_t nctrls;
	struct vmx_dev *disks; /* hard disks, in bus order scsi, nvme, sata, ide */
	size_t ndisks;
	struct vmx_dev *cdroms;
	size_t ncdroms;
	struct vmx_nic *nics;
	size_t nnics;
	size_t skipped_lines; /* lines that were not key = "value" */
};

/* Parse a .vmx held in memory (len <= VMX_MAX); name is for messages. */
int vmx_parse(const uint8_t *buf, size_t len, const char *name, struct vmx_vm *vm,
              struct vdk_err *e);
void vmx_free(struct vmx_vm *vm);
/* True when path ends in ".vmx" (any case). */
bool vmx_is_vmx_path(const char *path);

/* An open VM folder: the parsed .vmx and the source it came from, through
 * which disk files are opened (confined to its folder). */
struct vmx_folder {
	struct vmx_vm vm;
	struct vdk_src *src;
	char *path;
};
int vmx_open(const char *path, struct vmx_folder *f, struct vdk_err *e);
void vmx_close(struct vmx_folder *f);
/* Open present hard disk i (an index into f->vm.disks) as an image,
 * resolving snapshot chains; confined by opts->access. */
int vmx_open_disk(struct vmx_folder *f, size_t i, const struct vdk_open_opts *opts,
                  struct vdk_image **out, struct vdk_err *e);
/* Chain length of an open image (1 for a disk without a parent). */
unsigned vmx_chain_depth(const struct vdk_image *img);
/* The controller of a device, or NULL. */
const struct vmx_ctrl *vmx_ctrl_of(const struct vmx_vm *vm, const struct vmx_dev *d);
const char *vmx_bus_name(enum vmx_bus b);

/* The inventory `vdkit info VM.vmx` prints: every disk opened (format,
 * virtual size, chain depth). NULL with e set on failure. */
struct vdk_json *vmx_inventory(struct vmx_folder *f, const struct vdk_open_opts *opts,
                               struct vdk_err *e);

/* Convert every present hard disk into dir (created if missing) as
 * out_fmt, chains consolidated; outputs are named after the disk file
 * without its snapshot suffix (base-000001.vmdk -> base.qcow2). On
 * failure nothing is left in dir. */
struct vmx_unpack_opts {
	const char *out_fmt;
	struct vdk_opts *wopts;
	struct vdk_convert_opts conv;
	const struct vdk_open_opts *open;
};
struct vmx_unpack_result {
	char **paths;
	size_t n;
};
int vmx_unpack(const char *vmx, const char *dir, struct vmx_unpack_opts *o,
               struct vmx_unpack_result *res, struct vdk_err *e);
void vmx_unpack_result_free(struct vmx_unpack_result *res);

/* Guest OS: the .vmx guestOS name, vSphere's guest id (what ovftool
 * writes as vmw:osType) and the CIM_OperatingSystem OSType number (the
 * OVF OperatingSystemSection ovf:id). */
struct vmx_os {
	const char *vmx;     /* "rhel8-64" */
	const char *vmw;     /* "rhel8_64Guest" */
	unsigned cim;        /* 80 */
	const char *version; /* ovf:version, or NULL */
	const char *desc;    /* "Red Hat Enterprise Linux 8 (64-bit)" */
};
/* Never NULL: unknown names map to "Other" / "Other 64-bit" by their
 * "-64" suffix. */
const struct vmx_os *vmx_os_lookup(const char *guest_os);

#endif
