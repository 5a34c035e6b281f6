/* vdkit: the multi-verb front end. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *usage;
} verbs[] = {
    {"info", cmd_info, "info [-f FMT] [--output=json] IMAGE"},
    {"check", cmd_check, "check [-f FMT] [--output=json] [-r] IMAGE"},
    {"convert", cmd_convert,
     "convert [-f FMT] [-O FMT] [-o OPTS] [-c] [-p] [--progress=json] [-S SIZE]\n"
     "                [--clone=auto|always|never] [--verify] [--threads N] SRC DST\n"
     "  vdkit convert --in-place -f raw -O vpc -o azure=on FILE [NEW-NAME]"},
    {"compare", cmd_compare, "compare [-f FMT] [-F FMT] [-q] A B"},
    {"map", cmd_map, "map [-f FMT] [--output=json] IMAGE"},
    {"ova", cmd_ova, "ova verify|list|unpack|pack|scan ...  (vdkit ova --help)"},
};

static int usage(FILE *f, int code)
{
	fprintf(f, "vdkit: convert virtual disks (raw, vmdk, vhdx, qcow2, vpc) and OVA packages\n\n"
	           "usage:\n");
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		fprintf(f, "  vdkit %s\n", verbs[i].usage);
	fprintf(f, "\nformats:");
	for (const struct vdk_format *const *fm = vdk_formats; *fm; fm++)
		fprintf(f, " %s", (*fm)->name);
	fprintf(f, "\n\nimage options: --allow-dir DIR (let extents/backing files come from DIR),\n"
	           "  --allow-any-path, --force (open despite a parent CID mismatch),\n"
	           "  --backing-format FMT, --timeout SECONDS (remote servers; default 60)\n"
	           "IMAGE, SRC and DST may be nbd://HOST[:PORT]/EXPORT or\n"
	           "  nbd+unix:///EXPORT?socket=PATH (DST: an existing export, written in place)\n"
	           "exit codes: 0 ok, 1 bad input or images differ, 2 usage, 3 I/O failure\n");
	return code;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr, CLI_USAGE);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
		return usage(stdout, CLI_OK);
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].fn(argc - 1, argv + 1);
	return cli_usage("unknown command '%s'", argv[1]);
}
