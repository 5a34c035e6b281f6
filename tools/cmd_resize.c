/* vdkit resize [-f FMT] [--shrink] [--preallocation=MODE] FILE [+|-]SIZE */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "create.h"

enum { RESIZE_OPT_SHRINK = 0x300, RESIZE_OPT_PREALLOC };

int cmd_resize(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"shrink", no_argument, NULL, RESIZE_OPT_SHRINK},
	    {"preallocation", required_argument, NULL, RESIZE_OPT_PREALLOC},
	    {"format", required_argument, NULL, 'f'},
	    {NULL, 0, NULL, 0},
	};
	const char *fmt = NULL;
	bool shrink = false, quiet = false;
	struct vdk_opts opts = {0};
	struct vdk_err e = {0};
	int c, r = 0;
	optind = 1;
	/* The size is the last argument, taken before getopt sees it: "-1G"
	 * is a size, not an option (qemu-img does the same). */
	if (argc < 3)
		return cli_usage("resize needs FILE and [+|-]SIZE");
	const char *s = argv[--argc];
	while (!r && (c = getopt_long(argc, argv, "f:qU", lo, NULL)) != -1) {
		if (c == 'f')
			fmt = optarg;
		else if (c == 'q')
			quiet = true;
		else if (c == 'U')
			continue;
		else if (c == RESIZE_OPT_SHRINK)
			shrink = true;
		else if (c == RESIZE_OPT_PREALLOC)
			r = vdk_opts_set(&opts, "preallocation", optarg, &e) ? cli_fail(&e) : 0;
		else
			r = cli_usage("resize: unknown option (see 'vdkit resize --help')");
	}
	if (!r && optind < argc && !strcmp(argv[optind], "--"))
		optind++;
	if (!r && optind != argc - 1)
		r = cli_usage("resize needs FILE and [+|-]SIZE");
	if (r) {
		vdk_opts_free(&opts);
		return r;
	}
	int sign = *s == '+' ? 1 : *s == '-' ? -1 : 0;
	uint64_t size, now = 0;
	if (vdk_parse_size(s + (sign != 0), &size)) {
		vdk_opts_free(&opts);
		return cli_usage("resize: bad size '%s'", s);
	}
	r = vdk_image_resize(argv[optind], fmt, sign, size, shrink, &opts, &now, &e);
	if (!r)
		r = vdk_opts_check_unused(&opts, fmt ? fmt : "image", &e);
	vdk_opts_free(&opts);
	if (r)
		return cli_fail(&e);
	if (!quiet)
		printf("Image resized.\n");
	return CLI_OK;
}
