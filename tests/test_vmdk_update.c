/* The VMDK updater and descriptor edits: textual edits keep every other
 * line, a new CID keeps the old one's width, writes into present and absent
 * grains and zeroes read back exactly through the reader with the bytes
 * written counted (grains whole, tables, the CID), and a streamOptimized
 * image is refused unchanged. qemu-img checks are in it_commit.sh. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "test_img.h"
#include "update.h"
#include "util.h"
#include "vmdk.h"

#define GRAIN 65536u

static char dir[] = "/tmp/vdk-upd.XXXXXX";

static char *put_file(const char *name, const void *data, size_t len)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || vdk_pwrite_full(fd, data, len, 0))
		printf("# cannot write %s\n", path);
	close(fd);
	return path;
}

static void test_desc_edits(void)
{
	const char *t = "# Disk DescriptorFile\nversion=1\nCID=abc\nparentCID=ffffffff\n"
	                "createType=\"monolithicSparse\"\n\n# Extent description\n"
	                "RW 2048 SPARSE \"x.vmdk\"\nddb.adapterType = \"ide\"\n";
	char *p = put_file("d.vmdk", t, strlen(t));
	int fd = open(p, O_RDONLY);
	struct vmdk_dloc d;
	struct vdk_err e = {0};
	CHECK(vmdk_dloc_read(fd, p, &d, &e) == 0 && !d.embedded && d.len == strlen(t),
	      "a descriptor file is read whole");
	size_t off, len;
	CHECK(vmdk_dloc_value(&d, "CID", &off, &len) == 0 && len == 3 &&
	          !strncmp(d.text + off, "abc", 3),
	      "CID found at a line start, not inside parentCID");
	vmdk_dloc_set(&d, "parentFileNameHint", "../a b/base.vmdk", true, "createType");
	CHECK(strstr(
	          d.text,
	          "createType=\"monolithicSparse\"\nparentFileNameHint=\"../a b/base.vmdk\"\n\n") !=
	          NULL,
	      "a missing key is added after the key named");
	vmdk_dloc_set(&d, "parentFileNameHint", "c.vmdk", true, NULL);
	CHECK(strstr(d.text, "parentFileNameHint=\"c.vmdk\"\n") != NULL,
	      "a quoted value is replaced");
	vmdk_dloc_set(&d, "parentFileNameHint", NULL, true, NULL);
	vmdk_dloc_set(&d, "parentCID", "1234abcd", false, NULL);
	CHECK(strstr(d.text, "parentFileNameHint") == NULL &&
	          strstr(d.text, "parentCID=1234abcd\ncreateType") &&
	          strstr(d.text, "ddb.adapterType = \"ide\"\n"),
	      "a line is removed, the others kept as they were");
	vmdk_dloc_free(&d);
	close(fd);
	int ok = 1;
	for (size_t n = 1; n <= 8; n++) {
		uint32_t v = vmdk_cid_like(0xf, n);
		char s[16];
		ok &= (size_t)snprintf(s, sizeof(s), "%x", v) == n && v != 0xf;
	}
	CHECK(ok, "a new CID has as many hex digits as the old one, and differs");
}

static uint8_t *read_back(const char *path, uint64_t size)
{
	struct vdk_image *img;
	struct vdk_err e = {0};
	uint8_t *b = malloc(size);
	if (vdk_image_open_path(path, "vmdk", NULL, &img, &e)) {
		printf("# %s\n", e.msg);
		free(b);
		return NULL;
	}
	if (vdk_image_pread(img, b, size, 0, &e)) {
		free(b);
		b = NULL;
	}
	vdk_image_close(img);
	return b;
}

static void test_sparse_update(void)
{
	const uint64_t size = 8 * MiB;
	struct wr w[] = {{0, 1 * MiB, 1}, {4 * MiB, GRAIN, 2}};
	size_t len;
	fmt = &vdk_format_vmdk;
	uint8_t *img = build(size, "subformat=monolithicSparse", w, 2, &len);
	uint8_t *x = expect(size, w, 2);
	char *p = put_file("s.vmdk", img, len);
	struct vdk_update *u;
	struct vdk_err e = {0};
	int r = vdk_update_open(p, "vmdk", &u, &e);
	CHECK(r == 0 && u->granularity == GRAIN && u->size == size,
	      "monolithicSparse opens for update %s", e.msg);
	if (r)
		return;
	uint8_t a[4096], b[1024];
	fill(a, sizeof(a), 7);
	fill(b, sizeof(b), 8);
	r = vdk_update_write(u, a, sizeof(a), 100 * 1024, &e); /* present grain */
	if (!r)
		r = vdk_update_write(u, b, sizeof(b), 6 * MiB + 512, &e); /* absent grain */
	if (!r)
		r = vdk_update_zero(u, 4 * MiB, GRAIN, &e); /* present: zeroes in place */
	if (!r)
		r = vdk_update_zero(u, 7 * MiB, GRAIN, &e); /* absent, no parent: nothing */
	if (!r)
		r = vdk_update_flush(u, &e);
	memcpy(x + 100 * 1024, a, sizeof(a));
	memcpy(x + 6 * MiB + 512, b, sizeof(b));
	memset(x + 4 * MiB, 0, GRAIN);
	struct vdk_update_stats st = u->st;
	vdk_update_close(u);
	CHECK(r == 0, "writes, zeroes and a flush %s", e.msg);
	CHECK_EQ_U64(st.data_bytes, sizeof(a) + GRAIN + GRAIN,
	             "data written: the bytes in place, one whole new grain, the zeroes in place");
	/* the CID (8 digits) and one grain table, primary and redundant */
	CHECK_EQ_U64(st.meta_bytes, 8 + 2 * 2048, "metadata written: the CID and two table copies");
	printf("# update: %" PRIu64 " data bytes, %" PRIu64 " metadata bytes, %" PRIu64 " syncs\n",
	       st.data_bytes, st.meta_bytes, st.syncs);
	uint8_t *got = read_back(p, size);
	CHECK(got && !memcmp(got, x, size), "the image reads back as written");
	free(got);
	free(x);
	free(img);
}

static void test_refuse_stream(void)
{
	struct wr w[] = {{0, GRAIN, 3}};
	size_t len;
	fmt = &vdk_format_vmdk;
	uint8_t *img = build(2 * MiB, "subformat=streamOptimized", w, 1, &len);
	char *p = put_file("so.vmdk", img, len);
	struct vdk_update *u = NULL;
	struct vdk_err e = {0};
	int r = vdk_update_open(p, "vmdk", &u, &e);
	CHECK(r == -ENOTSUP && strstr(e.msg, "streamOptimized"), "streamOptimized refused: %s",
	      e.msg);
	int fd = open(p, O_RDONLY);
	uint8_t *now = malloc(len);
	CHECK(pread(fd, now, len, 0) == (ssize_t)len && !memcmp(now, img, len),
	      "and left unchanged");
	close(fd);
	free(now);
	free(img);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	test_desc_edits();
	test_sparse_update();
	test_refuse_stream();
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		printf("# cannot remove %s\n", dir);
	TEST_EXIT();
}
