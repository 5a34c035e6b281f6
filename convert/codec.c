/* Grain and cluster codecs: ISA-L igzip for the fast levels and for
 * inflate when the build has it, libdeflate for the rest (see codec.h). */
#include "codec.h"

#include <errno.h>
#include <libdeflate.h>
#include <stdint.h>
#include <stdlib.h>

#if VDK_HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

struct vdk_deflater {
	enum vdk_codec_wrap wrap;
	struct libdeflate_compressor *ld; /* NULL when igzip serves the level */
#if VDK_HAVE_ISAL
	int isal_level;
	uint8_t *lbuf; /* igzip's per-level hash and token buffer */
	uint32_t lbuf_size;
	struct isal_zstream zs;
#endif
};

struct vdk_inflater {
	enum vdk_codec_wrap wrap;
#if VDK_HAVE_ISAL
	struct inflate_state st;
#else
	struct libdeflate_decompressor *ld;
#endif
};

#if VDK_HAVE_ISAL
/* The LARGE buffers: measured faster than DEFAULT/SMALL on 64 KiB grains
 * and 64 KiB..2 MiB clusters, and still a few hundred KiB per worker. */
static uint32_t codec_isal_lbuf(int level)
{
	switch (level) {
	case 1:
		return ISAL_DEF_LVL1_LARGE;
	case 2:
		return ISAL_DEF_LVL2_LARGE;
	default:
		return ISAL_DEF_LVL3_LARGE;
	}
}
#endif

struct vdk_deflater *vdk_deflater_new(enum vdk_codec_wrap wrap, int level)
{
	if (level < 1 || level > VDK_CODEC_LEVEL_MAX)
		return NULL;
	struct vdk_deflater *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->wrap = wrap;
#if VDK_HAVE_ISAL
	if (level <= ISAL_DEF_MAX_LEVEL) {
		d->isal_level = level;
		d->lbuf_size = codec_isal_lbuf(level);
		if (!(d->lbuf = malloc(d->lbuf_size))) {
			free(d);
			return NULL;
		}
		return d;
	}
#endif
	if (!(d->ld = libdeflate_alloc_compressor(level))) {
		free(d);
		return NULL;
	}
	return d;
}

void vdk_deflater_free(struct vdk_deflater *d)
{
	if (!d)
		return;
	if (d->ld)
		libdeflate_free_compressor(d->ld);
#if VDK_HAVE_ISAL
	free(d->lbuf);
#endif
	free(d);
}

const char *vdk_deflater_engine(const struct vdk_deflater *d)
{
	return d->ld ? "libdeflate" : "isa-l";
}

size_t vdk_deflate_bound(size_t inlen)
{
	/* Stored blocks cost 5 bytes per <= 64 KiB; libdeflate's own bound
	 * assumes blocks of >= 5000 bytes; the zlib wrapper adds 6 and both
	 * engines want a little slack at the end. */
	size_t blocks = inlen / 4096 + 1;
	return inlen + 5 * blocks + 6 + 64;
}

static int codec_ld_deflate(struct vdk_deflater *d, const void *in, size_t inlen, void *out,
                            size_t outcap, size_t *outlen)
{
	size_t n = d->wrap == VDK_WRAP_ZLIB
	               ? libdeflate_zlib_compress(d->ld, in, inlen, out, outcap)
	               : libdeflate_deflate_compress(d->ld, in, inlen, out, outcap);
	if (!n)
		return VDK_CODEC_NOFIT;
	*outlen = n;
	return 0;
}

#if VDK_HAVE_ISAL
static int codec_isal_deflate(struct vdk_deflater *d, const void *in, size_t inlen, void *out,
                              size_t outcap, size_t *outlen)
{
	struct isal_zstream *zs = &d->zs;
	if (inlen > UINT32_MAX)
		return -EINVAL;
	isal_deflate_stateless_init(zs);
	zs->level = (uint32_t)d->isal_level;
	zs->level_buf = d->lbuf;
	zs->level_buf_size = d->lbuf_size;
	zs->gzip_flag = d->wrap == VDK_WRAP_ZLIB ? IGZIP_ZLIB : IGZIP_DEFLATE;
	zs->end_of_stream = 1;
	zs->flush = NO_FLUSH;
	zs->next_in = (uint8_t *)(uintptr_t)in;
	zs->avail_in = (uint32_t)inlen;
	zs->next_out = out;
	zs->avail_out = outcap > UINT32_MAX ? UINT32_MAX : (uint32_t)outcap;
	int r = isal_deflate_stateless(zs);
	if (r == STATELESS_OVERFLOW)
		return VDK_CODEC_NOFIT;
	if (r != COMP_OK)
		return -EINVAL;
	*outlen = zs->total_out;
	return 0;
}
#endif

int vdk_deflate(struct vdk_deflater *d, const void *in, size_t inlen, void *out, size_t outcap,
                size_t *outlen)
{
#if VDK_HAVE_ISAL
	if (!d->ld)
		return codec_isal_deflate(d, in, inlen, out, outcap, outlen);
#endif
	return codec_ld_deflate(d, in, inlen, out, outcap, outlen);
}

struct vdk_inflater *vdk_inflater_new(enum vdk_codec_wrap wrap)
{
	struct vdk_inflater *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->wrap = wrap;
#if !VDK_HAVE_ISAL
	if (!(f->ld = libdeflate_alloc_decompressor())) {
		free(f);
		return NULL;
	}
#endif
	return f;
}

void vdk_inflater_free(struct vdk_inflater *f)
{
	if (!f)
		return;
#if !VDK_HAVE_ISAL
	libdeflate_free_decompressor(f->ld);
#endif
	free(f);
}

/* Exact or at-most semantics on top of what came out. */
static int codec_inflated(size_t n, size_t outlen, size_t *got)
{
	if (got) {
		*got = n;
		return 0;
	}
	return n == outlen ? 0 : VDK_CODEC_SHORT;
}

#if VDK_HAVE_ISAL
static int codec_isal_inflate(struct vdk_inflater *f, const void *in, size_t inlen, void *out,
                              size_t outlen, size_t *got)
{
	struct inflate_state *st = &f->st;
	if (outlen > UINT32_MAX)
		return -EINVAL;
	isal_inflate_init(st);
	st->crc_flag = f->wrap == VDK_WRAP_ZLIB ? ISAL_ZLIB : ISAL_DEFLATE;
	st->next_in = (uint8_t *)(uintptr_t)in;
	/* Bytes after the stream are ignored, so a longer input only cuts. */
	st->avail_in = inlen > UINT32_MAX ? UINT32_MAX : (uint32_t)inlen;
	st->next_out = out;
	st->avail_out = (uint32_t)outlen;
	int r = isal_inflate_stateless(st);
	if (r == ISAL_OUT_OVERFLOW)
		return VDK_CODEC_NOFIT;
	if (r != ISAL_DECOMP_OK)
		return VDK_CODEC_BAD;
	return codec_inflated(st->total_out, outlen, got);
}
#else
static int codec_ld_inflate(struct vdk_inflater *f, const void *in, size_t inlen, void *out,
                            size_t outlen, size_t *got)
{
	size_t used, n = 0;
	enum libdeflate_result r =
	    f->wrap == VDK_WRAP_ZLIB
	        ? libdeflate_zlib_decompress_ex(f->ld, in, inlen, out, outlen, &used, &n)
	        : libdeflate_deflate_decompress_ex(f->ld, in, inlen, out, outlen, &used, &n);
	if (r == LIBDEFLATE_INSUFFICIENT_SPACE)
		return VDK_CODEC_NOFIT;
	if (r != LIBDEFLATE_SUCCESS)
		return VDK_CODEC_BAD;
	return codec_inflated(n, outlen, got);
}
#endif

int vdk_inflate(struct vdk_inflater *f, const void *in, size_t inlen, void *out, size_t outlen,
                size_t *got)
{
#if VDK_HAVE_ISAL
	return codec_isal_inflate(f, in, inlen, out, outlen, got);
#else
	return codec_ld_inflate(f, in, inlen, out, outlen, got);
#endif
}
