/* Private to remote/: the transports behind the URI dispatch in remote.c.
 * Each one opens a source and, optionally, a sink for the names whose
 * scheme it serves. */
#ifndef VDK_REMOTE_TRANSPORT_H
#define VDK_REMOTE_TRANSPORT_H

#include <stdint.h>

#include "err.h"
#include "io.h"

int vdk_nbd_src_open(const char *uri, struct vdk_src **out, struct vdk_err *e);
int vdk_nbd_sink_open(const char *uri, uint64_t size, struct vdk_sink **out, struct vdk_err *e);

#endif
