/* Files that probe as raw but are something a user would not want copied
 * byte for byte: an OVA package (ustar whose first member is the .ovf) and
 * a VHD that has only its footer (fixed; the header probe cannot see it). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define HINT_TAR_BLOCK 512

static const char *hint_of(struct vdk_src *s)
{
	uint8_t b[HINT_TAR_BLOCK];
	struct vdk_err e = {0};
	if (s->size >= HINT_TAR_BLOCK && !vdk_src_pread(s, b, sizeof(b), 0, &e) &&
	    !memcmp(b + 257, "ustar", 5)) {
		size_t n = strnlen((const char *)b, 100);
		if (n > 4 && !memcmp(b + n - 4, ".ovf", 4))
			return "this is an OVA package: use `vdkit ova unpack` (or -f raw to copy "
			       "the tar file itself)";
	}
	if (s->size >= HINT_TAR_BLOCK && s->size != VDK_SIZE_UNKNOWN &&
	    !vdk_src_pread(s, b, sizeof(b), s->size - HINT_TAR_BLOCK, &e) &&
	    !memcmp(b, "conectix", 8))
		return "this is a fixed VHD (a footer at the end): give -f vpc (or -f raw to copy "
		       "it byte for byte)";
	return NULL;
}

const char *cli_raw_hint(const char *path)
{
	static char msg[512];
	struct vdk_err e = {0};
	struct vdk_src *s;
	if (!strcmp(path, "-") || strstr(path, "://") || vdk_src_open_file(path, &s, &e))
		return NULL;
	const struct vdk_format *f = NULL;
	const char *h = NULL;
	if (!vdk_format_probe(s, &f, &e) && f && !strcmp(f->name, "raw"))
		h = hint_of(s);
	vdk_src_close(s);
	if (!h)
		return NULL;
	snprintf(msg, sizeof(msg), "%s: %s", path, h);
	return msg;
}
