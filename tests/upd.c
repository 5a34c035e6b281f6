/* vdk-upd: drives an in-place updater (convert/update.h) for tests.
 *
 *   vdk-upd [-f FMT] [-F FLUSH_EVERY] [-c CRASH_AT] [-w LEN] TARGET SEED NOPS
 *   vdk-upd -V INITIAL.raw RESULT.raw SEED NOPS
 *
 * The first form applies NOPS random 512-aligned writes and zero ranges
 * drawn from SEED (the same SEED gives the same operations and data on any
 * target, so a raw copy updated the same way is the expected result),
 * flushing every FLUSH_EVERY operations and at the end, then prints the
 * updater's byte counts and the writes and syncs it sent (events; counted
 * only with -c). -w LEN makes every operation a write of LEN bytes at a
 * LEN-aligned offset (for measurements). -c simulates a power cut at the CRASH_AT-th write
 * or sync the updater sends to TARGET: every write since the last sync is
 * kept or undone at random (a disk may have persisted any of them), then
 * the process kills itself with SIGKILL. Built with -Wl,--wrap for pwrite,
 * (pwrite64 with 64-bit off_t), fdatasync and fsync (Makefile): the library itself has no such
 * hook.
 *
 * -V checks a crashed result: every sector of RESULT.raw holds what
 * INITIAL.raw had there or what one of the operations wrote there. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "update.h"
#include "util.h"

#define UPD_SEC 512u

/* The operations ---------------------------------------------------------- */

struct upd_op {
	bool zero;
	uint64_t off, len;
};

static uint64_t upd_mix(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Operation i of SEED on a disk of size bytes: mostly short writes (a
 * delta's grains), some spanning blocks, some zero ranges of every size. */
static uint64_t upd_wlen; /* -w: every operation writes this many bytes */

static struct upd_op upd_op_get(uint64_t seed, uint64_t i, uint64_t size)
{
	uint64_t r = upd_mix(seed * 1000003u + i), secs = size / UPD_SEC;
	if (upd_wlen)
		return (struct upd_op){false, r % (size / upd_wlen) * upd_wlen, upd_wlen};
	struct upd_op op = {.zero = r % 10 < 3};
	uint64_t kind = (r >> 8) % 16, len;
	if (kind < 10)
		len = 1 + (r >> 16) % 128; /* up to 64 KiB */
	else if (kind < 14)
		len = 1 + (r >> 16) % 8192; /* up to 4 MiB */
	else
		len = 4096 * (1 + (r >> 16) % 4); /* 2 MiB multiples, at most 8 MiB */
	len = VDK_MIN(len, secs);
	uint64_t start = upd_mix(r) % (secs - len + 1);
	if (kind >= 14)
		start -= start % 4096; /* whole blocks of 1 and 2 MiB */
	op.off = start * UPD_SEC;
	op.len = len * UPD_SEC;
	return op;
}

/* What operation i writes into the sector at byte offset off. */
static void upd_fill(uint64_t seed, uint64_t i, uint64_t off, uint8_t *sec)
{
	uint64_t z = upd_mix(seed ^ (i << 40) ^ (off / UPD_SEC));
	for (unsigned k = 0; k < UPD_SEC; k += 8) {
		z = upd_mix(z);
		memcpy(sec + k, &z, 8);
	}
}

/* Simulated power cut --------------------------------------------------- */

struct upd_pending {
	uint64_t off;
	size_t len;
	uint8_t *old;
	uint64_t old_size; /* the file's size before the write */
};

static int upd_fd = -1;
static long upd_crash_at = -1, upd_events;
static struct upd_pending *upd_pend;
static size_t upd_npend;
static uint64_t upd_seed;

ssize_t __real_pwrite64(int fd, const void *buf, size_t n, off_t off);
int __real_fdatasync(int fd);
int __real_fsync(int fd);

static void upd_power_cut(void)
{
	uint64_t r = upd_mix(upd_seed + (uint64_t)upd_crash_at);
	bool all_later_lost = true;
	for (size_t i = upd_npend; i-- > 0;) {
		const struct upd_pending *p = &upd_pend[i];
		r = upd_mix(r);
		if (!(r & 1)) {
			all_later_lost = false;
			continue;
		}
		(void)__real_pwrite64(upd_fd, p->old, p->len, (off_t)p->off);
		/* the size it grew the file by is lost too, unless a later
		 * write that reached the disk needs it */
		if (all_later_lost && p->off + p->len > p->old_size)
			(void)!ftruncate(upd_fd, (off_t)p->old_size);
	}
	fprintf(stderr, "vdk-upd: power cut at event %ld (%zu writes in flight)\n", upd_events,
	        upd_npend);
	raise(SIGKILL);
}

static void upd_event(void)
{
	if (upd_crash_at >= 0 && ++upd_events >= upd_crash_at)
		upd_power_cut();
}

static void upd_drop_pending(void)
{
	for (size_t i = 0; i < upd_npend; i++)
		free(upd_pend[i].old);
	upd_npend = 0;
}

ssize_t __wrap_pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	if (fd != upd_fd || upd_crash_at < 0)
		return __real_pwrite64(fd, buf, n, off);
	upd_event();
	struct stat st;
	if (fstat(fd, &st))
		abort();
	struct upd_pending p = {(uint64_t)off, n, malloc(n ? n : 1), (uint64_t)st.st_size};
	struct upd_pending *v = realloc(upd_pend, (upd_npend + 1) * sizeof(*v));
	if (!p.old || !v)
		abort();
	upd_pend = v;
	ssize_t got = pread(fd, p.old, n, off);
	if (got < 0)
		abort();
	memset(p.old + got, 0, n - (size_t)got); /* past the end: reads as zeroes */
	upd_pend[upd_npend++] = p;
	return __real_pwrite64(fd, buf, n, off);
}

int __wrap_fdatasync(int fd);
int __wrap_fdatasync(int fd)
{
	if (fd == upd_fd && upd_crash_at >= 0) {
		upd_event();
		upd_drop_pending();
	}
	return __real_fdatasync(fd);
}

int __wrap_fsync(int fd);
int __wrap_fsync(int fd)
{
	if (fd == upd_fd && upd_crash_at >= 0) {
		upd_event();
		upd_drop_pending();
	}
	return __real_fsync(fd);
}

/* Running --------------------------------------------------------------- */

static int upd_apply(struct vdk_update *u, uint64_t seed, uint64_t i, uint8_t *buf,
                     struct vdk_err *e)
{
	struct upd_op op = upd_op_get(seed, i, u->size);
	if (op.zero)
		return vdk_update_zero(u, op.off, op.len, e);
	for (uint64_t k = 0; k < op.len; k += UPD_SEC)
		upd_fill(seed, i, op.off + k, buf + k);
	return vdk_update_write(u, buf, op.len, op.off, e);
}

static int upd_run(const char *fmt, long flush_every, const char *path, uint64_t seed,
                   uint64_t nops)
{
	struct vdk_err e = {0};
	struct vdk_update *u;
	upd_seed = seed;
	if (vdk_update_open(path, fmt, &u, &e)) {
		fprintf(stderr, "vdk-upd: %s\n", e.msg);
		return 1;
	}
	upd_fd = u->fd;
	uint8_t *buf = malloc(16384 * UPD_SEC);
	int r = buf ? 0 : -ENOMEM;
	for (uint64_t i = 0; !r && i < nops; i++) {
		r = upd_apply(u, seed, i, buf, &e);
		if (!r && flush_every > 0 && (i + 1) % (uint64_t)flush_every == 0)
			r = vdk_update_flush(u, &e);
	}
	if (!r)
		r = vdk_update_flush(u, &e);
	if (r)
		fprintf(stderr, "vdk-upd: %s\n", e.msg);
	else
		printf("data %llu meta %llu syncs %llu events %ld\n",
		       (unsigned long long)u->st.data_bytes, (unsigned long long)u->st.meta_bytes,
		       (unsigned long long)u->st.syncs, upd_events);
	free(buf);
	vdk_update_close(u);
	return r ? 1 : 0;
}

/* Verifying a crashed result ------------------------------------------- */

static uint8_t *upd_load(const char *path, uint64_t *size)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		perror(path);
		return NULL;
	}
	*size = (uint64_t)st.st_size;
	uint8_t *p = malloc(*size ? *size : 1);
	if (p && vdk_pread_full(fd, p, *size, 0)) {
		free(p);
		p = NULL;
	}
	close(fd);
	return p;
}

static int upd_verify(const char *init, const char *res, uint64_t seed, uint64_t nops)
{
	uint64_t n0, n1;
	uint8_t *a = upd_load(init, &n0), *b = upd_load(res, &n1), sec[UPD_SEC];
	if (!a || !b || n0 != n1 || n0 % UPD_SEC) {
		fprintf(stderr, "vdk-upd: %s and %s differ in size\n", init, res);
		return 1;
	}
	uint64_t nsec = n0 / UPD_SEC, bad = 0;
	bool *ok = calloc(nsec, 1);
	for (uint64_t s = 0; s < nsec; s++)
		ok[s] = memcmp(a + s * UPD_SEC, b + s * UPD_SEC, UPD_SEC) == 0;
	memset(sec, 0, sizeof(sec));
	for (uint64_t i = 0; i < nops; i++) {
		struct upd_op op = upd_op_get(seed, i, n0);
		for (uint64_t o = op.off; o < op.off + op.len; o += UPD_SEC) {
			if (ok[o / UPD_SEC])
				continue;
			if (!op.zero)
				upd_fill(seed, i, o, sec);
			ok[o / UPD_SEC] = memcmp(sec, b + o, UPD_SEC) == 0;
			if (!op.zero)
				memset(sec, 0, sizeof(sec));
		}
	}
	for (uint64_t s = 0; s < nsec; s++)
		if (!ok[s] && bad++ == 0)
			fprintf(stderr, "vdk-upd: sector %llu is neither old nor written\n",
			        (unsigned long long)s);
	free(ok);
	free(a);
	free(b);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *fmt = NULL, *verify = NULL;
	long flush_every = 0;
	int c;
	while ((c = getopt(argc, argv, "f:F:c:V:w:")) != -1) {
		if (c == 'f')
			fmt = optarg;
		else if (c == 'F')
			flush_every = strtol(optarg, NULL, 10);
		else if (c == 'c')
			upd_crash_at = strtol(optarg, NULL, 10);
		else if (c == 'V')
			verify = optarg;
		else if (c == 'w')
			upd_wlen = strtoull(optarg, NULL, 10);
		else
			return 2;
	}
	if (argc - optind != 3) {
		fprintf(stderr, "usage: vdk-upd [-f FMT] [-F N] [-c N] [-w LEN] TARGET SEED NOPS\n"
		                "       vdk-upd -V INITIAL.raw RESULT.raw SEED NOPS\n");
		return 2;
	}
	uint64_t seed = strtoull(argv[optind + 1], NULL, 10);
	uint64_t nops = strtoull(argv[optind + 2], NULL, 10);
	if (verify)
		return upd_verify(verify, argv[optind], seed, nops);
	return upd_run(fmt, flush_every, argv[optind], seed, nops);
}
