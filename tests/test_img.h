/* Shared by the format unit tests: build an image in memory from a list of
 * seeded writes, and the content those writes should read back as. The
 * test sets fmt before calling build(). */
#ifndef VDK_TEST_IMG_H
#define VDK_TEST_IMG_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"

#define MiB (1024u * 1024u)

static const struct vdk_format *fmt;

/* Deterministic bytes for a write. */
static void fill(uint8_t *p, size_t len, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
}

/* A write of len bytes filled from seed at off. */
struct wr {
	uint64_t off, len;
	unsigned seed;
};

/* The image fmt writes for these writes (malloc'd, *outlen set), or NULL. */
static uint8_t *build(uint64_t size, const char *opts, const struct wr *w, size_t nw,
                      size_t *outlen)
{
	struct vdk_err e = {0};
	struct vdk_sink *k;
	struct vdk_writer *wr;
	struct vdk_opts o = {0};
	if (opts && vdk_opts_parse(&o, opts, &e))
		return NULL;
	if (vdk_sink_open_mem(1u << 30, &k, &e)) {
		vdk_opts_free(&o);
		return NULL;
	}
	if (vdk_writer_create(fmt, k, size, &o, NULL, &wr, &e)) {
		printf("# %s\n", e.msg);
		vdk_sink_close(k);
		vdk_opts_free(&o);
		return NULL;
	}
	for (size_t i = 0; i < nw; i++) {
		uint8_t *b = malloc(w[i].len);
		fill(b, w[i].len, w[i].seed);
		vdk_writer_write(wr, b, w[i].len, w[i].off, &e);
		free(b);
	}
	uint8_t *out = NULL;
	if (vdk_writer_finish(wr, &e) == 0) {
		const uint8_t *d = vdk_sink_mem_data(k, outlen);
		out = malloc(*outlen);
		memcpy(out, d, *outlen);
	} else {
		printf("# %s\n", e.msg);
	}
	vdk_writer_close(wr);
	vdk_sink_close(k);
	vdk_opts_free(&o);
	return out;
}

/* What a disk of size bytes holding these writes reads as. */
static uint8_t *expect(uint64_t size, const struct wr *w, size_t nw)
{
	uint8_t *x = calloc(1, size);
	for (size_t i = 0; x && i < nw; i++)
		fill(x + w[i].off, w[i].len, w[i].seed);
	return x;
}

#endif
