/* Unit tests of the verifying source ova unpack reads disks through
 * (formats/ova_vsrc.c): whatever order and shape the reads take (in
 * order, backwards, several threads with holes between their reads, one
 * read bigger than the ring, nothing but the footer) the manifest digest
 * comes out right, a flipped byte is caught and named, the file is read
 * in requests of 1 MiB, and bytes are read a second time only where no
 * reader read them. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ova_private.h"
#include "test.h"
#include "util.h"

#define DISK_SIZE ((size_t)40 * 1024 * 1024 + 123)
#define STEP      ((size_t)64 * 1024)

static char tmpdir[] = "/tmp/vdk-test-vsrc.XXXXXX";
static uint8_t *disk;

static void write_file(const char *name, const void *d, size_t n)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
	FILE *f = fopen(p, "wb");
	if (!f || fwrite(d, 1, n, f) != n || fclose(f)) {
		perror(p);
		exit(2);
	}
}

static void sha256_hex(const void *d, size_t n, char *hex)
{
	struct ova_hash *h = ova_hash_new(OVA_SHA256);
	uint8_t md[OVA_DIGEST_MAX];
	ova_hash_update(h, d, n);
	ova_hash_final(h, md);
	ova_hash_free(h);
	ova_hex(md, ova_alg_len(OVA_SHA256), hex);
}

/* A folder package: vm.ovf naming disk.bin and empty.bin, and a manifest
 * whose digests are of `disk` and of the text `empty_as`. */
static void make_pkg(const char *empty_as)
{
	static const char ovf[] = "<?xml version=\"1.0\"?>\n"
	                          "<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" "
	                          "xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\">\n"
	                          "<References><File ovf:href=\"disk.bin\" ovf:id=\"f1\"/>"
	                          "<File ovf:href=\"empty.bin\" ovf:id=\"f2\"/></References>\n"
	                          "<VirtualSystem ovf:id=\"t\"><Info>t</Info></VirtualSystem>\n"
	                          "</Envelope>\n";
	char h1[2 * OVA_DIGEST_MAX + 1], h2[sizeof(h1)], h3[sizeof(h1)], mf[1024];
	write_file("vm.ovf", ovf, strlen(ovf));
	write_file("empty.bin", "", 0);
	sha256_hex(ovf, strlen(ovf), h1);
	sha256_hex(disk, DISK_SIZE, h2);
	sha256_hex(empty_as, strlen(empty_as), h3);
	snprintf(mf, sizeof(mf),
	         "SHA256(vm.ovf)= %s\nSHA256(disk.bin)= %s\nSHA256(empty.bin)= %s\n", h1, h2, h3);
	write_file("vm.mf", mf, strlen(mf));
}

struct fixture {
	struct ova_pkg *p;
	struct vdk_src *s;
};

static int open_vs(struct fixture *fx, const char *href, bool verify)
{
	char path[512];
	struct vdk_err e = {0};
	snprintf(path, sizeof(path), "%s/vm.ovf", tmpdir);
	fx->p = NULL;
	fx->s = NULL;
	if (ova_pkg_open(path, &fx->p, &e) < 0) {
		printf("# %s\n", e.msg);
		return -1;
	}
	for (size_t i = 0; i < fx->p->desc.nfiles; i++)
		if (!strcmp(fx->p->desc.files[i].href, href))
			return ova_vsrc_open(fx->p, &fx->p->desc.files[i], verify, &fx->s, &e);
	return -1;
}

/* Finish: the name of the bad member ("" when none); the bytes read only
 * to be hashed, and how the member was read, in st. */
static struct ova_vsrc_stats st;

static const char *finish(struct fixture *fx, uint64_t *reread)
{
	struct vdk_err e = {0};
	const char *bad = NULL;
	static char name[64];
	memset(&st, 0xff, sizeof(st));
	int r = ova_vsrc_finish(fx->s, &bad, &st, &e);
	*reread = st.reread;
	snprintf(name, sizeof(name), "%s", r < 0 ? "(error)" : bad ? bad : "");
	vdk_src_close(fx->s);
	ova_pkg_close(fx->p);
	return name;
}

static bool read_at(struct vdk_src *s, size_t off, size_t len)
{
	struct vdk_err e = {0};
	uint8_t *buf = malloc(len);
	bool ok = buf && vdk_src_pread(s, buf, len, off, &e) == 0 && !memcmp(buf, disk + off, len);
	free(buf);
	return ok;
}

static void test_in_order(void)
{
	struct fixture fx;
	uint64_t rr;
	bool ok = open_vs(&fx, "disk.bin", true) == 0;
	for (size_t o = 0; ok && o < DISK_SIZE; o += STEP)
		ok = read_at(fx.s, o, VDK_MIN(STEP, DISK_SIZE - o));
	CHECK(ok, "in-order reads return the member's bytes");
	CHECK(!strcmp(finish(&fx, &rr), ""), "in-order reads: digest matches");
	CHECK_EQ_U64(rr, 0, "in-order reads: nothing read twice");
	CHECK(st.file_reads <= DISK_SIZE / (1 << 20) + 2 && st.file_bytes == DISK_SIZE,
	      "64 KiB reads reach the file as %" PRIu64 " reads of %" PRIu64 " bytes in all",
	      st.file_reads, st.file_bytes);
}

static void test_backwards(void)
{
	struct fixture fx;
	uint64_t rr;
	bool ok = open_vs(&fx, "disk.bin", true) == 0;
	for (size_t o = DISK_SIZE / STEP * STEP;; o -= STEP) {
		ok = ok && read_at(fx.s, o, VDK_MIN(STEP, DISK_SIZE - o));
		if (!o)
			break;
	}
	CHECK(ok, "backward reads return the member's bytes");
	CHECK(!strcmp(finish(&fx, &rr), ""), "backward reads: digest matches");
	CHECK(rr <= DISK_SIZE, "backward reads: at most the member re-read (%" PRIu64 ")", rr);
}

/* Thread k reads chunks k, k+T, ... each short of its last GAP bytes, the
 * way pipeline workers read grains and skip a sector's padding. */
#define T     4
#define CHUNK ((size_t)256 * 1024)
#define GAP   300u

struct worker {
	struct vdk_src *s;
	unsigned k;
	bool ok;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->ok = true;
	for (size_t c = w->k; c * CHUNK < DISK_SIZE && w->ok; c += T) {
		size_t o = c * CHUNK, n = VDK_MIN(CHUNK, DISK_SIZE - o);
		size_t skip = n > GAP ? GAP : 0;
		for (size_t g = o; g < o + n - skip && w->ok; g += 16 * 1024)
			w->ok = read_at(w->s, g, VDK_MIN((size_t)16 * 1024, o + n - skip - g));
	}
	return NULL;
}

static void test_threads_with_holes(void)
{
	struct fixture fx;
	uint64_t rr;
	struct worker w[T];
	pthread_t th[T];
	bool ok = open_vs(&fx, "disk.bin", true) == 0;
	for (unsigned k = 0; ok && k < T; k++) {
		w[k] = (struct worker){.s = fx.s, .k = k};
		pthread_create(&th[k], NULL, worker_main, &w[k]);
	}
	for (unsigned k = 0; ok && k < T; k++) {
		pthread_join(th[k], NULL);
		ok = w[k].ok;
	}
	size_t chunks = DISK_SIZE / CHUNK + (DISK_SIZE % CHUNK > GAP); /* with a hole */
	CHECK(ok, "%d threads reading interleaved chunks get the member's bytes", T);
	CHECK(!strcmp(finish(&fx, &rr), ""), "threads with holes: digest matches");
	CHECK(rr <= chunks * GAP && st.file_bytes <= DISK_SIZE + DISK_SIZE / 4,
	      "threads with holes: the file read about once (%" PRIu64 " bytes in %" PRIu64
	      " reads; %" PRIu64 " only to hash the %zu holes)",
	      st.file_bytes, st.file_reads, rr, chunks);
}

static void test_footer_only(void)
{
	struct fixture fx;
	uint64_t rr;
	bool ok = open_vs(&fx, "disk.bin", true) == 0 && read_at(fx.s, DISK_SIZE - 1024, 1024);
	CHECK(ok, "a read of the last KiB alone");
	CHECK(!strcmp(finish(&fx, &rr), ""), "footer only: finish hashes the rest, digest matches");
	CHECK_EQ_U64(rr, DISK_SIZE - 1024, "footer only: the rest read once");
}

static void test_big_read(void)
{
	struct fixture fx;
	uint64_t rr;
	size_t big = 20u << 20;
	bool ok = open_vs(&fx, "disk.bin", true) == 0 && read_at(fx.s, 0, big) &&
	          read_at(fx.s, big, DISK_SIZE - big);
	CHECK(ok, "reads bigger than the ring");
	CHECK(!strcmp(finish(&fx, &rr), ""), "big reads: digest matches");
	CHECK_EQ_U64(rr, 0, "big reads: nothing read twice");
}

static void test_flipped_byte(void)
{
	struct fixture fx;
	uint64_t rr;
	disk[DISK_SIZE / 3] ^= 0x20;
	write_file("disk.bin", disk, DISK_SIZE);
	bool ok = open_vs(&fx, "disk.bin", true) == 0;
	for (size_t o = 0; ok && o < DISK_SIZE; o += STEP)
		ok = read_at(fx.s, o, VDK_MIN(STEP, DISK_SIZE - o));
	CHECK(!strcmp(finish(&fx, &rr), "disk.bin"), "a flipped byte names disk.bin");
	disk[DISK_SIZE / 3] ^= 0x20;
	write_file("disk.bin", disk, DISK_SIZE);
	CHECK(open_vs(&fx, "disk.bin", false) == 0 && read_at(fx.s, 4096, 4096) &&
	          !strcmp(finish(&fx, &rr), "") && rr == 0,
	      "without verification nothing is hashed or re-read");
}

static void test_empty_member(void)
{
	struct fixture fx;
	uint64_t rr;
	CHECK(open_vs(&fx, "empty.bin", true) == 0 && !strcmp(finish(&fx, &rr), ""),
	      "an empty member with the empty digest passes");
	make_pkg("not empty");
	CHECK(open_vs(&fx, "empty.bin", true) == 0 && !strcmp(finish(&fx, &rr), "empty.bin"),
	      "an empty member with another digest is named");
	make_pkg("");
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	disk = malloc(DISK_SIZE);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < DISK_SIZE; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		disk[i] = (uint8_t)x;
	}
	write_file("disk.bin", disk, DISK_SIZE);
	make_pkg("");
	test_in_order();
	test_backwards();
	test_threads_with_holes();
	test_footer_only();
	test_big_read();
	test_flipped_byte();
	test_empty_member();
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	free(disk);
	TEST_EXIT();
}
