/* The .vmx parser: the rules virt-v2v and VMware follow (case-insensitive
 * keys, first duplicate wins, |XX escapes, present = FALSE, defaults),
 * every test .vmx in tests/vmx/, the guest OS table, and hostile input
 * (size cap, NUL, bad UTF-8, a VMDK handed over as a .vmx, out-of-folder
 * disk names). */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "vmx.h"

static int parse(const char *text, struct vmx_vm *vm, struct vdk_err *e)
{
	memset(e, 0, sizeof(*e));
	return vmx_parse((const uint8_t *)text, strlen(text), "t.vmx", vm, e);
}

static void test_rules(void)
{
	struct vmx_vm vm;
	struct vdk_err e;
	const char *t = "# comment\n"
	                "  DISPLAYNAME = \"a |22b|22 |7C c\"\r\n"
	                "displayName = \"second\"\n"
	                "garbage line\n"
	                "numvcpus = \"8\"\n"
	                "cpuid.coresPerSocket = \"4\"\n"
	                "scsi0.present = \"TRUE\"\n"
	                "scsi0:0.fileName = \"a.vmdk\"\n"
	                "scsi0:1.fileName = \"b.vmdk\"\n"
	                "scsi0:1.present = \"false\"\n"
	                "scsi1.present = \"FALSE\"\n"
	                "scsi1:0.fileName = \"c.vmdk\"\n"
	                "ide0:0.fileName = \"notes.txt\"\n"
	                "ide0:1.fileName = \"d.vmdk\"\n"
	                "ethernet0.present = \"TRUE\"\n"
	                "unquoted = value\n";
	CHECK(parse(t, &vm, &e) == 0, "a .vmx with comments, CRLF, duplicates, escapes parses (%s)",
	      e.msg);
	CHECK(vm.name && !strcmp(vm.name, "a \"b\" | c"),
	      "keys are case-insensitive, the first duplicate wins, |XX unescapes (%s)", vm.name);
	CHECK_EQ_U64(vm.skipped_lines, 1, "the line that is not key = value is skipped");
	CHECK_EQ_U64(vm.mem_mib, 32, "memSize defaults to 32 MiB as VMware's");
	CHECK_EQ_U64(vm.cpus, 8, "numvcpus");
	CHECK_EQ_U64(vm.cores_per_socket, 4, "cpuid.coresPerSocket");
	CHECK(!vm.efi, "firmware defaults to bios");
	CHECK_EQ_U64(vm.ndisks, 4,
	             "four disks: scsi0:0, scsi0:1, scsi1:0, ide0:1 (notes.txt is not one)");
	CHECK(vm.ndisks == 4 && vm.disks[0].present && !vm.disks[1].present &&
	          !vm.disks[2].present && vm.disks[3].present && vm.disks[3].bus == VMX_IDE,
	      "present = FALSE on the disk or on its controller turns it off");
	CHECK(vm.nctrls >= 2 && !strcmp(vm.ctrls[0].model, "lsilogic"),
	      "a SCSI controller without virtualDev is LSI Logic for a modern guest");
	CHECK(vm.nnics == 1 && !strcmp(vm.nics[0].network, "ethernet0") && !vm.nics[0].mac &&
	          !strcmp(vm.nics[0].model, "e1000"),
	      "a NIC without networkName is named ethernetN; default model e1000");
	vmx_free(&vm);
}

static void test_hostile(void)
{
	struct vmx_vm vm;
	struct vdk_err e;
	CHECK(parse("KDMV....", &vm, &e) < 0 && strstr(e.msg, "VMDK"), "a VMDK is refused: %s",
	      e.msg);
	CHECK(parse("# Disk DescriptorFile\nversion=1\n", &vm, &e) < 0,
	      "a VMDK descriptor is refused");
	CHECK(parse("displayName = \"x|00y\"\n", &vm, &e) < 0 && strstr(e.msg, "NUL"),
	      "an escaped NUL is refused: %s", e.msg);
	CHECK(parse("displayName = \"\xc3\x28\"\n", &vm, &e) < 0 && strstr(e.msg, "UTF-8"),
	      "invalid UTF-8 is refused: %s", e.msg);
	CHECK(parse("displayName = \"caf\xc3\xa9\"\n", &vm, &e) == 0 && vm.name &&
	          !strcmp(vm.name, "caf\xc3\xa9"),
	      "UTF-8 names are kept");
	vmx_free(&vm);
	CHECK(parse(".encoding = \"windows-1252\"\ndisplayName = \"caf\xe9\"\n", &vm, &e) == 0 &&
	          vm.name && !strcmp(vm.name, "caf\xc3\xa9"),
	      "a windows-1252 .vmx is converted to UTF-8 (%s)", e.msg);
	vmx_free(&vm);
	CHECK(parse(".encoding = \"Shift_JIS\"\ndisplayName = \"\x83\x65\"\n", &vm, &e) < 0,
	      "an encoding we cannot convert is refused when a value needs it: %s", e.msg);
	CHECK(parse("memSize = \"99999999999999999999999\"\n", &vm, &e) < 0,
	      "an overflowing memSize is refused: %s", e.msg);
	CHECK(parse("numvcpus = \"0\"\n", &vm, &e) < 0, "zero vCPUs are refused");
	CHECK(parse("\n\n# only comments\n", &vm, &e) < 0, "a file without keys is not a .vmx");
	size_t big = VMX_MAX + 1;
	uint8_t *b = malloc(big);
	if (b) {
		memset(b, '#', big);
		memset(&e, 0, sizeof(e));
		CHECK(vmx_parse(b, big, "big.vmx", &vm, &e) < 0 && strstr(e.msg, "larger"),
		      "more than %u bytes is refused before parsing: %s", VMX_MAX, e.msg);
		free(b);
	}
	CHECK(parse("scsi99:0.fileName = \"a.vmdk\"\nscsi0:99.fileName = \"b.vmdk\"\n"
	            "scsi0:1x.fileName = \"c.vmdk\"\nethernet999.present = \"TRUE\"\n",
	            &vm, &e) == 0 &&
	          vm.ndisks == 0 && vm.nnics == 0,
	      "controllers, units and NICs out of VMware's ranges are ignored");
	vmx_free(&vm);
}

static void test_os(void)
{
	const struct vmx_os *o = vmx_os_lookup("rhel8-64");
	CHECK(!strcmp(o->vmw, "rhel8_64Guest") && o->cim == 80,
	      "rhel8-64 -> rhel8_64Guest, CIM 80");
	o = vmx_os_lookup("windows7srv-64");
	CHECK(!strcmp(o->vmw, "windows7Server64Guest") && o->cim == 103,
	      "windows7srv-64 -> Windows Server 2008 R2, CIM 103");
	o = vmx_os_lookup("ubuntu-64");
	CHECK(!strcmp(o->vmw, "ubuntu64Guest") && o->cim == 94, "ubuntu-64 -> CIM 94");
	o = vmx_os_lookup("madeup-64");
	CHECK(!strcmp(o->vmw, "otherGuest64") && o->cim == 102, "an unknown 64-bit guest -> 102");
	o = vmx_os_lookup("madeup");
	CHECK(!strcmp(o->vmw, "otherGuest") && o->cim == 1, "an unknown 32-bit guest -> 1");
	o = vmx_os_lookup(NULL);
	CHECK(!strcmp(o->vmw, "otherGuest64"), "no guestOS -> otherGuest64");
}

static void test_files(void)
{
	struct vmx_folder f;
	struct vdk_err e = {0};
	int r = vmx_open("tests/vmx/efi-sas-sata.vmx", &f, &e);
	CHECK(r == 0, "tests/vmx/efi-sas-sata.vmx opens (%s)", e.msg);
	if (r == 0) {
		const struct vmx_vm *v = &f.vm;
		CHECK(v->efi && v->secure_boot && v->cpus == 4 && v->cores_per_socket == 2 &&
		          v->mem_mib == 4096 && v->hw_version == 17,
		      "efi, secure boot, 4 vCPUs of 2 cores, 4096 MiB, hardware 17");
		CHECK(v->ndisks == 2 && v->disks[0].bus == VMX_SCSI &&
		          v->disks[1].bus == VMX_SATA && v->disks[1].unit == 3,
		      "a SAS disk then sata0:3 (no deviceType)");
		CHECK(v->ncdroms == 1 && v->cdroms[0].bus == VMX_SATA,
		      "the SATA cdrom-image is listed apart");
		CHECK(v->nctrls >= 2 && !strcmp(v->ctrls[0].model, "lsisas1068") &&
		          !strcmp(v->ctrls[1].model, "ahci"),
		      "controllers lsisas1068 and ahci");
		vmx_close(&f);
	}
	memset(&e, 0, sizeof(e));
	r = vmx_open("tests/vmx/multi.vmx", &f, &e);
	CHECK(r == 0, "tests/vmx/multi.vmx opens (%s)", e.msg);
	if (r == 0) {
		const struct vmx_vm *v = &f.vm;
		CHECK(v->nnics == 3 && !strcmp(v->nics[0].mac, "00:50:56:01:02:03") &&
		          !strcmp(v->nics[1].mac, "00:50:56:9b:5f:0d") && !v->nics[2].present,
		      "static and vpx MACs; ethernet2 is not present");
		CHECK(v->ndisks == 5 && v->disks[2].unit == 8 && v->disks[4].bus == VMX_IDE,
		      "disks in bus order, scsi0:8 after scsi0:2, the IDE disk last");
		/* A disk name that leaves the folder is refused when opened. */
		free(f.vm.disks[0].file);
		f.vm.disks[0].file = strdup("../etc/passwd");
		struct vdk_image *img = NULL;
		memset(&e, 0, sizeof(e));
		CHECK(vmx_open_disk(&f, 0, NULL, &img, &e) < 0 && strstr(e.msg, "outside"),
		      "a fileName with .. is refused: %s", e.msg);
		free(f.vm.disks[0].file);
		f.vm.disks[0].file = strdup("/etc/passwd");
		memset(&e, 0, sizeof(e));
		CHECK(vmx_open_disk(&f, 0, NULL, &img, &e) < 0 && strstr(e.msg, "outside"),
		      "an absolute fileName is refused: %s", e.msg);
		vmx_close(&f);
	}
}

int main(void)
{
	test_rules();
	test_hostile();
	test_os();
	test_files();
	CHECK(vmx_is_vmx_path("a/VM.VMX") && !vmx_is_vmx_path("a.vmdk") && !vmx_is_vmx_path(".vmx"),
	      "a .vmx is recognised by its extension, any case");
	TEST_EXIT();
}
