/* vdkit info | map | check */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "vmx.h"

struct image_args {
	const char *fmt;
	bool json;
	bool repair;
	struct vdk_open_opts open;
	const char *path;
};

/* Parse the options shared by info/map/check; extra "r" for check. */
static int image_args(int argc, char **argv, bool allow_repair, struct image_args *a)
{
	static const struct option lo[] = {
	    {"format", required_argument, NULL, 'f'},
	    {"output", required_argument, NULL, CLI_OPT_OUTPUT},
	    CLI_OPEN_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	memset(a, 0, sizeof(*a));
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, allow_repair ? "f:r" : "f:", lo, NULL)) != -1) {
		if (cli_open_opt(c, optarg, &a->open))
			continue;
		if (c == 'f')
			a->fmt = optarg;
		else if (c == 'r')
			a->repair = true;
		else if (c == CLI_OPT_OUTPUT) {
			if (cli_parse_output(optarg, &a->json))
				return CLI_USAGE;
		} else
			return cli_usage("%s: unknown option", argv[0]);
	}
	if (optind != argc - 1)
		return cli_usage("%s needs exactly one image", argv[0]);
	a->path = argv[optind];
	return 0;
}

/* Parse the shared options and open the image; an exit code on failure. */
static int image_open(int argc, char **argv, bool allow_repair, struct image_args *a,
                      struct vdk_image **img, struct vdk_err *e)
{
	int r = image_args(argc, argv, allow_repair, a);
	if (r)
		return r;
	return vdk_image_open_path(a->path, a->fmt, &a->open, img, e) ? cli_fail(e) : 0;
}

static void info_human(const struct vdk_json *j)
{
	char b1[32], b2[32];
	uint64_t vs = 0, as = 0, cs = 0;
	vdk_json_get_u64(j, "virtual-size", &vs);
	printf("image: %s\n", vdk_json_get_str(j, "filename"));
	printf("file format: %s\n", vdk_json_get_str(j, "format"));
	printf("virtual size: %s (%" PRIu64 " bytes)\n", cli_human(vs, b1, sizeof(b1)), vs);
	if (vdk_json_get_u64(j, "actual-size", &as))
		printf("disk size: %s\n", cli_human(as, b2, sizeof(b2)));
	if (vdk_json_get_u64(j, "cluster-size", &cs))
		printf("cluster_size: %" PRIu64 "\n", cs);
	const char *bf = vdk_json_get_str(j, "backing-filename");
	if (bf)
		printf("backing file: %s\nbacking file format: %s\n", bf,
		       vdk_json_get_str(j, "backing-filename-format"));
	const struct vdk_json *snap = vdk_json_first(vdk_json_get(j, "snapshots"));
	if (snap)
		printf("Snapshot list:\n%-10s%-18s%s\n", "ID", "TAG", "VM SIZE");
	for (; snap; snap = vdk_json_next(snap)) {
		uint64_t vms = 0;
		vdk_json_get_u64(snap, "vm-state-size", &vms);
		printf("%-10s%-18s%s\n", vdk_json_get_str(snap, "id"),
		       vdk_json_get_str(snap, "name"), cli_human(vms, b1, sizeof(b1)));
	}
	const struct vdk_json *fs = vdk_json_get(j, "format-specific");
	const struct vdk_json *data = vdk_json_get(fs, "data");
	char *text = data ? vdk_json_render_text(data, 4) : NULL;
	if (text && *text)
		printf("Format specific information:\n%s", text);
	free(text);
}

int cmd_info(int argc, char **argv)
{
	struct image_args a;
	struct vdk_err e = {0};
	struct vdk_image *img;
	/* A VM folder's .vmx: the VM's inventory (tools/cmd_vmx.c). */
	int r = image_args(argc, argv, false, &a);
	if (r)
		return r;
	if (vmx_is_vmx_path(a.path))
		return cmd_info_vmx(a.path, &a.open, a.json);
	if (vdk_image_open_path(a.path, a.fmt, &a.open, &img, &e))
		return cli_fail(&e);
	struct vdk_json *j = vdk_image_info(img, a.path, &e);
	vdk_image_close(img);
	if (!j)
		return cli_fail(&e);
	if (a.json) {
		char *s = vdk_json_render(j, true);
		printf("%s\n", s ? s : "{}");
		free(s);
	} else {
		info_human(j);
	}
	vdk_json_free(j);
	return CLI_OK;
}

/* map ---------------------------------------------------------------- */

static void map_print(const struct vdk_extent *x, bool json, bool *first, const char *file)
{
	bool zero = x->flags & VDK_EXT_ZERO;
	bool present = !(x->flags & VDK_EXT_HOLE);
	bool data = !(x->flags & (VDK_EXT_ZERO | VDK_EXT_HOLE));
	if (!json) {
		if (data && x->fd >= 0)
			printf("%#-15" PRIx64 " %#-15" PRIx64 " %#-15" PRIx64 " %s\n", x->off,
			       x->len, x->phys, file);
		return;
	}
	printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %u, "
	       "\"present\": %s, \"zero\": %s, \"data\": %s",
	       *first ? "[" : ",\n", x->off, x->len, x->depth, present ? "true" : "false",
	       zero ? "true" : "false", data ? "true" : "false");
	if (data && x->fd >= 0)
		printf(", \"offset\": %" PRIu64, x->phys);
	printf("}");
	*first = false;
}

int cmd_map(int argc, char **argv)
{
	struct image_args a;
	struct vdk_err e = {0};
	struct vdk_image *img;
	int r = image_open(argc, argv, false, &a, &img, &e);
	if (r)
		return r;
	struct vdk_extents x = {0};
	bool first = true;
	uint64_t pos = 0;
	if (!a.json)
		printf("%-15s %-15s %-15s %s\n", "Offset", "Length", "Mapped to", "File");
	while (!r && pos < img->size) {
		vdk_extents_reset(&x);
		if (vdk_image_extents(img, pos, img->size - pos, &x, &e) || !x.n) {
			r = cli_fail(&e);
			break;
		}
		for (size_t i = 0; i < x.n; i++)
			map_print(&x.v[i], a.json, &first, a.path);
		pos = x.v[x.n - 1].off + x.v[x.n - 1].len;
	}
	if (a.json && !r)
		printf(first ? "[]\n" : "]\n");
	vdk_extents_free(&x);
	vdk_image_close(img);
	return r;
}

/* check -------------------------------------------------------------- */

/* Default check: every extent must be describable and every byte readable. */
static int check_walk(struct vdk_image *img, struct vdk_err *e)
{
	uint8_t d[VDK_DIGEST_MAX];
	return vdk_image_digest(img, 0, d, e);
}

int cmd_check(int argc, char **argv)
{
	struct image_args a;
	struct vdk_err e = {0};
	struct vdk_image *img;
	int r = image_open(argc, argv, true, &a, &img, &e);
	if (r)
		return r;
	struct vdk_check res = {0};
	if (img->fmt->check)
		r = img->fmt->check(img, &res, a.repair, &e);
	else if (a.repair)
		r = vdk_err_set(&e, VDK_E_USAGE, ENOTSUP, a.path, img->fmt->name, VDK_NO_OFFSET,
		                "this format has nothing to repair");
	if (!r)
		r = check_walk(img, &e);
	const char *fmt = img->fmt->name;
	vdk_image_close(img);
	if (r)
		return cli_fail(&e);
	if (a.json) {
		struct vdk_json *j = vdk_json_new_obj();
		vdk_json_set_u64(j, "check-errors", 0);
		vdk_json_set_str(j, "filename", a.path);
		vdk_json_set_str(j, "format", fmt);
		vdk_json_set_u64(j, "corruptions", res.corruptions);
		vdk_json_set_u64(j, "leaks", res.leaks);
		vdk_json_set_u64(j, "corruptions-fixed", res.fixed);
		char *s = vdk_json_render(j, true);
		printf("%s\n", s ? s : "{}");
		free(s);
		vdk_json_free(j);
	} else {
		if (res.msg[0])
			printf("%s", res.msg);
		if (!res.corruptions && !res.leaks)
			printf("No errors were found on the image.\n");
		else
			printf("%" PRIu64 " errors and %" PRIu64 " leaked clusters were found.\n",
			       res.corruptions, res.leaks);
	}
	return res.corruptions || res.leaks ? CLI_BAD : CLI_OK;
}
