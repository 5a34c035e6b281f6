/* Names that may be URIs: every path a verb takes can also be a remote
 * disk (nfs://..., nbd://host[:port]/export, nbd+unix:///export?socket=
 * PATH and the TLS variants nbds://, nbds+unix://). An NBD export as a
 * target is written in place (its size must fit): it is not all-or-nothing
 * like a file renamed into place on commit. A small table maps a scheme prefix to its opener; any
 * other name is a local file. The same goes for the few directory
 * operations the package layer needs (listing a share, stat of a package),
 * so `ova scan` and folder packages work on a share without mounting it. */
#ifndef VDK_REMOTE_H
#define VDK_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "io.h"

/* True when name starts with a scheme of the table (nfs://). */
bool vdk_is_uri(const char *name);
/* A source for name: a URI through its scheme, else a local file. */
int vdk_src_open_uri(const char *name, struct vdk_src **out, struct vdk_err *e);
/* A new output at name, written under a temporary name and put in place
 * by vdk_sink_commit (local files: vdk_sink_create_file). size is the
 * virtual size of what will be written (schemes with fixed-size targets
 * need it; files ignore it). */
int vdk_sink_open_uri(const char *name, uint64_t size, struct vdk_sink **out, struct vdk_err *e);

/* How long a remote server may make no progress before the request that
 * waits on it fails (seconds; default 60). Process-wide: the command line
 * sets it once (--timeout) before opening anything. 0 restores the default. */
void vdk_remote_set_timeout(unsigned seconds);
unsigned vdk_remote_timeout(void);

/* Directory operations ---------------------------------------------- */

enum vdk_ftype {
	VDK_FT_OTHER = 0,
	VDK_FT_REG,
	VDK_FT_DIR,
	VDK_FT_LNK,
};

struct vdk_fstat {
	enum vdk_ftype type;
	uint64_t size;
	int64_t mtime_ns;
};

struct vdk_dirent {
	char *name;
	struct vdk_fstat st; /* of the entry itself: a symlink is VDK_FT_LNK */
};

/* stat (follow) or lstat (!follow) of a path or URI. */
int vdk_path_stat(const char *name, bool follow, struct vdk_fstat *st, struct vdk_err *e);
/* The entries of a folder, without "." and "..", sorted by name. */
int vdk_dir_list(const char *dir, struct vdk_dirent **out, size_t *n, struct vdk_err *e);
void vdk_dir_free(struct vdk_dirent *v, size_t n);

/* "dir/name" for a path or a URI (a URI's ?query stays at the end).
 * malloc'd, NULL when out of memory. */
char *vdk_path_join(const char *dir, const char *name);
/* The folder and the last component of a path or URI (malloc'd): "a/b.ovf"
 * gives "a" and "b.ovf", "b.ovf" gives "." and "b.ovf", "/b" gives "/".
 * -ENOMEM, or -EINVAL when there is no last component. */
int vdk_path_split(const char *name, char **dir, char **base);

#endif
