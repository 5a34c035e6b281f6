/* The VHDX log (MS-VHDX 2.3): find the active sequence of log entries and
 * replay it in memory. A file with a non-empty log was not closed cleanly;
 * its metadata and BAT are only right after the log's writes are applied.
 * vdkit never writes to a source it reads, so the writes become an overlay
 * (struct vhdx_op) that vhdx_fread applies over the file's bytes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vhdx.h"

#define BAD(img, off, ...) vdk_bad(e, (img)->src->name, "vhdx", (off), __VA_ARGS__)

#define VHDX_LOG_MAX      (64u * VHDX_MiB) /* larger logs: refused, not read */
#define VHDX_LAST_OFF_MAX (1ull << 62)

struct vhdx_lentry {
	uint32_t pos, len, tail;
	uint64_t seq;
};

struct vhdx_logscan {
	uint8_t *buf; /* the whole log region */
	uint32_t len, nsec;
	uint64_t crc_budget; /* bytes we still accept to checksum */
	struct vhdx_lentry *ent;
	size_t nent;
	int32_t *at; /* sector -> index in ent, or -1 */
};

static const uint8_t *vhdx_lsec(const struct vhdx_logscan *ls, uint32_t pos, uint64_t k)
{
	return ls->buf + (uint32_t)((pos + k * VHDX_LOG_SECTOR) % ls->len);
}

static uint32_t vhdx_desc_sectors(uint32_t ndesc)
{
	/* the 64-byte entry header takes the first two descriptor slots */
	return (uint32_t)(((uint64_t)ndesc + 2 + VHDX_DESC_PER_SECTOR - 1) / VHDX_DESC_PER_SECTOR);
}

static const uint8_t *vhdx_ldesc(const struct vhdx_logscan *ls, uint32_t pos, uint32_t d)
{
	uint64_t slot = (uint64_t)d + 2;
	return vhdx_lsec(ls, pos, slot / VHDX_DESC_PER_SECTOR) + (slot % VHDX_DESC_PER_SECTOR) * 32;
}

/* Descriptors, data sector stamps and the entry's CRC-32C. */
static bool vhdx_entry_body_ok(struct vhdx_logscan *ls, uint32_t pos, uint32_t elen, uint64_t seq,
                               uint32_t ndesc)
{
	uint32_t dsec = vhdx_desc_sectors(ndesc), ndata = 0;
	for (uint32_t d = 0; d < ndesc; d++) {
		const uint8_t *p = vhdx_ldesc(ls, pos, d);
		bool zero = memcmp(p, "zero", 4) == 0, data = memcmp(p, "desc", 4) == 0;
		if ((!zero && !data) || vdk_le64(p + 24) != seq ||
		    vdk_le64(p + 16) % VHDX_LOG_SECTOR)
			return false;
		if (zero && vdk_le64(p + 8) % VHDX_LOG_SECTOR)
			return false;
		if (data) {
			if ((uint64_t)dsec + ndata >= elen / VHDX_LOG_SECTOR)
				return false;
			const uint8_t *s = vhdx_lsec(ls, pos, (uint64_t)dsec + ndata);
			uint64_t sseq = ((uint64_t)vdk_le32(s + 4) << 32) | vdk_le32(s + 4092);
			if (memcmp(s, "data", 4) != 0 || sseq != seq)
				return false;
			ndata++;
		}
	}
	if (ls->crc_budget < elen)
		return false;
	ls->crc_budget -= elen;
	uint32_t c = vhdx_crc(vhdx_lsec(ls, pos, 0), VHDX_LOG_SECTOR, VHDX_LE_CRC);
	for (uint64_t k = 1; k < elen / VHDX_LOG_SECTOR; k++)
		c = vdk_crc32c(c, vhdx_lsec(ls, pos, k), VHDX_LOG_SECTOR);
	return c == vdk_le32(vhdx_lsec(ls, pos, 0) + VHDX_LE_CRC);
}

static bool vhdx_entry_ok(struct vhdx_logscan *ls, const struct vhdx_state *s, uint32_t pos,
                          struct vhdx_lentry *out)
{
	const uint8_t *h = ls->buf + pos;
	uint32_t elen = vdk_le32(h + VHDX_LE_LEN), ndesc = vdk_le32(h + VHDX_LE_NDESC);
	uint64_t seq = vdk_le64(h + VHDX_LE_SEQ);
	if (memcmp(h, "loge", 4) != 0 || elen == 0 || elen % VHDX_LOG_SECTOR || elen > ls->len ||
	    seq == 0 || memcmp(h + VHDX_LE_GUID, s->log_guid, 16) != 0 ||
	    vhdx_desc_sectors(ndesc) > elen / VHDX_LOG_SECTOR)
		return false;
	if (!vhdx_entry_body_ok(ls, pos, elen, seq, ndesc))
		return false;
	*out = (struct vhdx_lentry){pos, elen, vdk_le32(h + VHDX_LE_TAIL), seq};
	return true;
}

static int vhdx_log_scan(struct vdk_image *img, struct vhdx_logscan *ls)
{
	struct vhdx_state *s = img->state;
	ls->ent = calloc(ls->nsec, sizeof(*ls->ent));
	ls->at = malloc(ls->nsec * sizeof(*ls->at));
	if (!ls->ent || !ls->at)
		return -ENOMEM;
	for (uint32_t i = 0; i < ls->nsec; i++) {
		ls->at[i] = -1;
		if (vhdx_entry_ok(ls, s, i * VHDX_LOG_SECTOR, &ls->ent[ls->nent]))
			ls->at[i] = (int32_t)ls->nent++;
	}
	return 0;
}

/* The sequence that ends at head h: from the tail h names, entries follow
 * each other with consecutive sequence numbers up to h (MS-VHDX 2.3.3). */
static size_t vhdx_seq_len(const struct vhdx_logscan *ls, const struct vhdx_lentry *h)
{
	if (h->tail % VHDX_LOG_SECTOR || h->tail >= ls->len)
		return 0;
	int32_t i = ls->at[h->tail / VHDX_LOG_SECTOR];
	for (size_t n = 1; i >= 0 && n <= ls->nsec; n++) {
		const struct vhdx_lentry *c = &ls->ent[i];
		if (c->pos == h->pos && c->seq == h->seq)
			return n;
		uint32_t next = (uint32_t)(((uint64_t)c->pos + c->len) % ls->len);
		int32_t j = ls->at[next / VHDX_LOG_SECTOR];
		if (j < 0 || ls->ent[j].seq != c->seq + 1)
			return 0;
		i = j;
	}
	return 0;
}

static int vhdx_add_op(struct vdk_image *img, const struct vhdx_op *op, size_t *cap,
                       struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	uint64_t end;
	if (vdk_add_overflow(op->off, op->len, &end) || end > VHDX_LAST_OFF_MAX)
		return BAD(img, s->log_off, "log write at %llu is out of range",
		           (unsigned long long)op->off);
	/* Hyper-V never logs the file identifier and headers, nor the log
	 * itself (MS-VHDX 2.3): such an entry would change what the rest of
	 * the replay reads. check -r refuses the same (vhdx_repair.c). */
	if (op->off < VHDX_RT1_OFF)
		return BAD(img, s->log_off, "the log writes [%llu, +%llu) into the header area",
		           (unsigned long long)op->off, (unsigned long long)op->len);
	if (op->off < s->log_off + s->log_len && s->log_off < end)
		return BAD(img, s->log_off,
		           "the log writes [%llu, +%llu) over the log region itself",
		           (unsigned long long)op->off, (unsigned long long)op->len);
	if (s->nops == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct vhdx_op *v = realloc(s->ops, ncap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->ops = v, *cap = ncap;
	}
	s->ops[s->nops++] = *op;
	s->ops_lo = s->nops == 1 ? op->off : VDK_MIN(s->ops_lo, op->off);
	s->ops_hi = VDK_MAX(s->ops_hi, end);
	s->fsize = VDK_MAX(s->fsize, end);
	return 0;
}

static int vhdx_replay_entry(struct vdk_image *img, const struct vhdx_logscan *ls,
                             const struct vhdx_lentry *le, size_t *cap, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	const uint8_t *h = ls->buf + le->pos;
	uint32_t ndesc = vdk_le32(h + VHDX_LE_NDESC), dsec = vhdx_desc_sectors(ndesc), ndata = 0;
	uint64_t last = vdk_le64(h + VHDX_LE_LAST);
	if (vdk_le64(h + VHDX_LE_FLUSHED) > img->src->size)
		return BAD(img, s->log_off + le->pos,
		           "log entry says the file had %llu bytes, it has %llu (truncated)",
		           (unsigned long long)vdk_le64(h + VHDX_LE_FLUSHED),
		           (unsigned long long)img->src->size);
	if (last > VHDX_LAST_OFF_MAX)
		return BAD(img, s->log_off + le->pos, "log entry file size %llu is out of range",
		           (unsigned long long)last);
	s->fsize = VDK_MAX(s->fsize, vdk_round_up(last, VHDX_MiB));
	for (uint32_t d = 0; d < ndesc; d++) {
		const uint8_t *p = vhdx_ldesc(ls, le->pos, d);
		struct vhdx_op op = {.off = vdk_le64(p + 16)};
		if (memcmp(p, "zero", 4) == 0) {
			op.len = vdk_le64(p + 8);
			op.src = VHDX_OP_ZERO;
		} else {
			uint64_t k = (uint64_t)dsec + ndata++;
			op.len = VHDX_LOG_SECTOR;
			op.src = s->log_off + (le->pos + k * VHDX_LOG_SECTOR) % ls->len + 8;
			memcpy(op.lead, p + 8, 8);
			memcpy(op.trail, p + 4, 4);
		}
		int r = vhdx_add_op(img, &op, cap, e);
		if (r < 0)
			return r;
	}
	return 0;
}

static int vhdx_log_replay(struct vdk_image *img, struct vhdx_logscan *ls, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	/* the head is the valid entry with the highest sequence number whose
	 * sequence is complete; try a bounded number of candidates */
	const struct vhdx_lentry *best = NULL;
	size_t n = 0;
	for (int tries = 0; tries < 64; tries++) {
		const struct vhdx_lentry *h = NULL;
		for (size_t i = 0; i < ls->nent; i++)
			if ((!best || ls->ent[i].seq < best->seq) &&
			    (!h || ls->ent[i].seq > h->seq))
				h = &ls->ent[i];
		if (!h)
			break;
		best = h;
		if ((n = vhdx_seq_len(ls, h)) > 0)
			break;
	}
	if (n == 0)
		return 0; /* no active sequence: nothing to replay */
	s->log_head_seq = best->seq;
	s->log_nentries = (unsigned)n;
	size_t cap = 0;
	int32_t i = ls->at[best->tail / VHDX_LOG_SECTOR];
	for (size_t k = 0; k < n; k++) {
		const struct vhdx_lentry *c = &ls->ent[i];
		int r = vhdx_replay_entry(img, ls, c, &cap, e);
		if (r < 0)
			return r;
		i = ls->at[(uint32_t)(((uint64_t)c->pos + c->len) % ls->len) / VHDX_LOG_SECTOR];
	}
	return 0;
}

int vhdx_log_load(struct vdk_image *img, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	if (vhdx_guid_is_zero(s->log_guid) || s->log_len == 0)
		return 0;
	if (s->log_len > VHDX_LOG_MAX)
		return vdk_unsup(e, img->src->name, "vhdx", s->log_off,
		                 "a non-empty log of %u bytes (at most %u replayed)", s->log_len,
		                 VHDX_LOG_MAX);
	struct vhdx_logscan ls = {.len = s->log_len, .nsec = s->log_len / VHDX_LOG_SECTOR};
	ls.crc_budget = 8 * (uint64_t)s->log_len;
	ls.buf = malloc(s->log_len);
	int r = ls.buf ? vdk_src_pread(img->src, ls.buf, s->log_len, s->log_off, e) : -ENOMEM;
	if (r == 0)
		r = vhdx_log_scan(img, &ls);
	if (r == 0)
		r = vhdx_log_replay(img, &ls, e);
	free(ls.buf);
	free(ls.ent);
	free(ls.at);
	return r;
}

bool vhdx_log_touches(const struct vhdx_state *s, uint64_t off, uint64_t len)
{
	if (!s->nops || off >= s->ops_hi || off + len <= s->ops_lo)
		return false;
	for (size_t i = 0; i < s->nops; i++)
		if (off < s->ops[i].off + s->ops[i].len && s->ops[i].off < off + len)
			return true;
	return false;
}

/* Apply one replayed write to buf, which holds [off, off+len) of the file. */
int vhdx_log_apply(struct vdk_image *img, const struct vhdx_op *op, uint8_t *buf, size_t len,
                   uint64_t off, struct vdk_err *e)
{
	uint64_t lo = VDK_MAX(off, op->off), hi = VDK_MIN(off + len, op->off + op->len);
	if (lo >= hi)
		return 0;
	uint8_t *dst = buf + (lo - off);
	if (op->src == VHDX_OP_ZERO) {
		memset(dst, 0, hi - lo);
		return 0;
	}
	/* the sector is lead[8] | 4084 bytes in the log | trail[4] */
	for (uint64_t p = lo - op->off, end = hi - op->off; p < end;) {
		size_t n;
		if (p < 8) {
			n = (size_t)VDK_MIN(end, 8) - p;
			memcpy(dst, op->lead + p, n);
		} else if (p < 4092) {
			n = (size_t)(VDK_MIN(end, 4092) - p);
			int r = vdk_src_pread(img->src, dst, n, op->src + (p - 8), e);
			if (r < 0)
				return r;
		} else {
			n = (size_t)(end - p);
			memcpy(dst, op->trail + (p - 4092), n);
		}
		dst += n;
		p += n;
	}
	return 0;
}

int vhdx_fread(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	if (!vdk_range_ok(off, len, s->fsize))
		return BAD(img, off, "read of %zu bytes is beyond the end of the file", len);
	uint64_t ssize = img->src->size;
	size_t in = off >= ssize ? 0 : (size_t)VDK_MIN((uint64_t)len, ssize - off);
	if (in) {
		int r = vdk_src_pread(img->src, buf, in, off, e);
		if (r < 0)
			return r;
	}
	memset((uint8_t *)buf + in, 0, len - in);
	if (!vhdx_log_touches(s, off, len))
		return 0;
	for (size_t i = 0; i < s->nops; i++) {
		int r = vhdx_log_apply(img, &s->ops[i], buf, len, off, e);
		if (r < 0)
			return r;
	}
	return 0;
}
