/* Related files open beneath their folder (convert/io_beneath.c): the
 * resolution rules with openat2 and with the component walk, FIFOs and
 * devices refused before they are opened, and races: a thread swaps
 * symlinks between a file inside the folder and one outside while related
 * files are opened thousands of times; the outside file is never read. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "io_beneath.h"
#include "test.h"
#include "util.h"

static char tmpdir[] = "/tmp/vdk-test-beneath.XXXXXX";
static int rounds = 10000;

static void path(char *p, size_t n, const char *rel)
{
	snprintf(p, n, "%s/%s", tmpdir, rel);
}

static void put(const char *rel, const char *text)
{
	char p[512];
	path(p, sizeof(p), rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		perror(p);
	if (fd >= 0)
		close(fd);
}

static void link_at(const char *target, const char *rel)
{
	char p[512];
	path(p, sizeof(p), rel);
	unlink(p);
	if (symlink(target, p) != 0)
		perror(p);
}

/* img/ holds the image, its siblings and the links; out/ is outside. */
static void setup(void)
{
	char p[512];
	const char *dirs[] = {"img", "img/sub", "img/in", "out", "allowed"};
	for (size_t i = 0; i < VDK_ARRAY_SIZE(dirs); i++) {
		path(p, sizeof(p), dirs[i]);
		mkdir(p, 0755);
	}
	put("img/a.raw", "IMAGE!");
	put("img/in.raw", "INSIDE");
	put("img/sub/in.raw", "INSUB!");
	put("img/in/b.raw", "INSIDE");
	put("out/b.raw", "SECRET");
	path(p, sizeof(p), "img/dd");
	mkdir(p, 0755);
	put("img/dd/b.raw", "INSIDE");
	link_at("../out", "img/.ddl");
	put("out/secret", "SECRET");
	put("allowed/ok.raw", "ALLOWD");
	path(p, sizeof(p), "out/secret");
	link_at(p, "img/abs-out");
	path(p, sizeof(p), "img/in.raw");
	link_at(p, "img/abs-in");
	link_at("in.raw", "img/rel-in");
	link_at("../out/secret", "img/rel-out");
	link_at("sub/in.raw", "img/to-sub");
	link_at("/proc/self/fd/0", "img/magic");
	path(p, sizeof(p), "img/fifo");
	mkfifo(p, 0644);
}

static int open_rel(int dirfd, const char *rel, char *got)
{
	int fd;
	struct stat st;
	int r = vdk_beneath_open(dirfd, rel, &fd, &st);
	if (r == 0) {
		ssize_t n = pread(fd, got, 6, 0);
		got[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	return r;
}

static void test_rules(bool walk)
{
	const char *how = walk ? "walk" : "openat2";
	vdk_beneath_force_walk(walk);
	char p[512], got[8];
	path(p, sizeof(p), "img");
	int dirfd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
	CHECK(open_rel(dirfd, "in.raw", got) == 0 && !strcmp(got, "INSIDE"), "%s: a sibling", how);
	CHECK(open_rel(dirfd, "./sub//in.raw", got) == 0 && !strcmp(got, "INSUB!"),
	      "%s: a file in a subfolder", how);
	CHECK(open_rel(dirfd, "../out/secret", got) == -EXDEV, "%s: '..' out is EXDEV", how);
	CHECK(open_rel(dirfd, "sub/../../out/secret", got) == -EXDEV, "%s: sub/../.. is EXDEV",
	      how);
	CHECK(open_rel(dirfd, "/etc/passwd", got) == -EXDEV, "%s: an absolute name is EXDEV", how);
	int r = open_rel(dirfd, "rel-out", got);
	CHECK(r == -EXDEV || r == -ELOOP, "%s: a relative symlink out is refused (%d)", how, r);
	r = open_rel(dirfd, "abs-out", got);
	CHECK(r == -EXDEV || r == -ELOOP, "%s: an absolute symlink out is refused (%d)", how, r);
	r = open_rel(dirfd, "magic", got);
	CHECK(r == -EXDEV || r == -ELOOP, "%s: a magic link is refused (%d)", how, r);
	r = open_rel(dirfd, "rel-in", got);
	CHECK(walk ? r == -ELOOP : r == 0 && !strcmp(got, "INSIDE"),
	      "%s: a symlink to a sibling (%d): %s", how, r,
	      walk ? "the walk follows none" : "followed inside");
	CHECK(open_rel(dirfd, "fifo", got) == -EPERM, "%s: a FIFO is refused without blocking",
	      how);
	CHECK(open_rel(dirfd, "sub", got) == -EPERM, "%s: a folder is refused", how);
	CHECK(open_rel(dirfd, "nope", got) == -ENOENT, "%s: a missing file is ENOENT", how);
	close(dirfd);
	vdk_beneath_force_walk(false);
}

/* Through the source API: what the readers call. */
static void test_related(bool walk)
{
	const char *how = walk ? "walk" : "openat2";
	vdk_beneath_force_walk(walk);
	char p[512], got[8] = {0};
	path(p, sizeof(p), "img/a.raw");
	struct vdk_err e = {0};
	struct vdk_src *s, *r;
	CHECK(vdk_src_open_file(p, &s, &e) == 0, "%s: open the image", how);
	const char *ok[] = {"in.raw", "rel-in", "abs-in", "to-sub"};
	for (size_t i = 0; i < VDK_ARRAY_SIZE(ok); i++) {
		vdk_err_clear(&e);
		int rc = vdk_src_open_related(s, ok[i], &(struct vdk_access){0}, &r, &e);
		CHECK(rc == 0 && vdk_src_pread(r, got, 6, 0, &e) == 0 && strcmp(got, "SECRET"),
		      "%s: '%s' inside the folder opens (%s)", how, ok[i], rc ? e.msg : got);
		if (rc == 0 && !strcmp(ok[i], "to-sub")) {
			struct vdk_src *r2;
			vdk_err_clear(&e);
			/* Its own folder is sub/ (where the link leads), as with realpath. */
			CHECK(vdk_src_open_related(r, "in.raw", &(struct vdk_access){0}, &r2, &e) ==
			              0 &&
			          vdk_src_pread(r2, got, 6, 0, &e) == 0 && !strcmp(got, "INSUB!"),
			      "%s: a file behind a link has its target's folder: %s", how, got);
			if (!e.cls)
				vdk_src_close(r2);
		}
		if (rc == 0)
			vdk_src_close(r);
	}
	const char *bad[] = {"rel-out", "abs-out", "magic", "fifo", "../out/secret"};
	for (size_t i = 0; i < VDK_ARRAY_SIZE(bad); i++) {
		vdk_err_clear(&e);
		int rc = vdk_src_open_related(s, bad[i], &(struct vdk_access){0}, &r, &e);
		CHECK(rc != 0 && e.cls == VDK_E_INPUT, "%s: '%s' refused: %s", how, bad[i], e.msg);
	}
	path(p, sizeof(p), "allowed");
	const char *allow[] = {p, NULL};
	vdk_err_clear(&e);
	int rc = vdk_src_open_related(s, "../allowed/ok.raw",
	                              &(struct vdk_access){.allow_dirs = allow}, &r, &e);
	CHECK(rc == 0 && vdk_src_pread(r, got, 6, 0, &e) == 0 && !strcmp(got, "ALLOWD"),
	      "%s: --allow-dir opens a file in that folder (%s)", how, rc ? e.msg : got);
	if (rc == 0)
		vdk_src_close(r);
	vdk_err_clear(&e);
	rc = vdk_src_open_related(s, "../out/secret", &(struct vdk_access){.allow_dirs = allow}, &r,
	                          &e);
	CHECK(rc != 0 && e.cls == VDK_E_INPUT, "%s: --allow-dir does not open other folders: %s",
	      how, e.msg);
	vdk_err_clear(&e);
	rc = vdk_src_open_related(s, "../out/secret", &(struct vdk_access){.allow_any = true}, &r,
	                          &e);
	CHECK(rc == 0, "%s: --allow-any-path opens anything: %s", how, e.msg);
	if (rc == 0)
		vdk_src_close(r);
	vdk_src_close(s);
	vdk_beneath_force_walk(false);
}

/* The swapper: renames prepared links over "x" (a file link) and "d" (a
 * folder link), inside, outside, inside..., and exchanges the real folder
 * "dd" with a link out: realpath sees a real folder, and the path it
 * returns leads out a moment later (what checking by path could not see). */
static atomic_bool swap_stop;

static void *swapper(void *arg)
{
	(void)arg;
	char x[512], d[512], xi[512], xo[512], di[512], dout[512];
	path(x, sizeof(x), "img/x");
	path(d, sizeof(d), "img/d");
	path(xi, sizeof(xi), "img/.xi");
	path(xo, sizeof(xo), "img/.xo");
	path(di, sizeof(di), "img/.di");
	path(dout, sizeof(dout), "img/.do");
	char outabs[512], dd[512], ddl[512];
	path(outabs, sizeof(outabs), "out/secret");
	path(dd, sizeof(dd), "img/dd");
	path(ddl, sizeof(ddl), "img/.ddl");
	for (unsigned i = 0; !atomic_load(&swap_stop); i++) {
		bool out = i & 1;
		unlink(out ? xo : xi);
		unlink(out ? dout : di);
		/* Alternate relative and absolute links out. */
		if (symlink(out ? ((i & 2) ? "../out/secret" : outabs) : "in.raw", out ? xo : xi) ||
		    symlink(out ? "../out" : "in", out ? dout : di) || rename(out ? xo : xi, x) ||
		    rename(out ? dout : di, d) ||
		    renameat2(AT_FDCWD, dd, AT_FDCWD, ddl, RENAME_EXCHANGE))
			perror("swap");
	}
	return NULL;
}

static void race(bool walk, const struct vdk_access *acc, const char *what)
{
	vdk_beneath_force_walk(walk);
	char p[512], got[8];
	path(p, sizeof(p), "img/a.raw");
	struct vdk_err e = {0};
	struct vdk_src *s;
	if (vdk_src_open_file(p, &s, &e) != 0) {
		CHECK(0, "open a.raw: %s", e.msg);
		return;
	}
	link_at("in.raw", "img/x");
	link_at("in", "img/d");
	atomic_store(&swap_stop, false);
	pthread_t th;
	pthread_create(&th, NULL, swapper, NULL);
	int opened = 0, refused = 0, leaked = 0;
	for (int i = 0; i < rounds; i++) {
		struct vdk_src *r;
		vdk_err_clear(&e);
		const char *names[] = {"x", "d/b.raw", "dd/b.raw"};
		if (vdk_src_open_related(s, names[i % 3], acc, &r, &e) != 0) {
			refused++;
			continue;
		}
		memset(got, 0, sizeof(got));
		if (vdk_src_pread(r, got, 6, 0, &e) == 0 && !strcmp(got, "SECRET"))
			leaked++;
		else
			opened++;
		vdk_src_close(r);
	}
	atomic_store(&swap_stop, true);
	pthread_join(th, NULL);
	vdk_src_close(s);
	CHECK(leaked == 0 && opened > 0,
	      "%s, %s: %d opens of a link swapped in and out of the folder: %d inside, %d "
	      "refused, %d read the outside file",
	      walk ? "walk" : "openat2", what, rounds, opened, refused, leaked);
	vdk_beneath_force_walk(false);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	const char *n = getenv("VDK_RACE_ROUNDS");
	if (n && atoi(n) > 0)
		rounds = atoi(n);
	setup();
	test_rules(false);
	test_rules(true);
	test_related(false);
	test_related(true);
	char p[512];
	path(p, sizeof(p), "img/in");
	const char *allow[] = {p, NULL};
	for (int walk = 0; walk < 2; walk++) {
		race(walk, &(struct vdk_access){0}, "own folder");
		/* An allowed folder: its links are resolved by realpath first, then
		 * opened beneath the folder; the swap lands in between. */
		race(walk, &(struct vdk_access){.allow_dirs = allow}, "--allow-dir");
	}
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		return 1;
	TEST_EXIT();
}
