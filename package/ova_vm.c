/* The VM behind `ova pack`: a .vmx's hardware, or generic hardware for
 * bare disks, and the VMDK writer options that make each packed disk's
 * descriptor agree with the OVF (ddb.adapterType of its controller,
 * ddb.virtualHWVersion of the VM). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ova_ovf.h"
#include "util.h"

/* SCSI target 7 is the HBA itself: 15 disks per controller. */
#define OVA_VM_SCSI_UNITS 15
#define OVA_VM_DEFAULT_HW 10

static int ova_vm_oom(struct vdk_err *e)
{
	return vdk_ioerr(e, ENOMEM, "ova pack", "out of memory");
}

int ova_vm_generic(size_t n, struct ova_vm *vm, struct vdk_err *e)
{
	memset(vm, 0, sizeof(*vm));
	struct vmx_vm *hw = &vm->hw;
	size_t nctrl = VDK_MAX((n + OVA_VM_SCSI_UNITS - 1) / OVA_VM_SCSI_UNITS, (size_t)1);
	hw->mem_mib = 1024;
	hw->cpus = 1;
	hw->hw_version = OVA_VM_DEFAULT_HW;
	hw->guest_os = strdup("other-64");
	hw->ctrls = calloc(nctrl, sizeof(*hw->ctrls));
	hw->disks = calloc(n + 1, sizeof(*hw->disks));
	vm->disks = calloc(n + 1, sizeof(*vm->disks));
	if (!hw->guest_os || !hw->ctrls || !hw->disks || !vm->disks)
		return ova_vm_oom(e);
	for (size_t c = 0; c < nctrl; c++, hw->nctrls++) {
		hw->ctrls[c] =
		    (struct vmx_ctrl){.bus = VMX_SCSI, .index = (unsigned)c, .present = true};
		if (!(hw->ctrls[c].model = strdup("lsilogic")))
			return ova_vm_oom(e);
	}
	for (size_t i = 0; i < n; i++) {
		unsigned u = (unsigned)(i % OVA_VM_SCSI_UNITS);
		hw->disks[i] = (struct vmx_dev){.bus = VMX_SCSI,
		                                .ctrl = (unsigned)(i / OVA_VM_SCSI_UNITS),
		                                .unit = u >= 7 ? u + 1 : u,
		                                .present = true};
		vm->disks[i] = &hw->disks[i];
	}
	hw->ndisks = vm->ndisks = n;
	return 0;
}

static int ova_vm_open_disks(struct ova_vm *vm, struct vdk_image ***imgs, size_t *n,
                             struct vdk_err *e)
{
	static const struct vdk_open_opts confined;
	struct vmx_vm *hw = &vm->folder->vm;
	size_t k = 0;
	*imgs = calloc(hw->ndisks + 1, sizeof(**imgs));
	vm->disks = calloc(hw->ndisks + 1, sizeof(*vm->disks));
	if (!*imgs || !vm->disks)
		return ova_vm_oom(e);
	for (size_t i = 0; i < hw->ndisks; i++) {
		if (!hw->disks[i].present)
			continue;
		int r = vmx_open_disk(vm->folder, i, &confined, &(*imgs)[k], e);
		if (r < 0) {
			*n = k;
			return r;
		}
		vm->disks[k++] = &hw->disks[i];
	}
	*n = vm->ndisks = k;
	if (!k)
		return vdk_bad(e, vm->folder->path, "vmx", VDK_NO_OFFSET,
		               "the VM has no present hard disk to pack");
	return 0;
}

int ova_vm_from_vmx(const char *path, struct ova_vm *vm, struct vdk_image ***imgs, size_t *n,
                    struct vdk_err *e)
{
	memset(vm, 0, sizeof(*vm));
	*imgs = NULL;
	*n = 0;
	if (!(vm->folder = calloc(1, sizeof(*vm->folder))))
		return ova_vm_oom(e);
	int r = vmx_open(path, vm->folder, e);
	if (r < 0) {
		free(vm->folder);
		vm->folder = NULL;
		return r;
	}
	/* The hardware is the folder's; hw is a borrowed copy of its fields. */
	vm->hw = vm->folder->vm;
	return ova_vm_open_disks(vm, imgs, n, e);
}

void ova_vm_free(struct ova_vm *vm)
{
	if (vm->folder) {
		vmx_close(vm->folder);
		free(vm->folder);
	} else {
		vmx_free(&vm->hw);
	}
	free(vm->disks);
	memset(vm, 0, sizeof(*vm));
}

unsigned ova_vm_hw_version(const struct ova_vm *vm)
{
	return vm->hw.hw_version ? vm->hw.hw_version : OVA_VM_DEFAULT_HW;
}

/* ddb.adapterType knows ide, buslogic, lsilogic, legacyESX and pvscsi.
 * SAS and NVMe disks carry lsilogic and SATA disks ide, as VMware's own
 * tools create them; vSphere attaches the disk where the OVF says. */
static const char *ova_vm_adapter(const struct ova_vm *vm, const struct vmx_dev *d)
{
	const struct vmx_ctrl *c = vmx_ctrl_of(&vm->hw, d);
	switch (d->bus) {
	case VMX_SCSI:
		if (c && !strcmp(c->model, "buslogic"))
			return "buslogic";
		if (c && !strcmp(c->model, "pvscsi"))
			return "pvscsi";
		return "lsilogic";
	case VMX_NVME:
		return "lsilogic";
	case VMX_SATA:
	case VMX_IDE:
		break;
	}
	return "ide";
}

int ova_vm_disk_opts(const struct ova_vm *vm, size_t i, struct vdk_opts *o, struct vdk_err *e)
{
	char hw[16];
	snprintf(hw, sizeof(hw), "%u", ova_vm_hw_version(vm));
	int r = vdk_opts_set(o, "adapter_type", ova_vm_adapter(vm, vm->disks[i]), e);
	return r < 0 ? r : vdk_opts_set(o, "hwversion", hw, e);
}

int ova_vm_pack_open(struct ova_vm *vm, const char *const *disks, size_t *n,
                     struct vdk_image ***imgs, struct vdk_err *e)
{
	memset(vm, 0, sizeof(*vm));
	*imgs = NULL;
	for (size_t i = 0; i < *n; i++)
		if (vmx_is_vmx_path(disks[i]) && *n != 1)
			return vdk_err_set(e, VDK_E_USAGE, EINVAL, disks[i], "vmx", VDK_NO_OFFSET,
			                   "a .vmx is packed alone (its disks come with it)");
	if (*n == 1 && vmx_is_vmx_path(disks[0]))
		return ova_vm_from_vmx(disks[0], vm, imgs, n, e);
	int r = ova_vm_generic(*n, vm, e);
	if (r == 0 && !(*imgs = calloc(*n + 1, sizeof(**imgs))))
		r = ova_vm_oom(e);
	return r;
}
