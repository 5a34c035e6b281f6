/* vdkit create [-f FMT] [-o OPTS] [-b BACKING -F BFMT] FILE SIZE */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "create.h"

enum { CREATE_OPT_PREALLOC = 0x300 };

struct create_args {
	const char *fmt, *backing, *bfmt;
	struct vdk_opts opts;
	bool quiet, opt_help;
};

static int create_opt(struct create_args *a, int c, const char *arg)
{
	struct vdk_err e = {0};
	switch (c) {
	case 'f':
		a->fmt = arg;
		return 0;
	case 'o':
		return cli_parse_o(&a->opts, arg, &a->opt_help);
	case CREATE_OPT_PREALLOC:
		return vdk_opts_set(&a->opts, "preallocation", arg, &e) ? cli_fail(&e) : 0;
	case 'b':
		a->backing = arg;
		return 0;
	case 'F':
		a->bfmt = arg;
		return 0;
	case 'q':
		a->quiet = true;
		return 0;
	case 'u': /* qemu-img: do not open the backing file (vdkit never does) */
		return 0;
	}
	return cli_usage("create: unknown option (see 'vdkit create --help')");
}

/* -b/-F become the qcow2 writer's backing_file/backing_fmt; other formats
 * have no backing files vdkit can write. */
static int create_backing(struct create_args *a, const struct vdk_format *fmt)
{
	struct vdk_err e = {0};
	if (!a->backing && !a->bfmt)
		return 0;
	if (strcmp(fmt->name, "qcow2"))
		return cli_usage("create: -b/-F (backing file) are for qcow2 only, not %s",
		                 fmt->name);
	if (!a->backing)
		return cli_usage("create: -F needs -b BACKING");
	if ((vdk_opts_set(&a->opts, "backing_file", a->backing, &e)) ||
	    (a->bfmt && vdk_opts_set(&a->opts, "backing_fmt", a->bfmt, &e)))
		return cli_fail(&e);
	return 0;
}

static int create_run(struct create_args *a, const struct vdk_format *fmt, const char *path,
                      const char *size_arg)
{
	uint64_t size;
	if (vdk_parse_size(size_arg, &size))
		return cli_usage("create: bad size '%s' (bytes, or with k, M, G, T, P)", size_arg);
	int r = create_backing(a, fmt);
	if (r)
		return r;
	struct vdk_err e = {0};
	struct vdk_sink *sink;
	if (vdk_sink_create_file(path, &sink, &e))
		return cli_fail(&e);
	r = vdk_image_create(fmt, sink, size, &a->opts, &e);
	vdk_sink_close(sink); /* removes the temporary unless committed */
	if (r)
		return cli_fail(&e);
	if (!a->quiet)
		printf("Formatting '%s', fmt=%s size=%llu\n", path, fmt->name,
		       (unsigned long long)size);
	return CLI_OK;
}

int cmd_create(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"preallocation", required_argument, NULL, CREATE_OPT_PREALLOC},
	    {"format", required_argument, NULL, 'f'},
	    {NULL, 0, NULL, 0},
	};
	struct create_args a = {.fmt = "raw"};
	int c, r = 0;
	optind = 1;
	while (!r && (c = getopt_long(argc, argv, "f:o:b:F:qu", lo, NULL)) != -1)
		r = create_opt(&a, c, optarg);
	const struct vdk_format *fmt = NULL;
	if (!r && !(fmt = cli_find_format("output", a.fmt, true)))
		r = CLI_USAGE;
	if (!r && a.opt_help) {
		cli_help_format_opts(fmt, stdout);
		vdk_opts_free(&a.opts);
		return CLI_OK;
	}
	if (!r && optind != argc - 2)
		r = cli_usage("create needs FILE and SIZE");
	if (!r)
		r = create_run(&a, fmt, argv[optind], argv[optind + 1]);
	vdk_opts_free(&a.opts);
	return r;
}
