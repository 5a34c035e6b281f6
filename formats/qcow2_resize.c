/* qcow2 resize in place (qemu-img resize's common cases, qcow2.txt
 * "Header" and "Cluster mapping"): the virtual size and the L1 size change
 * in the header; the L1 table itself is never moved. Growing fits when the
 * new L1 entries fall in the unused tail of the table's last cluster (a 64
 * KiB cluster's L1 cluster covers 4 TiB); shrinking only when no cluster is
 * mapped past the new end, so nothing must be freed. Everything else is
 * refused with the reason. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2.h"
#include "util.h"

#define FMT "qcow2"

struct qrs {
	int fd;
	const char *path;
	uint64_t file_size;
	uint32_t cluster_bits;
	uint64_t size;
	uint32_t l1_size;
	uint64_t l1_off;
	uint64_t cap; /* L1 entries the table's clusters hold */
};

static int qrs_refuse(const struct qrs *q, struct vdk_err *e, const char *why)
{
	return vdk_err_set(e, VDK_E_USAGE, ENOTSUP, q->path, FMT, VDK_NO_OFFSET,
	                   "cannot resize in place: %s", why);
}

static int qrs_read(const struct qrs *q, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	if (!vdk_range_ok(off, len, q->file_size))
		return vdk_bad(e, q->path, FMT, off, "table past the end of the file");
	ssize_t n = pread(q->fd, buf, len, (off_t)off);
	if (n != (ssize_t)len)
		return vdk_err_set(e, VDK_E_IO, n < 0 ? errno : EIO, q->path, FMT, off,
		                   "read failed: %s", strerror(n < 0 ? errno : EIO));
	return 0;
}

static int qrs_header(struct qrs *q, struct vdk_err *e)
{
	uint8_t h[QCOW2_HDR_V3_LEN] = {0};
	int r = qrs_read(q, h, QCOW2_HDR_V2_LEN, 0, e);
	if (r)
		return r;
	uint32_t version = vdk_be32(h + 4);
	if (vdk_be32(h) != QCOW2_MAGIC || (version != 2 && version != 3))
		return vdk_bad(e, q->path, FMT, 0, "not a qcow2 v2/v3 header");
	if (version == 3 && (r = qrs_read(q, h, QCOW2_HDR_V3_LEN, 0, e)))
		return r;
	q->cluster_bits = vdk_be32(h + 20);
	q->size = vdk_be64(h + 24);
	q->l1_size = vdk_be32(h + 36);
	q->l1_off = vdk_be64(h + 40);
	uint64_t incompat = version == 3 ? vdk_be64(h + 72) : 0;
	if (q->cluster_bits < QCOW2_MIN_CLUSTER_BITS || q->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return vdk_bad(e, q->path, FMT, 20, "bad cluster_bits %u", q->cluster_bits);
	if (vdk_be32(h + 60))
		return qrs_refuse(q, e, "the image has internal snapshots");
	if (vdk_be32(h + 32))
		return qrs_refuse(q, e, "the image is encrypted");
	if (incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT))
		return qrs_refuse(q, e, "the image is dirty or marked corrupt (vdkit check -r)");
	if (incompat & ~(QCOW2_INCOMPAT_DATA_FILE | QCOW2_INCOMPAT_COMPRESSION))
		return qrs_refuse(q, e, "the image uses extended L2 entries or unknown features");
	uint64_t cs = 1ull << q->cluster_bits;
	q->cap = vdk_round_up((uint64_t)q->l1_size * 8, cs) / 8;
	if (q->l1_size == 0 || q->l1_off % cs)
		return qrs_refuse(q, e, "the image has no L1 table to grow");
	/* The table lies in the file (its last cluster may end past EOF). */
	uint64_t end;
	if ((uint64_t)q->l1_size * 8 > QCOW2_MAX_L1_BYTES ||
	    vdk_add_overflow(q->l1_off, (uint64_t)q->l1_size * 8, &end) ||
	    end > vdk_round_up(q->file_size, cs))
		return vdk_bad(e, q->path, FMT, 36,
		               "L1 table (%u entries at %llu) past the file's end", q->l1_size,
		               (unsigned long long)q->l1_off);
	return 0;
}

/* L1 entries needed for size bytes. */
static uint64_t qrs_l1_for(const struct qrs *q, uint64_t size)
{
	uint64_t cover = 1ull << (2 * q->cluster_bits - 3); /* cluster * entries per L2 */
	return size / cover + (size % cover != 0);
}

/* Every L1 entry in [from, to) must be zero: nothing mapped there yet (or
 * for a grow, nothing else stored in the L1 cluster's tail). */
static int qrs_l1_zero(const struct qrs *q, uint64_t from, uint64_t to, bool *zero,
                       struct vdk_err *e)
{
	*zero = true;
	/* qemu leaves the L1 cluster's tail past the end of the file: zero. */
	uint64_t eof_entry = q->file_size > q->l1_off ? (q->file_size - q->l1_off) / 8 : 0;
	to = VDK_MIN(to, eof_entry);
	if (to <= from)
		return 0;
	size_t n = (size_t)((to - from) * 8);
	uint8_t *b = malloc(n);
	if (!b)
		return vdk_ioerr(e, ENOMEM, q->path, "out of memory");
	int r = qrs_read(q, b, n, q->l1_off + from * 8, e);
	if (!r)
		*zero = vdk_is_zero(b, n);
	free(b);
	return r;
}

/* The L2 table of the last L1 entry kept must map nothing past size. */
static int qrs_tail_l2_zero(const struct qrs *q, uint64_t size, bool *zero, struct vdk_err *e)
{
	uint64_t cs = 1ull << q->cluster_bits, per = cs / 8;
	uint64_t first = vdk_round_up(size, cs) >> q->cluster_bits; /* first cluster past */
	uint64_t li = first / per, gi = first % per;
	*zero = true;
	if (gi == 0 || li >= q->l1_size)
		return 0;
	uint8_t ent[8];
	int r = qrs_read(q, ent, 8, q->l1_off + li * 8, e);
	uint64_t l2 = vdk_be64(ent) & QCOW2_OFFSET_MASK;
	if (r || !l2)
		return r;
	uint8_t *b = malloc(cs);
	if (!b)
		return vdk_ioerr(e, ENOMEM, q->path, "out of memory");
	r = qrs_read(q, b, cs, l2, e);
	if (!r)
		*zero = vdk_is_zero(b + gi * 8, (size_t)((per - gi) * 8));
	free(b);
	return r;
}

static int qrs_check(const struct qrs *q, uint64_t size, struct vdk_err *e)
{
	uint64_t nl1 = qrs_l1_for(q, size);
	bool zero;
	int r;
	if (size >= q->size) {
		if (nl1 > q->cap)
			return qrs_refuse(
			    q, e,
			    "the L1 table would have to move to a larger place (not "
			    "supported); convert to a new qcow2 of the size you need");
		r = qrs_l1_zero(q, q->l1_size, nl1, &zero, e);
		if (!r && !zero)
			return qrs_refuse(q, e, "the L1 table's last cluster holds other data");
		return r;
	}
	r = qrs_l1_zero(q, nl1, q->l1_size, &zero, e);
	if (!r && zero)
		r = qrs_tail_l2_zero(q, size, &zero, e);
	if (!r && !zero)
		return qrs_refuse(q, e,
		                  "clusters are mapped past the new end and would have to be "
		                  "freed; convert to a smaller image instead");
	return r;
}

static int qrs_commit(const struct qrs *q, uint64_t size, struct vdk_err *e)
{
	uint8_t f[16];
	vdk_put_be64(f, size);
	vdk_put_be32(f + 12, (uint32_t)qrs_l1_for(q, size));
	/* size (24..31) and l1_size (36..39); 32..35 (crypt_method) is 0. */
	memset(f + 8, 0, 4);
	int r = vdk_pwrite_full(q->fd, f, sizeof(f), 24);
	if (r)
		return vdk_err_set(e, VDK_E_IO, -r, q->path, FMT, 24, "header write failed: %s",
		                   strerror(-r));
	if (fsync(q->fd) != 0)
		return vdk_ioerr(e, errno, q->path, "fsync failed: %s", strerror(errno));
	return 0;
}

int qcow2_resize(const char *path, uint64_t size, bool shrink, struct vdk_opts *opts,
                 struct vdk_err *e)
{
	struct qrs q = {.path = path};
	if (opts && vdk_opts_get(opts, "preallocation"))
		return qrs_refuse(&q, e, "preallocation applies to raw images only");
	if (size % 512)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, path, FMT, VDK_NO_OFFSET,
		                   "the size must be a multiple of 512 bytes");
	q.fd = open(path, O_RDWR | O_CLOEXEC);
	struct stat st;
	if (q.fd < 0 || fstat(q.fd, &st) != 0) {
		int err = errno;
		if (q.fd >= 0)
			close(q.fd);
		return vdk_ioerr(e, err, path, "cannot open for resizing: %s", strerror(err));
	}
	q.file_size = (uint64_t)st.st_size;
	int r = qrs_header(&q, e);
	if (!r && size < q.size && !shrink)
		r = vdk_err_set(e, VDK_E_USAGE, EINVAL, path, FMT, VDK_NO_OFFSET,
		                "the new size is smaller: give --shrink");
	if (!r)
		r = qrs_check(&q, size, e);
	if (!r)
		r = qrs_commit(&q, size, e);
	close(q.fd);
	return r;
}
