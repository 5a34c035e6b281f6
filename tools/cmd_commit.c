/* vdkit commit [-f FMT] [-d] [-b BASE] [-p] [-q] IMAGE
 * vdkit rebase -u -b BACKING [-F FMT] [-f FMT] [-q] IMAGE
 * qemu-img's meanings; the work is in convert/commit.c. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commit.h"

struct commit_bar {
	int last_bp;
};

/* qemu-img -p's form on stdout: "    (NN.NN/100%)\r". */
static void commit_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct commit_bar *b = ctx;
	int bp = total ? (int)((double)done * 10000.0 / (double)total) : 10000;
	if (bp == b->last_bp)
		return;
	b->last_bp = bp;
	printf("    (%d.%02d/100%%)\r", bp / 100, bp % 100);
	fflush(stdout);
}

int cmd_commit(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"format", required_argument, NULL, 'f'}, CLI_OPEN_LONGOPTS, {NULL, 0, NULL, 0}};
	struct vdk_commit_opts o = {0};
	struct vdk_open_opts open = {0};
	struct commit_bar bar = {.last_bp = -1};
	bool quiet = false, progress = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:db:pqt:r:", lo, NULL)) != -1) {
		if (c == 'f')
			o.fmt = optarg;
		else if (c == 'd')
			o.keep = true;
		else if (c == 'b')
			o.base = optarg;
		else if (c == 'p')
			progress = true;
		else if (c == 'q')
			quiet = true;
		else if (c == 't' || c == 'r')
			continue; /* qemu-img's cache mode and rate limit: accepted */
		else if (!cli_open_opt(c, optarg, &open))
			return cli_usage("commit: unknown option (see 'vdkit commit --help')");
	}
	if (optind != argc - 1)
		return cli_usage("commit needs one IMAGE");
	o.access = open.access;
	o.force = open.force;
	if (progress && !quiet) {
		o.progress = commit_progress;
		o.ctx = &bar;
	}
	struct vdk_commit_result res;
	struct vdk_err e = {0};
	int r = vdk_commit(argv[optind], &o, &res, &e);
	if (bar.last_bp >= 0)
		printf("\n");
	if (r)
		return cli_fail(&e);
	if (res.kept_why)
		fprintf(stderr, "%s: %s: not emptied (%s): it was kept, as with -d\n", cli_prog,
		        argv[optind], res.kept_why);
	if (!quiet)
		printf("Image committed.\n");
	return CLI_OK;
}

int cmd_rebase(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"format", required_argument, NULL, 'f'}, CLI_OPEN_LONGOPTS, {NULL, 0, NULL, 0}};
	struct vdk_rebase_opts o = {0};
	struct vdk_open_opts open = {0};
	struct commit_bar bar = {.last_bp = -1};
	bool quiet = false, progress = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:b:F:uqpt:T:U", lo, NULL)) != -1) {
		if (c == 'f')
			o.fmt = optarg;
		else if (c == 'b')
			o.backing = optarg;
		else if (c == 'F')
			o.backing_fmt = optarg;
		else if (c == 'u')
			o.unsafe = true;
		else if (c == 'q')
			quiet = true;
		else if (c == 'p')
			progress = true;
		else if (c == 't' || c == 'T' || c == 'U')
			continue; /* cache modes, force-share: accepted */
		else if (!cli_open_opt(c, optarg, &open))
			return cli_usage("rebase: unknown option (see 'vdkit rebase --help')");
	}
	if (optind != argc - 1)
		return cli_usage("rebase needs one IMAGE");
	if (!o.backing)
		return cli_usage("rebase needs -b BACKING (\"\" for none)");
	o.access = open.access;
	if (progress && !quiet && !o.unsafe) {
		o.progress = commit_progress;
		o.ctx = &bar;
	}
	struct vdk_err e = {0};
	struct vdk_update_stats st;
	int r = vdk_rebase(argv[optind], &o, &st, &e);
	if (bar.last_bp >= 0)
		printf("\n");
	return r ? cli_fail(&e) : CLI_OK;
}
