/* Findings: what a check or a package verification has to say, one entry
 * per problem with its file and offset. `vdkit check` (every format's
 * check op) and `vdkit ova verify|unpack` report through this one type, so
 * the tools print and count them the same way. */
#ifndef VDK_FINDINGS_H
#define VDK_FINDINGS_H

#include <stddef.h>
#include <stdint.h>

/* A note informs (a log replayed in memory); warnings and errors count. */
enum vdk_level { VDK_NOTE = 0, VDK_WARN = 1, VDK_ERROR = 2 };

struct vdk_finding {
	enum vdk_level level;
	char *file;   /* NULL: the image or package itself */
	uint64_t off; /* VDK_NO_OFFSET when none */
	char *msg;
};

struct vdk_findings {
	struct vdk_finding *v;
	size_t n, cap;
	/* Counted even when an entry could not be stored (out of memory), so
	 * a lost message never turns a bad result into a good one. */
	size_t errors, warnings;
};

void vdk_findings_add(struct vdk_findings *f, enum vdk_level lv, const char *file, uint64_t off,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void vdk_findings_free(struct vdk_findings *f);

#endif
