/* Fuzz the OVA tar reader: index the archive, then read every member
 * through its window, as unpack does. */
#include <stdint.h>
#include <stdlib.h>

#include "ova_private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vdk_src *s;
	struct vdk_err e = {0};
	struct ova_tar t;
	if (vdk_src_open_mem(data, size, "fuzz.ova", &s, &e) < 0)
		return 0;
	if (ova_tar_index(s, &t, &e) == 0) {
		for (size_t i = 0; i < t.n; i++) {
			struct vdk_src *w;
			uint8_t buf[64];
			if (vdk_src_open_window(s, t.v[i].off, t.v[i].size, t.v[i].name, &w, &e) <
			    0)
				continue;
			size_t got;
			vdk_src_pread_upto(w, buf, sizeof(buf), 0, &got, &e);
			if (w->size > sizeof(buf))
				vdk_src_pread(w, buf, sizeof(buf), w->size - sizeof(buf), &e);
			vdk_src_close(w);
		}
		ova_tar_free(&t);
	}
	vdk_src_close(s);
	return 0;
}
