/* The URI dispatch: one table of scheme prefixes and the transport that
 * opens them; names that match none are local files. */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "remote.h"
#include "transport.h"
#include "util.h"

#define REMOTE_DEFAULT_TIMEOUT 60

struct remote_scheme {
	const char *prefix; /* matched case-insensitively, "://" included */
	int (*open_src)(const char *name, struct vdk_src **out, struct vdk_err *e);
	int (*open_sink)(const char *name, uint64_t size, struct vdk_sink **out,
	                 struct vdk_err *e); /* NULL: cannot be a target */
};

/* libnbd parses the rest of an NBD URI itself (export, socket=, tls). */
static const struct remote_scheme remote_schemes[] = {
    {"nbd://", vdk_nbd_src_open, vdk_nbd_sink_open},
    {"nbd+unix://", vdk_nbd_src_open, vdk_nbd_sink_open},
    {"nbds://", vdk_nbd_src_open, vdk_nbd_sink_open},
    {"nbds+unix://", vdk_nbd_src_open, vdk_nbd_sink_open},
};

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
	for (size_t i = 0; name && i < VDK_ARRAY_SIZE(remote_schemes); i++)
		if (!strncasecmp(name, remote_schemes[i].prefix, strlen(remote_schemes[i].prefix)))
			return &remote_schemes[i];
	return NULL;
}

bool vdk_is_uri(const char *name)
{
	return remote_find(name) != NULL;
}

int vdk_src_open_uri(const char *name, struct vdk_src **out, struct vdk_err *e)
{
	const struct remote_scheme *s = remote_find(name);
	return s ? s->open_src(name, out, e) : vdk_src_open_file(name, out, e);
}

int vdk_sink_open_uri(const char *name, uint64_t size, struct vdk_sink **out, struct vdk_err *e)
{
	const struct remote_scheme *s = remote_find(name);
	if (!s)
		return vdk_sink_create_file(name, out, e);
	if (!s->open_sink)
		return vdk_err_set(e, VDK_E_USAGE, EOPNOTSUPP, name, NULL, VDK_NO_OFFSET,
		                   "this kind of URI cannot be an output");
	return s->open_sink(name, size, out, e);
}
