/* The OVF 1.0 descriptor `ova pack` writes, in the shape ovftool gives
 * vSphere: References, DiskSection, NetworkSection, then one
 * VirtualSystem whose OperatingSystemSection carries the CIM id and
 * vmw:osType, and whose VirtualHardwareSection lists CPUs (with
 * vmw:CoresPerSocket), memory, each controller with its ResourceSubType,
 * the disks on their controllers (AddressOnParent = unit), CD-ROM drives,
 * NICs (ResourceSubType, Connection = network) and vmw:Config firmware. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/tree.h>

#include "ova_ovf.h"
#include "util.h"

#define OVW_NS_1    "http://schemas.dmtf.org/ovf/envelope/1"
#define OVW_RASD                                                                                   \
	"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
#define OVW_VSSD "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
#define OVW_VMW  "http://www.vmware.com/schema/ovf"
/* 4 controllers of each kind, 64 units each, bounds what a .vmx can give. */
#define OVW_MAX_DISKS 1024

struct ovw {
	xmlDoc *doc;
	xmlNs *ovf, *rasd, *vssd, *vmw;
	const struct ova_vm *vm;
	unsigned next_id;  /* rasd:InstanceID */
	unsigned *ctrl_id; /* InstanceID of each hw controller, 0 if not written */
};

static xmlNode *ovw_el(xmlNode *parent, xmlNs *ns, const char *name, const char *text)
{
	return xmlNewTextChild(parent, ns, BAD_CAST name, text ? BAD_CAST text : NULL);
}

static void ovw_set(struct ovw *w, xmlNode *n, const char *k, const char *v)
{
	xmlNewNsProp(n, w->ovf, BAD_CAST k, BAD_CAST v);
}

static void ovw_setu(struct ovw *w, xmlNode *n, const char *k, uint64_t v)
{
	char b[24];
	snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
	ovw_set(w, n, k, b);
}

/* An Item; kv lists rasd elements in schema (alphabetical) order, as
 * ovftool checks; NULL values are left out. InstanceID is filled in. */
static xmlNode *ovw_item(struct ovw *w, xmlNode *hw, const char *const *kv, unsigned *id)
{
	char b[16];
	*id = w->next_id++;
	snprintf(b, sizeof(b), "%u", *id);
	xmlNode *it = ovw_el(hw, NULL, "Item", NULL);
	for (; kv[0]; kv += 2) {
		if (!strcmp(kv[0], "InstanceID"))
			ovw_el(it, w->rasd, kv[0], b);
		else if (kv[1])
			ovw_el(it, w->rasd, kv[0], kv[1]);
	}
	return it;
}

static void ovw_cpu_mem(struct ovw *w, xmlNode *hw)
{
	const struct vmx_vm *h = &w->vm->hw;
	char n[24], name[48], mem[24], memname[48];
	unsigned id;
	snprintf(n, sizeof(n), "%u", h->cpus);
	snprintf(name, sizeof(name), "%u virtual CPU(s)", h->cpus);
	xmlNode *cpu = ovw_item(
	    w, hw,
	    (const char *const[]){"AllocationUnits", "hertz * 10^6", "Description",
	                          "Number of Virtual CPUs", "ElementName", name, "InstanceID", "",
	                          "ResourceType", "3", "VirtualQuantity", n, NULL},
	    &id);
	if (h->cores_per_socket) {
		snprintf(n, sizeof(n), "%u", h->cores_per_socket);
		xmlNode *c = ovw_el(cpu, w->vmw, "CoresPerSocket", n);
		ovw_set(w, c, "required", "false");
	}
	snprintf(mem, sizeof(mem), "%llu", (unsigned long long)h->mem_mib);
	snprintf(memname, sizeof(memname), "%lluMB of memory", (unsigned long long)h->mem_mib);
	ovw_item(w, hw,
	         (const char *const[]){"AllocationUnits", "byte * 2^20", "Description",
	                               "Memory Size", "ElementName", memname, "InstanceID", "",
	                               "ResourceType", "4", "VirtualQuantity", mem, NULL},
	         &id);
}

/* ResourceType and ResourceSubType as ovftool writes them. */
static void ovw_ctrl_kind(const struct vmx_ctrl *c, const char **type, const char **sub,
                          const char **desc)
{
	static const struct {
		const char *vmx, *ovf;
	} scsi[] = {{"lsilogic", "lsilogic"},
	            {"buslogic", "buslogic"},
	            {"lsisas1068", "lsilogicsas"},
	            {"pvscsi", "VirtualSCSI"}};
	*sub = NULL;
	switch (c->bus) {
	case VMX_SCSI:
		*type = "6";
		*desc = "SCSI Controller";
		*sub = "lsilogic";
		for (size_t i = 0; i < VDK_ARRAY_SIZE(scsi); i++)
			if (!strcmp(c->model, scsi[i].vmx))
				*sub = scsi[i].ovf;
		return;
	case VMX_SATA:
		*type = "20";
		*desc = "SATA Controller";
		*sub = "vmware.sata.ahci";
		return;
	case VMX_NVME:
		*type = "20";
		*desc = "NVME Controller";
		*sub = "vmware.nvme.controller";
		return;
	case VMX_IDE:
		break;
	}
	*type = "5";
	*desc = "IDE Controller";
}

static void ovw_ctrls(struct ovw *w, xmlNode *hw)
{
	const struct vmx_vm *h = &w->vm->hw;
	for (size_t i = 0; i < h->nctrls; i++) {
		const struct vmx_ctrl *c = &h->ctrls[i];
		if (!c->present)
			continue;
		const char *type, *sub, *desc;
		char addr[16], name[48];
		ovw_ctrl_kind(c, &type, &sub, &desc);
		snprintf(addr, sizeof(addr), "%u", c->index);
		snprintf(name, sizeof(name), "%s %u", desc, c->index);
		ovw_item(w, hw,
		         (const char *const[]){"Address", addr, "Description", desc, "ElementName",
		                               name, "InstanceID", "", "ResourceSubType", sub,
		                               "ResourceType", type, NULL},
		         &w->ctrl_id[i]);
	}
}

static unsigned ovw_parent(const struct ovw *w, const struct vmx_dev *d)
{
	const struct vmx_ctrl *c = vmx_ctrl_of(&w->vm->hw, d);
	return c ? w->ctrl_id[c - w->vm->hw.ctrls] : 0;
}

static void ovw_disks(struct ovw *w, xmlNode *hw, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct vmx_dev *d = w->vm->disks[i];
		char unit[16], name[32], res[48], parent[16];
		unsigned id;
		snprintf(unit, sizeof(unit), "%u", d->unit);
		snprintf(name, sizeof(name), "Hard disk %zu", i + 1);
		snprintf(res, sizeof(res), "ovf:/disk/vmdisk%zu", i + 1);
		snprintf(parent, sizeof(parent), "%u", ovw_parent(w, d));
		ovw_item(w, hw,
		         (const char *const[]){"AddressOnParent", unit, "ElementName", name,
		                               "HostResource", res, "InstanceID", "", "Parent",
		                               parent, "ResourceType", "17", NULL},
		         &id);
	}
}

static void ovw_cdroms(struct ovw *w, xmlNode *hw)
{
	const struct vmx_vm *h = &w->vm->hw;
	for (size_t i = 0, k = 0; i < h->ncdroms; i++) {
		const struct vmx_dev *d = &h->cdroms[i];
		char unit[16], name[32], parent[16];
		unsigned id;
		if (!d->present || !ovw_parent(w, d))
			continue;
		snprintf(unit, sizeof(unit), "%u", d->unit);
		snprintf(name, sizeof(name), "CD/DVD drive %zu", ++k);
		snprintf(parent, sizeof(parent), "%u", ovw_parent(w, d));
		/* The image is not packed: an empty client drive, as ovftool
		 * exports a drive whose ISO stays behind. */
		ovw_item(w, hw,
		         (const char *const[]){
		             "AddressOnParent", unit, "AutomaticAllocation", "false", "ElementName",
		             name, "InstanceID", "", "Parent", parent, "ResourceSubType",
		             "vmware.cdrom.remotepassthrough", "ResourceType", "15", NULL},
		         &id);
	}
}

static const char *ovw_nic_type(const char *m)
{
	static const struct {
		const char *vmx, *ovf;
	} t[] = {{"e1000", "E1000"},         {"e1000e", "E1000e"}, {"vmxnet3", "VmxNet3"},
	         {"vmxnet2", "VmxNet2"},     {"vmxnet", "VmxNet"}, {"vlance", "PCNet32"},
	         {"vmxnet3vrdma", "VmxNet3"}};
	for (size_t i = 0; i < VDK_ARRAY_SIZE(t); i++)
		if (!strcmp(m, t[i].vmx))
			return t[i].ovf;
	return "E1000";
}

static void ovw_nics(struct ovw *w, xmlNode *hw)
{
	const struct vmx_vm *h = &w->vm->hw;
	for (size_t i = 0, k = 0; i < h->nnics; i++) {
		const struct vmx_nic *n = &h->nics[i];
		if (!n->present)
			continue;
		const char *type = ovw_nic_type(n->model);
		char desc[320], name[32];
		unsigned id;
		snprintf(desc, sizeof(desc), "%s ethernet adapter on \"%.256s\"", type, n->network);
		snprintf(name, sizeof(name), "Network adapter %zu", ++k);
		/* Only a static MAC travels: generated ones are the host's to
		 * assign again (ovftool leaves them out unless asked). */
		bool st = n->address_type && !strcmp(n->address_type, "static");
		ovw_item(w, hw,
		         (const char *const[]){"Address", st ? n->mac : NULL, "AutomaticAllocation",
		                               "true", "Connection", n->network, "Description",
		                               desc, "ElementName", name, "InstanceID", "",
		                               "ResourceSubType", type, "ResourceType", "10", NULL},
		         &id);
	}
}

static void ovw_config(struct ovw *w, xmlNode *hw, const char *key, const char *val)
{
	xmlNode *c = ovw_el(hw, w->vmw, "Config", NULL);
	ovw_set(w, c, "required", "false");
	xmlNewNsProp(c, w->vmw, BAD_CAST "key", BAD_CAST key);
	xmlNewNsProp(c, w->vmw, BAD_CAST "value", BAD_CAST val);
}

static void ovw_hardware(struct ovw *w, xmlNode *vs, size_t n)
{
	char type[16];
	snprintf(type, sizeof(type), "vmx-%02u", ova_vm_hw_version(w->vm));
	xmlNode *hw = ovw_el(vs, NULL, "VirtualHardwareSection", NULL);
	ovw_el(hw, NULL, "Info", "Virtual hardware requirements");
	xmlNode *sys = ovw_el(hw, NULL, "System", NULL);
	ovw_el(sys, w->vssd, "ElementName", "Virtual Hardware Family");
	ovw_el(sys, w->vssd, "InstanceID", "0");
	ovw_el(sys, w->vssd, "VirtualSystemIdentifier", w->vm->id);
	ovw_el(sys, w->vssd, "VirtualSystemType", type);
	w->next_id = 1;
	ovw_cpu_mem(w, hw);
	ovw_ctrls(w, hw);
	ovw_disks(w, hw, n);
	ovw_cdroms(w, hw);
	ovw_nics(w, hw);
	if (w->vm->hw.efi) {
		ovw_config(w, hw, "firmware", "efi");
		if (w->vm->hw.secure_boot)
			ovw_config(w, hw, "bootOptions.efiSecureBootEnabled", "true");
	}
}

static bool ovw_net_seen(const struct vmx_vm *h, size_t upto, const char *net)
{
	for (size_t i = 0; i < upto; i++)
		if (h->nics[i].present && !strcmp(h->nics[i].network, net))
			return true;
	return false;
}

static void ovw_networks(struct ovw *w, xmlNode *env)
{
	const struct vmx_vm *h = &w->vm->hw;
	xmlNode *ns = NULL;
	for (size_t i = 0; i < h->nnics; i++) {
		const struct vmx_nic *n = &h->nics[i];
		if (!n->present || ovw_net_seen(h, i, n->network))
			continue;
		if (!ns) {
			ns = ovw_el(env, NULL, "NetworkSection", NULL);
			ovw_el(ns, NULL, "Info", "The list of logical networks");
		}
		char desc[300];
		snprintf(desc, sizeof(desc), "The %.256s network", n->network);
		xmlNode *net = ovw_el(ns, NULL, "Network", NULL);
		ovw_set(w, net, "name", n->network);
		ovw_el(net, NULL, "Description", desc);
	}
}

static void ovw_refs_disks(struct ovw *w, xmlNode *env, const struct ova_pack_disk *d, size_t n)
{
	char id[32];
	xmlNode *refs = ovw_el(env, NULL, "References", NULL);
	for (size_t i = 0; i < n; i++) {
		xmlNode *f = ovw_el(refs, NULL, "File", NULL);
		snprintf(id, sizeof(id), "file%zu", i + 1);
		ovw_set(w, f, "href", d[i].href);
		ovw_set(w, f, "id", id);
		ovw_setu(w, f, "size", d[i].file_size);
	}
	xmlNode *ds = ovw_el(env, NULL, "DiskSection", NULL);
	ovw_el(ds, NULL, "Info", "Virtual disk information");
	for (size_t i = 0; i < n; i++) {
		xmlNode *k = ovw_el(ds, NULL, "Disk", NULL);
		ovw_setu(w, k, "capacity", d[i].capacity);
		ovw_set(w, k, "capacityAllocationUnits", "byte");
		snprintf(id, sizeof(id), "vmdisk%zu", i + 1);
		ovw_set(w, k, "diskId", id);
		snprintf(id, sizeof(id), "file%zu", i + 1);
		ovw_set(w, k, "fileRef", id);
		ovw_set(w, k, "format", vdk_format_find("vmdk")->ovf_format_uri);
		ovw_setu(w, k, "populatedSize", d[i].populated);
	}
}

static void ovw_body(struct ovw *w, xmlNode *env, const struct ova_pack_disk *d, size_t n)
{
	const struct vmx_vm *h = &w->vm->hw;
	ovw_refs_disks(w, env, d, n);
	ovw_networks(w, env);
	xmlNode *vs = ovw_el(env, NULL, "VirtualSystem", NULL);
	ovw_set(w, vs, "id", w->vm->id);
	ovw_el(vs, NULL, "Info", "A virtual machine");
	ovw_el(vs, NULL, "Name", h->name ? h->name : w->vm->id);
	const struct vmx_os *os = vmx_os_lookup(h->guest_os);
	xmlNode *oss = ovw_el(vs, NULL, "OperatingSystemSection", NULL);
	ovw_setu(w, oss, "id", os->cim);
	if (os->version)
		ovw_set(w, oss, "version", os->version);
	xmlNewNsProp(oss, w->vmw, BAD_CAST "osType", BAD_CAST os->vmw);
	ovw_el(oss, NULL, "Info", "The kind of installed guest operating system");
	ovw_el(oss, NULL, "Description", os->desc);
	ovw_hardware(w, vs, n);
}

static int ovw_dump(xmlDoc *doc, const char *id, uint8_t **out, size_t *len, struct vdk_err *e)
{
	xmlChar *mem = NULL;
	int sz = 0;
	xmlDocDumpFormatMemoryEnc(doc, &mem, &sz, "UTF-8", 1);
	if (!mem || sz <= 0) {
		xmlFree(mem);
		return vdk_ioerr(e, ENOMEM, id, "cannot serialize the descriptor");
	}
	*out = malloc((size_t)sz);
	if (*out)
		memcpy(*out, mem, (size_t)sz);
	*len = (size_t)sz;
	xmlFree(mem);
	return *out ? 0 : vdk_ioerr(e, ENOMEM, id, "out of memory");
}

int ova_ovf_write(const struct ova_vm *vm, const struct ova_pack_disk *d, size_t n, uint8_t **out,
                  size_t *len, struct vdk_err *e)
{
	if (n > OVW_MAX_DISKS || n != vm->ndisks)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, "ovf", VDK_NO_OFFSET,
		                   "%zu disks: at most %d, one per hardware disk", n,
		                   OVW_MAX_DISKS);
	struct ovw w = {.doc = xmlNewDoc(BAD_CAST "1.0"), .vm = vm};
	w.ctrl_id = calloc(vm->hw.nctrls + 1, sizeof(*w.ctrl_id));
	xmlNode *env = w.doc && w.ctrl_id ? xmlNewNode(NULL, BAD_CAST "Envelope") : NULL;
	if (!env) {
		xmlFreeDoc(w.doc);
		free(w.ctrl_id);
		return vdk_ioerr(e, ENOMEM, vm->id, "out of memory");
	}
	xmlDocSetRootElement(w.doc, env);
	xmlSetNs(env, xmlNewNs(env, BAD_CAST OVW_NS_1, NULL));
	w.ovf = xmlNewNs(env, BAD_CAST OVW_NS_1, BAD_CAST "ovf");
	w.rasd = xmlNewNs(env, BAD_CAST OVW_RASD, BAD_CAST "rasd");
	w.vssd = xmlNewNs(env, BAD_CAST OVW_VSSD, BAD_CAST "vssd");
	w.vmw = xmlNewNs(env, BAD_CAST OVW_VMW, BAD_CAST "vmw");
	xmlNewNs(env, BAD_CAST "http://www.w3.org/2001/XMLSchema-instance", BAD_CAST "xsi");
	ovw_body(&w, env, d, n);
	int r = ovw_dump(w.doc, vm->id, out, len, e);
	xmlFreeDoc(w.doc);
	free(w.ctrl_id);
	return r;
}
