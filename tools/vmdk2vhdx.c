/* vmdk2vhdx: any VMDK vdkit reads becomes a VHDX Hyper-V accepts. On a
 * filesystem that shares blocks the payload is cloned, not copied, so a flat
 * VMDK converts in well under a second whatever its size. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

enum { V2V_FIXED = 0x200, V2V_BLOCK, V2V_LSS, V2V_HELP, V2V_SRCFMT, V2V_VERSION };

static void v2v_help(FILE *f)
{
	cli_help_verb("vmdk2vhdx", f);
}

static int v2v_opt(struct cli_job *j, int c, const char *arg, bool *quiet)
{
	struct vdk_err e = {0};
	switch (c) {
	case V2V_FIXED:
		return vdk_opts_set(&j->opts, "subformat", "fixed", &e) ? cli_fail(&e) : 0;
	case V2V_BLOCK:
		return vdk_opts_set(&j->opts, "block_size", arg, &e) ? cli_fail(&e) : 0;
	case V2V_LSS:
		return vdk_opts_set(&j->opts, "logical_sector_size", arg, &e) ? cli_fail(&e) : 0;
	case V2V_SRCFMT:
		j->src_fmt = arg;
		return 0;
	case 'h':
	case V2V_HELP:
		v2v_help(stdout);
		exit(0);
	case V2V_VERSION:
		cli_version(stdout);
		exit(0);
	}
	int r = cli_job_opt(j, c, arg, quiet);
	return r >= 0 ? r : cli_usage("unknown option (see --help)");
}

static void v2v_report(const struct cli_job *j, const struct vdk_convert_stats *st)
{
	char a[32], b[32], c[32], d[32];
	printf("%s -> %s: %s cloned, %s copied (%s of it in-kernel), %s left sparse%s\n", j->src,
	       j->dst, cli_human(st->cloned, a, sizeof(a)),
	       cli_human(st->copied + st->offloaded, b, sizeof(b)),
	       cli_human(st->offloaded, c, sizeof(c)), cli_human(st->sparse, d, sizeof(d)),
	       j->verify ? "; verified: the VHDX reads back identical" : "");
	printf("bytes: cloned=%llu copied=%llu offloaded=%llu sparse=%llu\n",
	       (unsigned long long)st->cloned, (unsigned long long)st->copied,
	       (unsigned long long)st->offloaded, (unsigned long long)st->sparse);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"fixed", no_argument, NULL, V2V_FIXED},
	    {"block-size", required_argument, NULL, V2V_BLOCK},
	    {"logical-sector-size", required_argument, NULL, V2V_LSS},
	    {"source-format", required_argument, NULL, V2V_SRCFMT},
	    {"clone", required_argument, NULL, CLI_OPT_CLONE},
	    {"verify", no_argument, NULL, CLI_OPT_VERIFY},
	    {"progress", required_argument, NULL, CLI_OPT_PROGRESS},
	    {"help", no_argument, NULL, V2V_HELP},
	    {"version", no_argument, NULL, V2V_VERSION},
	    CLI_OPEN_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	cli_prog = "vmdk2vhdx"; /* tools/cli.c defines it for vdkit */
	struct cli_job j;
	cli_job_init(&j);
	j.dst_fmt = "vhdx";
	j.src_fmt = "vmdk";
	bool quiet = false;
	int c, r = 0;
	while (!r && (c = getopt_long(argc, argv, "pqh", lo, NULL)) != -1)
		r = c == '?' ? CLI_USAGE : v2v_opt(&j, c, optarg, &quiet);
	if (!r && optind != argc - 2) {
		v2v_help(stderr);
		r = CLI_USAGE;
	}
	if (r) {
		cli_job_free(&j);
		return r;
	}
	j.src = argv[optind];
	j.dst = argv[optind + 1];
	size_t n = strlen(j.dst);
	if (strcmp(j.dst, "-") && (n < 5 || strcasecmp(j.dst + n - 5, ".vhdx")))
		fprintf(stderr,
		        "%s: warning: %s does not end in .vhdx; Hyper-V only attaches "
		        ".vhdx files\n",
		        cli_prog, j.dst);
	if (!vdk_format_find(j.src_fmt)) {
		cli_job_free(&j);
		return cli_usage("the %s format is not available in this build", j.src_fmt);
	}
	cli_install_signals();
	struct vdk_err e = {0};
	struct vdk_convert_stats st = {0};
	r = cli_job_run(&j, &st, &e);
	if (r == 0 && !quiet)
		v2v_report(&j, &st);
	cli_job_free(&j);
	return r ? cli_fail(&e) : CLI_OK;
}
