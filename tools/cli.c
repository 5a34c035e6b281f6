/* Shared CLI pieces: messages, exit codes, signals, progress, and the
 * convert job (temporary output, verify, rename into place). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "remote.h"

const char *cli_prog = "vdkit";
volatile int cli_cancel;
/* SIGUSR1: print the progress once (qemu-img's habit). */
static volatile sig_atomic_t cli_usr1;

static void cli_on_usr1(int sig)
{
	(void)sig;
	cli_usr1 = 1;
}

int cli_fail(const struct vdk_err *e)
{
	fprintf(stderr, "%s: %s\n", cli_prog, e->msg[0] ? e->msg : "failed");
	int code = vdk_err_exit_code(e);
	return code ? code : CLI_IO;
}

int cli_usage(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", cli_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help'.\n", cli_prog);
	return CLI_USAGE;
}

static void cli_on_signal(int sig)
{
	(void)sig;
	cli_cancel = 1;
}

void cli_install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = cli_on_signal;
	/* No SA_RESETHAND: a second SIGINT (an impatient Ctrl-C, `timeout -s
	 * INT` followed by its kill) lands during cleanup and must not end the
	 * process before the temporary output is gone. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = cli_on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	/* A reader of --progress=json that goes away (`| head -1`) must not
	 * kill the conversion: writes to it fail with EPIPE and are dropped;
	 * a closed stdout output fails as an I/O error, with cleanup. */
	signal(SIGPIPE, SIG_IGN);
}

int cli_parse_clone(const char *s, enum vdk_clone_mode *out)
{
	static const char *const names[] = {"auto", "always", "never"};
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, names[i])) {
			*out = (enum vdk_clone_mode)i;
			return 0;
		}
	return -1;
}

const char *cli_human(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double v = (double)bytes;
	int u = 0;
	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, len,
		         v < 10    ? "%.2f %s"
		         : v < 100 ? "%.1f %s"
		                   : "%.0f %s",
		         v, units[u]);
	return buf;
}

/* Progress ---------------------------------------------------------- */

struct cli_progress {
	bool json, bar;
	int last_pct;
	int last_bp; /* hundredths of a percent last printed by the bar */
	FILE *out;   /* the bar: stdout, as qemu-img (stderr when DST is -) */
	struct timespec start;
};

/* qemu-img -p's form, which scrapers parse (KubeVirt CDI's regex
 * "\((\d?\d\.\d\d)\/100%\)"), in 0.01% steps, on stdout even when it
 * is not a terminal. */
static void cli_progress_cb(void *ctx, const struct vdk_progress *p)
{
	struct cli_progress *cp = ctx;
	int bp = p->total ? (int)((double)p->done * 10000.0 / (double)p->total) : 10000;
	int pct = bp / 100;
	bool once = cli_usr1;
	if ((cp->bar && bp != cp->last_bp) || once) {
		cli_usr1 = 0;
		cp->last_bp = bp;
		fprintf(cp->out, "    (%d.%02d/100%%)\r", bp / 100, bp % 100);
		fflush(cp->out);
	}
	if (!cp->json || pct == cp->last_pct)
		return;
	cp->last_pct = pct;
	fprintf(stderr, "{\"done\": %" PRIu64 ", \"total\": %" PRIu64 ", \"percent\": %d}\n",
	        p->done, p->total, pct);
	fflush(stderr);
}

/* The job ----------------------------------------------------------- */

void cli_job_init(struct cli_job *j)
{
	memset(j, 0, sizeof(*j));
	j->dst_fmt = "raw";
	vdk_convert_opts_init(&j->conv);
}

int cli_job_opt(struct cli_job *j, int c, const char *arg, bool *quiet)
{
	switch (c) {
	case 'p':
		j->progress = true;
		return 0;
	case 'q':
		*quiet = true;
		return 0;
	case CLI_OPT_CLONE:
		return cli_parse_clone(arg, &j->conv.clone)
		           ? cli_usage("--clone must be auto, always or never")
		           : 0;
	case CLI_OPT_VERIFY:
		j->verify = true;
		return 0;
	case CLI_OPT_THREADS:
		j->conv.threads = (unsigned)atoi(arg);
		return 0;
	case CLI_OPT_PROGRESS:
		if (strcmp(arg, "json"))
			return cli_usage("--progress takes 'json'");
		j->progress_json = true;
		return 0;
	}
	return cli_open_opt(c, arg, &j->open) ? 0 : -1;
}

void cli_job_free(struct cli_job *j)
{
	vdk_opts_free(&j->opts);
}

/* The tool's part of a conversion: options in, progress out; the
 * sequence itself is the library's job (job.h). */
int cli_job_run(struct cli_job *j, struct vdk_convert_stats *st, struct vdk_err *e)
{
	struct cli_progress cp = {.json = j->progress_json,
	                          .bar = j->progress,
	                          .last_pct = -1,
	                          .last_bp = -1,
	                          .out = strcmp(j->dst, "-") ? stdout : stderr};
	struct vdk_job job;
	vdk_job_init(&job);
	job.src = j->src;
	job.src_fmt = j->src_fmt;
	job.open = j->open;
	job.dst = j->dst;
	job.dst_fmt = j->dst_fmt;
	job.wopts = &j->opts;
	job.conv = j->conv;
	job.conv.cancel = &cli_cancel;
	job.verify = j->verify;
	job.warm = j->warm;
	job.target = &j->target;
	job.conv.progress = cli_progress_cb; /* always: SIGUSR1 asks for it too */
	job.conv.progress_ctx = &cp;
	int r = vdk_job_run(&job, e);
	if (cp.bar) {
		fprintf(cp.out, "\n");
		fflush(cp.out);
	}
	*st = job.st;
	return r;
}

#define CLI_MAX_ALLOW 32

int cli_open_opt(int c, const char *arg, struct vdk_open_opts *o)
{
	static const char *allow[CLI_MAX_ALLOW + 1];
	static int nallow;
	switch (c) {
	case CLI_OPT_ALLOW_DIR:
		if (nallow < CLI_MAX_ALLOW)
			allow[nallow++] = arg;
		o->access.allow_dirs = allow;
		return 1;
	case CLI_OPT_ALLOW_ANY:
		o->access.allow_any = true;
		return 1;
	case CLI_OPT_FORCE:
		o->force = true;
		return 1;
	case CLI_OPT_BACKING_FMT:
		o->backing_fmt = arg;
		return 1;
	case CLI_OPT_TIMEOUT: {
		char *end;
		unsigned long v = strtoul(arg, &end, 10);
		if (end == arg || *end || v == 0 || v > 86400)
			exit(cli_usage("--timeout takes seconds (1 to 86400), not '%s'", arg));
		vdk_remote_set_timeout((unsigned)v);
		return 1;
	}
	}
	return 0;
}

int cli_parse_o(struct vdk_opts *o, const char *arg, bool *help)
{
	struct vdk_err e = {0};
	if (!strcmp(arg, "help") || !strcmp(arg, "?")) {
		*help = true;
		return 0;
	}
	return vdk_opts_parse(o, arg, &e) ? cli_fail(&e) : 0;
}

int cli_parse_output(const char *arg, bool *json)
{
	if (!strcmp(arg, "json"))
		*json = true;
	else if (!strcmp(arg, "human"))
		*json = false;
	else
		return cli_usage("--output must be json or human, not '%s'", arg);
	return 0;
}

static const char *cli_level_name(enum vdk_level lv)
{
	return lv == VDK_ERROR ? "error" : lv == VDK_WARN ? "warning" : "note";
}

void cli_print_findings(const struct vdk_findings *f, FILE *out)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct vdk_finding *x = &f->v[i];
		fprintf(out, "%s: %s: %s%s", cli_prog, cli_level_name(x->level),
		        x->file ? x->file : "", x->file ? ": " : "");
		if (x->off != VDK_NO_OFFSET)
			fprintf(out, "at offset %" PRIu64 ": ", x->off);
		fprintf(out, "%s\n", x->msg);
	}
}

void cli_findings_json(const struct vdk_findings *f, struct vdk_json *arr)
{
	for (size_t i = 0; arr && i < f->n; i++) {
		const struct vdk_finding *x = &f->v[i];
		struct vdk_json *o = vdk_json_push_obj(arr);
		vdk_json_set_str(o, "level", cli_level_name(x->level));
		if (x->file)
			vdk_json_set_str(o, "file", x->file);
		if (x->off != VDK_NO_OFFSET)
			vdk_json_set_u64(o, "offset", x->off);
		vdk_json_set_str(o, "message", x->msg);
	}
}

/* check's human form, as qemu-img prints it: corruptions as "ERROR ...",
 * leaks as "Leaked cluster ..." (the qcow2 check words its own lines). */
void cli_print_check_findings(const struct vdk_findings *f, FILE *out)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct vdk_finding *x = &f->v[i];
		bool worded = !strncmp(x->msg, "ERROR", 5) || !strncmp(x->msg, "Leaked", 6) ||
		              !strncmp(x->msg, "Warning", 7);
		if (!worded)
			fputs(x->level == VDK_ERROR  ? "ERROR "
			      : x->level == VDK_WARN ? "Warning: "
			                             : "",
			      out);
		if (x->file)
			fprintf(out, "%s: ", x->file);
		if (x->off != VDK_NO_OFFSET)
			fprintf(out, "at offset %" PRIu64 ": ", x->off);
		fprintf(out, "%s\n", x->msg);
	}
}
