/* Unit tests of the NBD source and sink against real nbdkit servers started
 * here: concurrent reads from many threads (one connection and multi-conn;
 * also built with ThreadSanitizer), block status, the URI dispatch, and a
 * sink's ordering of overlapping writes and zeroes in flight. The pattern
 * plugin is the oracle for reads: each 8-byte big-endian word holds its own
 * offset. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remote.h"
#include "test.h"
#include "util.h"

#define NBD_T_THREADS 8
#define NBD_T_READS   150

static char tmpdir[] = "/tmp/vdk-test-nbd.XXXXXX";

struct server {
	pid_t pid;
	char uri[512];
};

/* nbdkit -f -U SOCK ARGS... in the background; 0 when its socket is up. */
static int server_start(struct server *sv, const char *name, const char *const *args)
{
	char sock[300];
	snprintf(sock, sizeof(sock), "%s/%s.sock", tmpdir, name);
	snprintf(sv->uri, sizeof(sv->uri), "nbd+unix:///?socket=%s", sock);
	unlink(sock); /* a stopped server's socket would look ready */
	const char *argv[32] = {"nbdkit", "-f", "--exit-with-parent", "-U", sock};
	size_t n = 5;
	for (size_t i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	sv->pid = fork();
	if (sv->pid == 0) {
		freopen("/dev/null", "w", stderr);
		execvp("nbdkit", (char *const *)argv);
		_exit(127);
	}
	struct stat st;
	for (int i = 0; i < 200; i++) {
		if (stat(sock, &st) == 0 && S_ISSOCK(st.st_mode))
			return 0;
		int status;
		if (waitpid(sv->pid, &status, WNOHANG) == sv->pid)
			return -1;
		usleep(20000);
	}
	return -1;
}

static void server_stop(struct server *sv)
{
	if (sv->pid > 0) {
		kill(sv->pid, SIGTERM);
		waitpid(sv->pid, NULL, 0);
	}
}

static uint8_t pattern_byte(uint64_t off)
{
	return (uint8_t)((off & ~7ull) >> (56 - 8 * (off & 7)));
}

struct reader {
	struct vdk_src *s;
	unsigned seed;
	int bad;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t *buf = malloc(300000);
	for (int i = 0; buf && i < NBD_T_READS && !r->bad; i++) {
		size_t len = 1 + (size_t)rand_r(&r->seed) % 300000;
		uint64_t off = (uint64_t)rand_r(&r->seed) % (r->s->size - len);
		struct vdk_err e = {0};
		if (vdk_src_pread(r->s, buf, len, off, &e)) {
			r->bad = 1;
			break;
		}
		for (size_t j = 0; j < len; j++)
			if (buf[j] != pattern_byte(off + j)) {
				r->bad = 2;
				break;
			}
	}
	free(buf);
	return NULL;
}

static void test_reads(const char *what, const char *const *args)
{
	struct server sv;
	if (server_start(&sv, "pat", args)) {
		SKIP("nbdkit %s could not be started", args[0]);
		server_stop(&sv);
		return;
	}
	struct vdk_src *s;
	struct vdk_err e = {0};
	int rc = vdk_src_open_uri(sv.uri, &s, &e);
	CHECK(rc == 0, "%s: open %s (%s)", what, sv.uri, e.msg);
	if (rc == 0) {
		CHECK_EQ_U64(s->size, 64 << 20, "%s: the export's size", what);
		CHECK(s->fd < 0 && (s->flags & VDK_SRC_REMOTE), "%s: no fd to clone, remote", what);
		pthread_t t[NBD_T_THREADS];
		struct reader rd[NBD_T_THREADS];
		for (int i = 0; i < NBD_T_THREADS; i++) {
			rd[i] = (struct reader){.s = s, .seed = 1234u + (unsigned)i};
			pthread_create(&t[i], NULL, reader_main, &rd[i]);
		}
		int bad = 0;
		for (int i = 0; i < NBD_T_THREADS; i++) {
			pthread_join(t[i], NULL);
			bad |= rd[i].bad;
		}
		CHECK(bad == 0, "%s: %d threads x %d random reads match the pattern (%d)", what,
		      NBD_T_THREADS, NBD_T_READS, bad);
		struct vdk_src *rel = NULL;
		vdk_err_clear(&e);
		rc = vdk_src_open_related(s, "extent-f001.vmdk", NULL, &rel, &e);
		CHECK(rc == -EPERM && strstr(e.msg, "remote images have no folder") &&
		          strstr(e.msg, sv.uri),
		      "%s: related files refused: %s", what, e.msg);
		vdk_src_close(s);
	}
	server_stop(&sv);
}

static void test_block_status(void)
{
	/* 64 KiB of data at 1 MiB, 4 KiB at 4 MiB, nothing else allocated. */
	const char *const args[] = {"data", "@1048576 1*65536 @4194304 2*4096", "size=8M", NULL};
	struct server sv;
	if (server_start(&sv, "bs", args)) {
		SKIP("nbdkit data plugin could not be started");
		server_stop(&sv);
		return;
	}
	struct vdk_src *s;
	struct vdk_err e = {0};
	if (vdk_src_open_uri(sv.uri, &s, &e) == 0) {
		uint64_t d, h;
		vdk_src_next_data(s, 0, s->size, &d, &h);
		CHECK(d == 1048576 && h == 1048576 + 65536, "block status: first data [%llu, %llu)",
		      (unsigned long long)d, (unsigned long long)h);
		vdk_src_next_data(s, h, s->size, &d, &h);
		CHECK(d <= 4194304 && h >= 4194304 + 4096 && h - d <= 65536,
		      "block status: second data [%llu, %llu) covers 4 MiB + 4 KiB",
		      (unsigned long long)d, (unsigned long long)h);
		vdk_src_next_data(s, h, s->size, &d, &h);
		CHECK(d == s->size && h == s->size, "block status: nothing after it");
		vdk_src_next_data(s, 1048576 + 4096, 1048576 + 8192, &d, &h);
		CHECK(d == 1048576 + 4096 && h == 1048576 + 8192,
		      "block status: clipped to the query");
		vdk_src_close(s);
	} else {
		CHECK(0, "open %s: %s", sv.uri, e.msg);
	}
	server_stop(&sv);
}

static void fill(uint8_t *p, size_t n, uint8_t v)
{
	memset(p, v, n);
}

/* Overlapping writes and zeroes in flight must land in issue order. */
static void test_sink(void)
{
	const char *const args[] = {"memory", "size=8M", NULL};
	struct server sv;
	if (server_start(&sv, "mem", args)) {
		SKIP("nbdkit memory plugin could not be started");
		server_stop(&sv);
		return;
	}
	struct vdk_sink *k;
	struct vdk_err e = {0};
	int rc = vdk_sink_open_uri(sv.uri, 9 << 20, &k, &e);
	CHECK(rc != 0 && e.cls == VDK_E_IO && strstr(e.msg, "too small") &&
	          strstr(e.msg, "8388608") && strstr(e.msg, "9437184"),
	      "sink: an export smaller than the output is refused: %s", e.msg);
	vdk_err_clear(&e);
	rc = vdk_sink_open_uri(sv.uri, 8 << 20, &k, &e);
	CHECK(rc == 0 && !(k->flags & VDK_SINK_ZEROED), "sink: opened, not assumed zeroed (%s)",
	      e.msg);
	if (rc) {
		server_stop(&sv);
		return;
	}
	uint8_t *a = malloc(2 << 20), *want = calloc(1, 8 << 20), *got = malloc(8 << 20);
	fill(a, 2 << 20, 0xaa);
	rc = vdk_sink_pwrite(k, a, 2 << 20, 0, &e);
	memcpy(want, a, 2 << 20);
	fill(a, 512 << 10, 0x55);
	rc |= vdk_sink_pwrite(k, a, 512 << 10, 1 << 20, &e);
	memcpy(want + (1 << 20), a, 512 << 10);
	rc |= vdk_sink_zero(k, (1 << 20) + (256 << 10), 64 << 10, &e);
	memset(want + (1 << 20) + (256 << 10), 0, 64 << 10);
	for (uint64_t off = 3 << 20; off < (7 << 20); off += 4096) {
		fill(a, 4096, (uint8_t)(off >> 12));
		rc |= vdk_sink_pwrite(k, a, 4096, off, &e);
		memcpy(want + off, a, 4096);
	}
	CHECK(rc == 0, "sink: writes and zeroes issued (%s)", e.msg);
	struct vdk_err e2 = {0};
	rc = vdk_sink_pwrite(k, a, 8192, (8 << 20) - 4096, &e2);
	CHECK(rc == -ENOSPC && strstr(e2.msg, sv.uri) && strstr(e2.msg, "8384512"),
	      "sink: a write past the export is refused naming the offset: %s", e2.msg);
	CHECK(vdk_sink_commit(k, &e) == 0, "sink: commit (drain + flush): %s", e.msg);
	vdk_sink_close(k);
	struct vdk_src *s;
	if (vdk_src_open_uri(sv.uri, &s, &e) == 0) {
		rc = vdk_src_pread(s, got, 8 << 20, 0, &e);
		CHECK(rc == 0 && !memcmp(got, want, 8 << 20),
		      "sink: the export reads back exactly what was written, in order");
		vdk_src_close(s);
	}
	free(a);
	free(want);
	free(got);
	server_stop(&sv);
}

static void test_dispatch(void)
{
	CHECK(vdk_is_uri("nbd://host/export") && vdk_is_uri("NBD+UNIX:///?socket=/s") &&
	          vdk_is_uri("nbds://h/e"),
	      "nbd URIs are URIs");
	CHECK(!vdk_is_uri("/tmp/nbd://x") && !vdk_is_uri("disk.raw") && !vdk_is_uri("nbd:x"),
	      "paths are not URIs");
	struct vdk_src *s;
	struct vdk_err e = {0};
	char bad[300];
	snprintf(bad, sizeof(bad), "nbd+unix:///?socket=%s/none.sock", tmpdir);
	CHECK(vdk_src_open_uri(bad, &s, &e) != 0 && e.cls == VDK_E_IO &&
	          strstr(e.msg, "cannot connect") && strstr(e.msg, bad),
	      "no server: an I/O error naming the URI: %s", e.msg);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	if (system("command -v nbdkit >/dev/null 2>&1") != 0) {
		SKIP("nbdkit not installed");
		rmdir(tmpdir);
		TEST_EXIT();
	}
	test_dispatch();
	const char *const pattern[] = {"pattern", "size=64M", NULL};
	test_reads("multi-conn", pattern);
	const char *const single[] = {"--filter=multi-conn", "pattern", "size=64M",
	                              "multi-conn-mode=disable", NULL};
	test_reads("one connection", single);
	test_block_status();
	test_sink();
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		return 1;
	TEST_EXIT();
}
