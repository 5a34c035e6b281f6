/* Errors: library functions return 0 or a negative errno and fill a vdk_err
 * whose message names the file, the format and the offset. Only tools/ prints
 * it; the class decides the exit code (docs/ARCHITECTURE.md: 1 bad input, 3 I/O). */
#ifndef VDK_ERR_H
#define VDK_ERR_H

#include <stdint.h>

enum vdk_err_class {
	VDK_E_NONE = 0,
	VDK_E_INPUT,  /* the image or package is bad, unsupported or refused */
	VDK_E_DIFFER, /* compare/verify: contents differ */
	VDK_E_USAGE,  /* bad option or argument */
	VDK_E_IO,     /* I/O or environment failure */
};

#define VDK_NO_OFFSET UINT64_MAX

struct vdk_err {
	enum vdk_err_class cls;
	int code; /* positive errno */
	char msg[768];
};

/* Format "FILE: FORMAT: at offset N: message" (parts omitted when NULL or
 * VDK_NO_OFFSET) into e, keep the first error recorded, and return -code. */
int vdk_err_set(struct vdk_err *e, enum vdk_err_class cls, int code, const char *file,
                const char *format, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* Shorthands. vdk_bad(): the input is malformed (EINVAL). vdk_ioerr(): an
 * I/O call failed with code (a positive errno). */
#define vdk_bad(e, file, format, off, ...)                                                         \
	vdk_err_set((e), VDK_E_INPUT, EINVAL, (file), (format), (off), __VA_ARGS__)
#define vdk_unsup(e, file, format, off, ...)                                                       \
	vdk_err_set((e), VDK_E_INPUT, ENOTSUP, (file), (format), (off), __VA_ARGS__)
#define vdk_ioerr(e, code, file, ...)                                                              \
	vdk_err_set((e), VDK_E_IO, (code), (file), NULL, VDK_NO_OFFSET, __VA_ARGS__)

/* An allocation failed: what names it ("the L1 table"), so the user can
 * tell a huge table from a machine out of memory. */
#define vdk_nomem(e, file, format, what)                                                           \
	vdk_err_set((e), VDK_E_IO, ENOMEM, (file), (format), VDK_NO_OFFSET,                        \
	            "out of memory for %s", (what))

/* At the boundary where the core calls a format module: a negative r that
 * left e empty (a helper with no error object returned -ENOMEM) still
 * reaches the user naming the file, the format and the operation. */
int vdk_err_ensure(struct vdk_err *e, int r, const char *file, const char *format,
                   const char *what);

void vdk_err_clear(struct vdk_err *e);

/* Exit code for an error class (0 for none). */
int vdk_err_exit_code(const struct vdk_err *e);

#endif
