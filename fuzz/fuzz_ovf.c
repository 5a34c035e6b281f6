/* Fuzz the OVF descriptor parser and the inventory built from it. */
#include <stdint.h>
#include <stdlib.h>

#include "ova_private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ova_ovf o;
	struct vdk_err e = {0};
	if (ova_ovf_parse(data, size, "fuzz.ovf", &o, &e) < 0)
		return 0;
	struct vdk_json *j = vdk_json_new_obj();
	if (j) {
		ova_ovf_json(&o, j);
		free(vdk_json_render(j, true));
		vdk_json_free(j);
	}
	ova_ovf_free(&o);
	return 0;
}
