/* A sparse in-memory file for the VHDX and VMDK harnesses. A VHDX is at
 * least 3 MiB of mostly zeroes (1 MiB-aligned regions) and sparse VMDKs are
 * mostly zero padding, so seeds come sparse: "VXSP",
 * le32 file size (<= 128 MiB), then records of le32 offset, le16 length and
 * the bytes, over a zeroed file (later records win). Reads are served from
 * the records without materializing the file: allocating and clearing
 * megabytes per input under ASan was most of the harness's time. */
#ifndef VDK_FUZZ_SPARSE_H
#define VDK_FUZZ_SPARSE_H

#include <stdint.h>
#include <string.h>

#include "io.h"

struct fuzz_sparse {
	const uint8_t *d;
	size_t n;
};

static uint32_t fuzz_sp_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int fuzz_sp_pread(struct vdk_src *s, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	(void)e;
	const struct fuzz_sparse *sp = s->priv;
	memset(buf, 0, len);
	for (size_t p = 8; p + 6 <= sp->n;) {
		uint64_t ro = fuzz_sp_le32(sp->d + p);
		size_t rl = (size_t)sp->d[p + 4] | (size_t)sp->d[p + 5] << 8;
		p += 6;
		rl = rl < sp->n - p ? rl : sp->n - p;
		uint64_t lo = ro > off ? ro : off, hi = ro + rl < off + len ? ro + rl : off + len;
		if (lo < hi)
			memcpy((uint8_t *)buf + (lo - off), sp->d + p + (lo - ro),
			       (size_t)(hi - lo));
		p += rl;
	}
	return 0;
}

static const struct vdk_src_ops fuzz_sparse_ops = {.pread = fuzz_sp_pread};

/* A source over data: sparse when it starts with "VXSP", else the bytes. */
static int fuzz_sparse_open(struct fuzz_sparse *sp, const uint8_t *d, size_t n, const char *name,
                            struct vdk_src **out, struct vdk_err *e)
{
	if (n < 8 || memcmp(d, "VXSP", 4) != 0 || fuzz_sp_le32(d + 4) > (128u << 20))
		return vdk_src_open_mem(d, n, name, out, e);
	struct vdk_src *s = vdk_src_alloc(&fuzz_sparse_ops, name);
	if (!s)
		return -1;
	sp->d = d;
	sp->n = n;
	s->priv = sp;
	s->size = fuzz_sp_le32(d + 4);
	*out = s;
	return 0;
}

#endif
