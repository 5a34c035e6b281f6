/* Findings (findings.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "findings.h"

void vdk_findings_add(struct vdk_findings *f, enum vdk_level lv, const char *file, uint64_t off,
                      const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (lv == VDK_ERROR)
		f->errors++;
	else if (lv == VDK_WARN)
		f->warnings++;
	if (f->n == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 8;
		struct vdk_finding *v = realloc(f->v, cap * sizeof(*v));
		if (!v)
			return;
		f->v = v;
		f->cap = cap;
	}
	struct vdk_finding *x = &f->v[f->n];
	x->level = lv;
	x->off = off;
	x->file = file ? strdup(file) : NULL;
	x->msg = strdup(msg);
	if (!x->msg || (file && !x->file)) {
		free(x->file);
		free(x->msg);
		return;
	}
	f->n++;
}

void vdk_findings_free(struct vdk_findings *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->v[i].file);
		free(f->v[i].msg);
	}
	free(f->v);
	memset(f, 0, sizeof(*f));
}
