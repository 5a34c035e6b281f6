/* `vdkit check -r` on a VHDX with a non-empty log: write the replayed log
 * into the file, then headers that name no log (MS-VHDX 2.3.3). Reading
 * never does this; the source of a conversion stays byte-identical.
 *
 * Crash safety: the log's writes are made durable before any header
 * changes, and until a new header is durable the old one still names the
 * log, whose replay is idempotent. The new header goes to the inactive slot
 * first with a higher sequence number, then to the other slot, as MS-VHDX
 * 2.2.2.1 asks of every header update. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "util.h"
#include "vhdx.h"

#define BAD(img, off, ...) vdk_bad(e, (img)->src->name, "vhdx", (off), __VA_ARGS__)
/* The file identifier and both headers: never written through the log. */
#define VHDX_HDR_AREA_END (192 * VHDX_KiB)
#define VHDX_REPAIR_CHUNK (1u << 20)

static int vhdx_rioerr(struct vdk_image *img, int err, uint64_t off, const char *what,
                       struct vdk_err *e)
{
	return vdk_err_set(e, VDK_E_IO, err, img->src->name, "vhdx", off, "%s: %s", what,
	                   strerror(err));
}

/* A log that writes over the headers or over itself is not one Hyper-V
 * wrote; replaying it would change what the rest of the replay reads. */
static int vhdx_ops_ok(struct vdk_image *img, struct vdk_err *e)
{
	const struct vhdx_state *s = img->state;
	for (size_t i = 0; i < s->nops; i++) {
		const struct vhdx_op *op = &s->ops[i];
		if (op->off < VHDX_HDR_AREA_END)
			return BAD(img, op->off, "the log writes into the header area");
		if (op->off < s->log_off + s->log_len && s->log_off < op->off + op->len)
			return BAD(img, op->off, "the log writes over the log region itself");
	}
	return 0;
}

static int vhdx_write_ops(struct vdk_image *img, int fd, struct vdk_err *e)
{
	const struct vhdx_state *s = img->state;
	uint8_t *buf = malloc(VHDX_REPAIR_CHUNK);
	if (!buf)
		return vdk_ioerr(e, ENOMEM, img->src->name, "out of memory");
	int r = 0;
	for (size_t i = 0; i < s->nops && r == 0; i++) {
		const struct vhdx_op *op = &s->ops[i];
		for (uint64_t o = op->off; o < op->off + op->len && r == 0;) {
			size_t n =
			    (size_t)VDK_MIN((uint64_t)VHDX_REPAIR_CHUNK, op->off + op->len - o);
			r = vhdx_log_apply(img, op, buf, n, o, e);
			if (r == 0 && (r = vdk_pwrite_full(fd, buf, n, o)) < 0)
				r = vhdx_rioerr(img, -r, o, "writing the log's data failed", e);
			o += n;
		}
	}
	free(buf);
	if (r == 0 && s->fsize > img->src->size && ftruncate(fd, (off_t)s->fsize) != 0)
		r = vhdx_rioerr(img, errno, s->fsize, "extending the file failed", e);
	if (r == 0 && fsync(fd) != 0)
		r = vhdx_rioerr(img, errno, 0, "fsync failed", e);
	return r;
}

int vhdx_hdr_update(uint8_t *h, unsigned cur, uint64_t *seq, vhdx_hdr_put_fn put, void *ctx,
                    struct vdk_err *e)
{
	for (unsigned k = 0; k < 2; k++) {
		vdk_put_le64(h + VHDX_H_SEQ, *seq + 1 + k);
		vdk_put_le32(h + VHDX_H_CRC, vhdx_crc(h, VHDX_HDR_SIZE, VHDX_H_CRC));
		int r = put(ctx, h, VHDX_HDR_OFF(k ? cur : cur ^ 1u), e);
		if (r)
			return r;
	}
	*seq += 2;
	return 0;
}

struct vhdx_repair_put {
	struct vdk_image *img;
	int fd;
};

static int vhdx_repair_put_hdr(void *ctx, const uint8_t *h, uint64_t at, struct vdk_err *e)
{
	struct vhdx_repair_put *p = ctx;
	int r = vdk_pwrite_full(p->fd, h, VHDX_HDR_SIZE, at);
	if (r < 0)
		return vhdx_rioerr(p->img, -r, at, "writing a header failed", e);
	if (fsync(p->fd) != 0)
		return vhdx_rioerr(p->img, errno, at, "fsync failed", e);
	return 0;
}

static int vhdx_clear_log_guid(struct vdk_image *img, int fd, struct vdk_err *e)
{
	const struct vhdx_state *s = img->state;
	uint8_t h[VHDX_HDR_SIZE];
	uint64_t at = VHDX_HDR_OFF(s->hdr_idx), seq = s->hdr_seq;
	int r = vdk_src_pread(img->src, h, sizeof(h), at, e);
	if (r < 0)
		return r;
	memset(h + VHDX_H_LOGGUID, 0, 16);
	uuid_generate(h + VHDX_H_FWGUID); /* the file was opened for writing */
	struct vhdx_repair_put p = {img, fd};
	return vhdx_hdr_update(h, s->hdr_idx, &seq, vhdx_repair_put_hdr, &p, e);
}

/* The file must be the very file the image was read from. */
static int vhdx_open_rw(struct vdk_image *img, int *fd, struct vdk_err *e)
{
	struct vdk_src *src = img->src;
	struct stat a, b;
	if (src->fd < 0 || src->fd_off != 0 || fstat(src->fd, &a) != 0 || !S_ISREG(a.st_mode))
		return vdk_unsup(e, src->name, "vhdx", VDK_NO_OFFSET,
		                 "the log can only be replayed into a plain file");
	*fd = open(src->name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (*fd < 0)
		return vhdx_rioerr(img, errno, VDK_NO_OFFSET, "cannot open for writing", e);
	if (fstat(*fd, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		close(*fd);
		return vdk_err_set(e, VDK_E_IO, ESTALE, src->name, "vhdx", VDK_NO_OFFSET,
		                   "the file changed while it was being checked");
	}
	return 0;
}

int vhdx_log_commit(struct vdk_image *img, struct vdk_err *e)
{
	const struct vhdx_state *s = img->state;
	if (vhdx_guid_is_zero(s->log_guid))
		return 0;
	int fd = -1;
	int r = vhdx_ops_ok(img, e);
	if (r == 0)
		r = vhdx_open_rw(img, &fd, e);
	if (r == 0)
		r = vhdx_write_ops(img, fd, e);
	if (r == 0)
		r = vhdx_clear_log_guid(img, fd, e);
	if (fd >= 0) {
		close(fd);
		vdk_src_restat(img->src); /* our own writes are not a change */
	}
	return r;
}
