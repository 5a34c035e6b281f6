/* Remote disks: names that may be URIs. The rest of vdkit opens every
 * user-given name through vdk_src_open_uri / vdk_sink_open_uri, which pick
 * the remote transport from the scheme (nbd://, nbd+unix://, ...) and fall
 * back to local files for everything else. */
#ifndef VDK_REMOTE_H
#define VDK_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "io.h"

/* True when name starts with a scheme one of the remote transports serves. */
bool vdk_is_uri(const char *name);

/* nbd://host[:port]/export, nbd+unix:///export?socket=PATH (and the TLS
 * variants nbds://, nbds+unix://); anything else is a local file opened
 * with vdk_src_open_file. */
int vdk_src_open_uri(const char *name, struct vdk_src **out, struct vdk_err *e);

/* An NBD export as the target (its size must be >= size), else a new local
 * file (vdk_sink_create_file). A remote target is written in place: it is
 * not all-or-nothing like a file renamed into place on commit. */
int vdk_sink_open_uri(const char *name, uint64_t size, struct vdk_sink **out, struct vdk_err *e);

/* How long a remote server may make no progress before the request that
 * waits on it fails (seconds; default 60). Process-wide: the command line
 * sets it once (--timeout) before opening anything. 0 restores the default. */
void vdk_remote_set_timeout(unsigned seconds);
unsigned vdk_remote_timeout(void);

#endif
