#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

int vdk_err_set(struct vdk_err *e, enum vdk_err_class cls, int code, const char *file,
                const char *format, uint64_t off, const char *fmt, ...)
{
	if (code <= 0)
		code = EIO;
	/* The first error is the cause; later ones are consequences. */
	if (!e || e->cls != VDK_E_NONE)
		return -code;
	size_t n = 0;
	char *m = e->msg;
	size_t cap = sizeof(e->msg);
	if (file)
		n += (size_t)snprintf(m + n, n < cap ? cap - n : 0, "%s: ", file);
	if (format && n < cap)
		n += (size_t)snprintf(m + n, cap - n, "%s: ", format);
	if (off != VDK_NO_OFFSET && n < cap)
		n += (size_t)snprintf(m + n, cap - n,
		                      "at offset %" PRIu64 " (0x%" PRIx64 "): ", off, off);
	if (n < cap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(m + n, cap - n, fmt, ap);
		va_end(ap);
	}
	e->cls = cls;
	e->code = code;
	return -code;
}

int vdk_err_ensure(struct vdk_err *e, int r, const char *file, const char *format, const char *what)
{
	if (r >= 0 || e->cls != VDK_E_NONE)
		return r;
	if (r == -ENOMEM)
		return vdk_err_set(e, VDK_E_IO, ENOMEM, file, format, VDK_NO_OFFSET,
		                   "out of memory while %s", what);
	return vdk_err_set(e, VDK_E_IO, -r, file, format, VDK_NO_OFFSET, "%s failed: %s", what,
	                   strerror(-r));
}

void vdk_err_clear(struct vdk_err *e)
{
	e->cls = VDK_E_NONE;
	e->code = 0;
	e->msg[0] = '\0';
}

int vdk_err_exit_code(const struct vdk_err *e)
{
	switch (e->cls) {
	case VDK_E_NONE:
		return 0;
	case VDK_E_INPUT:
	case VDK_E_DIFFER:
		return 1;
	case VDK_E_USAGE:
		return 2;
	case VDK_E_IO:
		break;
	}
	return 3;
}
