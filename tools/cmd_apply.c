/* vdkit apply: a VMware snapshot delta written into a converted target in
 * place (warm migration; the work is convert/apply.c's). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "cli.h"

enum { APPLY_OPT_FORCE = 0x380, APPLY_OPT_PROGRESS };

struct apply_cli {
	struct vdk_apply a;
	bool json, quiet, bar;
	int last_bp;
};

/* qemu-img -p's "(NN.NN/100%)" on stdout, as convert prints it. */
static void apply_cli_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct apply_cli *c = ctx;
	int bp = total ? (int)((double)done * 10000.0 / (double)total) : 10000;
	if (bp == c->last_bp)
		return;
	c->last_bp = bp;
	printf("    (%d.%02d/100%%)\r", bp / 100, bp % 100);
	fflush(stdout);
}

static void apply_cli_json(const struct vdk_apply *a)
{
	struct vdk_json *j = vdk_json_new_obj();
	char cid[16], pcid[16];
	snprintf(cid, sizeof(cid), "%08" PRIx32, a->cid);
	snprintf(pcid, sizeof(pcid), "%08" PRIx32, a->parent_cid);
	vdk_json_set_str(j, "delta", a->delta);
	vdk_json_set_str(j, "target", a->target);
	if (a->format)
		vdk_json_set_str(j, "format", a->format);
	vdk_json_set_str(j, "cid", cid);
	vdk_json_set_str(j, "parent-cid", pcid);
	vdk_json_set_bool(j, "already-applied", a->already);
	vdk_json_set_bool(j, "rerun", a->rerun);
	vdk_json_set_u64(j, "delta-allocated", a->delta_allocated);
	vdk_json_set_u64(j, "data-bytes", a->st.data_bytes);
	vdk_json_set_u64(j, "metadata-bytes", a->st.meta_bytes);
	vdk_json_set_u64(j, "bytes-written", a->st.data_bytes + a->st.meta_bytes);
	vdk_json_set_u64(j, "syncs", a->st.syncs);
	vdk_json_set_u64(j, "leaks-fixed", a->leaks_fixed);
	char *s = vdk_json_render(j, true);
	vdk_json_free(j);
	if (s)
		printf("%s\n", s);
	free(s);
}

static void apply_cli_report(const struct vdk_apply *a)
{
	char d[32], m[32], x[32];
	if (a->already) {
		fprintf(stderr,
		        "%s: %s: the delta with CID %08" PRIx32 " is already applied to %s\n",
		        cli_prog, a->delta, a->cid, a->target);
		return;
	}
	fprintf(stderr,
	        "%s: %s -> %s: delta %08" PRIx32 " (parent %08" PRIx32 ") applied%s: %s data + %s "
	        "metadata written (%" PRIu64 " syncs); the delta stores %s",
	        cli_prog, a->delta, a->target, a->cid, a->parent_cid,
	        a->rerun ? " (interrupted apply completed)" : "",
	        cli_human(a->st.data_bytes, d, sizeof(d)),
	        cli_human(a->st.meta_bytes, m, sizeof(m)), a->st.syncs,
	        cli_human(a->delta_allocated, x, sizeof(x)));
	if (a->leaks_fixed)
		fprintf(stderr, "; %" PRIu64 " leaked cluster(s) repaired", a->leaks_fixed);
	fprintf(stderr, "\n");
}

static int apply_cli_opt(struct apply_cli *c, int o, const char *arg)
{
	switch (o) {
	case 'f':
		c->a.delta_fmt = arg;
		return 0;
	case 'F':
		c->a.target_fmt = arg;
		return 0;
	case 'q':
		c->quiet = true;
		return 0;
	case 'p':
	case APPLY_OPT_PROGRESS:
		c->bar = true;
		return 0;
	case APPLY_OPT_FORCE:
		c->a.force = true;
		return 0;
	case CLI_OPT_OUTPUT:
		return cli_parse_output(arg, &c->json);
	case CLI_OPT_ALLOW_DIR:
	case CLI_OPT_ALLOW_ANY:
		return cli_open_opt(o, arg, &c->a.open) ? 0 : CLI_USAGE;
	}
	return cli_usage("apply: unknown option (see 'vdkit apply --help')");
}

int cmd_apply(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"force", no_argument, NULL, APPLY_OPT_FORCE},
	    {"progress", no_argument, NULL, APPLY_OPT_PROGRESS},
	    {"output", required_argument, NULL, CLI_OPT_OUTPUT},
	    {"allow-dir", required_argument, NULL, CLI_OPT_ALLOW_DIR},
	    {"allow-any-path", no_argument, NULL, CLI_OPT_ALLOW_ANY},
	    {NULL, 0, NULL, 0},
	};
	struct apply_cli c = {.last_bp = -1};
	int o, r = 0;
	optind = 1;
	while (!r && (o = getopt_long(argc, argv, "f:F:pq", lo, NULL)) != -1)
		r = o == '?' ? CLI_USAGE : apply_cli_opt(&c, o, optarg);
	if (r)
		return r;
	if (argc - optind != 2)
		return cli_usage("apply needs DELTA and TARGET");
	c.a.delta = argv[optind];
	c.a.target = argv[optind + 1];
	if (c.bar) {
		c.a.progress = apply_cli_progress;
		c.a.progress_ctx = &c;
	}
	struct vdk_err e = {0};
	r = vdk_apply_run(&c.a, &e);
	if (c.bar)
		printf("\n");
	if (r)
		return cli_fail(&e);
	if (c.json)
		apply_cli_json(&c.a);
	else if (!c.quiet)
		apply_cli_report(&c.a);
	return CLI_OK;
}
