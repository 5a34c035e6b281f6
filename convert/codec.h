/* Deflate and inflate for grain and cluster codecs: Intel ISA-L (igzip)
 * where the build found it (VDK_HAVE_ISAL), libdeflate otherwise and for
 * the levels ISA-L does not have.
 *
 * Levels (vdkit's own scale, 1..VDK_CODEC_LEVEL_MAX): with ISA-L, 1..3 are
 * igzip levels 1..3 (fastest first; igzip level 0 is no faster on disk data
 * and compresses far worse, so it is not offered); 4..12 are libdeflate's
 * levels 4..12 (6 gives zlib -6 like ratios). Without ISA-L every level is
 * libdeflate's level of that number.
 *
 * A deflater or inflater is not thread-safe: keep one per worker thread and
 * reuse it (the contexts carry hash tables and history buffers). */
#ifndef VDK_CODEC_H
#define VDK_CODEC_H

#include <stdbool.h>
#include <stddef.h>

enum vdk_codec_wrap {
	VDK_WRAP_RAW,  /* bare deflate stream (RFC 1951): qcow2 clusters */
	VDK_WRAP_ZLIB, /* zlib stream (RFC 1950): VMDK stream grains */
};

#define VDK_CODEC_LEVEL_MAX 12

/* Results besides 0 (success) and -ENOMEM. */
enum {
	VDK_CODEC_NOFIT = 1, /* output does not fit the space given */
	VDK_CODEC_SHORT = 2, /* exact inflate: the stream ended early */
	VDK_CODEC_BAD = 3,   /* corrupt or truncated stream, bad checksum */
};

struct vdk_deflater;
struct vdk_inflater;

/* NULL on a level outside 1..VDK_CODEC_LEVEL_MAX or without memory. */
struct vdk_deflater *vdk_deflater_new(enum vdk_codec_wrap wrap, int level);
void vdk_deflater_free(struct vdk_deflater *d);
/* Room that always holds the stream of inlen bytes (stored blocks). */
size_t vdk_deflate_bound(size_t inlen);
/* 0 with *outlen set, or VDK_CODEC_NOFIT when the stream needs more than
 * outcap bytes (the caller then stores the data uncompressed). */
int vdk_deflate(struct vdk_deflater *d, const void *in, size_t inlen, void *out, size_t outcap,
                size_t *outlen);
/* "isa-l" or "libdeflate": which engine serves this deflater. */
const char *vdk_deflater_engine(const struct vdk_deflater *d);

struct vdk_inflater *vdk_inflater_new(enum vdk_codec_wrap wrap);
void vdk_inflater_free(struct vdk_inflater *f);
/* Inflate one whole stream (bytes after its end are ignored). With got
 * NULL the stream must produce exactly outlen bytes (VDK_CODEC_SHORT when
 * fewer); with got set it may produce fewer and *got says how many.
 * VDK_CODEC_NOFIT when it produces more than outlen. */
int vdk_inflate(struct vdk_inflater *f, const void *in, size_t inlen, void *out, size_t outlen,
                size_t *got);

#endif
