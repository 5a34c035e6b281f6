/* vdkit info | map | check */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "vmx.h"

struct image_args {
	const char *fmt;
	bool json;
	bool repair;
	bool chain;   /* info --backing-chain */
	bool quiet;   /* check -q: the exit code only */
	unsigned fix; /* check -r leaks|all: VDK_FIX_* */
	struct vdk_open_opts open;
	const char *path;
};

/* Parse the options shared by info/map/check; extra "r", "q" and "T" for
 * check (qemu-img check's repair, quiet and source cache mode). */
static int image_args(int argc, char **argv, bool allow_repair, struct image_args *a)
{
	static const struct option lo[] = {
	    {"format", required_argument, NULL, 'f'},
	    {"output", required_argument, NULL, CLI_OPT_OUTPUT},
	    {"backing-chain", no_argument, NULL, 'B'},
	    {"force-share", no_argument, NULL, 'U'},
	    CLI_OPEN_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	memset(a, 0, sizeof(*a));
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, allow_repair ? "f:rqT:U" : "f:U", lo, NULL)) != -1) {
		if (cli_open_opt(c, optarg, &a->open) || c == 'U') /* -U: vdkit takes no locks */
			continue;
		if (c == 'B' && !strcmp(argv[0], "info"))
			a->chain = true;
		else if (c == 'f')
			a->fmt = optarg;
		else if (c == 'q')
			a->quiet = true;
		else if (c == 'T')
			continue; /* accepted: vdkit reads without a cache mode */
		else if (c == 'r') {
			/* qemu-img's "-r leaks" / "-r all"; a bare -r means all. */
			a->repair = true;
			a->fix = VDK_FIX_LEAKS | VDK_FIX_ERRORS;
			if (optind < argc - 1 && strcmp(argv[optind], "leaks") == 0)
				a->fix = VDK_FIX_LEAKS;
			if (optind < argc - 1 && (strcmp(argv[optind], "leaks") == 0 ||
			                          strcmp(argv[optind], "all") == 0))
				optind++;
		} else if (c == CLI_OPT_OUTPUT) {
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

/* --backing-chain: one info object per image of the chain, top first
 * (JSON: an array, as qemu-img). */
static int info_chain(const struct image_args *a, struct vdk_image *img, struct vdk_err *e)
{
	if (a->json)
		printf("[");
	for (struct vdk_image *i = img; i; i = i->backing) {
		struct vdk_json *j = vdk_image_info(i, i == img ? a->path : i->src->name, e);
		if (!j) {
			if (a->json)
				printf("]\n");
			return cli_fail(e);
		}
		if (a->json) {
			char *s = vdk_json_render(j, true);
			printf("%s\n%s", i == img ? "" : ",", s ? s : "{}");
			free(s);
		} else {
			printf("%s", i == img ? "" : "\n");
			info_human(j);
		}
		vdk_json_free(j);
	}
	if (a->json)
		printf("\n]\n");
	return CLI_OK;
}

int cmd_info(int argc, char **argv)
{
	struct image_args a;
	struct vdk_err e = {0};
	struct vdk_image *img;
	int r = image_args(argc, argv, false, &a);
	if (r)
		return r;
	/* A VM folder's .vmx: the VM's inventory (tools/cmd_vmx.c). */
	if (vmx_is_vmx_path(a.path))
		return cmd_info_vmx(a.path, &a.open, a.json);
	/* An overlay whose backing file has not arrived yet still answers
	 * (qemu-img's info reads the header only; CDI inspects overlays
	 * before their parents): opened again without its backing file. A
	 * parent refused (outside the folder, a loop) stays an error. */
	r = vdk_image_open_path(a.path, a.fmt, &a.open, &img, &e);
	if (r && e.code == ENOENT && !a.chain && access(a.path, F_OK) == 0) {
		struct vdk_err e2 = {0};
		a.open.no_backing = true;
		r = vdk_image_open_path(a.path, a.fmt, &a.open, &img, &e2);
	}
	if (r)
		return cli_fail(&e);
	const char *hint = a.fmt ? NULL : cli_raw_hint(a.path);
	if (hint)
		fprintf(stderr, "%s: note: %s\n", cli_prog, hint);
	if (a.chain) {
		r = info_chain(&a, img, &e);
		vdk_image_close(img);
		return r;
	}
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

/* One pass: the format's own check, then the read walk unless the check
 * already found damage. A walk refused for bad input is a corruption. */
static int check_pass(struct vdk_image *img, const struct image_args *a, bool repair,
                      struct vdk_check *res, struct vdk_err *e)
{
	int r = 0;
	res->fix = repair ? a->fix : 0;
	if (img->fmt->check)
		r = img->fmt->check(img, res, repair, e);
	else if (repair)
		r = vdk_err_set(e, VDK_E_USAGE, ENOTSUP, a->path, img->fmt->name, VDK_NO_OFFSET,
		                "this format has nothing to repair");
	if (r || res->corruptions || res->check_errors)
		return r;
	struct vdk_err we = {0};
	if (check_walk(img, &we) == 0)
		return 0;
	if (we.cls != VDK_E_INPUT) {
		*e = we;
		return -we.code;
	}
	vdk_findings_add(&res->findings, VDK_ERROR, NULL, VDK_NO_OFFSET, "%s", we.msg);
	res->corruptions++;
	return 0;
}

static void check_json(const struct image_args *a, const char *fmt, const struct vdk_check *res)
{
	struct vdk_json *j = vdk_json_new_obj();
	vdk_json_set_u64(j, "check-errors", res->check_errors);
	vdk_json_set_str(j, "filename", a->path);
	vdk_json_set_str(j, "format", fmt);
	vdk_json_set_u64(j, "corruptions", res->corruptions);
	vdk_json_set_u64(j, "leaks", res->leaks);
	vdk_json_set_u64(j, "corruptions-fixed", res->fixed);
	vdk_json_set_u64(j, "leaks-fixed", res->leaks_fixed);
	/* qemu-img leaves the statistics out when they are 0. */
	const struct {
		const char *k;
		uint64_t v;
	} st[] = {
	    {"image-end-offset", res->image_end_offset},
	    {"total-clusters", res->total_clusters},
	    {"allocated-clusters", res->allocated_clusters},
	    {"fragmented-clusters", res->fragmented_clusters},
	    {"compressed-clusters", res->compressed_clusters},
	};
	for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++)
		if (st[i].v)
			vdk_json_set_u64(j, st[i].k, st[i].v);
	char *s = vdk_json_render(j, true);
	printf("%s\n", s ? s : "{}");
	free(s);
	vdk_json_free(j);
}

static void check_human(const struct vdk_check *res)
{
	cli_print_check_findings(&res->findings, stdout);
	if (res->fixed || res->leaks_fixed)
		printf("The following inconsistencies were found and repaired:\n\n"
		       "    %" PRIu64 " leaked clusters\n    %" PRIu64 " corruptions\n\n",
		       res->leaks_fixed, res->fixed);
	if (!res->corruptions && !res->leaks && !res->check_errors)
		printf("No errors were found on the image.\n");
	if (res->corruptions)
		printf("\n%" PRIu64 " errors were found on the image.\n"
		       "Data may be corrupted, or further writes to the image may corrupt it.\n",
		       res->corruptions);
	if (res->leaks)
		printf("\n%" PRIu64 " leaked clusters were found on the image.\n"
		       "This means waste of disk space, but no harm to data.\n",
		       res->leaks);
	if (res->check_errors)
		printf("\n%" PRIu64 " internal errors have occurred during the check.\n",
		       res->check_errors);
	if (res->total_clusters && res->allocated_clusters)
		printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
		       "compressed clusters\n",
		       res->allocated_clusters, res->total_clusters,
		       res->allocated_clusters * 100.0 / res->total_clusters,
		       res->fragmented_clusters * 100.0 / res->allocated_clusters,
		       res->compressed_clusters * 100.0 / res->allocated_clusters);
	if (res->image_end_offset)
		printf("Image end offset: %" PRIu64 "\n", res->image_end_offset);
}

/* Exit codes as qemu-img check documents them: 0 clean, 1 the check could
 * not run, 2 corruptions, 3 leaks only. */
int cmd_check(int argc, char **argv)
{
	struct image_args a;
	struct vdk_err e = {0};
	struct vdk_image *img;
	int r = image_open(argc, argv, true, &a, &img, &e);
	if (r)
		return CLI_BAD; /* usage too: 2 would read as "corruptions" */
	struct vdk_check res = {0};
	r = check_pass(img, &a, a.repair, &res, &e);
	if (r == 0 && (res.fixed || res.leaks_fixed)) {
		/* Double-check the repaired image; report its state. */
		struct vdk_check again = {0};
		again.findings = res.findings; /* the repair's notes come first */
		memset(&res.findings, 0, sizeof(res.findings));
		r = check_pass(img, &a, false, &again, &e);
		again.fixed = res.fixed;
		again.leaks_fixed = res.leaks_fixed;
		res = again;
	}
	const char *fmt = img->fmt->name;
	vdk_image_close(img);
	if (r) {
		vdk_findings_free(&res.findings);
		cli_fail(&e);
		return CLI_BAD;
	}
	if (a.json)
		check_json(&a, fmt, &res);
	else if (!a.quiet)
		check_human(&res);
	vdk_findings_free(&res.findings);
	if (res.check_errors)
		return CLI_BAD;
	return res.corruptions ? 2 : res.leaks ? 3 : CLI_OK;
}
