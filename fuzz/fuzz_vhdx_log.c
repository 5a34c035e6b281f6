/* libFuzzer harness for the VHDX log (MS-VHDX 2.3): finding the active
 * sequence of entries and replaying it in memory (vhdx_log.c), then reads
 * through the overlay. The input is the log region itself, so every
 * mutation lands in an entry header, a descriptor or a data sector:
 *   16 bytes  log GUID (the header's LogGuid)
 *    8 bytes  le64 file size the source claims (FlushedFileOffset checks)
 *   the rest  the first bytes of a 64 KiB log region at file offset 1 MiB,
 *             zeroes after it; the file outside the log reads as zeroes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "vhdx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_LOG_OFF VHDX_MiB
/* A small log: the scan tries every sector and checksums up to 8 times the
 * log, so 64 KiB keeps each input fast and wrap-around entries reachable. */
#define FUZZ_LOG_LEN (64 * VHDX_KiB)

struct fuzz_log {
	const uint8_t *d;
	size_t n;
};

static int fuzz_log_pread(struct vdk_src *s, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	(void)e;
	const struct fuzz_log *l = s->priv;
	memset(buf, 0, len);
	uint64_t lo = off > FUZZ_LOG_OFF ? off : FUZZ_LOG_OFF;
	uint64_t end = FUZZ_LOG_OFF + l->n, hi = off + len < end ? off + len : end;
	if (lo < hi)
		memcpy((uint8_t *)buf + (lo - off), l->d + (lo - FUZZ_LOG_OFF), (size_t)(hi - lo));
	return 0;
}

static const struct vdk_src_ops fuzz_log_ops = {.pread = fuzz_log_pread};

static uint64_t fuzz_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void fuzz_log_reads(struct vdk_image *img, const struct vhdx_state *s)
{
	struct vdk_err e = {0};
	uint8_t *buf = malloc(65536);
	if (!buf || !s->nops)
		goto out;
	uint64_t at[3] = {s->ops_lo, s->ops[s->nops - 1].off,
	                  s->ops_hi > 65536 ? s->ops_hi - 65536 : 0};
	for (int i = 0; i < 3; i++) {
		uint64_t n = s->fsize > at[i] ? s->fsize - at[i] : 0;
		vdk_err_clear(&e);
		vhdx_fread(img, buf, (size_t)(n < 65536 ? n : 65536), at[i], &e);
	}
out:
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 24)
		return 0;
	struct fuzz_log l = {data + 24, size - 24 < FUZZ_LOG_LEN ? size - 24 : FUZZ_LOG_LEN};
	struct vdk_src *src = vdk_src_alloc(&fuzz_log_ops, "fuzz.vhdx");
	if (!src)
		return 0;
	uint64_t fsize = fuzz_le64(data + 16);
	/* at least the log's end, at most 1 TiB (reads past it are refused) */
	fsize = fsize < 2 * VHDX_MiB ? 2 * VHDX_MiB : fsize > (1ull << 40) ? (1ull << 40) : fsize;
	src->priv = &l;
	src->size = fsize;
	struct vhdx_state s = {.fsize = fsize, .log_off = FUZZ_LOG_OFF, .log_len = FUZZ_LOG_LEN};
	memcpy(s.log_guid, data, 16);
	struct vdk_image img = {.src = src, .state = &s};
	struct vdk_err e = {0};
	if (vhdx_log_load(&img, &e) == 0)
		fuzz_log_reads(&img, &s);
	free(s.ops);
	vdk_src_close(src);
	return 0;
}
