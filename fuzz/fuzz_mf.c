/* Fuzz the manifest parser and the certificate checker. The input is a
 * manifest, optionally followed by "\n--cert--\n" and a .cert file whose
 * signature is checked over the manifest part. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ova_private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char sep[] = "\n--cert--\n";
	const uint8_t *cut = memmem(data, size, sep, sizeof(sep) - 1);
	size_t mf_len = cut ? (size_t)(cut - data) : size;
	struct ova_mf mf;
	struct vdk_err e = {0};
	if (ova_mf_parse((const char *)data, mf_len, "fuzz.mf", &mf, &e) == 0) {
		for (size_t i = 0; i < mf.n; i++)
			ova_mf_find(&mf, mf.v[i].name);
		ova_mf_free(&mf);
	}
	if (cut) {
		const uint8_t *cert = cut + sizeof(sep) - 1;
		size_t clen = size - mf_len - (sizeof(sep) - 1);
		struct ova_cert_info ci;
		vdk_err_clear(&e);
		/* A CA file that does not exist: trust fails, parsing is what
		 * is exercised. */
		ova_cert_verify(cert, clen, "fuzz.cert", data, mf_len, "fuzz.mf", "/nonexistent",
		                &ci, &e);
	}
	return 0;
}
