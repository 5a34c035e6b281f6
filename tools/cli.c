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
	sa.sa_flags = SA_RESETHAND; /* a second signal kills at once */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = cli_on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
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

static bool cli_same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* Re-read the finished output through its own reader and compare digests. */
static int cli_job_verify(struct cli_job *j, const struct vdk_convert_stats *st, struct vdk_err *e)
{
	struct vdk_image *img;
	int r = vdk_image_open_path(j->dst, j->dst_fmt, &j->open, &img, e);
	if (r)
		return r;
	uint8_t d[VDK_DIGEST_MAX];
	r = vdk_image_digest(img, j->conv.threads, d, e);
	vdk_image_close(img);
	if (!r && memcmp(d, st->digest, VDK_DIGEST_MAX) != 0)
		r = vdk_err_set(e, VDK_E_DIFFER, EIO, j->dst, j->dst_fmt, VDK_NO_OFFSET,
		                "verification failed: the output's content differs from the "
		                "source's");
	return r;
}

static int cli_job_convert(struct cli_job *j, struct vdk_image *in, struct vdk_sink *sink,
                           struct vdk_convert_stats *st, struct vdk_err *e)
{
	const struct vdk_format *fmt = vdk_format_find(j->dst_fmt);
	if (!fmt)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, NULL, VDK_NO_OFFSET,
		                   "unknown output format '%s'", j->dst_fmt);
	struct vdk_writer *w;
	int r = vdk_writer_create(fmt, sink, in->size, &j->opts, in, &w, e);
	if (r)
		return r;
	struct cli_progress cp = {.json = j->progress_json,
	                          .bar = j->progress,
	                          .last_pct = -1,
	                          .last_bp = -1,
	                          .out = strcmp(j->dst, "-") ? stdout : stderr};
	struct vdk_convert_opts o = j->conv;
	o.digest = o.digest || j->verify;
	o.cancel = &cli_cancel;
	o.progress = cli_progress_cb; /* always: SIGUSR1 asks for it too */
	o.progress_ctx = &cp;
	r = vdk_convert(in, w, &o, st, e);
	if (cp.bar) {
		fprintf(cp.out, "\n");
		fflush(cp.out);
	}
	if (!r)
		r = vdk_writer_finish(w, e);
	vdk_writer_close(w);
	return r;
}

int cli_job_run(struct cli_job *j, struct vdk_convert_stats *st, struct vdk_err *e)
{
	bool to_stdout = !strcmp(j->dst, "-");
	if (!to_stdout && cli_same_file(j->src, j->dst))
		return vdk_err_set(e, VDK_E_USAGE, EEXIST, j->dst, NULL, VDK_NO_OFFSET,
		                   "output is the input file: refused");
	struct vdk_image *in;
	int r = vdk_image_open_path(j->src, j->src_fmt, &j->open, &in, e);
	if (r)
		return r;
	struct vdk_sink *sink = NULL;
	r = to_stdout ? vdk_sink_open_stream(1, "(stdout)", &sink, e)
	              : vdk_sink_open_target(j->dst, &j->target, &sink, e);
	if (!r)
		r = cli_job_convert(j, in, sink, st, e);
	vdk_image_close(in);
	if (!r && j->verify && !to_stdout) {
		r = cli_job_verify(j, st, e);
		if (r) /* never leave a wrong output looking valid, extents too */
			vdk_sink_withdraw(sink);
	}
	if (sink)
		vdk_sink_close(sink); /* removes the temporary output unless committed */
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
	}
	return 0;
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
