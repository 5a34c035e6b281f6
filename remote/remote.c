/* URI dispatch: one table of scheme prefixes and the transport that opens
 * them (NBD through libnbd, NFS through libnfs); every other name is a
 * local file or folder. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stdatomic.h>
#include <strings.h>

#include "nfs.h"
#include "remote.h"
#include "transport.h"

struct remote_scheme {
	const char *prefix;
	int (*src_open)(const char *name, struct vdk_src **out, struct vdk_err *e);
	int (*sink_open)(const char *name, uint64_t size, struct vdk_sink **out, struct vdk_err *e);
	/* Optional: folders (package layer). */
	int (*stat)(const char *name, bool follow, struct vdk_fstat *st, struct vdk_err *e);
	int (*list)(const char *name, struct vdk_dirent **out, size_t *n, struct vdk_err *e);
};

static int remote_nfs_sink(const char *name, uint64_t size, struct vdk_sink **out,
                           struct vdk_err *e)
{
	(void)size; /* a file grows as it is written */
	return vdk_sink_create_nfs(name, out, e);
}

/* libnbd parses the rest of an NBD URI itself (export, socket=, tls). */
static const struct remote_scheme remote_schemes[] = {
    {VDK_NFS_PREFIX, vdk_src_open_nfs, remote_nfs_sink, vdk_nfs_stat, vdk_nfs_list},
    {"nbd://", vdk_nbd_src_open, vdk_nbd_sink_open, NULL, NULL},
    {"nbd+unix://", vdk_nbd_src_open, vdk_nbd_sink_open, NULL, NULL},
    {"nbds://", vdk_nbd_src_open, vdk_nbd_sink_open, NULL, NULL},
    {"nbds+unix://", vdk_nbd_src_open, vdk_nbd_sink_open, NULL, NULL},
};

#define REMOTE_DEFAULT_TIMEOUT 60

static atomic_uint remote_timeout_s = REMOTE_DEFAULT_TIMEOUT;

void vdk_remote_set_timeout(unsigned seconds)
{
	atomic_store(&remote_timeout_s, seconds ? seconds : REMOTE_DEFAULT_TIMEOUT);
}

unsigned vdk_remote_timeout(void)
{
	return atomic_load(&remote_timeout_s);
}

static const struct remote_scheme *remote_find(const char *name)
{
	for (size_t i = 0; i < sizeof(remote_schemes) / sizeof(remote_schemes[0]); i++)
		if (!strncasecmp(name, remote_schemes[i].prefix, strlen(remote_schemes[i].prefix)))
			return &remote_schemes[i];
	return NULL;
}

bool vdk_is_uri(const char *name)
{
	return name && remote_find(name) != NULL;
}

int vdk_src_open_uri(const char *name, struct vdk_src **out, struct vdk_err *e)
{
	const struct remote_scheme *s = remote_find(name);
	return s ? s->src_open(name, out, e) : vdk_src_open_file(name, out, e);
}

int vdk_sink_open_uri(const char *name, uint64_t size, struct vdk_sink **out, struct vdk_err *e)
{
	const struct remote_scheme *s = remote_find(name);
	return s ? s->sink_open(name, size, out, e) : vdk_sink_create_file(name, out, e);
}

/* Folders ---------------------------------------------------------------- */

static enum vdk_ftype remote_ftype(mode_t m)
{
	return S_ISREG(m)   ? VDK_FT_REG
	       : S_ISDIR(m) ? VDK_FT_DIR
	       : S_ISLNK(m) ? VDK_FT_LNK
	                    : VDK_FT_OTHER;
}

static void remote_from_stat(const struct stat *st, struct vdk_fstat *o)
{
	o->type = remote_ftype(st->st_mode);
	o->size = (uint64_t)st->st_size;
	o->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static int remote_unsup(const char *name, const char *what, struct vdk_err *e)
{
	return vdk_err_set(e, VDK_E_USAGE, ENOTSUP, name, NULL, VDK_NO_OFFSET,
	                   "%s is not possible on this kind of URI", what);
}

int vdk_path_stat(const char *name, bool follow, struct vdk_fstat *st, struct vdk_err *e)
{
	const struct remote_scheme *s = remote_find(name);
	if (s)
		return s->stat ? s->stat(name, follow, st, e) : remote_unsup(name, "stat", e);
	struct stat ls;
	if ((follow ? stat(name, &ls) : lstat(name, &ls)) != 0)
		return vdk_ioerr(e, errno, name, "%s", strerror(errno));
	remote_from_stat(&ls, st);
	return 0;
}

void vdk_dir_free(struct vdk_dirent *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].name);
	free(v);
}

static int remote_dirent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct vdk_dirent *)a)->name, ((const struct vdk_dirent *)b)->name);
}

static int remote_list_local(const char *dir, DIR *d, struct vdk_dirent **out, size_t *n)
{
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 32;
			struct vdk_dirent *v = realloc(*out, cap * sizeof(*v));
			if (!v)
				return -ENOMEM;
			*out = v;
		}
		struct vdk_dirent *x = &(*out)[*n];
		char *path = vdk_path_join(dir, de->d_name);
		struct stat st;
		if (!path || !(x->name = strdup(de->d_name))) {
			free(path);
			return -ENOMEM;
		}
		(*n)++;
		if (lstat(path, &st) == 0)
			remote_from_stat(&st, &x->st);
		else /* vanished meanwhile: listed, but never a file to open */
			x->st = (struct vdk_fstat){.type = VDK_FT_OTHER};
		free(path);
	}
	return 0;
}

int vdk_dir_list(const char *dir, struct vdk_dirent **out, size_t *n, struct vdk_err *e)
{
	*out = NULL;
	*n = 0;
	const struct remote_scheme *s = remote_find(dir);
	if (s)
		return s->list ? s->list(dir, out, n, e) : remote_unsup(dir, "listing a folder", e);
	DIR *d = opendir(dir);
	if (!d)
		return vdk_ioerr(e, errno, dir, "%s", strerror(errno));
	int r = remote_list_local(dir, d, out, n);
	closedir(d);
	if (r) {
		vdk_dir_free(*out, *n);
		*out = NULL;
		*n = 0;
		return vdk_ioerr(e, ENOMEM, dir, "out of memory");
	}
	if (*n)
		qsort(*out, *n, sizeof(**out), remote_dirent_cmp);
	return 0;
}

/* Paths and URIs ------------------------------------------------------------ */

/* Where a URI's path starts (after "scheme://authority") and its query. */
static void remote_uri_parts(const char *name, const char **path, const char **query)
{
	const char *a = strstr(name, "://") + 3;
	*path = a + strcspn(a, "/?");
	*query = *path + strcspn(*path, "?");
}

char *vdk_path_join(const char *dir, const char *name)
{
	char *s;
	if (!vdk_is_uri(dir))
		return asprintf(&s, "%s/%s", dir, name) < 0 ? NULL : s;
	const char *path, *query;
	remote_uri_parts(dir, &path, &query);
	bool slash = query > path && query[-1] == '/';
	if (asprintf(&s, "%.*s%s%s%s", (int)(query - dir), dir, slash ? "" : "/", name, query) < 0)
		return NULL;
	return s;
}

int vdk_path_split(const char *name, char **dir, char **base)
{
	*dir = *base = NULL;
	const char *path = name, *query = name + strlen(name);
	if (vdk_is_uri(name))
		remote_uri_parts(name, &path, &query);
	const char *sl = NULL;
	for (const char *p = path; p < query; p++)
		if (*p == '/')
			sl = p;
	const char *b = sl ? sl + 1 : path;
	if (b == query)
		return -EINVAL;
	*base = strndup(b, (size_t)(query - b));
	if (!sl)
		*dir = path == name ? strdup(".") : NULL;
	else if (sl == path)
		*dir = asprintf(dir, "%.*s/%s", (int)(path - name), name, query) < 0 ? NULL : *dir;
	else
		*dir = asprintf(dir, "%.*s%s", (int)(sl - name), name, query) < 0 ? NULL : *dir;
	if (!*dir || !*base) {
		free(*dir);
		free(*base);
		*dir = *base = NULL;
		return !sl && path != name ? -EINVAL : -ENOMEM;
	}
	return 0;
}
