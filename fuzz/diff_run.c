/* fuzz-diff: running both readers on one mutant. vdkit runs in a forked
 * child (a crash or a hang is recorded, not fatal) and sends its result
 * through a pipe; qemu-img runs as a process with a deadline, and its raw
 * output is digested sparsely (SEEK_DATA) then removed. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "diff.h"
#include "format.h"
#include "util.h"

extern char **environ;

#define FD_BLOCK 4096u
#define FD_CHUNK (1u << 20)

/* CRC-32 and Adler-32 (libdeflate, several GB/s): a hash, not a proof,
 * as fast as the tools' own reads; 64 bits are plenty to tell two
 * readings of one mutant apart. */
struct fd_digest {
	uint32_t crc, adler;
};

struct fd_digest *fd_digest_new(uint64_t size)
{
	struct fd_digest *g = malloc(sizeof *g);
	uint8_t le[8];
	if (!g)
		return NULL;
	vdk_put_le64(le, size);
	g->crc = libdeflate_crc32(0, le, 8);
	g->adler = libdeflate_adler32(1, le, 8);
	return g;
}

static bool fd_is_zero(const uint8_t *b, size_t n)
{
	return n == 0 || (b[0] == 0 && memcmp(b, b + 1, n - 1) == 0);
}

/* b holds the bytes at [off, off+n), off a multiple of FD_BLOCK. */
void fd_digest_block(struct fd_digest *g, uint64_t off, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i += FD_BLOCK) {
		size_t k = n - i < FD_BLOCK ? n - i : FD_BLOCK;
		uint8_t le[8];
		if (fd_is_zero(b + i, k))
			continue;
		vdk_put_le64(le, off + i);
		g->crc = libdeflate_crc32(libdeflate_crc32(g->crc, le, 8), b + i, k);
		g->adler = libdeflate_adler32(libdeflate_adler32(g->adler, le, 8), b + i, k);
	}
}

void fd_digest_end(struct fd_digest *g, uint8_t out[8])
{
	vdk_put_le32(out, g->crc);
	vdk_put_le32(out + 4, g->adler);
	free(g);
}

/* --- vdkit ---------------------------------------------------------- */

/* Digest [a, b) (4 KiB aligned, clipped to the size) read through vdkit. */
static int fd_vdk_range(struct vdk_image *img, struct fd_digest *g, uint8_t *buf, uint64_t a,
                        uint64_t b, struct vdk_err *e)
{
	for (uint64_t o = a; o < b; o += FD_CHUNK) {
		size_t n = (size_t)VDK_MIN((uint64_t)FD_CHUNK, b - o);
		if (vdk_image_pread(img, buf, n, o, e))
			return -1;
		fd_digest_block(g, o, buf, n);
	}
	return 0;
}

/* Every DATA extent, widened to whole 4 KiB blocks, each block once. */
static int fd_vdk_walk(struct vdk_image *img, struct fd_digest *g, uint8_t *buf, struct vdk_err *e)
{
	struct vdk_extents x = {0};
	uint64_t pos = 0, done = 0;
	int r = 0;
	while (!r && pos < img->size) {
		vdk_extents_reset(&x);
		r = vdk_image_extents(img, pos, img->size - pos, &x, e);
		if (!r && !x.n)
			r = vdk_bad(e, NULL, NULL, pos, "no extents");
		for (size_t i = 0; !r && i < x.n; i++) {
			const struct vdk_extent *v = &x.v[i];
			if (v->flags & (VDK_EXT_ZERO | VDK_EXT_HOLE))
				continue;
			uint64_t a = VDK_MAX(v->off / FD_BLOCK * FD_BLOCK, done);
			uint64_t b = VDK_MIN(vdk_round_up(v->off + v->len, FD_BLOCK), img->size);
			if (a < b)
				r = fd_vdk_range(img, g, buf, a, b, e);
			done = VDK_MAX(done, b);
		}
		if (!r)
			pos = x.v[x.n - 1].off + x.v[x.n - 1].len;
	}
	vdk_extents_free(&x);
	return r;
}

static void fd_vdk_child(const char *path, enum fd_kind kind, uint64_t max_size,
                         struct fd_result *res)
{
	struct vdk_err e = {0};
	struct vdk_image *img = NULL;
	memset(res, 0, sizeof *res);
	res->st = FD_REFUSE;
	if (vdk_image_open_path(path, fd_kind_fmt(kind), NULL, &img, &e)) {
		fd_msg_class(e.msg, path, res->msg, sizeof res->msg);
		return;
	}
	res->size = img->size;
	struct fd_digest *g = img->size <= max_size ? fd_digest_new(img->size) : NULL;
	uint8_t *buf = g ? malloc(FD_CHUNK) : NULL;
	if (!buf) {
		res->st = FD_SKIP;
	} else if (fd_vdk_walk(img, g, buf, &e)) {
		fd_msg_class(e.msg, path, res->msg, sizeof res->msg);
	} else {
		res->st = FD_ACCEPT;
	}
	if (g)
		fd_digest_end(g, res->dig);
	free(buf);
	vdk_image_close(img);
}

/* Waits for pid up to timeout_s; kills it after. Returns the wait status,
 * or -1 on timeout. */
static int fd_wait(pid_t pid, int timeout_s)
{
	int st = 0, pfd = pidfd_open(pid, 0);
	if (pfd >= 0) {
		struct pollfd p = {.fd = pfd, .events = POLLIN};
		int n;
		while ((n = poll(&p, 1, timeout_s * 1000)) < 0 && errno == EINTR)
			;
		close(pfd);
		if (n == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return st;
}

/* A child's end: killed (crash), past its deadline, or an exit status
 * that is not 0 (vdkit's child: it died before sending its result;
 * qemu-img: a refusal when clean is false). */
static void fd_status_from_wait(int st, bool clean, struct fd_result *res)
{
	if (st == -1) {
		res->st = FD_TIMEOUT;
	} else if (WIFSIGNALED(st)) {
		res->st = FD_CRASH;
		res->sig = WTERMSIG(st);
	} else if (WEXITSTATUS(st) != 0 && clean) {
		res->st = FD_CRASH;
		res->sig = 0;
		snprintf(res->msg, sizeof res->msg, "exit %d without a result (sanitizer?)",
		         WEXITSTATUS(st));
	}
}

static void fd_vdk_fork(const char *path, enum fd_kind kind, uint64_t max_size, int timeout_s,
                        struct fd_result *res)
{
	int p[2];
	memset(res, 0, sizeof *res);
	if (pipe(p)) {
		res->st = FD_CRASH;
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		struct fd_result r;
		close(p[0]);
		fd_vdk_child(path, kind, max_size, &r);
		_exit(write(p[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
	}
	close(p[1]);
	int st = pid < 0 ? 0 : fd_wait(pid, timeout_s);
	ssize_t got = pid < 0 ? -1 : read(p[0], res, sizeof *res);
	close(p[0]);
	if (got != (ssize_t)sizeof *res || st != 0) {
		memset(res, 0, sizeof *res);
		fd_status_from_wait(pid < 0 ? 1 << 8 : st, true, res);
	}
}

struct fd_req {
	char path[600];
	enum fd_kind kind;
	uint64_t max_size;
	int timeout;
};

/* The zygote: one request, one forked reader, one result, until EOF. */
static void fd_zygote_loop(int fd)
{
	struct fd_req q;
	struct fd_result r;
	while (read(fd, &q, sizeof q) == (ssize_t)sizeof q) {
		q.path[sizeof q.path - 1] = 0;
		fd_vdk_fork(q.path, q.kind, q.max_size, q.timeout, &r);
		if (write(fd, &r, sizeof r) != (ssize_t)sizeof r)
			break;
	}
}

int fd_zygote_start(const int *others, unsigned nothers)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		/* the other zygotes' sockets: they must see EOF when we are done */
		for (unsigned i = 0; i < nothers; i++)
			close(others[i]);
		close(sv[0]);
		fd_zygote_loop(sv[1]);
		_exit(0);
	}
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return -1;
	}
	return sv[0];
}

void fd_run_vdkit(int zfd, const char *path, enum fd_kind kind, uint64_t max_size, int timeout_s,
                  struct fd_result *res)
{
	struct fd_req q = {.kind = kind, .max_size = max_size, .timeout = timeout_s};
	snprintf(q.path, sizeof q.path, "%s", path);
	memset(res, 0, sizeof *res);
	if (write(zfd, &q, sizeof q) != (ssize_t)sizeof q ||
	    read(zfd, res, sizeof *res) != (ssize_t)sizeof *res) {
		res->st = FD_CRASH;
		snprintf(res->msg, sizeof res->msg, "the zygote is gone");
	}
}

/* --- qemu-img ------------------------------------------------------- */

static int fd_digest_file(const char *out, struct fd_result *res)
{
	int fd = open(out, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	res->size = (uint64_t)sb.st_size;
	struct fd_digest *g = fd_digest_new(res->size);
	uint8_t *buf = malloc(FD_CHUNK);
	int r = g && buf ? 0 : -1;
	for (off_t pos = 0; !r && pos < sb.st_size;) {
		off_t d = lseek(fd, pos, SEEK_DATA);
		if (d < 0)
			break; /* only a hole is left */
		d = d / FD_BLOCK * FD_BLOCK;
		ssize_t n = pread(fd, buf, FD_CHUNK, d);
		if (n <= 0) {
			r = -1;
			break;
		}
		fd_digest_block(g, (uint64_t)d, buf, (size_t)n);
		pos = d + n;
	}
	if (g)
		fd_digest_end(g, res->dig);
	free(buf);
	close(fd);
	return r;
}

/* The first line of what qemu-img said. */
static void fd_read_stderr(int fd, const char *path, struct fd_result *res)
{
	char b[1024];
	ssize_t n = read(fd, b, sizeof b - 1);
	b[n > 0 ? n : 0] = 0;
	b[strcspn(b, "\n")] = 0;
	fd_msg_class(b, path, res->msg, sizeof res->msg);
}

void fd_run_qemu(const char *qemu, const char *path, enum fd_kind kind, const char *out,
                 int timeout_s, struct fd_result *res)
{
	char *argv[] = {(char *)qemu, "convert",   "-f", (char *)fd_kind_fmt(kind), "-O", "raw",
	                (char *)path, (char *)out, NULL};
	posix_spawn_file_actions_t fa;
	int p[2];
	pid_t pid;
	memset(res, 0, sizeof *res);
	res->st = FD_CRASH;
	unlink(out);
	if (pipe2(p, O_CLOEXEC))
		return;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	int sr = posix_spawnp(&pid, qemu, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (sr == 0) {
		int st = fd_wait(pid, timeout_s);
		res->st = FD_REFUSE;
		fd_status_from_wait(st, false, res);
		fd_read_stderr(p[0], path, res);
		if (st == 0 && fd_digest_file(out, res) == 0)
			res->st = FD_ACCEPT;
	}
	close(p[0]);
	unlink(out);
}

/* --- message classes ------------------------------------------------ */

/* A path (a file name in the work folder, or one a mutant named): up to
 * the quote, colon or blank that ends it. */
static const char *fd_skip_path(const char *s)
{
	while (*s && *s != ':' && *s != '\'' && *s != ' ' && *s != '"')
		s++;
	return s;
}

void fd_msg_class(const char *msg, const char *path, char *out, size_t outlen)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	size_t o = 0, bl = strlen(base);
	if (!strncmp(msg, "qemu-img: ", 10))
		msg += 10;
	for (const char *s = msg; *s && o + 1 < outlen;) {
		bool start = s == msg || strchr(" '\"(", s[-1]);
		if (start && (*s == '/' || !strncmp(s, base, bl))) {
			s = *s == '/' ? fd_skip_path(s) : s + bl;
			out[o++] = 'F';
		} else if (isdigit((unsigned char)*s)) {
			while (isxdigit((unsigned char)*s) || *s == 'x')
				s++;
			out[o++] = 'N';
		} else {
			out[o++] = *s++;
		}
	}
	out[o] = 0;
}
