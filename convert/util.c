#include <string.h>

#include "util.h"

bool vdk_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	/* Check 16 bytes by hand, then compare the buffer with itself shifted:
	 * memcmp is vectorised and this needs no zero page. */
	size_t head = len < 16 ? len : 16;
	for (size_t i = 0; i < head; i++)
		if (p[i])
			return false;
	return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}
