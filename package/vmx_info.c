/* A VM folder opened for reading: the .vmx through a file source, each
 * disk opened relative to it (so the source's confinement rules apply to
 * every fileName), and the inventory `vdkit info VM.vmx` prints. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vmx.h"

int vmx_open(const char *path, struct vmx_folder *f, struct vdk_err *e)
{
	memset(f, 0, sizeof(*f));
	int r = vdk_src_open_file(path, &f->src, e);
	if (r < 0)
		return r;
	uint8_t *buf = NULL;
	if (f->src->size == VDK_SIZE_UNKNOWN || f->src->size > VMX_MAX)
		r = vdk_bad(e, path, "vmx", VDK_NO_OFFSET,
		            "not a regular file of at most %u bytes: not a .vmx", VMX_MAX);
	else if (!(buf = malloc((size_t)f->src->size + 1)))
		r = vdk_ioerr(e, ENOMEM, path, "out of memory");
	if (r == 0)
		r = vdk_src_pread(f->src, buf, (size_t)f->src->size, 0, e);
	if (r == 0)
		r = vmx_parse(buf, (size_t)f->src->size, path, &f->vm, e);
	free(buf);
	if (r == 0 && !(f->path = strdup(path)))
		r = vdk_ioerr(e, ENOMEM, path, "out of memory");
	if (r < 0)
		vmx_close(f);
	return r;
}

void vmx_close(struct vmx_folder *f)
{
	vmx_free(&f->vm);
	if (f->src)
		vdk_src_close(f->src);
	free(f->path);
	memset(f, 0, sizeof(*f));
}

int vmx_open_disk(struct vmx_folder *f, size_t i, const struct vdk_open_opts *opts,
                  struct vdk_image **out, struct vdk_err *e)
{
	static const struct vdk_open_opts none;
	const struct vmx_dev *d = &f->vm.disks[i];
	*out = NULL;
	if (!opts)
		opts = &none;
	if (!d->file || !d->file[0])
		return vdk_bad(e, f->path, "vmx", VDK_NO_OFFSET, "%s%u:%u has no fileName",
		               vmx_bus_name(d->bus), d->ctrl, d->unit);
	struct vdk_src *s;
	int r = vdk_src_open_related(f->src, d->file, &opts->access, &s, e);
	if (r < 0)
		return r;
	return vdk_image_open(s, true, NULL, opts, out, e);
}

unsigned vmx_chain_depth(const struct vdk_image *img)
{
	unsigned n = 0;
	for (; img; img = img->backing)
		n++;
	return n;
}

static void vmx_json_opt(struct vdk_json *o, const char *k, const char *v)
{
	if (v)
		vdk_json_set_str(o, k, v);
}

static void vmx_json_dev(struct vdk_json *o, const struct vmx_vm *vm, const struct vmx_dev *d)
{
	char unit[24];
	const struct vmx_ctrl *c = vmx_ctrl_of(vm, d);
	snprintf(unit, sizeof(unit), "%s%u:%u", vmx_bus_name(d->bus), d->ctrl, d->unit);
	vdk_json_set_str(o, "bus", vmx_bus_name(d->bus));
	vmx_json_opt(o, "controller-model", c ? c->model : NULL);
	vdk_json_set_str(o, "unit", unit);
	vdk_json_set_u64(o, "controller", d->ctrl);
	vdk_json_set_u64(o, "address", d->unit);
	vmx_json_opt(o, "device-type", d->device_type);
	vmx_json_opt(o, "file", d->file);
	vdk_json_set_bool(o, "present", d->present);
}

/* One disk: where it sits, then what the image says (present disks). */
static int vmx_json_disk(struct vmx_folder *f, size_t i, const struct vdk_open_opts *opts,
                         struct vdk_json *o, struct vdk_err *e)
{
	const struct vmx_dev *d = &f->vm.disks[i];
	vmx_json_dev(o, &f->vm, d);
	if (!d->present)
		return 0;
	struct vdk_image *img;
	int r = vmx_open_disk(f, i, opts, &img, e);
	if (r < 0)
		return r;
	vdk_json_set_u64(o, "virtual-size", img->size);
	vdk_json_set_str(o, "format", img->fmt->name);
	vdk_json_set_u64(o, "chain-depth", vmx_chain_depth(img));
	vdk_image_close(img);
	return 0;
}

static void vmx_json_hw(const struct vmx_vm *vm, struct vdk_json *j)
{
	vmx_json_opt(j, "name", vm->name);
	vdk_json_set_u64(j, "memory", vm->mem_mib << 20);
	vdk_json_set_u64(j, "cpus", vm->cpus);
	if (vm->cores_per_socket)
		vdk_json_set_u64(j, "cores-per-socket", vm->cores_per_socket);
	vdk_json_set_str(j, "firmware", vm->efi ? "efi" : "bios");
	if (vm->efi)
		vdk_json_set_bool(j, "secure-boot", vm->secure_boot);
	vmx_json_opt(j, "guest-os", vm->guest_os);
	const struct vmx_os *os = vmx_os_lookup(vm->guest_os);
	vdk_json_set_str(j, "os-type", os->vmw);
	vdk_json_set_u64(j, "os-cim-id", os->cim);
	if (vm->hw_version)
		vdk_json_set_u64(j, "hardware-version", vm->hw_version);
}

static void vmx_json_devs(const struct vmx_vm *vm, struct vdk_json *j)
{
	struct vdk_json *a = vdk_json_set_arr(j, "controllers");
	for (size_t i = 0; a && i < vm->nctrls; i++) {
		struct vdk_json *c = vdk_json_push_obj(a);
		char id[16];
		snprintf(id, sizeof(id), "%s%u", vmx_bus_name(vm->ctrls[i].bus),
		         vm->ctrls[i].index);
		vdk_json_set_str(c, "id", id);
		vdk_json_set_str(c, "bus", vmx_bus_name(vm->ctrls[i].bus));
		vdk_json_set_str(c, "model", vm->ctrls[i].model);
		vdk_json_set_bool(c, "present", vm->ctrls[i].present);
	}
	a = vdk_json_set_arr(j, "nics");
	for (size_t i = 0; a && i < vm->nnics; i++) {
		const struct vmx_nic *n = &vm->nics[i];
		struct vdk_json *c = vdk_json_push_obj(a);
		char id[16];
		snprintf(id, sizeof(id), "ethernet%u", n->index);
		vdk_json_set_str(c, "id", id);
		vdk_json_set_str(c, "model", n->model);
		vdk_json_set_str(c, "network", n->network);
		vmx_json_opt(c, "mac", n->mac);
		vmx_json_opt(c, "address-type", n->address_type);
		vmx_json_opt(c, "connection-type", n->connection_type);
		vdk_json_set_bool(c, "present", n->present);
	}
	a = vdk_json_set_arr(j, "cdroms");
	for (size_t i = 0; a && i < vm->ncdroms; i++)
		vmx_json_dev(vdk_json_push_obj(a), vm, &vm->cdroms[i]);
}

struct vdk_json *vmx_inventory(struct vmx_folder *f, const struct vdk_open_opts *opts,
                               struct vdk_err *e)
{
	struct vdk_json *j = vdk_json_new_obj();
	if (!j) {
		vdk_ioerr(e, ENOMEM, f->path, "out of memory");
		return NULL;
	}
	vdk_json_set_str(j, "filename", f->path);
	vdk_json_set_str(j, "format", "vmx");
	vmx_json_hw(&f->vm, j);
	vmx_json_devs(&f->vm, j);
	struct vdk_json *a = vdk_json_set_arr(j, "disks");
	for (size_t i = 0; a && i < f->vm.ndisks; i++) {
		if (vmx_json_disk(f, i, opts, vdk_json_push_obj(a), e) < 0) {
			vdk_json_free(j);
			return NULL;
		}
	}
	return j;
}
