#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "opts.h"

#define OPTS_MAX 64 /* more is a mistake, not a configuration */

static int opts_usage(struct vdk_err *e, const char *what, const char *s)
{
	return vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, NULL, VDK_NO_OFFSET, "%s: '%s'", what, s);
}

int vdk_opts_set(struct vdk_opts *o, const char *key, const char *val, struct vdk_err *e)
{
	if (o->n >= OPTS_MAX)
		return opts_usage(e, "too many options", key);
	struct vdk_opt *nv = realloc(o->v, (o->n + 1) * sizeof(*nv));
	if (!nv)
		return vdk_ioerr(e, ENOMEM, NULL, "out of memory");
	o->v = nv;
	char *k = strdup(key), *v = strdup(val);
	if (!k || !v) {
		free(k);
		free(v);
		return vdk_ioerr(e, ENOMEM, NULL, "out of memory");
	}
	o->v[o->n++] = (struct vdk_opt){.key = k, .val = v};
	return 0;
}

/* Copy one item of s (up to an unescaped ',') into out, unescaping ",,". */
static const char *opts_item(const char *s, char *out, size_t cap, bool *toolong)
{
	size_t n = 0;
	*toolong = false;
	while (*s) {
		if (*s == ',') {
			if (s[1] != ',')
				break;
			s++;
		}
		if (n + 1 >= cap)
			*toolong = true;
		else
			out[n++] = *s;
		s++;
	}
	out[n] = '\0';
	return *s == ',' ? s + 1 : s;
}

int vdk_opts_parse(struct vdk_opts *o, const char *s, struct vdk_err *e)
{
	char item[1024];
	while (*s) {
		bool toolong;
		s = opts_item(s, item, sizeof(item), &toolong);
		if (toolong)
			return opts_usage(e, "option too long", item);
		if (!item[0])
			continue;
		char *eq = strchr(item, '=');
		if (!eq || eq == item)
			return opts_usage(e, "expected key=value in -o", item);
		*eq = '\0';
		int r = vdk_opts_set(o, item, eq + 1, e);
		if (r)
			return r;
	}
	return 0;
}

const char *vdk_opts_get(struct vdk_opts *o, const char *key)
{
	const char *val = NULL;
	for (size_t i = 0; o && i < o->n; i++)
		if (!strcmp(o->v[i].key, key)) {
			o->v[i].used = true;
			val = o->v[i].val;
		}
	return val;
}

int vdk_parse_size(const char *s, uint64_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	unsigned shift = 0;
	if (*end) {
		const char *u = "KMGTPE";
		const char *p = strchr(u, *end >= 'a' ? *end - 32 : *end);
		if (!p || !*p)
			return -EINVAL;
		shift = 10u * (unsigned)(p - u + 1);
		end++;
		if (*end == 'i' && end[1] == 'B')
			end += 2;
		else if (*end == 'B')
			end++;
		if (*end)
			return -EINVAL;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

int vdk_opts_get_size(struct vdk_opts *o, const char *key, uint64_t def, uint64_t min, uint64_t max,
                      uint64_t *out, struct vdk_err *e)
{
	const char *s = vdk_opts_get(o, key);
	if (!s) {
		*out = def;
		return 0;
	}
	uint64_t v;
	if (vdk_parse_size(s, &v) || v < min || v > max)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, NULL, VDK_NO_OFFSET,
		                   "option %s=%s: expected a size from %llu to %llu", key, s,
		                   (unsigned long long)min, (unsigned long long)max);
	*out = v;
	return 0;
}

int vdk_opts_get_bool(struct vdk_opts *o, const char *key, bool def, bool *out, struct vdk_err *e)
{
	static const char *const choices[] = {"off", "on", "false", "true", "no",
	                                      "yes", "0",  "1",     NULL};
	int idx;
	int r = vdk_opts_get_enum(o, key, choices, def ? 1 : 0, &idx, e);
	if (!r)
		*out = idx & 1;
	return r;
}

int vdk_opts_get_enum(struct vdk_opts *o, const char *key, const char *const *choices, int def,
                      int *out, struct vdk_err *e)
{
	const char *s = vdk_opts_get(o, key);
	if (!s) {
		*out = def;
		return 0;
	}
	for (int i = 0; choices[i]; i++)
		if (!strcasecmp(s, choices[i])) {
			*out = i;
			return 0;
		}
	return vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, NULL, VDK_NO_OFFSET,
	                   "option %s: unknown value '%s'", key, s);
}

int vdk_opts_check_unused(const struct vdk_opts *o, const char *format, struct vdk_err *e)
{
	for (size_t i = 0; o && i < o->n; i++)
		if (!o->v[i].used)
			return vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, format, VDK_NO_OFFSET,
			                   "unknown option '%s' for this format", o->v[i].key);
	return 0;
}

void vdk_opts_free(struct vdk_opts *o)
{
	for (size_t i = 0; i < o->n; i++) {
		free(o->v[i].key);
		free(o->v[i].val);
	}
	free(o->v);
	o->v = NULL;
	o->n = 0;
}
