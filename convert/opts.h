/* "-o key=value,key=value" creation options, qemu-img syntax (",," is a
 * literal comma). Writers ask for the keys they know; the core then refuses
 * any key nobody asked for, so a typo never silently does nothing. */
#ifndef VDK_OPTS_H
#define VDK_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct vdk_opt {
	char *key;
	char *val;
	bool used;
};

struct vdk_opts {
	struct vdk_opt *v;
	size_t n;
};

/* Append the options in s (may be called several times: later wins). */
int vdk_opts_parse(struct vdk_opts *o, const char *s, struct vdk_err *e);
/* Set one option programmatically (copies both strings). */
int vdk_opts_set(struct vdk_opts *o, const char *key, const char *val, struct vdk_err *e);
/* The value for key (last one given), or NULL; marks it used. */
const char *vdk_opts_get(struct vdk_opts *o, const char *key);
/* Integer with optional k/K, M, G, T, P suffix (powers of 1024), in
 * [min, max]; *out = def when absent. */
int vdk_opts_get_size(struct vdk_opts *o, const char *key, uint64_t def, uint64_t min, uint64_t max,
                      uint64_t *out, struct vdk_err *e);
/* on/off, true/false, yes/no, 1/0. */
int vdk_opts_get_bool(struct vdk_opts *o, const char *key, bool def, bool *out, struct vdk_err *e);
/* One of the NULL-terminated choices; *out is its index, def when absent. */
int vdk_opts_get_enum(struct vdk_opts *o, const char *key, const char *const *choices, int def,
                      int *out, struct vdk_err *e);
/* A usage error naming the first key no writer asked for. */
int vdk_opts_check_unused(const struct vdk_opts *o, const char *format, struct vdk_err *e);
void vdk_opts_free(struct vdk_opts *o);

/* Parse a size with suffix ("64M", "1.5G" is refused: integers only). */
int vdk_parse_size(const char *s, uint64_t *out);

#endif
