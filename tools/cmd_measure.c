/* vdkit measure [--output=json] [-O FMT] [-o OPTS] (--size SIZE | [-f FMT] IMAGE) */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "create.h"

enum { MEASURE_OPT_SIZE = 0x300 };

struct measure_args {
	const char *in_fmt, *out_fmt, *size;
	bool json, opt_help;
	struct vdk_opts opts;
	struct vdk_open_opts open;
};

static int measure_opt(struct measure_args *a, int c, const char *arg)
{
	if (cli_open_opt(c, arg, &a->open))
		return 0;
	switch (c) {
	case 'f':
		a->in_fmt = arg;
		return 0;
	case 'O':
		a->out_fmt = arg;
		return 0;
	case 'o':
		return cli_parse_o(&a->opts, arg, &a->opt_help);
	case MEASURE_OPT_SIZE:
		a->size = arg;
		return 0;
	case CLI_OPT_OUTPUT:
		return cli_parse_output(arg, &a->json);
	case 'U':
		return 0;
	}
	return cli_usage("measure: unknown option (see 'vdkit measure --help')");
}

static int measure_print(const struct measure_args *a, const struct vdk_measure *m)
{
	if (a->json)
		printf("{\n    \"required\": %" PRIu64 ",\n    \"fully-allocated\": %" PRIu64
		       "\n}\n",
		       m->required, m->fully_allocated);
	else
		printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n",
		       m->required, m->fully_allocated);
	return CLI_OK;
}

static int measure_run(struct measure_args *a, const struct vdk_format *fmt, int nargs, char **args)
{
	if ((a->size != NULL) == (nargs == 1) || nargs > 1)
		return cli_usage("measure needs either --size SIZE or one IMAGE");
	struct vdk_err e = {0};
	struct vdk_measure m = {0};
	struct vdk_image *img = NULL;
	uint64_t size = 0;
	if (a->size && vdk_parse_size(a->size, &size))
		return cli_usage("measure: bad size '%s'", a->size);
	if (!a->size && vdk_image_open_path(args[0], a->in_fmt, &a->open, &img, &e))
		return cli_fail(&e);
	int r = vdk_image_measure(fmt, img, size, &a->opts, &m, &e);
	vdk_image_close(img);
	return r ? cli_fail(&e) : measure_print(a, &m);
}

int cmd_measure(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"size", required_argument, NULL, MEASURE_OPT_SIZE},
	    {"output", required_argument, NULL, CLI_OPT_OUTPUT},
	    {"force-share", no_argument, NULL, 'U'},
	    CLI_OPEN_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	struct measure_args a = {.out_fmt = "raw"};
	int c, r = 0;
	optind = 1;
	while (!r && (c = getopt_long(argc, argv, "f:O:o:U", lo, NULL)) != -1)
		r = measure_opt(&a, c, optarg);
	const struct vdk_format *fmt = NULL;
	if (!r && !(fmt = cli_find_format("output", a.out_fmt, true)))
		r = CLI_USAGE;
	if (!r && a.opt_help)
		cli_help_format_opts(fmt, stdout);
	else if (!r)
		r = measure_run(&a, fmt, argc - optind, argv + optind);
	vdk_opts_free(&a.opts);
	return r;
}
