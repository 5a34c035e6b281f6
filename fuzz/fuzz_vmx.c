/* Fuzz the .vmx parser: key = "value" lines, escapes, device discovery,
 * and the guest OS lookup of whatever guestOS it found. */
#include <stdint.h>
#include <string.h>

#include "vmx.h"

static volatile size_t fuzz_vmx_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmx_vm vm;
	struct vdk_err e = {0};
	if (vmx_parse(data, size, "fuzz.vmx", &vm, &e) < 0)
		return 0;
	size_t n = vmx_os_lookup(vm.guest_os)->cim;
	for (size_t i = 0; i < vm.ndisks; i++) {
		const struct vmx_ctrl *c = vmx_ctrl_of(&vm, &vm.disks[i]);
		n += (c ? strlen(c->model) : 0) + (vm.disks[i].file ? strlen(vm.disks[i].file) : 0);
	}
	for (size_t i = 0; i < vm.nnics; i++)
		n += strlen(vm.nics[i].network) + strlen(vm.nics[i].model);
	for (size_t i = 0; i < vm.ncdroms; i++)
		n += vm.cdroms[i].unit;
	fuzz_vmx_sink = n;
	vmx_free(&vm);
	return 0;
}
