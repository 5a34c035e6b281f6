/* Fuzz the -o option parser and the size parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct vdk_opts o = {0};
	struct vdk_err e = {0};
	if (vdk_opts_parse(&o, s, &e) == 0) {
		uint64_t v;
		bool b;
		vdk_opts_get_size(&o, "size", 0, 0, UINT64_MAX, &v, &e);
		vdk_opts_get_bool(&o, "compress", false, &b, &e);
		vdk_opts_check_unused(&o, "fuzz", &e);
	}
	vdk_parse_size(s, &(uint64_t){0});
	vdk_opts_free(&o);
	free(s);
	return 0;
}
