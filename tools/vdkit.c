/* vdkit: the multi-verb front end. Help comes from tools/help.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
} verbs[] = {
    {"info", cmd_info},       {"check", cmd_check},   {"convert", cmd_convert},
    {"compare", cmd_compare}, {"map", cmd_map},       {"ova", cmd_ova},
    {"create", cmd_create},   {"resize", cmd_resize}, {"measure", cmd_measure},
    {"commit", cmd_commit},   {"rebase", cmd_rebase},
    {"apply", cmd_apply},
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		cli_help_all(stderr);
		return CLI_USAGE;
	}
	const char *v = argv[1];
	if (!strcmp(v, "--help") || !strcmp(v, "-h") || (!strcmp(v, "help") && argc == 2)) {
		cli_help_all(stdout);
		return CLI_OK;
	}
	if (!strcmp(v, "help"))
		return cli_help_verb(argv[2], stdout);
	if (!strcmp(v, "--version") || !strcmp(v, "-V") || !strcmp(v, "version")) {
		cli_version(stdout);
		return CLI_OK;
	}
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strcmp(v, verbs[i].name))
			continue;
		if (cli_wants_help(argc - 1, argv + 1))
			return cli_help_verb(v, stdout);
		return verbs[i].fn(argc - 1, argv + 1);
	}
	return cli_usage("unknown command '%s'", v);
}
