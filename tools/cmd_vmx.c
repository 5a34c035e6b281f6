/* vdkit info VM.vmx: a VM folder's inventory (package/vmx.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "vmx.h"

static const char *vmx_s(const struct vdk_json *j, const char *k)
{
	const char *s = vdk_json_get_str(j, k);
	return s ? s : "-";
}

static void vmx_human_disks(const struct vdk_json *j)
{
	char b[32];
	printf("disks:\n");
	for (const struct vdk_json *d = vdk_json_first(vdk_json_get(j, "disks")); d;
	     d = vdk_json_next(d)) {
		uint64_t vs = 0, depth = 0;
		bool opened = vdk_json_get_u64(d, "virtual-size", &vs);
		vdk_json_get_u64(d, "chain-depth", &depth);
		printf("  %-9s %-10s %s", vmx_s(d, "unit"), vmx_s(d, "controller-model"),
		       vmx_s(d, "file"));
		if (opened)
			printf(" (%s, %s, chain of %" PRIu64 ")", vmx_s(d, "format"),
			       cli_human(vs, b, sizeof(b)), depth);
		else
			printf(" (not present)");
		printf("\n");
	}
	printf("cdroms:\n");
	for (const struct vdk_json *d = vdk_json_first(vdk_json_get(j, "cdroms")); d;
	     d = vdk_json_next(d))
		printf("  %-9s %-12s %s\n", vmx_s(d, "unit"), vmx_s(d, "device-type"),
		       vmx_s(d, "file"));
}

static void vmx_human(const struct vdk_json *j)
{
	char b[32];
	uint64_t mem = 0, cpus = 0, cores = 0;
	vdk_json_get_u64(j, "memory", &mem);
	vdk_json_get_u64(j, "cpus", &cpus);
	printf("vm: %s\n", vmx_s(j, "name"));
	printf("file: %s\n", vmx_s(j, "filename"));
	printf("guest os: %s (%s)\n", vmx_s(j, "guest-os"), vmx_s(j, "os-type"));
	printf("memory: %s (%" PRIu64 " bytes)\n", cli_human(mem, b, sizeof(b)), mem);
	printf("cpus: %" PRIu64, cpus);
	if (vdk_json_get_u64(j, "cores-per-socket", &cores))
		printf(" (%" PRIu64 " cores per socket)", cores);
	printf("\nfirmware: %s\n", vmx_s(j, "firmware"));
	vmx_human_disks(j);
	printf("nics:\n");
	for (const struct vdk_json *n = vdk_json_first(vdk_json_get(j, "nics")); n;
	     n = vdk_json_next(n))
		printf("  %-10s %-8s \"%s\" mac %s\n", vmx_s(n, "id"), vmx_s(n, "model"),
		       vmx_s(n, "network"), vmx_s(n, "mac"));
}

int cmd_info_vmx(const char *path, const struct vdk_open_opts *open, bool json)
{
	struct vmx_folder f;
	struct vdk_err e = {0};
	if (vmx_open(path, &f, &e) < 0)
		return cli_fail(&e);
	struct vdk_json *j = vmx_inventory(&f, open, &e);
	vmx_close(&f);
	if (!j)
		return cli_fail(&e);
	if (json) {
		char *s = vdk_json_render(j, true);
		printf("%s\n", s ? s : "{}");
		free(s);
	} else {
		vmx_human(j);
	}
	vdk_json_free(j);
	return CLI_OK;
}

int cmd_unpack_vmx(const char *vmx, const char *dir, const char *out_fmt, struct vdk_opts *wopts,
                   const struct vdk_convert_opts *conv)
{
	struct vmx_unpack_opts o = {.out_fmt = out_fmt, .wopts = wopts, .conv = *conv};
	struct vmx_unpack_result res;
	struct vdk_err e = {0};
	if (vmx_unpack(vmx, dir, &o, &res, &e) < 0)
		return cli_fail(&e);
	for (size_t i = 0; i < res.n; i++)
		printf("%s\n", res.paths[i]);
	vmx_unpack_result_free(&res);
	return CLI_OK;
}
