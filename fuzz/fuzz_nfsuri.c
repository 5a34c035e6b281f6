/* Fuzz the nfs:// URI parser (remote/nfs.c) and the URI-aware path join
 * and split (remote/remote.c): whatever parses must format back to a URI
 * that parses to the same parts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nfs.h"
#include "remote.h"

static void fuzz_roundtrip(const struct vdk_nfs_uri *u)
{
	char *s = vdk_nfs_uri_format(u, u->path);
	struct vdk_nfs_uri v;
	struct vdk_err e = {0};
	if (!s)
		return;
	if (vdk_nfs_uri_parse(s, &v, &e) != 0)
		abort();
	if (strcmp(u->server, v.server) || strcmp(u->path, v.path) || strcmp(u->query, v.query))
		abort();
	vdk_nfs_uri_free(&v);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct vdk_nfs_uri u;
	struct vdk_err e = {0};
	if (vdk_nfs_uri_parse(s, &u, &e) == 0) {
		fuzz_roundtrip(&u);
		vdk_nfs_uri_free(&u);
	}
	char *dir, *base;
	if (vdk_path_split(s, &dir, &base) == 0) {
		char *j = vdk_path_join(dir, base);
		free(j);
		free(dir);
		free(base);
	}
	free(s);
	return 0;
}
