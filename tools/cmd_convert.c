/* vdkit convert | compare */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { CONVERT_OPT_TARGET_ZERO = 0x300, CONVERT_OPT_WARM };

static bool convert_opt_help; /* -o help */

static void convert_report(const struct cli_job *j, const struct vdk_convert_stats *st)
{
	char a[32], b[32], c[32], d[32];
	if (j->progress_json) { /* the stream stays JSON to its end */
		fprintf(stderr,
		        "{\"result\": \"ok\", \"cloned\": %" PRIu64 ", \"offloaded\": %" PRIu64
		        ", \"copied\": %" PRIu64 ", \"sparse\": %" PRIu64
		        ", \"verified\": %s, \"warm\": %s}\n",
		        st->cloned, st->offloaded, st->copied, st->sparse,
		        j->verify ? "true" : "false", j->warm ? "true" : "false");
		return;
	}
	fprintf(stderr, "%s: %s -> %s: %s cloned, %s offloaded, %s copied, %s left sparse%s%s\n",
	        cli_prog, j->src, j->dst, cli_human(st->cloned, a, sizeof(a)),
	        cli_human(st->offloaded, b, sizeof(b)), cli_human(st->copied, c, sizeof(c)),
	        cli_human(st->sparse, d, sizeof(d)), j->verify ? ", verified" : "",
	        j->warm ? ", warm record written" : "");
}

/* -t/-T, qemu-img's cache modes: none and directsync write the output with
 * O_DIRECT, unsafe skips the final fsync; writeback (default) and
 * writethrough are ordinary buffered writes with an fsync at the end. */
static int convert_cache(struct cli_job *j, const char *arg, bool out)
{
	static const char *const modes[] = {"writeback",    "none",       "unsafe",
	                                    "writethrough", "directsync", NULL};
	int m = -1;
	for (int i = 0; modes[i]; i++)
		if (!strcmp(arg, modes[i]))
			m = i;
	if (m < 0)
		return cli_usage("-%c: unknown cache mode '%s' (valid: writeback, none, unsafe, "
		                 "writethrough, directsync)",
		                 out ? 't' : 'T', arg);
	if (out) {
		j->target.direct = m == 1 || m == 4;
		j->target.unsafe = m == 2;
	}
	return 0;
}

/* qemu-img's convert options that need no more than a flag here. */
static int convert_qemu_opt(struct cli_job *j, int c, const char *arg)
{
	switch (c) {
	case 't':
	case 'T':
		return convert_cache(j, arg, c == 't');
	case 'W': /* out-of-order writes: vdkit's pipeline already overlaps them */
	case 'U': /* force share: vdkit takes no image locks */
		return 0;
	case 'm':
		if (atoi(arg) < 1 || atoi(arg) > 64)
			return cli_usage("-m: 1 to 64 workers, not '%s'", arg);
		j->conv.threads = (unsigned)atoi(arg);
		return 0;
	case 'n':
		j->target.existing = true;
		return 0;
	case CONVERT_OPT_TARGET_ZERO:
		j->target.target_is_zero = true;
		return 0;
	}
	return -1;
}

/* Options of convert beyond the ones every converting command shares. */
static int convert_opt(struct cli_job *j, int c, const char *arg, bool *quiet)
{
	struct vdk_err e = {0};
	uint64_t v;
	int q = convert_qemu_opt(j, c, arg);
	if (q >= 0)
		return q;
	switch (c) {
	case 'f':
		j->src_fmt = arg;
		return 0;
	case 'O':
		j->dst_fmt = arg;
		return 0;
	case 'o':
		return cli_parse_o(&j->opts, arg, &convert_opt_help);
	case 'c':
		return vdk_opts_set(&j->opts, "compress", "on", &e) ? cli_fail(&e) : 0;
	case 'S':
		if (vdk_parse_size(arg, &v))
			return cli_usage("-S: bad size '%s'", arg);
		j->conv.min_sparse = v;
		j->full = v == 0; /* qemu-img -S 0: a fully allocated output */
		return 0;
	case CLI_OPT_IN_PLACE:
		j->in_place = true;
		return 0;
	case CONVERT_OPT_WARM:
		j->warm = true;
		return 0;
	}
	int r = cli_job_opt(j, c, arg, quiet);
	return r >= 0 ? r : cli_usage("convert: unknown option (see 'vdkit convert --help')");
}

/* --in-place: the source file itself becomes the target (today raw ->
 * Azure fixed VHD: a footer appended, nothing copied). */
static int convert_in_place(struct cli_job *j, int nargs, char **args)
{
	struct vdk_err e = {0};
	if (nargs < 1 || nargs > 2)
		return cli_usage("convert --in-place needs FILE [NEW-NAME]");
	if (j->verify || j->warm)
		return cli_usage("--in-place cannot be combined with --verify or --warm");
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

/* What the options mean together, before anything is opened. Returns -1
 * after printing -o help. */
static int convert_check(struct cli_job *j, int nargs, char **args)
{
	struct vdk_err e = {0};
	const struct vdk_format *fmt = cli_find_format("output", j->dst_fmt, true);
	if (!fmt)
		return CLI_USAGE;
	if (convert_opt_help) {
		cli_help_format_opts(fmt, stdout);
		return -1;
	}
	if (j->in_place)
		return 0;
	if (nargs != 2)
		return cli_usage(nargs > 2
		                     ? "convert takes one SRC and one DST (several sources are "
		                       "not supported)"
		                     : "convert needs SRC and DST");
	if (j->verify && !strcmp(args[1], "-"))
		return cli_usage("--verify cannot verify an output written to stdout (it cannot be "
		                 "read back); write to a file");
	if (j->target.target_is_zero && !j->target.existing)
		return cli_usage("--target-is-zero needs -n (an existing target)");
	const char *hint = j->src_fmt ? NULL : cli_raw_hint(args[0]);
	if (hint) {
		fprintf(stderr, "%s: %s\n", cli_prog, hint);
		return CLI_BAD;
	}
	/* -S 0 on raw: zeroes are written, as qemu-img does, unless the
	 * user chose a preallocation. */
	if (j->full && !strcmp(fmt->name, "raw") && !vdk_opts_get(&j->opts, "preallocation") &&
	    vdk_opts_set(&j->opts, "preallocation", "full", &e))
		return cli_fail(&e);
	return 0;
}

int cmd_convert(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"clone", required_argument, NULL, CLI_OPT_CLONE},
	    {"verify", no_argument, NULL, CLI_OPT_VERIFY},
	    {"progress", required_argument, NULL, CLI_OPT_PROGRESS},
	    {"threads", required_argument, NULL, CLI_OPT_THREADS},
	    {"in-place", no_argument, NULL, CLI_OPT_IN_PLACE},
	    {"target-is-zero", no_argument, NULL, CONVERT_OPT_TARGET_ZERO},
	    {"warm", no_argument, NULL, CONVERT_OPT_WARM},
	    {"force-share", no_argument, NULL, 'U'},
	    CLI_OPEN_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	struct cli_job j;
	cli_job_init(&j);
	bool quiet = false;
	int c, r = 0;
	optind = 1;
	while (!r && (c = getopt_long(argc, argv, "f:O:o:cpqS:t:T:Wm:Un", lo, NULL)) != -1)
		r = c == '?' ? CLI_USAGE : convert_opt(&j, c, optarg, &quiet);
	if (!r)
		r = convert_check(&j, argc - optind, argv + optind);
	if (r == -1) { /* -o help */
		cli_job_free(&j);
		return CLI_OK;
	}
	if (!r && j.in_place) {
		r = convert_in_place(&j, argc - optind, argv + optind);
		cli_job_free(&j);
		return r;
	}
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
	while ((c = getopt_long(argc, argv, "f:F:qsU", lo, NULL)) != -1) {
		if (c == 's' || c == 'U')
			continue; /* strict: sizes that differ already differ; no locks */
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
	/* qemu-img: -f is the first image's format, -F the second's; an image
	 * that cannot be opened is exit 2, "different" is 1. */
	if (vdk_image_open_path(argv[optind], fa, &oo, &a, &e) ||
	    vdk_image_open_path(argv[optind + 1], fb, &oo, &b, &e)) {
		vdk_image_close(a);
		cli_fail(&e);
		return CLI_USAGE;
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
