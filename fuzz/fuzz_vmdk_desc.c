/* Fuzz the VMDK text descriptor parser, and the writer's renderer on what
 * it parsed (render -> parse must succeed again). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmdk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmdk_desc d;
	struct vdk_err e = {0};
	if (vmdk_desc_parse((const char *)data, size, "fuzz.vmdk", 0, &d, &e) != 0)
		return 0;
	vmdk_desc_get(&d, "ddb.adapterType");
	char *text;
	size_t len;
	if (vmdk_desc_render(&d, &text, &len) == 0) {
		struct vmdk_desc d2;
		vdk_err_clear(&e);
		/* Names with quotes or newlines cannot round-trip; the writer
		 * never produces them, so only parse, do not assert. */
		if (vmdk_desc_parse(text, len, "fuzz2.vmdk", 0, &d2, &e) == 0)
			vmdk_desc_free(&d2);
		free(text);
	}
	vmdk_desc_free(&d);
	return 0;
}
