/* VHDX module: CRC-32C, writer/reader round trips (dynamic, fixed, 4096-byte
 * sectors, clone placement), refusal of malformed files, in-memory log
 * replay that leaves the source untouched, and differencing disks read
 * through the sector bitmap with the parent confined to the image's folder. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "format.h"
#include "test.h"
#include "test_img.h"
#include "update.h"
#include "util.h"

uint32_t vdk_crc32c_sw(uint32_t crc, const void *buf, size_t len);

static char tmpdir[256];

static void test_crc(void)
{
	CHECK_EQ_U64(vdk_crc32c(0, "123456789", 9), 0xE3069283u, "crc32c check value");
	CHECK_EQ_U64(vdk_crc32c(vdk_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u,
	             "crc32c chains");
	uint8_t buf[1031];
	fill(buf, sizeof(buf), 7);
	int same = 1;
	for (size_t n = 0; n <= sizeof(buf); n += 13)
		same &= vdk_crc32c(0, buf + (n % 5), n - (n % 5)) ==
		        vdk_crc32c_sw(0, buf + (n % 5), n - (n % 5));
	CHECK(same, "crc32c instruction and table agree on unaligned lengths");
}

static int open_mem(const uint8_t *buf, size_t len, struct vdk_image **img, struct vdk_err *e)
{
	struct vdk_src *s;
	vdk_err_clear(e);
	int r = vdk_src_open_mem(buf, len, "mem.vhdx", &s, e);
	return r ? r : vdk_image_open(s, true, "vhdx", NULL, img, e);
}

/* Expected content of a disk built from writes. */

static bool reads_as(struct vdk_image *img, const uint8_t *want, uint64_t size)
{
	struct vdk_err e = {0};
	uint8_t *got = malloc(size);
	bool ok = vdk_image_pread(img, got, size, 0, &e) == 0 && memcmp(got, want, size) == 0;
	if (e.msg[0])
		printf("# %s\n", e.msg);
	free(got);
	return ok;
}

static void test_roundtrip(const char *opts, uint64_t size, bool fixed)
{
	struct wr w[] = {{0, MiB, 1}, {2 * MiB + 128 * 1024, 64 * 1024, 2}, {size - 4096, 4096, 3}};
	size_t len;
	uint8_t *f = build(size, opts, w, 3, &len);
	CHECK(f != NULL, "[%s] writer builds a %llu-byte disk", opts, (unsigned long long)size);
	if (!f)
		return;
	struct vdk_image *img;
	struct vdk_err e;
	int r = open_mem(f, len, &img, &e);
	CHECK(r == 0, "[%s] reader opens it: %s", opts, e.msg);
	if (r == 0) {
		uint8_t *x = expect(size, w, 3);
		CHECK_EQ_U64(img->size, size, "[%s] virtual size", opts);
		CHECK(reads_as(img, x, size), "[%s] content reads back byte-identical", opts);
		struct vdk_extents ex = {0};
		vdk_image_extents(img, MiB, MiB, &ex, &e);
		CHECK(ex.n == 1 && ex.v[0].flags == (fixed ? 0 : VDK_EXT_HOLE | VDK_EXT_ZERO),
		      "[%s] an unwritten block is %s", opts, fixed ? "allocated" : "a hole");
		vdk_extents_free(&ex);
		free(x);
		vdk_image_close(img);
	}
	/* Whole blocks, the partial last one too (its BAT entry maps a whole
	 * block; 7-Zip calls a shorter file truncated), plus metadata. */
	uint64_t whole = vdk_round_up(size, strstr(opts, "block_size=1M") ? MiB : 32 * MiB);
	if (fixed)
		CHECK(len >= whole && len <= whole + 8 * MiB,
		      "[%s] fixed file %zu covers whole blocks + <= 8 MiB", opts, len);
	else
		CHECK_EQ_U64(len, 4 * MiB + 3 * MiB, "[%s] dynamic file holds 3 payload blocks",
		             opts);
	free(f);
}

/* Region table entry lookup in a built file. */
static uint64_t region(const uint8_t *f, int meta, uint32_t *len)
{
	for (unsigned i = 0; i < vdk_le32(f + 192 * 1024 + 8); i++) {
		const uint8_t *p = f + 192 * 1024 + 16 + 32 * i;
		if ((p[0] == 0x66) == !meta) { /* BAT GUID starts 66 77 c2 2d */
			*len = vdk_le32(p + 24);
			return vdk_le64(p + 16);
		}
	}
	return 0;
}

static void fix_crc(uint8_t *p, size_t len)
{
	vdk_put_le32(p + 4, 0);
	vdk_put_le32(p + 4, vdk_crc32c(0, p, len));
}

static void expect_refused(uint8_t *f, size_t len, const char *what, const char *needle)
{
	struct vdk_image *img = NULL;
	struct vdk_err e;
	int r = open_mem(f, len, &img, &e);
	CHECK(r < 0 && e.cls == VDK_E_INPUT && strstr(e.msg, needle) && strstr(e.msg, "vhdx"),
	      "%s is refused: %s", what, e.msg);
	if (r == 0)
		vdk_image_close(img);
}

static void test_bad(void)
{
	struct wr w[] = {{0, MiB, 1}};
	size_t len;
	uint8_t *good = build(4 * MiB, "block_size=1M", w, 1, &len);
	uint8_t *f = malloc(len);
	uint32_t blen, mlen;
	uint64_t bat = region(good, 0, &blen), meta = region(good, 1, &mlen);
	CHECK(bat && meta, "test can find BAT (%llu) and metadata (%llu)", (unsigned long long)bat,
	      (unsigned long long)meta);

	memcpy(f, good, len);
	f[64 * 1024 + 100] ^= 1;
	f[128 * 1024 + 100] ^= 1;
	expect_refused(f, len, "bad CRC in both headers", "header");

	memcpy(f, good, len);
	f[64 * 1024 + 100] ^= 1;
	struct vdk_image *img;
	struct vdk_err e;
	CHECK(open_mem(f, len, &img, &e) == 0, "one bad header: the other one is used");
	if (!e.msg[0])
		vdk_image_close(img);

	memcpy(f, good, len);
	vdk_put_le64(f + bat, ((uint64_t)len + MiB) | 6);
	expect_refused(f, len, "a BAT entry beyond the end of the file", "beyond the end");

	memcpy(f, good, len);
	vdk_put_le64(f + bat, (4ull * MiB) | 4);
	expect_refused(f, len, "a BAT entry with an invalid state", "invalid state");

	uint64_t fp = meta + vdk_le32(f + meta + 32 + 16); /* first item: file parameters */
	memcpy(f, good, len);
	vdk_put_le32(f + fp, 0);
	expect_refused(f, len, "a block size of 0", "block size 0");
	vdk_put_le32(f + fp, 512 * MiB);
	expect_refused(f, len, "a block size of 512 MiB", "block size 536870912");

	memcpy(f, good, len);
	vdk_put_le64(f + 192 * 1024 + 16 + 16, meta); /* BAT onto the metadata region */
	fix_crc(f + 192 * 1024, 64 * 1024);
	expect_refused(f, len, "overlapping regions", "overlaps");

	memcpy(f, good, len);
	memset(f + 192 * 1024, 0, 64 * 1024);
	memset(f + 256 * 1024, 0, 64 * 1024);
	expect_refused(f, len, "no valid region table", "region table");

	expect_refused(good, 300 * 1024, "a file truncated inside the header area", "small");
	expect_refused(good, 3 * MiB + 100, "a file truncated inside the BAT", "beyond the end");

	memcpy(f, good, len);
	memcpy(f + meta, "metadatX", 8);
	expect_refused(f, len, "a bad metadata signature", "metadata");

	/* random damage in the metadata and BAT: refused or read, never a crash */
	int survived = 1;
	for (unsigned i = 0; i < 300; i++) {
		memcpy(f, good, len);
		uint32_t x = i * 2654435761u;
		for (int k = 0; k < 4; k++) {
			x = x * 1103515245u + 12345u;
			uint64_t at = (x & 1) ? meta + (x >> 8) % 256 : bat + (x >> 8) % 64;
			f[at] ^= (uint8_t)(x >> 24) | 1;
		}
		if (open_mem(f, len, &img, &e) == 0) {
			uint8_t *buf = malloc(4 * MiB);
			survived &=
			    vdk_image_pread(img, buf, img->size < 4 * MiB ? img->size : 4 * MiB, 0,
			                    &e) >= -EINVAL - 1000;
			free(buf);
			vdk_image_close(img);
		}
	}
	CHECK(survived, "300 randomly damaged files are refused or read without a crash");
	free(f);
	free(good);
}

/* Log replay ------------------------------------------------------------- */

static void put_log_entry(uint8_t *f, uint64_t log_off, const uint8_t guid[16], uint64_t seq,
                          uint64_t fsize, uint64_t data_off, const uint8_t *sector,
                          uint64_t zero_off, uint64_t zero_len)
{
	uint8_t *h = f + log_off;
	memset(h, 0, 8192);
	memcpy(h, "loge", 4);
	vdk_put_le32(h + 8, 8192);
	vdk_put_le32(h + 12, 0);
	vdk_put_le64(h + 16, seq);
	vdk_put_le32(h + 24, 2);
	memcpy(h + 32, guid, 16);
	vdk_put_le64(h + 48, fsize);
	vdk_put_le64(h + 56, fsize);
	uint8_t *d = h + 64;
	memcpy(d, "desc", 4);
	memcpy(d + 4, sector + 4092, 4);
	memcpy(d + 8, sector, 8);
	vdk_put_le64(d + 16, data_off);
	vdk_put_le64(d + 24, seq);
	d += 32;
	memcpy(d, "zero", 4);
	vdk_put_le64(d + 8, zero_len);
	vdk_put_le64(d + 16, zero_off);
	vdk_put_le64(d + 24, seq);
	uint8_t *s = h + 4096;
	memcpy(s, "data", 4);
	vdk_put_le32(s + 4, (uint32_t)(seq >> 32));
	memcpy(s + 8, sector + 8, 4084);
	vdk_put_le32(s + 4092, (uint32_t)seq);
	fix_crc(h, 8192);
}

static void set_log_guid(uint8_t *f, const uint8_t guid[16])
{
	for (int i = 1; i <= 2; i++) {
		memcpy(f + i * 64 * 1024 + 48, guid, 16);
		fix_crc(f + i * 64 * 1024, 4096);
	}
}

/* A 2 MiB VHDX (two 1 MiB blocks) whose log points block 0 at block 1's
 * data and zeroes block 1's first 4 KiB; want is what a replay reads. */
struct logged {
	uint8_t *f, *want, *orig;
	size_t len;
	uint64_t log_off, b1;
	uint8_t sector[4096];
};

static const uint8_t log_guid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void logged_build(struct logged *l)
{
	struct wr w[] = {{0, MiB, 1}, {MiB, MiB, 2}};
	l->f = build(2 * MiB, "block_size=1M", w, 2, &l->len);
	uint32_t blen;
	uint64_t bat = region(l->f, 0, &blen);
	l->log_off = vdk_le64(l->f + 64 * 1024 + 72);
	l->b1 = vdk_le64(l->f + bat + 8) & ~(MiB - 1ull);
	memcpy(l->sector, l->f + bat, 4096);
	vdk_put_le64(l->sector, l->b1 | 6);
	put_log_entry(l->f, l->log_off, log_guid, 7, l->len, bat, l->sector, l->b1, 4096);
	set_log_guid(l->f, log_guid);
	l->orig = expect(2 * MiB, w, 2);
	l->want = expect(2 * MiB, w, 2);
	memset(l->want + MiB, 0, 4096);
	memcpy(l->want, l->want + MiB, MiB);
}

static void logged_free(struct logged *l)
{
	free(l->f);
	free(l->want);
	free(l->orig);
}

static void test_log(void)
{
	struct logged l;
	logged_build(&l);
	uint8_t *f = l.f, *x = l.want;
	size_t len = l.len;
	uint64_t log_off = l.log_off;
	uint8_t *copy = malloc(len);
	memcpy(copy, f, len);
	struct vdk_image *img;
	struct vdk_err e;
	int r = open_mem(f, len, &img, &e);
	CHECK(r == 0, "a file with a log opens: %s", e.msg);
	if (r == 0) {
		CHECK(img->dirty, "it is reported dirty (log replayed in memory)");
		CHECK(reads_as(img, x, 2 * MiB), "reads show the log's data and zero writes");
		struct vdk_extents ex = {0};
		vdk_image_extents(img, MiB, 8192, &ex, &e);
		CHECK(ex.n >= 1 && ex.v[0].fd < 0,
		      "a block the log rewrote is not cloned verbatim");
		vdk_extents_free(&ex);
		vdk_image_close(img);
	}
	CHECK(memcmp(copy, f, len) == 0, "the source bytes are unchanged");

	/* a damaged entry is not part of any sequence: nothing to replay */
	f[log_off + 4096 + 100] ^= 1;
	r = open_mem(f, len, &img, &e);
	CHECK(r == 0 && !img->dirty && reads_as(img, l.orig, 2 * MiB),
	      "a log entry with a bad CRC is ignored: %s", e.msg);
	if (r == 0)
		vdk_image_close(img);
	free(copy);
	logged_free(&l);
}

/* check -r: the log written into a real file, or refused untouched. */
static bool repair_file(const uint8_t *f, size_t len, char *path, struct vdk_err *e)
{
	strcpy(path, "/tmp/vdk-test-vhdx-XXXXXX");
	int fd = mkstemp(path);
	bool ok = fd >= 0 && write(fd, f, len) == (ssize_t)len;
	if (fd >= 0)
		close(fd);
	struct vdk_image *img;
	struct vdk_check res = {0};
	vdk_err_clear(e);
	if (!ok || vdk_image_open_path(path, "vhdx", NULL, &img, e) != 0)
		return false;
	ok = img->fmt->check(img, &res, true, e) == 0 && res.fixed == 1;
	vdk_image_close(img);
	return ok;
}

static void test_log_repair(void)
{
	struct logged l;
	logged_build(&l);
	uint8_t *f = l.f, *x = l.want;
	size_t len = l.len;
	char path[64];
	struct vdk_err e;
	struct vdk_image *img = NULL;
	CHECK(repair_file(f, len, path, &e), "check -r replays the log into the file: %s", e.msg);
	int r = vdk_image_open_path(path, "vhdx", NULL, &img, &e);
	CHECK(r == 0 && !img->dirty && reads_as(img, x, 2 * MiB),
	      "reopened, it has no log and reads as the replay did");
	if (r == 0)
		vdk_image_close(img);
	unlink(path);

	/* A log that writes into header 1 is not replayed, and nothing changes. */
	put_log_entry(f, l.log_off, log_guid, 7, len, 64 * 1024, l.sector, l.b1, 4096);
	CHECK(!repair_file(f, len, path, &e) && strstr(e.msg, "header area"),
	      "a log writing into the header area is refused: %s", e.msg);
	size_t got = 0;
	uint8_t *after = malloc(len);
	int fd = open(path, O_RDONLY);
	if (fd >= 0 && after)
		got = (size_t)read(fd, after, len);
	if (fd >= 0)
		close(fd);
	CHECK(got == len && memcmp(after, f, len) == 0, "and the file is byte-unchanged");
	unlink(path);
	free(after);
	logged_free(&l);
}

/* Differencing ------------------------------------------------------------ */

static void put_utf16(uint8_t *p, const char *s)
{
	for (; *s; s++, p += 2)
		vdk_put_le16(p, (uint8_t)*s);
}

/* Turn a built dynamic file into a differencing child of parent_dw. */
static uint8_t *make_child(uint8_t *f, size_t *len, const uint8_t *parent_dw, const char *rel)
{
	uint32_t blen, mlen;
	uint64_t bat = region(f, 0, &blen), meta = region(f, 1, &mlen);
	size_t nlen = *len + MiB; /* room for the sector bitmap block */
	f = realloc(f, nlen);
	memset(f + *len, 0, MiB);
	uint64_t sb = *len;
	f[sb] = 0xFF; /* sectors 0-7 and 16-23 of block 0 are in the child */
	f[sb + 2] = 0xFF;
	uint64_t b0 = vdk_le64(f + bat) & ~(MiB - 1ull);
	vdk_put_le64(f + bat, b0 | 7);
	vdk_put_le64(f + bat + 16, 2); /* block 2: ZERO */
	vdk_put_le64(f + bat + 8 * 4096, sb | 6);
	uint64_t fp = meta + vdk_le32(f + meta + 32 + 16);
	vdk_put_le32(f + fp + 4, 2); /* HasParent */
	/* parent locator item after the others */
	uint8_t *t = f + meta;
	unsigned n = vdk_le16(t + 10);
	uint32_t io = 128 * 1024;
	uint8_t *e = t + 32 + 32 * n;
	static const uint8_t plg[16] = {0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
	                                0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c};
	static const uint8_t ptype[16] = {0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1, 0x81, 0x4a,
	                                  0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13};
	memcpy(e, plg, 16);
	vdk_put_le32(e + 16, io);
	vdk_put_le32(e + 20, 1024);
	vdk_put_le32(e + 24, 4 | 2);
	vdk_put_le16(t + 10, (uint16_t)(n + 1));
	uint8_t *p = t + io;
	memcpy(p, ptype, 16);
	vdk_put_le16(p + 18, 2);
	char link[64];
	snprintf(link, sizeof(link), "{%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x}",
	         vdk_le32(parent_dw), vdk_le16(parent_dw + 4), vdk_le16(parent_dw + 6),
	         parent_dw[8], parent_dw[9], parent_dw[10], parent_dw[11], parent_dw[12],
	         parent_dw[13], parent_dw[14], parent_dw[15]);
	const char *k[2] = {"parent_linkage", "relative_path"}, *v[2] = {link, rel};
	uint32_t at = 20 + 24;
	for (int i = 0; i < 2; i++) {
		uint8_t *pe = p + 20 + 12 * i;
		vdk_put_le32(pe, at);
		vdk_put_le16(pe + 8, (uint16_t)(2 * strlen(k[i])));
		put_utf16(p + at, k[i]);
		at += 2 * (uint32_t)strlen(k[i]);
		vdk_put_le32(pe + 4, at);
		vdk_put_le16(pe + 10, (uint16_t)(2 * strlen(v[i])));
		put_utf16(p + at, v[i]);
		at += 2 * (uint32_t)strlen(v[i]);
	}
	*len = nlen;
	return f;
}

static int write_file(const char *path, const uint8_t *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, b, len);
	close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

static void test_diff(void)
{
	char pdir[300], cpath[400], ppath[400], opath[400];
	snprintf(pdir, sizeof(pdir), "%s/in", tmpdir);
	mkdir(pdir, 0755);
	snprintf(ppath, sizeof(ppath), "%s/parent.vhdx", pdir);
	snprintf(cpath, sizeof(cpath), "%s/child.vhdx", pdir);
	snprintf(opath, sizeof(opath), "%s/parent.vhdx", tmpdir);
	struct wr pw[] = {{0, 4 * MiB, 11}}, cw[] = {{0, MiB, 12}};
	size_t plen, clen;
	uint8_t *p = build(4 * MiB, "block_size=1M", pw, 1, &plen);
	uint8_t *c = build(4 * MiB, "block_size=1M", cw, 1, &clen);
	write_file(ppath, p, plen);
	write_file(opath, p, plen);
	c = make_child(c, &clen, p + 64 * 1024 + 32, ".\\parent.vhdx");
	write_file(cpath, c, clen);

	uint8_t *x = expect(4 * MiB, pw, 1), *cx = expect(4 * MiB, cw, 1);
	memcpy(x, cx, 4096);
	memcpy(x + 8192, cx + 8192, 4096);
	memset(x + 2 * MiB, 0, MiB);
	struct vdk_image *img;
	struct vdk_err e = {0};
	int r = vdk_image_open_path(cpath, NULL, NULL, &img, &e);
	CHECK(r == 0, "a differencing disk opens with its parent: %s", e.msg);
	if (r == 0) {
		CHECK(img->backing != NULL, "the parent is opened through the locator");
		CHECK(reads_as(img, x, 4 * MiB), "sector bitmap runs, ZERO and NOT_PRESENT blocks "
		                                 "read child, zero and parent data");
		vdk_image_close(img);
	}
	/* in-place updates refuse a child: its unwritten sectors are the parent's */
	struct vdk_update *u = NULL;
	vdk_err_clear(&e);
	r = vdk_update_open(cpath, NULL, &u, &e);
	CHECK(r < 0 && strstr(e.msg, "differencing") && strstr(e.msg, "child.vhdx"),
	      "a differencing VHDX is refused for update: %s", e.msg);
	vdk_update_close(u);
	/* a locator that leaves the folder */
	uint8_t *c2 = build(4 * MiB, "block_size=1M", cw, 1, &clen);
	c2 = make_child(c2, &clen, p + 64 * 1024 + 32, "..\\parent.vhdx");
	write_file(cpath, c2, clen);
	vdk_err_clear(&e);
	r = vdk_image_open_path(cpath, NULL, NULL, &img, &e);
	CHECK(r < 0 && strstr(e.msg, "outside"),
	      "a parent locator escaping the folder is "
	      "refused: %s",
	      e.msg);
	if (r == 0)
		vdk_image_close(img);
	/* a parent that changed since */
	uint8_t other[16] = {9};
	uint8_t *c3 = build(4 * MiB, "block_size=1M", cw, 1, &clen);
	c3 = make_child(c3, &clen, other, "parent.vhdx");
	write_file(cpath, c3, clen);
	vdk_err_clear(&e);
	r = vdk_image_open_path(cpath, NULL, NULL, &img, &e);
	CHECK(r < 0 && strstr(e.msg, "parent_linkage"),
	      "a parent with another DataWriteGuid is "
	      "refused: %s",
	      e.msg);
	if (r == 0)
		vdk_image_close(img);
	unlink(cpath);
	unlink(ppath);
	unlink(opath);
	rmdir(pdir);
	free(x);
	free(cx);
	free(c);
	free(c2);
	free(c3);
	free(p);
}

/* Clone placement: consecutive blocks land in consecutive file blocks. */
static void test_clone(void)
{
	char src[300], dst[300];
	snprintf(src, sizeof(src), "%s/src.raw", tmpdir);
	snprintf(dst, sizeof(dst), "%s/dst.vhdx", tmpdir);
	uint8_t *b = malloc(4 * MiB);
	fill(b, 4 * MiB, 5);
	write_file(src, b, 4 * MiB);
	int fd = open(src, O_RDONLY);
	struct vdk_err e = {0};
	struct vdk_sink *k;
	struct vdk_writer *w;
	struct vdk_opts o = {0};
	vdk_opts_parse(&o, "block_size=1M", &e);
	int r = vdk_sink_create_file(dst, &k, &e);
	if (r == 0)
		r = vdk_writer_create(fmt, k, 4 * MiB, &o, NULL, &w, &e);
	CHECK(r == 0, "writer on a file: %s", e.msg);
	if (r)
		return;
	CHECK(w->caps & VDK_WCAP_CLONE, "the VHDX writer can clone");
	r = fmt->clone(w, 512 * 1024, 3 * MiB + 512 * 1024, fd, 512 * 1024, VDK_CLONE_AUTO, &e);
	if (r == -EOPNOTSUPP) {
		struct statfs sfs = {0};
		fstatfs(fd, &sfs);
		SKIP("the filesystem of %s (f_type 0x%llx) shares no blocks, so the copy "
		     "fallback is tested instead; tests/it_vhdx.sh clones on a loop XFS",
		     tmpdir, (unsigned long long)sfs.f_type);
		r = vdk_writer_write(w, b + 512 * 1024, 3 * MiB + 512 * 1024, 512 * 1024, &e);
	}
	CHECK(r >= 0, "clone of [512K, 4M) returns %d", r);
	r = vdk_writer_write(w, b, 512 * 1024, 0, &e);
	r = r ? r : vdk_writer_finish(w, &e);
	CHECK(r == 0, "finish: %s", e.msg);
	vdk_writer_close(w);
	vdk_sink_close(k);
	close(fd);
	struct vdk_image *img;
	r = vdk_image_open_path(dst, NULL, NULL, &img, &e);
	CHECK(r == 0 && reads_as(img, b, 4 * MiB), "cloned VHDX reads back identical");
	if (r == 0) {
		struct vdk_extents ex = {0};
		vdk_image_extents(img, 0, 4 * MiB, &ex, &e);
		CHECK(ex.n == 1 && ex.v[0].fd >= 0 && ex.v[0].phys % MiB == 0,
		      "the 4 blocks are one contiguous verbatim run (%zu extents)", ex.n);
		vdk_extents_free(&ex);
		vdk_image_close(img);
	}
	unlink(src);
	unlink(dst);
	vdk_opts_free(&o);
	free(b);
}

static void test_opts(void)
{
	size_t len;
	CHECK(build(4 * MiB, "block_size=3M", NULL, 0, &len) == NULL, "block_size=3M is refused");
	CHECK(build(4 * MiB, "block_size=512M", NULL, 0, &len) == NULL,
	      "block_size=512M is refused");
	CHECK(build(4 * MiB, "logical_sector_size=1024", NULL, 0, &len) == NULL,
	      "logical_sector_size=1024 is refused");
	CHECK(build(4 * MiB, "log_size=512K", NULL, 0, &len) == NULL, "log_size=512K is refused");
	uint8_t *f = build(4 * MiB, "log_size=4M", NULL, 0, &len);
	CHECK(f && vdk_le32(f + 64 * 1024 + 68) == 4 * MiB && len == 7 * MiB,
	      "log_size=4M lays out a 4 MiB log");
	free(f);
}

int main(void)
{
	fmt = vdk_format_find("vhdx");
	CHECK(fmt != NULL, "vhdx is registered");
	if (!fmt)
		TEST_EXIT();
	snprintf(tmpdir, sizeof(tmpdir), "%s/vdk-vhdx-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir))
		return 1;
	test_crc();
	test_roundtrip("block_size=1M", 8 * MiB, false);
	test_roundtrip("block_size=1M,logical_sector_size=4096", 8 * MiB, false);
	test_roundtrip("subformat=fixed,block_size=1M", 8 * MiB, true);
	test_roundtrip("subformat=fixed", 8 * MiB, true);
	test_bad();
	test_log();
	test_log_repair();
	test_diff();
	test_clone();
	test_opts();
	rmdir(tmpdir);
	TEST_EXIT();
}
