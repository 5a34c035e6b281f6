/* Allocation failure, swept: every allocation a whole conversion makes is
 * failed in turn (the Nth call to malloc, calloc, realloc, strdup...
 * returns NULL), and each run must end either in success or in an error
 * whose message says what could not be allocated — never a bare "failed",
 * never a temporary left in the output folder. Built with
 * -Wl,--wrap=malloc,... so only vdkit's own calls are counted; `make check`
 * runs it under ASan, whose leak check covers every failed run. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <execinfo.h>
#include <unistd.h>

#include "job.h"
#include "ova.h"
#include "test.h"

/* The wraps ---------------------------------------------------------- */

static atomic_long alloc_calls;
static long alloc_fail_at; /* 0: never */

static int alloc_should_fail(void)
{
	long n = atomic_fetch_add(&alloc_calls, 1) + 1;
	bool fail = alloc_fail_at && n == alloc_fail_at;
	/* ALLOC_TRACE=1: where each injected failure happened (debugging). */
	if (fail && getenv("ALLOC_TRACE")) {
		void *bt[12];
		backtrace_symbols_fd(bt, backtrace(bt, 12), 2);
	}
	return fail;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
int __real_vasprintf(char **s, const char *fmt, va_list ap);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t a, size_t b);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_posix_memalign(void **p, size_t a, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);
int __wrap_vasprintf(char **s, const char *fmt, va_list ap);
int __wrap_asprintf(char **s, const char *fmt, ...);

void *__wrap_malloc(size_t n)
{
	return alloc_should_fail() ? NULL : __real_malloc(n);
}
void *__wrap_calloc(size_t a, size_t b)
{
	return alloc_should_fail() ? NULL : __real_calloc(a, b);
}
void *__wrap_realloc(void *p, size_t n)
{
	return alloc_should_fail() ? NULL : __real_realloc(p, n);
}
char *__wrap_strdup(const char *s)
{
	return alloc_should_fail() ? NULL : __real_strdup(s);
}
char *__wrap_strndup(const char *s, size_t n)
{
	return alloc_should_fail() ? NULL : __real_strndup(s, n);
}
int __wrap_posix_memalign(void **p, size_t a, size_t n)
{
	return alloc_should_fail() ? ENOMEM : __real_posix_memalign(p, a, n);
}
void *__wrap_aligned_alloc(size_t a, size_t n)
{
	return alloc_should_fail() ? NULL : __real_aligned_alloc(a, n);
}
int __wrap_vasprintf(char **s, const char *fmt, va_list ap)
{
	return alloc_should_fail() ? -1 : __real_vasprintf(s, fmt, ap);
}
int __wrap_asprintf(char **s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = __wrap_vasprintf(s, fmt, ap);
	va_end(ap);
	return r;
}

/* Scenarios ---------------------------------------------------------- */

static char alloc_dir[256];

static void alloc_path(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/%s", alloc_dir, name);
}

/* Entries of the work folder other than the inputs: what a failed run
 * left behind. */
static int alloc_leftovers(const char *const *keep, size_t nkeep, char *first, size_t cap)
{
	DIR *d = opendir(alloc_dir);
	int n = 0;
	for (struct dirent *de; d && (de = readdir(d));) {
		bool kept = de->d_name[0] == '.' && (!de->d_name[1] || !strcmp(de->d_name, ".."));
		for (size_t i = 0; i < nkeep && !kept; i++)
			kept = !strcmp(de->d_name, keep[i]);
		if (!kept && n++ == 0)
			snprintf(first, cap, "%s", de->d_name);
	}
	if (d)
		closedir(d);
	return n;
}

struct alloc_case {
	const char *src, *src_fmt, *dst, *dst_fmt, *opts;
	bool verify;
};

static int alloc_convert(const struct alloc_case *c, struct vdk_err *e)
{
	char src[512], dst[512];
	alloc_path(src, sizeof(src), c->src);
	alloc_path(dst, sizeof(dst), c->dst);
	struct vdk_opts o = {0};
	int r = c->opts ? vdk_opts_parse(&o, c->opts, e) : 0;
	struct vdk_job j;
	vdk_job_init(&j);
	j.src = src;
	j.src_fmt = c->src_fmt;
	j.dst = dst;
	j.dst_fmt = c->dst_fmt;
	j.wopts = &o;
	j.verify = c->verify;
	j.conv.threads = 2;
	if (!r)
		r = vdk_job_run(&j, e);
	vdk_opts_free(&o);
	return r;
}

static int alloc_ova_pack(struct vdk_err *e)
{
	char out[512], disk[512];
	alloc_path(out, sizeof(out), "p.ova");
	alloc_path(disk, sizeof(disk), "src.raw");
	const char *disks[] = {disk};
	struct ova_pack_opts o = {.alg = OVA_SHA256, .in_fmt = "raw"};
	vdk_convert_opts_init(&o.conv);
	return ova_pack(out, disks, 1, &o, e);
}

static int alloc_ova_unpack(struct vdk_err *e)
{
	char pkg[512], dir[512];
	alloc_path(pkg, sizeof(pkg), "p.ova");
	alloc_path(dir, sizeof(dir), "un");
	struct ova_pkg *p;
	int r = ova_pkg_open(pkg, &p, e);
	if (r)
		return r;
	struct ova_report rep = {0};
	struct ova_unpack_opts o = {.out_fmt = "qcow2"};
	vdk_convert_opts_init(&o.conv);
	r = ova_unpack(p, dir, &o, &rep, e);
	if (r == 0 && rep.issues.errors)
		r = vdk_err_set(e, VDK_E_INPUT, EINVAL, pkg, "ova", VDK_NO_OFFSET, "%s",
		                rep.issues.n ? rep.issues.v[0].msg : "report has errors");
	ova_report_free(&rep);
	ova_pkg_close(p);
	/* The unpack folder is an output: empty it for the next run. */
	char path[600];
	const char *names[] = {"p-disk1.qcow2", "p.ovf", "p.json"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
	return r;
}

/* A message that says what ran out: not empty, not the generic word. */
static bool alloc_msg_ok(const struct vdk_err *e)
{
	return e->msg[0] && strcmp(e->msg, "failed") != 0 &&
	       (strstr(e->msg, "memory") || strstr(e->msg, "allocate"));
}

typedef int (*alloc_run_fn)(const void *arg, struct vdk_err *e);

static int alloc_run_convert(const void *arg, struct vdk_err *e)
{
	return alloc_convert(arg, e);
}
static int alloc_run_pack(const void *arg, struct vdk_err *e)
{
	(void)arg;
	return alloc_ova_pack(e);
}
static int alloc_run_unpack(const void *arg, struct vdk_err *e)
{
	(void)arg;
	return alloc_ova_unpack(e);
}

/* Count the allocations of one good run, then fail each in turn. */
static void alloc_sweep(const char *label, alloc_run_fn fn, const void *arg,
                        const char *const *keep, size_t nkeep, const char *out_name)
{
	struct vdk_err e = {0};
	alloc_fail_at = 0;
	atomic_store(&alloc_calls, 0);
	int r = fn(arg, &e);
	long total = atomic_load(&alloc_calls);
	CHECK(r == 0, "%s: runs with no failure injected (%ld allocations) %s", label, total,
	      e.msg);
	char out[512];
	alloc_path(out, sizeof(out), out_name);
	if (out_name[0])
		unlink(out);
	long bad_msg = 0, left = 0, ok_runs = 0, first_bad = 0;
	char bad_text[sizeof(e.msg)] = "", left_name[256] = "";
	for (long n = 1; n <= total; n++) {
		vdk_err_clear(&e);
		atomic_store(&alloc_calls, 0);
		alloc_fail_at = n;
		r = fn(arg, &e);
		alloc_fail_at = 0;
		if (r == 0) {
			ok_runs++;
			if (out_name[0])
				unlink(out);
		} else if (!alloc_msg_ok(&e) && bad_msg++ == 0) {
			if (getenv("ALLOC_TRACE"))
				fprintf(stderr, "^^^ N=%ld gave '%s'\n", n, e.msg);
			first_bad = n;
			snprintf(bad_text, sizeof(bad_text), "%s", e.msg);
		}
		if (r != 0 && alloc_leftovers(keep, nkeep, left_name, sizeof(left_name)))
			left++;
	}
	if (bad_msg)
		printf("# %ld bad messages; the first at N=%ld: '%s'\n", bad_msg, first_bad,
		       bad_text);
	CHECK(bad_msg == 0,
	      "%s: each of %ld failed allocations names what failed (%ld runs survived it)", label,
	      total, ok_runs);
	CHECK(left == 0, "%s: no failed run leaves a file behind%s%s", label,
	      left ? "; left: " : "", left_name);
}

static int alloc_make_source(void)
{
	char path[512];
	alloc_path(path, sizeof(path), "src.raw");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	static uint8_t buf[65536];
	uint32_t x = 7;
	/* 2 MiB: data, zero runs and a hole, so every segment kind is seen. */
	for (int i = 0; i < 32; i++) {
		for (size_t k = 0; k < sizeof(buf); k++) {
			x = x * 1103515245u + 12345u;
			buf[k] = i % 3 == 1 ? 0 : (uint8_t)(i % 3 == 2 ? k / 64 : x >> 16);
		}
		if (i != 20 && pwrite(fd, buf, sizeof(buf), (off_t)i * sizeof(buf)) < 0)
			return -1;
	}
	int r = ftruncate(fd, 32 * (off_t)sizeof(buf));
	close(fd);
	return r;
}

int main(void)
{
	snprintf(alloc_dir, sizeof(alloc_dir), "%s/vdkit-alloc-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(alloc_dir) || alloc_make_source()) {
		CHECK(0, "cannot set up %s", alloc_dir);
		TEST_EXIT();
	}
	/* Inputs each case reads are made first (no failure injected). */
	static const struct alloc_case prep[] = {
	    {"src.raw", "raw", "s.vmdk", "vmdk", "subformat=streamOptimized", false},
	    {"src.raw", "raw", "d.vhdx", "vhdx", NULL, false},
	    {"src.raw", "raw", "c.qcow2", "qcow2", "compression_type=zlib", false},
	    {"src.raw", "raw", "d.vhd", "vpc", NULL, false},
	};
	struct vdk_err e = {0};
	for (size_t i = 0; i < sizeof(prep) / sizeof(prep[0]); i++)
		if (alloc_convert(&prep[i], &e))
			CHECK(0, "prepare %s: %s", prep[i].dst, e.msg);
	static const char *const keep[] = {"src.raw", "s.vmdk", "d.vhdx",
	                                   "c.qcow2", "d.vhd",  "p.ova"};
	static const struct alloc_case cases[] = {
	    {"src.raw", "raw", "o.vmdk", "vmdk", "subformat=streamOptimized", true},
	    {"s.vmdk", NULL, "o.vhdx", "vhdx", NULL, true},
	    {"d.vhdx", NULL, "o.qcow2", "qcow2", "compress=on", false},
	    {"c.qcow2", NULL, "o.vhd", "vpc", NULL, true},
	    {"d.vhd", NULL, "o.vmdk", "vmdk", "subformat=monolithicSparse", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char label[128];
		snprintf(label, sizeof(label), "%s -> %s%s", cases[i].src, cases[i].dst_fmt,
		         cases[i].verify ? " --verify" : "");
		alloc_sweep(label, alloc_run_convert, &cases[i], keep, 5, cases[i].dst);
	}
	alloc_sweep("ova pack", alloc_run_pack, NULL, keep, 5, "p.ova");
	if (alloc_ova_pack(&e) == 0)
		alloc_sweep("ova unpack -O qcow2", alloc_run_unpack, NULL, keep, 6, "");
	else
		CHECK(0, "ova pack for the unpack sweep: %s", e.msg);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", alloc_dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", alloc_dir);
	TEST_EXIT();
}
