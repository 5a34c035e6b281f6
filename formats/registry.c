/* The one table of format modules. Order breaks probe ties. */
#include <errno.h>
#include <pthread.h>
#include <strings.h>
#include <stdio.h>
#include <string.h>

#include "format.h"
#include "util.h"

extern const struct vdk_format vdk_format_raw;
extern const struct vdk_format vdk_format_vmdk;
extern const struct vdk_format vdk_format_vhdx;
extern const struct vdk_format vdk_format_vhd;
extern const struct vdk_format vdk_format_qcow2;

const struct vdk_format *const vdk_formats[] = {
    &vdk_format_raw, &vdk_format_vmdk, &vdk_format_vhdx, &vdk_format_vhd, &vdk_format_qcow2, NULL,
};

static bool registry_alias(const char *aliases, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = aliases; p && *p;) {
		const char *end = strchr(p, ' ');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && !strncmp(p, name, n))
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

const struct vdk_format *vdk_format_find(const char *name)
{
	for (const struct vdk_format *const *f = vdk_formats; *f; f++)
		if (!strcmp((*f)->name, name) || registry_alias((*f)->aliases, name))
			return *f;
	return NULL;
}

int vdk_format_probe(struct vdk_src *src, const struct vdk_format **out, struct vdk_err *e)
{
	uint8_t buf[4096];
	size_t got = 0;
	int r = vdk_src_pread_upto(src, buf, sizeof(buf), 0, &got, e);
	if (r)
		return r;
	const struct vdk_format *best = &vdk_format_raw;
	int best_score = 0;
	for (const struct vdk_format *const *f = vdk_formats; *f; f++) {
		if (!(*f)->probe || !(*f)->open)
			continue;
		int s = (*f)->probe(buf, got, src->size);
		if (s > best_score) {
			best_score = s;
			best = *f;
		}
	}
	*out = best;
	return 0;
}

const struct vdk_format *vdk_format_for_ovf(const char *uri)
{
	for (const struct vdk_format *const *f = vdk_formats; uri && *f; f++)
		for (const char *const *u = (*f)->ovf_formats; u && *u; u++)
			if (strcasestr(uri, *u))
				return *f;
	return NULL;
}

/* Built once: the table is constant, and messages may come from threads. */
static char registry_all[256], registry_writable[256], registry_inplace[256];
static pthread_once_t registry_names_once = PTHREAD_ONCE_INIT;

static void registry_append(char *buf, size_t cap, const char *name)
{
	size_t l = strlen(buf);
	snprintf(buf + l, cap - l, "%s%s", l ? ", " : "", name);
}

static void registry_build_names(void)
{
	for (const struct vdk_format *const *f = vdk_formats; *f; f++) {
		registry_append(registry_all, sizeof(registry_all), (*f)->name);
		if ((*f)->create)
			registry_append(registry_writable, sizeof(registry_writable), (*f)->name);
		if ((*f)->in_place)
			registry_append(registry_inplace, sizeof(registry_inplace), (*f)->name);
	}
}

const char *vdk_format_names(bool writable)
{
	pthread_once(&registry_names_once, registry_build_names);
	return writable ? registry_writable : registry_all;
}

const char *vdk_format_names_in_place(void)
{
	pthread_once(&registry_names_once, registry_build_names);
	return registry_inplace[0] ? registry_inplace : "none";
}
