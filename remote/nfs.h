/* NFS through libnfs (no kernel client, no mount): sources, sinks and the
 * directory operations of remote.h for nfs://server/path[?args] URIs.
 * args are libnfs's URL arguments (version=3|4, nfsport=N, mountport=N,
 * uid=N, gid=N, ...); server:port stands for nfsport=port. */
#ifndef VDK_NFS_H
#define VDK_NFS_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "io.h"
#include "remote.h"

#define VDK_NFS_PREFIX "nfs://"

struct vdk_nfs_uri {
	char *server; /* host name or address, IPv6 without brackets */
	char *path;   /* absolute, no "//", "." or "..", no trailing '/' (root: "/") */
	char *query;  /* libnfs arguments ("version=4&nfsport=2049"), maybe "" */
};

/* Parse and check (unknown arguments are refused). Usage errors name uri. */
int vdk_nfs_uri_parse(const char *uri, struct vdk_nfs_uri *u, struct vdk_err *e);
void vdk_nfs_uri_free(struct vdk_nfs_uri *u);
/* "nfs://server" + path + "?query" (malloc'd, NULL when out of memory). */
char *vdk_nfs_uri_format(const struct vdk_nfs_uri *u, const char *path);

int vdk_src_open_nfs(const char *uri, struct vdk_src **out, struct vdk_err *e);
int vdk_sink_create_nfs(const char *uri, struct vdk_sink **out, struct vdk_err *e);
int vdk_nfs_stat(const char *uri, bool follow, struct vdk_fstat *st, struct vdk_err *e);
int vdk_nfs_list(const char *uri, struct vdk_dirent **out, size_t *n, struct vdk_err *e);

#endif
