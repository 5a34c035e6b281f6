/* fuzz-diff: differential fuzzing of vdkit's readers against qemu-img
 * (`make fuzz-diff`). Mutant i of a run is rebuilt from (seed, i) alone:
 * its seed and its mutations come from one random stream. Workers split
 * the mutants; each writes one line per mutant; the parent counts them by
 * class and format, prints every class of refusal with the explanation of
 * the known classes table, and saves every divergence, crash and timeout
 * (and a few examples of each other class) under the output folder.
 *
 *   fuzz-diff [-n N] [-s SEED] [-j JOBS] [-o DIR] [-w WORKDIR] [-m MAXSIZE]
 *             [-t TIMEOUT] [-Q] [-R] [-i INDEX] KIND:DIR...
 *
 * KIND is qcow2, vmdk, vhd, vhdx or sesparse (bare seSparse extents: each
 * mutant gets a descriptor naming it); DIR a folder of seeds, or one. -Q adds images qemu-img makes
 * in WORKDIR at start; -i rebuilds, runs and saves one mutant; -R reports again on the results a
 * run left in DIR (same -n, -s, -j and seeds). The exit status is 1 when a divergence, crash,
 * timeout or lenient class is not in the known classes table (diff_report.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "diff.h"
#include "util.h"

/* --- one mutant ----------------------------------------------------- */

struct fd_case {
	unsigned long i;
	const struct fd_seed *seed;
	uint8_t *d;
	size_t n;
	char desc[512];
	struct fd_result v, q;
	const char *cls;
};

static const struct fd_seed *fd_pick(const struct fd_seeds *s, struct fd_rng *r)
{
	/* a kind first, so that each format gets its share of the mutants */
	size_t per[FD_NKINDS] = {0}, kinds = 0, k = 0;
	for (size_t i = 0; i < s->n; i++)
		kinds += per[s->v[i].kind]++ == 0;
	size_t want = (size_t)fd_below(r, kinds), seen = 0;
	while (per[k] == 0 || seen++ != want)
		k++;
	size_t j = (size_t)fd_below(r, per[k]);
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].kind == k && j-- == 0)
			return &s->v[i];
	return &s->v[0];
}

static int fd_build(const struct fd_opts *o, const struct fd_seeds *s, unsigned long i,
                    struct fd_case *c)
{
	struct fd_rng r = {o->seed * 0x9e3779b97f4a7c15ull ^ (uint64_t)i};
	memset(c, 0, sizeof *c);
	fd_rand(&r);
	c->i = i;
	c->seed = fd_pick(s, &r);
	return fd_mutate(c->seed, &r, &c->d, &c->n, c->desc, sizeof c->desc);
}

/* Sparse: zero blocks are left as holes (VHDX mutants are MiBs of
 * zeroes; writing them cost more than reading them). */
static int fd_write_file(const char *path, const uint8_t *d, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int r = fd < 0 ? -errno : ftruncate(fd, (off_t)n) ? -errno : 0;
	for (size_t o = 0; !r && o < n; o += 65536) {
		size_t k = n - o < 65536 ? n - o : 65536;
		if (d[o] || memcmp(d + o, d + o + 1, k - 1))
			r = vdk_pwrite_full(fd, d + o, k, o);
	}
	if (fd >= 0)
		close(fd);
	return r;
}

/* seSparse extents open only through a descriptor; its capacity is the
 * seed's (a mutated capacity is the extent's to disagree with). The
 * comment line before the extent line is VMware's layout and matters:
 * qemu-img reads an extent line twice when a blank line precedes it (see
 * the known classes, diff_report.c). */
static int fd_write_desc(const char *path, const struct fd_seed *seed)
{
	uint64_t sectors = seed->n >= 24 ? vdk_le64(seed->d + 16) : 0;
	char b[512];
	int k = snprintf(b, sizeof b,
	                 "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=12345678\n"
	                 "parentCID=ffffffff\ncreateType=\"seSparse\"\n\n# Extent description\n"
	                 "RW %llu SESPARSE \"m-sesparse.vmdk\"\n\nddb.virtualHWVersion = \"14\"\n",
	                 (unsigned long long)sectors);
	return fd_write_file(path, (const uint8_t *)b, (size_t)k);
}

/* Writes the mutant into dir; *img is the path both tools open. */
static int fd_place(const struct fd_case *c, const char *dir, char *img, size_t len)
{
	char p[600];
	if (c->seed->kind != FD_SESPARSE) {
		snprintf(img, len, "%s/m.img", dir);
		return fd_write_file(img, c->d, c->n);
	}
	snprintf(p, sizeof p, "%s/m-sesparse.vmdk", dir);
	snprintf(img, len, "%s/m.vmdk", dir);
	int r = fd_write_file(p, c->d, c->n);
	return r ? r : fd_write_desc(img, c->seed);
}

static const char *fd_classify(const struct fd_case *c)
{
	const struct fd_result *v = &c->v, *q = &c->q;
	if (v->st == FD_CRASH)
		return "CRASH-vdkit";
	if (v->st == FD_TIMEOUT)
		return "TIMEOUT-vdkit";
	if (v->st == FD_SKIP)
		return "skip-large";
	if (q->st == FD_CRASH)
		return "CRASH-qemu";
	if (q->st == FD_TIMEOUT)
		return v->st == FD_ACCEPT ? "TIMEOUT-qemu" : "qemu-timeout-refused";
	if (v->st == FD_ACCEPT && q->st == FD_ACCEPT)
		return v->size == q->size && !memcmp(v->dig, q->dig, sizeof v->dig) ? "ok"
		                                                                    : "DIVERGE";
	if (v->st == FD_ACCEPT)
		return "lenient";
	return q->st == FD_ACCEPT ? "stricter" : "both-refuse";
}

/* What a divergence is: size or content, and a cause where a check can
 * tell it (the known classes table, diff_report.c, explains them). */
static void fd_hint(const struct fd_opts *o, int zfd, const char *dir, struct fd_case *c)
{
	uint8_t *b;
	const char *cause = "";
	char p[600];
	if (c->seed->kind == FD_VHD && c->v.size == c->q.size &&
	    fd_vhd_fill_bitmaps(c->d, c->n, &b) == 0) {
		struct fd_result r;
		snprintf(p, sizeof p, "%s/bitmaps.vhd", dir);
		if (fd_write_file(p, b, c->n) == 0) {
			fd_run_vdkit(zfd, p, FD_VHD, o->max_size, o->timeout, &r);
			if (r.st == FD_ACCEPT && !memcmp(r.dig, c->q.dig, sizeof r.dig))
				cause = ": sector bitmap";
		}
		free(b);
	}
	if (c->seed->kind == FD_VMDK && c->q.size > c->v.size &&
	    fd_vmdk_blank_before_extent(c->d, c->n))
		cause = ": blank line before an extent line";
	snprintf(c->v.msg, sizeof c->v.msg, "%s differs%s",
	         c->v.size != c->q.size ? "virtual size" : "content", cause);
}

static void fd_run_case(const struct fd_opts *o, int zfd, const char *dir, struct fd_case *c)
{
	char img[600], out[600];
	snprintf(out, sizeof out, "%s/q.raw", dir);
	if (fd_place(c, dir, img, sizeof img)) {
		c->v.st = c->q.st = FD_SKIP;
		c->cls = "skip-write";
		return;
	}
	fd_run_vdkit(zfd, img, c->seed->kind, o->max_size, o->timeout, &c->v);
	if (c->v.st != FD_SKIP && c->v.st != FD_CRASH && c->v.st != FD_TIMEOUT)
		fd_run_qemu(o->qemu, img, c->seed->kind, out, o->timeout, &c->q);
	c->cls = fd_classify(c);
	if (!strcmp(c->cls, "DIVERGE"))
		fd_hint(o, zfd, dir, c);
	const char *why =
	    strcmp(c->cls, "lenient") ? NULL : fd_lenient_cause(c->seed->kind, c->d, c->n);
	size_t ql = strlen(c->q.msg);
	if (why)
		snprintf(c->q.msg + ql, sizeof c->q.msg - ql, " [%s]", why);
}

/* --- workers -------------------------------------------------------- */

static void fd_hex(const uint8_t *d, char *out)
{
	for (int i = 0; i < 8; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* One line: index, kind, class, sizes, digests, vdkit's and qemu's
 * message classes (tabs and newlines never occur in them). */
static void fd_record(FILE *f, const struct fd_case *c)
{
	char vd[17], qd[17];
	fd_hex(c->v.dig, vd);
	fd_hex(c->q.dig, qd);
	fprintf(f, "%lu\t%s\t%s\t%llu\t%llu\t%s\t%s\t%s\t%s\n", c->i, fd_kind_name(c->seed->kind),
	        c->cls, (unsigned long long)c->v.size, (unsigned long long)c->q.size, vd, qd,
	        c->v.msg[0] ? c->v.msg : "-", c->q.msg[0] ? c->q.msg : "-");
}

static int fd_worker(const struct fd_opts *o, const struct fd_seeds *s, unsigned w)
{
	char dir[600], res[700];
	snprintf(dir, sizeof dir, "%s/w%u", o->work, w);
	snprintf(res, sizeof res, "%s/results.w%u", o->out, w);
	if (mkdir(dir, 0755) && errno != EEXIST)
		return 1;
	FILE *f = fopen(res, "w");
	if (!f)
		return 1;
	setvbuf(f, NULL, _IOLBF, 0); /* whole lines, even if the run is stopped */
	time_t t0 = time(NULL), last = t0;
	for (unsigned long i = w; i < o->n; i += o->jobs) {
		struct fd_case c;
		if (fd_build(o, s, i, &c))
			return 1;
		fd_run_case(o, o->zfd[w], dir, &c);
		fd_record(f, &c);
		free(c.d);
		if (w == 0 && time(NULL) - last >= 30) {
			last = time(NULL);
			fprintf(stderr, "fuzz-diff: %lu of %lu mutants, %lds\n", i + 1, o->n,
			        (long)(last - t0));
		}
	}
	fclose(f);
	return 0;
}

static int fd_run_workers(const struct fd_opts *o, const struct fd_seeds *s)
{
	pid_t pids[64];
	int bad = 0;
	for (unsigned w = 0; w < o->jobs; w++) {
		fflush(NULL);
		pids[w] = fork();
		if (pids[w] == 0)
			_exit(fd_worker(o, s, w));
		bad |= pids[w] < 0;
	}
	for (unsigned w = 0; w < o->jobs; w++) {
		int st = 0;
		if (pids[w] > 0 && (waitpid(pids[w], &st, 0) < 0 || st != 0))
			bad = 1;
	}
	return bad ? -1 : 0;
}

/* --- seeds qemu-img makes ------------------------------------------- */

static int fd_sh(const char *cmd)
{
	int st = system(cmd);
	return st == 0 ? 0 : -1;
}

/* A 2 MiB disk with data in a few places (some not cluster-aligned), then
 * one image of it per format and layout qemu-img writes. */
static int fd_qemu_seeds(const struct fd_opts *o, struct fd_seeds *s)
{
	static const struct {
		enum fd_kind k;
		const char *fmt, *opts, *name;
	} t[] = {
	    {FD_QCOW2, "qcow2", "-o cluster_size=4096", "q-4k.qcow2"},
	    {FD_QCOW2, "qcow2", "-o cluster_size=65536,compat=0.10", "q-v2.qcow2"},
	    {FD_QCOW2, "qcow2", "-c -o cluster_size=4096", "q-zlib.qcow2"},
	    {FD_QCOW2, "qcow2", "-o cluster_size=65536,extended_l2=on", "q-extl2.qcow2"},
	    {FD_VMDK, "vmdk", "-o subformat=monolithicSparse", "q-sparse.vmdk"},
	    {FD_VMDK, "vmdk", "-o subformat=streamOptimized", "q-stream.vmdk"},
	    {FD_VHD, "vpc", "-o subformat=dynamic", "q-dyn.vhd"},
	    {FD_VHD, "vpc", "-o subformat=fixed", "q-fixed.vhd"},
	    {FD_VHDX, "vhdx", "-o subformat=dynamic", "q-dyn.vhdx"},
	};
	char raw[600], img[600], cmd[2048];
	snprintf(raw, sizeof raw, "%s/pattern.raw", o->work);
	uint8_t *b = calloc(1, 2u << 20);
	struct fd_rng r = {o->seed};
	static const uint32_t at[][2] = {
	    {0, 65536}, {300000, 8192}, {1050624, 6144}, {2093056, 4096}};
	for (size_t i = 0; b && i < sizeof at / sizeof *at; i++)
		for (uint32_t j = 0; j < at[i][1]; j++)
			b[at[i][0] + j] = (uint8_t)(i == 1 ? 0x5a : fd_rand(&r));
	int rc = b ? fd_write_file(raw, b, 2u << 20) : -ENOMEM;
	free(b);
	for (size_t i = 0; !rc && i < sizeof t / sizeof *t; i++) {
		snprintf(img, sizeof img, "%s/%s", o->work, t[i].name);
		snprintf(cmd, sizeof cmd, "'%s' convert -q -f raw -O %s %s '%s' '%s'", o->qemu,
		         t[i].fmt, t[i].opts, raw, img);
		/* an option this qemu-img lacks (extended_l2 before 5.2): skip it */
		if (fd_sh(cmd) == 0)
			rc = fd_seeds_add_file(s, img, t[i].k);
	}
	return rc;
}

/* The seeds of a run, in order, in OUT/seeds: -R (a report again, after
 * the explanations changed) takes exactly these, so that mutant i is
 * rebuilt as it was run whatever the filter would say now. */
static int fd_seeds_list(const struct fd_opts *o, struct fd_seeds *s, bool write)
{
	char p[700], line[256];
	snprintf(p, sizeof p, "%s/seeds", o->out);
	FILE *f = fopen(p, write ? "w" : "r");
	size_t kept = 0;
	if (!f)
		return -1;
	for (size_t i = 0; write && i < s->n; i++)
		fprintf(f, "%s\n", s->v[i].name);
	while (!write && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		for (size_t i = kept; i < s->n; i++) {
			if (strcmp(s->v[i].name, line))
				continue;
			struct fd_seed t = s->v[kept];
			s->v[kept++] = s->v[i];
			s->v[i] = t;
			break;
		}
	}
	for (size_t i = kept; !write && i < s->n; i++)
		free(s->v[i].d);
	s->n = write ? s->n : kept;
	return fclose(f) ? -1 : 0;
}

/* Seeds both readers refuse as they are teach little (their mutants are
 * refused by both in the same way): left out. Seeds that already diverge
 * are kept and named. */
static int fd_filter(const struct fd_opts *o, struct fd_seeds *s)
{
	char dir[600];
	size_t kept = 0, out = 0;
	snprintf(dir, sizeof dir, "%s/w0", o->work);
	mkdir(dir, 0755);
	for (size_t i = 0; i < s->n; i++) {
		struct fd_case c = {.seed = &s->v[i], .d = s->v[i].d, .n = s->v[i].n};
		fd_run_case(o, o->zfd[0], dir, &c);
		if (!strcmp(c.cls, "both-refuse")) {
			free(s->v[i].d);
			out++;
			continue;
		}
		if (strcmp(c.cls, "ok") && strcmp(c.cls, "stricter") && strcmp(c.cls, "lenient"))
			printf("fuzz-diff: seed %s as it is: %s (%s)\n", s->v[i].name, c.cls,
			       c.v.msg);
		s->v[kept++] = s->v[i];
	}
	printf("fuzz-diff: %zu seeds both readers refuse left out\n", out);
	s->n = kept;
	return o->index < 0 ? fd_seeds_list(o, s, true) : 0;
}

static int fd_load(const struct fd_opts *o, int argc, char **argv, struct fd_seeds *s)
{
	for (int i = 0; i < argc; i++) {
		char *colon = strchr(argv[i], ':');
		int k = 0;
		while (colon && k < FD_NKINDS &&
		       strncmp(argv[i], fd_kind_name((enum fd_kind)k), (size_t)(colon - argv[i])))
			k++;
		if (!colon || k == FD_NKINDS) {
			fprintf(stderr, "fuzz-diff: %s: want KIND:DIR or KIND:FILE\n", argv[i]);
			return -1;
		}
		struct stat sb;
		int r = stat(colon + 1, &sb)  ? -errno
		        : S_ISDIR(sb.st_mode) ? fd_seeds_add_dir(s, colon + 1, (enum fd_kind)k)
		                              : fd_seeds_add_file(s, colon + 1, (enum fd_kind)k);
		if (r) {
			fprintf(stderr, "fuzz-diff: %s: %s\n", colon + 1, strerror(-r));
			return -1;
		}
	}
	if (o->qemu_seeds && fd_qemu_seeds(o, s)) {
		fprintf(stderr, "fuzz-diff: qemu-img could not make the seed images\n");
		return -1;
	}
	mkdir(o->out, 0755);
	char list[700];
	snprintf(list, sizeof list, "%s/seeds", o->out);
	bool listed = (o->report_only || o->index >= 0) && access(list, R_OK) == 0;
	if ((listed ? fd_seeds_list(o, s, false) : fd_filter(o, s)) || s->n == 0) {
		fprintf(stderr, "fuzz-diff: no seeds\n");
		return -1;
	}
	return 0;
}

/* --- the report ----------------------------------------------------- */

static void fd_save_case(const struct fd_opts *o, const struct fd_case *c, const char *tag)
{
	char p[700];
	mkdir(o->out, 0755);
	snprintf(p, sizeof p, "%s/%s-%s-%lu.img", o->out, tag, fd_kind_name(c->seed->kind), c->i);
	fd_write_file(p, c->d, c->n);
	snprintf(p, sizeof p, "%s/%s-%s-%lu.txt", o->out, tag, fd_kind_name(c->seed->kind), c->i);
	FILE *f = fopen(p, "w");
	if (!f)
		return;
	char vd[17], qd[17];
	fd_hex(c->v.dig, vd);
	fd_hex(c->q.dig, qd);
	fprintf(f, "class: %s\nseed: %s (-s %lu -i %lu)\nmutations: %s\n", c->cls, c->seed->name,
	        o->seed, c->i, c->desc);
	fprintf(f, "vdkit: status %d size %llu digest %s msg %s\n", c->v.st,
	        (unsigned long long)c->v.size, vd, c->v.msg);
	fprintf(f, "qemu-img: status %d size %llu digest %s msg %s\n", c->q.st,
	        (unsigned long long)c->q.size, qd, c->q.msg);
	fclose(f);
}

int fd_rerun(const struct fd_opts *o, const struct fd_seeds *s, unsigned long i, char *cls,
             size_t clslen, char *msg, size_t msglen)
{
	struct fd_case c;
	char dir[600];
	snprintf(dir, sizeof dir, "%s/w0", o->work);
	mkdir(dir, 0755);
	if (fd_build(o, s, i, &c))
		return -1;
	fd_run_case(o, o->zfd[0], dir, &c);
	snprintf(cls, clslen, "%s", c.cls);
	snprintf(msg, msglen, "%s", !strcmp(c.cls, "lenient") ? c.q.msg : c.v.msg);
	free(c.d);
	return 0;
}

int fd_rerun_save(const struct fd_opts *o, const struct fd_seeds *s, unsigned long i,
                  const char *tag, FILE *echo)
{
	struct fd_case c;
	char dir[600];
	snprintf(dir, sizeof dir, "%s/w0", o->work);
	mkdir(dir, 0755);
	if (fd_build(o, s, i, &c))
		return -1;
	fd_run_case(o, o->zfd[0], dir, &c);
	fd_save_case(o, &c, tag);
	if (echo)
		fprintf(echo, "  %s #%lu %s [%s]\n    vdkit: %s\n    qemu:  %s\n", c.cls, i,
		        c.seed->name, c.desc, c.v.msg, c.q.msg);
	free(c.d);
	return 0;
}

/* --- main ----------------------------------------------------------- */

static int fd_usage(void)
{
	fprintf(stderr, "usage: fuzz-diff [-n N] [-s SEED] [-j JOBS] [-o DIR] [-w WORKDIR] "
	                "[-m MAXSIZE] [-t TIMEOUT] [-Q] [-R] [-i INDEX] KIND:DIR...\n");
	return 2;
}

static int fd_parse(int argc, char **argv, struct fd_opts *o)
{
	int c;
	*o = (struct fd_opts){.n = 100000,
	                      .seed = 1,
	                      .jobs = 2,
	                      .out = "fuzz/diff",
	                      .qemu = "qemu-img",
	                      .max_size = 12ull << 30,
	                      .timeout = 10,
	                      .index = -1};
	snprintf(o->work, sizeof o->work, "/dev/shm/vdkit-fuzz-diff.%ld", (long)getpid());
	while ((c = getopt(argc, argv, "n:s:j:o:w:m:t:q:QRi:")) != -1) {
		switch (c) {
		case 'n':
			o->n = strtoul(optarg, NULL, 0);
			break;
		case 's':
			o->seed = strtoul(optarg, NULL, 0);
			break;
		case 'j':
			o->jobs = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'o':
			o->out = optarg;
			break;
		case 'w':
			snprintf(o->work, sizeof o->work, "%s", optarg);
			break;
		case 'm':
			o->max_size = strtoull(optarg, NULL, 0);
			break;
		case 't':
			o->timeout = atoi(optarg);
			break;
		case 'q':
			o->qemu = optarg;
			break;
		case 'Q':
			o->qemu_seeds = true;
			break;
		case 'i':
			o->index = atol(optarg);
			break;
		case 'R':
			o->report_only = true;
			break;
		default:
			return -1;
		}
	}
	if (o->jobs < 1 || o->jobs > 64 || o->timeout < 1 || optind >= argc)
		return -1;
	return optind;
}

/* A run killed before its cleanup (Ctrl-C, a CI timeout) leaves its
 * /dev/shm work folder behind, up to gigabytes of images: the next run
 * removes those whose process is gone. */
static void fd_sweep_stale(void)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		long pid;
		char end;
		if (sscanf(de->d_name, "vdkit-fuzz-diff.%ld%c", &pid, &end) != 1 || pid <= 0)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue; /* alive, or not ours to judge */
		char cmd[300];
		snprintf(cmd, sizeof cmd, "rm -rf '/dev/shm/%s'", de->d_name);
		fd_sh(cmd);
	}
	if (d)
		closedir(d);
}

int main(int argc, char **argv)
{
	struct fd_opts o;
	struct fd_seeds s = {0};
	int first = fd_parse(argc, argv, &o), rc = 1;
	if (first < 0)
		return fd_usage();
	fd_sweep_stale();
	if (mkdir(o.work, 0755) && errno != EEXIST) {
		perror(o.work);
		return 1;
	}
	for (unsigned w = 0; w < o.jobs; w++)
		if ((o.zfd[w] = fd_zygote_start(o.zfd, w)) < 0) {
			perror("fuzz-diff: zygote");
			return 1;
		}
	if (fd_load(&o, argc - first, argv + first, &s) == 0) {
		if (o.report_only) {
			rc = fd_report(&o, &s, stdout);
		} else if (o.index >= 0) {
			rc = fd_rerun_save(&o, &s, (unsigned long)o.index, "one", stdout) ? 1 : 0;
		} else {
			printf("fuzz-diff: %lu mutants of %zu seeds (%zu larger than 32 MiB left "
			       "out), "
			       "seed %lu, %u jobs\n",
			       o.n, s.n, s.skipped, o.seed, o.jobs);
			fflush(stdout);
			struct timespec t0, t1;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			int wr = fd_run_workers(&o, &s);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			double secs =
			    (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
			printf("fuzz-diff: %lu mutants in %.0f s (%.0f per second)\n", o.n, secs,
			       secs > 0 ? (double)o.n / secs : 0.0);
			rc = wr ? 1 : fd_report(&o, &s, stdout);
		}
	}
	char cmd[700];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", o.work);
	fd_sh(cmd);
	fd_seeds_free(&s);
	return rc;
}
