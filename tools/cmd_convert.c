/* vdkit convert | compare */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void convert_report(const struct cli_job *j, const struct vdk_convert_stats *st)
{
	char a[32], b[32], c[32], d[32];
	fprintf(stderr, "%s: %s -> %s: %s cloned, %s offloaded, %s copied, %s left sparse%s\n",
	        cli_prog, j->src, j->dst, cli_human(st->cloned, a, sizeof(a)),
	        cli_human(st->offloaded, b, sizeof(b)), cli_human(st->copied, c, sizeof(c)),
	        cli_human(st->sparse, d, sizeof(d)), j->verify ? ", verified" : "");
}

/* Options of convert beyond the ones every converting command shares. */
static int convert_opt(struct cli_job *j, int c, const char *arg, bool *quiet)
{
	struct vdk_err e = {0};
	uint64_t v;
	switch (c) {
	case 'f':
		j->src_fmt = arg;
		return 0;
	case 'O':
		j->dst_fmt = arg;
		return 0;
	case 'o':
		return vdk_opts_parse(&j->opts, arg, &e) ? cli_fail(&e) : 0;
	case 'c':
		return vdk_opts_set(&j->opts, "compress", "on", &e) ? cli_fail(&e) : 0;
	case 'S':
		if (vdk_parse_size(arg, &v))
			return cli_usage("-S: bad size '%s'", arg);
		j->conv.min_sparse = v;
		return 0;
	case CLI_OPT_IN_PLACE:
		j->in_place = true;
		return 0;
	}
	int r = cli_job_opt(j, c, arg, quiet);
	return r >= 0 ? r : cli_usage("convert: unknown option");
}

/* --in-place: the source file itself becomes the target (today raw ->
 * Azure fixed VHD: a footer appended, nothing copied). */
static int convert_in_place(struct cli_job *j, int nargs, char **args)
{
	struct vdk_err e = {0};
	if (nargs < 1 || nargs > 2)
		return cli_usage("convert --in-place needs FILE [NEW-NAME]");
	if (j->verify)
		return cli_usage("--in-place cannot be combined with --verify");
	const char *final = nargs == 2 ? args[1] : args[0];
	int r = vdk_convert_in_place(args[0], nargs == 2 ? args[1] : NULL, j->src_fmt, j->dst_fmt,
	                             &j->opts, &e);
	if (r < 0)
		return e.cls == VDK_E_USAGE ? cli_usage("%s", e.msg) : cli_fail(&e);
	fprintf(stderr, "%s: %s: %s\n", cli_prog, final,
	        r == 1 ? "already an Azure fixed VHD; left as it is"
	               : "now an Azure fixed VHD (footer appended in place, nothing copied)");
	return CLI_OK;
}

int cmd_convert(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"clone", required_argument, NULL, CLI_OPT_CLONE},
	    {"verify", no_argument, NULL, CLI_OPT_VERIFY},
	    {"progress", required_argument, NULL, CLI_OPT_PROGRESS},
	    {"threads", required_argument, NULL, CLI_OPT_THREADS},
	    {"in-place", no_argument, NULL, CLI_OPT_IN_PLACE},
	    CLI_OPEN_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	struct cli_job j;
	cli_job_init(&j);
	bool quiet = false;
	int c, r = 0;
	optind = 1;
	while (!r && (c = getopt_long(argc, argv, "f:O:o:cpqS:", lo, NULL)) != -1)
		r = convert_opt(&j, c, optarg, &quiet);
	if (!r && j.in_place) {
		r = convert_in_place(&j, argc - optind, argv + optind);
		cli_job_free(&j);
		return r;
	}
	if (!r && optind != argc - 2)
		r = cli_usage("convert needs SRC and DST");
	if (r) {
		cli_job_free(&j);
		return r;
	}
	j.src = argv[optind];
	j.dst = argv[optind + 1];
	cli_install_signals();
	struct vdk_err e = {0};
	struct vdk_convert_stats st;
	r = cli_job_run(&j, &st, &e) ? cli_fail(&e) : CLI_OK;
	if (r == CLI_OK && !quiet && strcmp(j.dst, "-"))
		convert_report(&j, &st);
	cli_job_free(&j);
	return r;
}

int cmd_compare(int argc, char **argv)
{
	static const struct option lo[] = {CLI_OPEN_LONGOPTS, {NULL, 0, NULL, 0}};
	struct vdk_open_opts oo = {0};
	const char *fa = NULL, *fb = NULL;
	bool quiet = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:F:q", lo, NULL)) != -1) {
		if (c == 'f')
			fa = optarg;
		else if (c == 'F')
			fb = optarg;
		else if (c == 'q')
			quiet = true;
		else if (!cli_open_opt(c, optarg, &oo))
			return cli_usage("compare: unknown option");
	}
	if (optind != argc - 2)
		return cli_usage("compare needs two images");
	struct vdk_err e = {0};
	struct vdk_image *a = NULL, *b = NULL;
	if (vdk_image_open_path(argv[optind], fa, &oo, &a, &e) ||
	    vdk_image_open_path(argv[optind + 1], fb ? fb : fa, &oo, &b, &e)) {
		vdk_image_close(a);
		return cli_fail(&e);
	}
	bool differ;
	uint64_t first = 0;
	int r = vdk_compare(a, b, &differ, &first, &e);
	vdk_image_close(a);
	vdk_image_close(b);
	if (r)
		return cli_fail(&e);
	if (differ) {
		if (!quiet)
			printf("Content mismatch at offset %" PRIu64 "!\n", first);
		return CLI_BAD;
	}
	if (!quiet)
		printf("Images are identical.\n");
	return CLI_OK;
}
