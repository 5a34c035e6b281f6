/* remote/: nfs:// URI parsing and formatting, URI-aware path join and
 * split, and the local side of the folder operations (no server needed;
 * tests/it_nfs.sh runs a real one). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nfs.h"
#include "remote.h"
#include "test.h"

static void parse_ok(const char *uri, const char *server, const char *path, const char *query)
{
	struct vdk_nfs_uri u;
	struct vdk_err e = {0};
	int r = vdk_nfs_uri_parse(uri, &u, &e);
	CHECK(r == 0 && !strcmp(u.server, server) && !strcmp(u.path, path) &&
	          !strcmp(u.query, query),
	      "parse %s -> server %s, path %s, args '%s'%s%s", uri, server, path, query,
	      r ? ": " : "", r ? e.msg : "");
	if (r == 0)
		vdk_nfs_uri_free(&u);
}

static void parse_bad(const char *uri, const char *why)
{
	struct vdk_nfs_uri u;
	struct vdk_err e = {0};
	int r = vdk_nfs_uri_parse(uri, &u, &e);
	CHECK(r < 0 && e.cls == VDK_E_USAGE && strstr(e.msg, uri), "refuse %s (%s): %s", uri, why,
	      e.msg);
	if (r == 0)
		vdk_nfs_uri_free(&u);
}

static void test_parse(void)
{
	parse_ok("nfs://127.0.0.1/export/x.ova?version=4&nfsport=2049", "127.0.0.1",
	         "/export/x.ova", "version=4&nfsport=2049");
	parse_ok("nfs://filer:20490/a//b/./c.vmdk", "filer", "/a/b/c.vmdk", "nfsport=20490");
	parse_ok("nfs://[::1]:2049/e?uid=0", "::1", "/e", "uid=0&nfsport=2049");
	parse_ok("nfs://h", "h", "/", "");
	parse_ok("nfs://h/e/?if=eth0&autoreconnect=-1", "h", "/e", "if=eth0&autoreconnect=-1");
	parse_bad("nfs://h/a/../b", "'..'");
	parse_bad("nfs://h/x?bogus=1", "unknown argument");
	parse_bad("nfs://h/x?version=5", "no such version");
	parse_bad("nfs://h/x?nfsport=abc", "not a number");
	parse_bad("nfs://h:2049/x?nfsport=1", "port twice");
	parse_bad("nfs://h:99999/x", "port out of range");
	parse_bad("nfs:///x", "no server");
	parse_bad("nfs://a b/x", "space in the server");
	parse_bad("nfs://h/x\t", "control character");
	parse_bad("http://h/x", "other scheme");

	struct vdk_nfs_uri u;
	struct vdk_err e = {0};
	if (vdk_nfs_uri_parse("nfs://[fe80::1]:2049/e/f", &u, &e) == 0) {
		char *s = vdk_nfs_uri_format(&u, "/e/g");
		CHECK(s && !strcmp(s, "nfs://[fe80::1]/e/g?nfsport=2049"),
		      "format puts IPv6 in brackets and the port in the arguments: %s", s);
		free(s);
		vdk_nfs_uri_free(&u);
	}
}

static void join_is(const char *dir, const char *name, const char *want)
{
	char *s = vdk_path_join(dir, name);
	CHECK(s && !strcmp(s, want), "join %s + %s = %s (got %s)", dir, name, want, s);
	free(s);
}

static void split_is(const char *name, const char *dir, const char *base)
{
	char *d, *b;
	int r = vdk_path_split(name, &d, &b);
	CHECK(r == 0 && !strcmp(d, dir) && !strcmp(b, base), "split %s = %s + %s", name, dir, base);
	if (r == 0) {
		free(d);
		free(b);
	}
}

static void test_paths(void)
{
	CHECK(vdk_is_uri("nfs://h/x") && !vdk_is_uri("/tmp/nfs://x") && !vdk_is_uri("nfsx") &&
	          !vdk_is_uri("x.vmdk"),
	      "only nfs:// names are URIs");
	join_is("/tmp/d", "x.ova", "/tmp/d/x.ova");
	join_is(".", "x", "./x");
	join_is("nfs://h/e/d?version=4&nfsport=2049", "x.ova",
	        "nfs://h/e/d/x.ova?version=4&nfsport=2049");
	join_is("nfs://h/?version=4", "x", "nfs://h/x?version=4");
	join_is("nfs://h/e", "sub/y.vmdk", "nfs://h/e/sub/y.vmdk");
	split_is("nfs://h/e/d/x.ovf?version=4", "nfs://h/e/d?version=4", "x.ovf");
	split_is("nfs://h/x.ovf", "nfs://h/", "x.ovf");
	split_is("/srv/p/x.ovf", "/srv/p", "x.ovf");
	split_is("x.ovf", ".", "x.ovf");
	split_is("/x.ovf", "/", "x.ovf");
	char *d, *b;
	CHECK(vdk_path_split("a/b/", &d, &b) == -EINVAL &&
	          vdk_path_split("nfs://h?x", &d, &b) == -EINVAL,
	      "split refuses names without a last component");
}

static void test_local_dirs(void)
{
	char dir[] = "/tmp/vdk-test-nfs.XXXXXX";
	if (!mkdtemp(dir)) {
		SKIP("no temporary folder");
		return;
	}
	char p[256];
	snprintf(p, sizeof(p), "%s/b.ova", dir);
	FILE *f = fopen(p, "w");
	if (f) {
		fputs("12345", f);
		fclose(f);
	}
	snprintf(p, sizeof(p), "%s/a", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/c", dir);
	CHECK(symlink("b.ova", p) == 0, "made a symlink");
	struct vdk_dirent *v;
	size_t n;
	struct vdk_err e = {0};
	int r = vdk_dir_list(dir, &v, &n, &e);
	CHECK(r == 0 && n == 3 && !strcmp(v[0].name, "a") && v[0].st.type == VDK_FT_DIR &&
	          !strcmp(v[1].name, "b.ova") && v[1].st.type == VDK_FT_REG && v[1].st.size == 5 &&
	          v[1].st.mtime_ns > 0 && !strcmp(v[2].name, "c") && v[2].st.type == VDK_FT_LNK,
	      "local listing: sorted, without . and .., types of the entries themselves");
	if (r == 0)
		vdk_dir_free(v, n);
	struct vdk_fstat st;
	CHECK(vdk_path_stat(p, true, &st, &e) == 0 && st.type == VDK_FT_REG && st.size == 5,
	      "stat follows the symlink");
	CHECK(vdk_path_stat(p, false, &st, &e) == 0 && st.type == VDK_FT_LNK, "lstat does not");
	struct vdk_src *s;
	snprintf(p, sizeof(p), "%s/b.ova", dir);
	r = vdk_src_open_uri(p, &s, &e);
	CHECK(r == 0 && s->size == 5 && s->fd >= 0, "a plain path opens as a local file");
	if (r == 0)
		vdk_src_close(s);
	struct vdk_err e2 = {0};
	CHECK(vdk_dir_list("/nonexistent/vdk", &v, &n, &e2) < 0 && strstr(e2.msg, "/nonexistent"),
	      "a missing folder is an error naming it");
	snprintf(p, sizeof(p), "rm -rf '%s'", dir);
	CHECK(system(p) == 0, "cleaned up");
}

static void test_nfs_errors(void)
{
	struct vdk_src *s;
	struct vdk_sink *k;
	struct vdk_err e = {0}, e2 = {0}, e3 = {0};
	CHECK(vdk_src_open_uri("nfs://h/x?nope=1", &s, &e) < 0 && e.cls == VDK_E_USAGE,
	      "an NFS source with a bad URI fails before any connection: %s", e.msg);
	CHECK(vdk_sink_open_uri("nfs://h/?version=4", 0, &k, &e2) < 0 && e2.cls == VDK_E_USAGE,
	      "an NFS output that names no file is refused: %s", e2.msg);
	CHECK(vdk_src_open_uri("nfs://127.0.0.1/e/x?version=4&nfsport=1", &s, &e3) < 0 &&
	          e3.cls == VDK_E_IO && strstr(e3.msg, "cannot mount"),
	      "no server listening: an I/O error: %s", e3.msg);
}

int main(void)
{
	test_parse();
	test_paths();
	test_local_dirs();
	test_nfs_errors();
	return test_failures ? 1 : 0;
}
