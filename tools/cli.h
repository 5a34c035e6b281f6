/* Shared pieces of the command-line front ends: error printing, exit codes,
 * option helpers, and the convert job used by `vdkit convert`, `vmdk2vhdx`
 * and `vdkit ova unpack`. Only tools/ prints or exits. */
#ifndef VDK_CLI_H
#define VDK_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "format.h"
#include "job.h"
#include "pipeline.h"

enum { CLI_OK = 0, CLI_BAD = 1, CLI_USAGE = 2, CLI_IO = 3 };

extern const char *cli_prog; /* "vdkit", "vmdk2vhdx" */

/* Print "PROG: message" for e to stderr; return its exit code. */
int cli_fail(const struct vdk_err *e);
/* Print "PROG: message" (usage problem) and return CLI_USAGE. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* SIGINT/SIGTERM set this; long jobs pass it as the pipeline's cancel. */
extern volatile int cli_cancel;
void cli_install_signals(void);

/* A conversion as the command line states it; cli_job_run hands it to the
 * library's job (job.h), which leaves nothing at dst on any failure. */
struct cli_job {
	const char *src, *dst;
	const char *src_fmt; /* NULL: probe */
	const char *dst_fmt;
	struct vdk_opts opts; /* -o */
	struct vdk_open_opts open;
	struct vdk_convert_opts conv;
	bool verify;
	bool warm;                     /* --warm: record SRC's identity beside DST */
	bool in_place;                 /* --in-place: rewrite the source itself */
	bool progress;                 /* -p: a bar on stderr */
	bool progress_json;            /* --progress=json: JSON lines on stderr */
	struct vdk_target_opts target; /* -n, --target-is-zero, -t */
	bool full;                     /* -S 0: fully allocated output */
};
void cli_job_init(struct cli_job *j);
/* Options every converting command shares: -p, -q, --clone, --verify,
 * --progress=json, --threads and CLI_OPEN_LONGOPTS. Returns 0 when handled,
 * an exit code on a bad value, -1 when c is not one of them. */
int cli_job_opt(struct cli_job *j, int c, const char *arg, bool *quiet);
int cli_job_run(struct cli_job *j, struct vdk_convert_stats *st, struct vdk_err *e);
void cli_job_free(struct cli_job *j);

/* Findings (check, ova verify): "PROG: error: FILE: at offset N: msg"
 * lines, and the same as JSON objects pushed on arr. */
void cli_print_findings(const struct vdk_findings *f, FILE *out);
void cli_findings_json(const struct vdk_findings *f, struct vdk_json *arr);
/* The same, worded as qemu-img check prints its findings. */
void cli_print_check_findings(const struct vdk_findings *f, FILE *out);

/* Parse --clone=auto|always|never. */
int cli_parse_clone(const char *s, enum vdk_clone_mode *out);
/* Human-readable byte count ("1.5 GiB") into buf. */
const char *cli_human(uint64_t bytes, char *buf, size_t len);

/* Subcommands (tools/cmd_*.c); argv[0] is the verb. */
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_ova(int argc, char **argv);     /* tools/cmd_ova.c (OVA module) */
int cmd_create(int argc, char **argv);  /* tools/cmd_create.c */
int cmd_resize(int argc, char **argv);  /* tools/cmd_resize.c */
int cmd_measure(int argc, char **argv); /* tools/cmd_measure.c */
int cmd_commit(int argc, char **argv);  /* tools/cmd_commit.c */
int cmd_rebase(int argc, char **argv);  /* tools/cmd_commit.c */
int cmd_apply(int argc, char **argv);   /* tools/cmd_apply.c */

/* tools/cli_hint.c: for a file that probes as raw but is an OVA package or
 * a footer-only (fixed) VHD, the hint to print; NULL otherwise. */
const char *cli_raw_hint(const char *path);

/* tools/help.c: one table of verbs, synopses and options. */
int cli_help_verb(const char *verb, FILE *f); /* CLI_OK, or CLI_USAGE if unknown */
void cli_help_all(FILE *f);
void cli_version(FILE *f); /* "PROG version X.Y.Z" */
/* True when argv holds --help or -h (before any "--"). */
bool cli_wants_help(int argc, char **argv);
/* Print a format's -o options (for "-o help"). */
void cli_help_format_opts(const struct vdk_format *fmt, FILE *f);
/* "unknown output format 'x' (valid: raw, vmdk, ...)": CLI_USAGE. writable:
 * list only formats with a writer. */
int cli_bad_format(const char *what, const char *name, bool writable);
/* The format, or NULL after printing cli_bad_format's message. */
const struct vdk_format *cli_find_format(const char *what, const char *name, bool writable);
/* vdkit info VM.vmx (tools/cmd_vmx.c). */
int cmd_info_vmx(const char *path, const struct vdk_open_opts *open, bool json);
/* vdkit ova unpack VM.vmx DIR (tools/cmd_vmx.c). */
int cmd_unpack_vmx(const char *vmx, const char *dir, const char *out_fmt, struct vdk_opts *wopts,
                   const struct vdk_convert_opts *conv);

#endif

/* Options every image-reading verb shares (long-only, values >= 0x100). */
enum {
	CLI_OPT_ALLOW_DIR = 0x100,
	CLI_OPT_ALLOW_ANY,
	CLI_OPT_FORCE,
	CLI_OPT_OUTPUT,
	CLI_OPT_CLONE,
	CLI_OPT_VERIFY,
	CLI_OPT_PROGRESS,
	CLI_OPT_THREADS,
	CLI_OPT_BACKING_FMT,
	CLI_OPT_IN_PLACE,
	CLI_OPT_TIMEOUT, /* remote servers (remote.h) */
};
#define CLI_OPEN_LONGOPTS                                                                          \
	{"allow-dir", required_argument, NULL, CLI_OPT_ALLOW_DIR},                                 \
	    {"allow-any-path", no_argument, NULL, CLI_OPT_ALLOW_ANY},                              \
	    {"force", no_argument, NULL, CLI_OPT_FORCE},                                           \
	    {"timeout", required_argument, NULL, CLI_OPT_TIMEOUT},                                 \
	{                                                                                          \
		"backing-format", required_argument, NULL, CLI_OPT_BACKING_FMT                     \
	}
/* Handles the CLI_OPEN_LONGOPTS; returns 1 if c was one of them. */
int cli_open_opt(int c, const char *arg, struct vdk_open_opts *o);
/* -o ARG: "help" (or "?") sets *help; anything else is parsed into o.
 * Returns 0, or an exit code after printing. */
int cli_parse_o(struct vdk_opts *o, const char *arg, bool *help);
/* --output=json|human; returns 0, or CLI_USAGE after printing. */
int cli_parse_output(const char *arg, bool *json);
