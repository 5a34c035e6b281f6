/* Unit tests of the core: options, JSON, extents, sources, sinks, path
 * confinement, the pipeline, digests and compare. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline.h"
#include "test.h"
#include "util.h"

static char tmpdir[] = "/tmp/vdk-test-core.XXXXXX";

static void test_opts(void)
{
	struct vdk_opts o = {0};
	struct vdk_err e = {0};
	CHECK(vdk_opts_parse(&o, "a=1,b=x,,y,size=64M", &e) == 0, "options parse");
	CHECK(o.n == 3, "three options");
	const char *b = vdk_opts_get(&o, "b");
	CHECK(b && !strcmp(b, "x,y"), "',,' is a literal comma (got %s)", b ? b : "NULL");
	uint64_t v = 0;
	CHECK(vdk_opts_get_size(&o, "size", 0, 0, UINT64_MAX, &v, &e) == 0 && v == 64 << 20,
	      "size suffix M");
	CHECK(vdk_opts_check_unused(&o, "raw", &e) != 0 && strstr(e.msg, "'a'"),
	      "unused option named in the error: %s", e.msg);
	CHECK(e.cls == VDK_E_USAGE, "unused option is a usage error");
	vdk_opts_free(&o);
	vdk_err_clear(&e);
	CHECK(vdk_opts_parse(&o, "novalue", &e) != 0 && e.cls == VDK_E_USAGE, "key without =");
	vdk_opts_free(&o);
	CHECK(vdk_parse_size("18446744073709551615", &v) == 0 && v == UINT64_MAX, "max u64");
	CHECK(vdk_parse_size("17179869184G", &v) == -ERANGE, "size overflow refused");
	CHECK(vdk_parse_size("12X", &v) == -EINVAL, "bad suffix refused");
	CHECK(vdk_parse_size("1KiB", &v) == 0 && v == 1024, "KiB suffix");
	vdk_err_clear(&e);
	vdk_opts_set(&o, "flag", "maybe", &e);
	bool bv;
	CHECK(vdk_opts_get_bool(&o, "flag", false, &bv, &e) != 0, "bad boolean refused");
	vdk_opts_free(&o);
}

static void test_json(void)
{
	struct vdk_json *j = vdk_json_new_obj();
	vdk_json_set_u64(j, "virtual-size", 1024);
	vdk_json_set_str(j, "filename", "a\"b\n");
	struct vdk_json *arr = vdk_json_set_arr(j, "extents");
	vdk_json_set_bool(vdk_json_push_obj(arr), "ok", true);
	char *s = vdk_json_render(j, true);
	CHECK(s && strstr(s, "\"virtual-size\": 1024"), "json number");
	CHECK(s && strstr(s, "\"a\\\"b\\n\""), "json string escaped");
	CHECK(s && strstr(s, "\"ok\": true"), "json nested array of objects");
	free(s);
	s = vdk_json_render_text(j, 0);
	CHECK(s && strstr(s, "virtual size: 1024\n") && strstr(s, "[0]:\n"), "text form");
	free(s);
	vdk_json_free(j);
}

static void test_extents(void)
{
	struct vdk_extents x = {0};
	vdk_extents_add(&x, 0, 4096, 0, 3, 8192);
	vdk_extents_add(&x, 4096, 4096, 0, 3, 12288);        /* continues verbatim run */
	vdk_extents_add(&x, 8192, 4096, 0, 3, 0);            /* jumps: new extent */
	vdk_extents_add(&x, 12288, 100, VDK_EXT_ZERO, 3, 5); /* zero: location dropped */
	CHECK(x.n == 3 && x.v[0].len == 8192, "contiguous verbatim extents merge");
	CHECK(x.v[2].fd == -1, "zero extents carry no location");
	vdk_extents_free(&x);
}

static void test_sources(void)
{
	uint8_t buf[1000];
	for (int i = 0; i < 1000; i++)
		buf[i] = (uint8_t)i;
	struct vdk_err e = {0};
	struct vdk_src *m, *w;
	CHECK(vdk_src_open_mem(buf, sizeof(buf), "mem", &m, &e) == 0, "memory source");
	CHECK(vdk_src_open_window(m, 100, 200, "win", &w, &e) == 0, "window source");
	uint8_t b[10];
	CHECK(vdk_src_pread(w, b, 10, 0, &e) == 0 && b[0] == 100, "window reads at its offset");
	CHECK(vdk_src_pread(w, b, 10, 195, &e) != 0 && strstr(e.msg, "offset 195"),
	      "read past a window's end names the offset: %s", e.msg);
	vdk_err_clear(&e);
	struct vdk_src *bad;
	CHECK(vdk_src_open_window(m, 900, 200, "x", &bad, &e) != 0, "window past the end refused");
	vdk_src_close(w);
	vdk_src_close(m);

	int fds[2];
	CHECK(pipe(fds) == 0, "pipe");
	CHECK(write(fds[1], buf, 100) == 100, "fill pipe");
	close(fds[1]);
	struct vdk_src *st;
	vdk_err_clear(&e);
	vdk_src_open_stream(fds[0], "pipe", &st, &e);
	CHECK(vdk_src_pread(st, b, 10, 20, &e) == 0 && b[0] == 20, "stream skips forward");
	CHECK(vdk_src_pread(st, b, 10, 0, &e) == -ESPIPE, "stream refuses to go back");
	vdk_src_close(st);
	close(fds[0]);
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		if (write(fd, data, len) != (ssize_t)len)
			perror(path);
		close(fd);
	}
}

static void test_confinement(void)
{
	char p[512], q[512];
	snprintf(p, sizeof(p), "%s/img", tmpdir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/img/a.raw", tmpdir);
	write_file(p, "AAAA", 4);
	snprintf(q, sizeof(q), "%s/img/b.raw", tmpdir);
	write_file(q, "BBBB", 4);
	snprintf(q, sizeof(q), "%s/secret.txt", tmpdir);
	write_file(q, "SECRET", 6);
	snprintf(q, sizeof(q), "%s/img/link", tmpdir);
	symlink("../secret.txt", q);
	snprintf(q, sizeof(q), "%s/img/fifo", tmpdir);
	mkfifo(q, 0644);

	struct vdk_err e = {0};
	struct vdk_src *s, *r;
	CHECK(vdk_src_open_file(p, &s, &e) == 0, "open a.raw");
	struct vdk_access none = {0};
	CHECK(vdk_src_open_related(s, "b.raw", &none, &r, &e) == 0, "sibling in own folder");
	vdk_src_close(r);
	const char *bad[] = {"../secret.txt", "/etc/passwd", "link", "fifo", "sub/../../x"};
	for (size_t i = 0; i < VDK_ARRAY_SIZE(bad); i++) {
		vdk_err_clear(&e);
		int rc = vdk_src_open_related(s, bad[i], &none, &r, &e);
		CHECK(rc != 0 && e.cls == VDK_E_INPUT, "'%s' refused: %s", bad[i], e.msg);
	}
	const char *allow[] = {tmpdir, NULL};
	struct vdk_access acc = {.allow_dirs = allow};
	vdk_err_clear(&e);
	CHECK(vdk_src_open_related(s, "../secret.txt", &acc, &r, &e) == 0,
	      "explicitly allowed folder opens: %s", e.msg);
	if (!e.cls)
		vdk_src_close(r);
	vdk_src_close(s);
}

/* Resident pages of this process (statm's second field). */
static long test_rss_pages(void)
{
	long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f && fscanf(f, "%ld %ld", &size, &res) != 2)
		res = 0;
	if (f)
		fclose(f);
	return res;
}

/* 64 MiB of lazily zeroed table with one entry written per MiB costs
 * 64 pages, not 64 MiB (what calloc from the heap costs). */
static void test_zalloc_lazy(void)
{
	const size_t len = (size_t)64 << 20;
	uint64_t *t = vdk_zalloc_lazy(len);
	CHECK(t != NULL, "lazy table allocated");
	if (!t)
		return;
	/* Only the writes are measured: a sanitizer's shadow of a full read
	 * would count too. */
	long before = test_rss_pages();
	for (size_t i = 0; i < len / 8; i += (1u << 20) / 8)
		t[i] = i + 1;
	long grown = test_rss_pages() - before;
	CHECK(before > 0 && grown < 1024, "64 touched pages grew RSS by %ld pages", grown);
	CHECK(t[(1u << 20) / 8] == (1u << 20) / 8 + 1 && vdk_is_zero(t + 1, 4096),
	      "entries kept, the rest reads as zeroes");
	vdk_free_lazy(t, len);
}

static void test_sink_file(void)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/out.img", tmpdir);
	struct vdk_err e = {0};
	struct vdk_sink *k;
	CHECK(vdk_sink_create_file(p, &k, &e) == 0, "create file sink");
	vdk_sink_pwrite(k, "xyz", 3, 0, &e);
	CHECK(access(p, F_OK) != 0, "nothing at the final name before commit");
	vdk_sink_close(k);
	CHECK(access(p, F_OK) != 0, "uncommitted output removed");
	CHECK(vdk_sink_create_file(p, &k, &e) == 0, "create again");
	vdk_sink_pwrite(k, "xyz", 3, 0, &e);
	CHECK(vdk_sink_commit(k, &e) == 0 && access(p, F_OK) == 0, "commit renames into place");
	vdk_sink_close(k);
	CHECK(access(p, F_OK) == 0, "committed output kept");
	/* clone NEVER always declines; the caller copies */
	CHECK(vdk_sink_create_file(p, &k, &e) == 0, "create for clone");
	CHECK(vdk_sink_clone(k, 0, 4096, 0, 0, VDK_CLONE_NEVER, &e) == -EOPNOTSUPP,
	      "--clone=never declines to share");
	vdk_sink_close(k);
	/* An output with a companion (descriptor + extent) that failed its
	 * verification after the commit: both go. */
	char q[512];
	struct vdk_sink *c = NULL;
	snprintf(q, sizeof(q), "%s/out-flat.img", tmpdir);
	CHECK(vdk_sink_create_file(p, &k, &e) == 0 &&
	          vdk_sink_open_related(k, "out-flat.img", &c, &e) == 0,
	      "output with a companion file");
	vdk_sink_pwrite(c, "data", 4, 0, &e);
	vdk_sink_pwrite(k, "desc", 4, 0, &e);
	CHECK(vdk_sink_commit(k, &e) == 0 && access(p, F_OK) == 0 && access(q, F_OK) == 0,
	      "commit puts both in place");
	vdk_sink_withdraw(k);
	vdk_sink_close(k);
	CHECK(access(p, F_OK) != 0 && access(q, F_OK) != 0,
	      "withdrawing a committed output removes it and its companion");
}

/* A raw image in memory with data, zero runs and a tail. */
static uint8_t *make_pattern(size_t len)
{
	uint8_t *b = calloc(1, len);
	for (size_t i = 0; b && i < len; i++)
		if ((i / 65536) % 3 == 0 || (i > 300000 && i < 300100))
			b[i] = (uint8_t)(i * 7 + 1);
	return b;
}

/* A sparse raw file into a raw file: the path where workers write the
 * output themselves, handing slots to whichever of them is writing
 * (pipeline.c), and where the holes inside a chunk are skipped unread.
 * Under ThreadSanitizer (bin/tsan/) this is the race check of both. */
static void test_pipeline_file(void)
{
	size_t len = 8 << 20;
	uint8_t *data = make_pattern(len);
	char in[512], out[512];
	snprintf(in, sizeof(in), "%s/sparse-in.raw", tmpdir);
	snprintf(out, sizeof(out), "%s/sparse-out.raw", tmpdir);
	int fd = open(in, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	bool wrote = fd >= 0 && ftruncate(fd, (off_t)len) == 0;
	for (size_t o = 0; wrote && o < len; o += 65536)
		if (!vdk_is_zero(data + o, 65536))
			wrote = pwrite(fd, data + o, 65536, (off_t)o) == 65536;
	if (fd >= 0)
		close(fd);
	CHECK(wrote, "sparse input written");
	struct vdk_err e = {0};
	struct vdk_src *src = NULL;
	struct vdk_image *img = NULL;
	struct vdk_sink *k = NULL;
	struct vdk_writer *w = NULL;
	bool ok = vdk_src_open_file(in, &src, &e) == 0 &&
	          vdk_image_open(src, true, "raw", NULL, &img, &e) == 0 &&
	          vdk_sink_create_file(out, &k, &e) == 0 &&
	          vdk_writer_create(vdk_format_find("raw"), k, img->size, NULL, img, &w, &e) == 0;
	CHECK(ok, "open the sparse raw file and a raw file writer: %s", e.msg);
	if (!ok) {
		free(data);
		return;
	}
	struct vdk_convert_opts o;
	vdk_convert_opts_init(&o);
	o.digest = true;
	o.threads = 3;
	o.clone = VDK_CLONE_NEVER;
	struct vdk_convert_stats st;
	CHECK(vdk_convert(img, w, &o, &st, &e) == 0 && vdk_writer_finish(w, &e) == 0 &&
	          vdk_sink_commit(k, &e) == 0,
	      "convert file -> file: %s", e.msg);
	vdk_writer_close(w);
	vdk_sink_close(k);
	uint8_t *back = malloc(len);
	fd = open(out, O_RDONLY);
	CHECK(back && fd >= 0 && pread(fd, back, len, 0) == (ssize_t)len &&
	          !memcmp(back, data, len),
	      "output identical to the input");
	if (fd >= 0)
		close(fd);
	CHECK(st.sparse >= len / 2 && st.copied + st.sparse == len,
	      "holes skipped: copied %llu + sparse %llu", (unsigned long long)st.copied,
	      (unsigned long long)st.sparse);
	uint8_t d[VDK_DIGEST_MAX];
	CHECK(vdk_image_digest(img, 1, d, &e) == 0 && !memcmp(d, st.digest, sizeof(d)),
	      "digest with skipped holes = digest of the image");
	vdk_image_close(img);
	free(back);
	free(data);
}

static void test_pipeline(void)
{
	size_t len = 1 << 20; /* multiple of 512, so the raw size is exact */
	uint8_t *img_data = make_pattern(len);
	struct vdk_err e = {0};
	struct vdk_src *src;
	struct vdk_image *img;
	vdk_src_open_mem(img_data, len, "pattern", &src, &e);
	CHECK(vdk_image_open(src, true, "raw", NULL, &img, &e) == 0, "open raw from memory");
	struct vdk_sink *k;
	vdk_sink_open_mem(len * 2, &k, &e);
	struct vdk_writer *w;
	CHECK(vdk_writer_create(vdk_format_find("raw"), k, img->size, NULL, img, &w, &e) == 0,
	      "raw writer");
	struct vdk_convert_opts o;
	vdk_convert_opts_init(&o);
	o.digest = true;
	o.threads = 2;
	o.chunk = 64 << 10;
	struct vdk_convert_stats st;
	CHECK(vdk_convert(img, w, &o, &st, &e) == 0, "convert: %s", e.msg);
	CHECK(vdk_writer_finish(w, &e) == 0, "finish");
	size_t outlen;
	const uint8_t *out = vdk_sink_mem_data(k, &outlen);
	CHECK(outlen == len && !memcmp(out, img_data, len), "output identical to input");
	CHECK(st.sparse > 0 && st.copied > 0 && st.copied + st.sparse == len,
	      "copied + sparse = size (%llu + %llu)", (unsigned long long)st.copied,
	      (unsigned long long)st.sparse);
	uint8_t d[VDK_DIGEST_MAX];
	CHECK(vdk_image_digest(img, 1, d, &e) == 0 && !memcmp(d, st.digest, sizeof(d)),
	      "digest during convert = digest of the image (1 thread)");

	/* Same content, different storage: still the same digest. */
	uint8_t *copy = malloc(len);
	memcpy(copy, img_data, len);
	struct vdk_src *src2;
	struct vdk_image *img2;
	vdk_src_open_mem(copy, len, "copy", &src2, &e);
	vdk_image_open(src2, true, "raw", NULL, &img2, &e);
	bool differ = true;
	uint64_t first = 0;
	CHECK(vdk_compare(img, img2, &differ, &first, &e) == 0 && !differ, "compare equal");
	copy[777777] ^= 1;
	CHECK(vdk_compare(img, img2, &differ, &first, &e) == 0 && differ && first == 777777,
	      "compare names the first differing offset (%llu)", (unsigned long long)first);
	uint8_t d2[VDK_DIGEST_MAX];
	vdk_image_digest(img2, 2, d2, &e);
	CHECK(memcmp(d, d2, sizeof(d)) != 0, "one flipped bit changes the digest");
	vdk_image_close(img2);
	free(copy);
	vdk_writer_close(w);
	vdk_sink_close(k);
	vdk_image_close(img);
	free(img_data);
}

static void test_raw_sector_tail(void)
{
	uint8_t b[1000];
	memset(b, 0xab, sizeof(b));
	struct vdk_err e = {0};
	struct vdk_src *src;
	struct vdk_image *img;
	vdk_src_open_mem(b, sizeof(b), "odd", &src, &e);
	vdk_image_open(src, true, NULL, NULL, &img, &e);
	CHECK(img && img->size == 1024, "raw size rounds up to a sector, as qemu-img does");
	uint8_t r[1024];
	CHECK(img && vdk_image_pread(img, r, 1024, 0, &e) == 0 && r[999] == 0xab && r[1000] == 0 &&
	          r[1023] == 0,
	      "the tail past the file reads as zeroes");
	vdk_image_close(img);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	test_opts();
	test_json();
	test_extents();
	test_sources();
	test_confinement();
	test_sink_file();
	test_zalloc_lazy();
	test_pipeline();
	test_pipeline_file();
	test_raw_sector_tail();
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		return 1;
	TEST_EXIT();
}
