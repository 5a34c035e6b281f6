/* rebase -u for qcow2: the backing file name and its format (the backing
 * format header extension) change, nothing else. qcow2 keeps the header,
 * its extensions and the backing file name in the first cluster (spec:
 * docs/interop/qcow2.txt, "Header" and "Header extensions"), so the new
 * header cluster is built in memory and written with one pwrite, then
 * synced: a process killed around it leaves the old or the new header.
 * Also what commit's emptying of a qcow2 IMAGE makes it again from. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "err.h"
#include "qcow2.h"
#include "util.h"

struct qcow2_rb {
	const char *path;
	uint8_t *old, *buf; /* the first cluster, as read and as rebuilt */
	size_t cluster, hlen, at;
};

static int qcow2_rb_bad(const struct qcow2_rb *b, uint64_t off, const char *what, struct vdk_err *e)
{
	return vdk_bad(e, b->path, "qcow2", off, "%s", what);
}

static int qcow2_rb_header(struct qcow2_rb *b, int fd, struct vdk_err *e)
{
	uint8_t h[QCOW2_HDR_MAX] = {0};
	if (pread(fd, h, sizeof(h), 0) < (ssize_t)QCOW2_HDR_V2_LEN || vdk_be32(h) != QCOW2_MAGIC)
		return qcow2_rb_bad(b, 0, "not a qcow2 image", e);
	uint32_t ver = vdk_be32(h + 4), bits = vdk_be32(h + 20);
	if (ver < 2 || ver > 3)
		return vdk_unsup(e, b->path, "qcow2", 4, "qcow2 version %u", ver);
	if (bits < QCOW2_MIN_CLUSTER_BITS || bits > QCOW2_MAX_CLUSTER_BITS)
		return qcow2_rb_bad(b, 20, "cluster_bits out of range", e);
	b->cluster = (size_t)1 << bits;
	b->hlen = ver == 2 ? QCOW2_HDR_V2_LEN : vdk_be32(h + 100);
	if (b->hlen < (ver == 2 ? QCOW2_HDR_V2_LEN : QCOW2_HDR_V3_LEN) || b->hlen > b->cluster)
		return qcow2_rb_bad(b, 100, "header_length out of range", e);
	b->old = malloc(b->cluster);
	b->buf = calloc(1, b->cluster);
	if (!b->old || !b->buf)
		return vdk_nomem(e, b->path, "qcow2", "the header cluster");
	ssize_t got = pread(fd, b->old, b->cluster, 0);
	if (got < (ssize_t)b->hlen)
		return qcow2_rb_bad(b, 0, "file shorter than its header", e);
	if ((size_t)got < b->cluster)
		memset(b->old + got, 0, b->cluster - (size_t)got);
	memcpy(b->buf, b->old, b->hlen);
	b->at = b->hlen;
	return 0;
}

static int qcow2_rb_put(struct qcow2_rb *b, uint32_t type, const void *data, size_t len,
                        struct vdk_err *e)
{
	size_t need = 8 + vdk_round_up(len, 8);
	if (need > b->cluster - b->at)
		return vdk_bad(e, b->path, "qcow2", b->at,
		               "the header extensions and the backing file name no longer fit in "
		               "the first cluster (%zu bytes): refused, nothing changed",
		               b->cluster);
	vdk_put_be32(b->buf + b->at, type);
	vdk_put_be32(b->buf + b->at + 4, (uint32_t)len);
	memcpy(b->buf + b->at + 8, data, len);
	b->at += need;
	return 0;
}

/* Every extension but the backing format is kept as it was, in order. */
static int qcow2_rb_exts(struct qcow2_rb *b, const char *bfmt, struct vdk_err *e)
{
	int r = bfmt ? qcow2_rb_put(b, QCOW2_EXT_BACKING_FMT, bfmt, strlen(bfmt), e) : 0;
	size_t p = b->hlen;
	while (!r) {
		if (b->cluster - p < 8)
			return qcow2_rb_bad(b, p, "header extensions run past the first cluster",
			                    e);
		uint32_t type = vdk_be32(b->old + p), len = vdk_be32(b->old + p + 4);
		if (type == QCOW2_EXT_END)
			break;
		if (len > b->cluster - p - 8)
			return qcow2_rb_bad(b, p, "header extension past the first cluster", e);
		if (type != QCOW2_EXT_BACKING_FMT)
			r = qcow2_rb_put(b, type, b->old + p + 8, len, e);
		p += 8 + vdk_round_up(len, 8);
	}
	return r ? r : qcow2_rb_put(b, QCOW2_EXT_END, "", 0, e);
}

static int qcow2_rb_name(struct qcow2_rb *b, const char *backing, struct vdk_err *e)
{
	size_t n = backing ? strlen(backing) : 0;
	if (n > QCOW2_MAX_BACKING_NAME)
		return vdk_err_set(e, VDK_E_USAGE, ENAMETOOLONG, b->path, "qcow2", VDK_NO_OFFSET,
		                   "backing file name longer than %u bytes",
		                   QCOW2_MAX_BACKING_NAME);
	if (n > b->cluster - b->at)
		return vdk_bad(e, b->path, "qcow2", b->at,
		               "the backing file name no longer fits in the first cluster: "
		               "refused, nothing changed");
	vdk_put_be64(b->buf + 8, n ? b->at : 0);
	vdk_put_be32(b->buf + 16, (uint32_t)n);
	if (n)
		memcpy(b->buf + b->at, backing, n);
	return 0;
}

int qcow2_set_backing(const char *path, const char *backing, const char *backing_fmt,
                      struct vdk_err *e)
{
	if (backing && !backing_fmt)
		return vdk_err_set(e, VDK_E_INPUT, EINVAL, path, "qcow2", VDK_NO_OFFSET,
		                   "backing format must be specified (-F), as qemu-img requires");
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return vdk_ioerr(e, errno, path, "cannot open for update: %s", strerror(errno));
	struct qcow2_rb b = {.path = path};
	int r = flock(fd, LOCK_EX | LOCK_NB)
	            ? vdk_ioerr(e, errno, path, "another process is updating this image")
	            : qcow2_rb_header(&b, fd, e);
	if (!r && b.hlen >= 80 && (vdk_be64(b.old + 72) & QCOW2_INCOMPAT_DATA_FILE))
		r = vdk_unsup(e, path, "qcow2", 72,
		              "the image keeps its data in an external data file: its backing "
		              "file is not changed by vdkit");
	if (!r)
		r = qcow2_rb_exts(&b, backing ? backing_fmt : NULL, e);
	if (!r)
		r = qcow2_rb_name(&b, backing, e);
	if (!r && (vdk_pwrite_full(fd, b.buf, b.cluster, 0) || fdatasync(fd)))
		r = vdk_ioerr(e, errno, path, "writing the header failed: %s", strerror(errno));
	free(b.old);
	free(b.buf);
	close(fd);
	return r;
}

/* commit's emptying of IMAGE. qemu-img commit empties a qcow2 overlay
 * (qcow2_make_empty: with no snapshots, the image is rebuilt with no
 * clusters over the same backing file); vdkit's writer builds that image
 * from these options, beside IMAGE, and it replaces IMAGE by rename, so a
 * kill leaves the full or the empty image, both reading as the base. What
 * the writer would not make again keeps IMAGE as it was: internal
 * snapshots (qemu keeps them too, discarding only the active layer),
 * persistent bitmaps, an external data file, extended L2 entries, and
 * refcounts of other than 16 bits. */
int qcow2_empty_opts(struct vdk_image *img, struct vdk_opts *o, const char **why,
                     struct vdk_err *e)
{
	const struct qcow2_state *s = img->state;
	*why = s->nb_snapshots ? "it has internal snapshots, which emptying would drop"
	       : s->have_bitmaps ? "it holds persistent bitmaps, which emptying would drop"
	       : s->data_name    ? "its clusters are in an external data file"
	       : s->extl2        ? "it has extended L2 entries (subclusters), which vdkit does "
	                           "not write"
	       : s->refcount_order != 4 ? "its refcounts are not 16 bits wide, the only width "
	                                  "vdkit writes"
	       : !s->backing_name       ? "it has no backing file"
	                                : NULL;
	if (*why)
		return 0;
	char cs[16];
	snprintf(cs, sizeof(cs), "%u", s->cluster_size);
	int r = vdk_opts_set(o, "compat", s->version == 2 ? "0.10" : "1.1", e);
	if (!r)
		r = vdk_opts_set(o, "cluster_size", cs, e);
	if (!r && s->comp_type == QCOW2_COMP_ZSTD)
		r = vdk_opts_set(o, "compression_type", "zstd", e);
	if (!r)
		r = vdk_opts_set(o, "backing_file", s->backing_name, e);
	if (!r && s->backing_fmt)
		r = vdk_opts_set(o, "backing_fmt", s->backing_fmt, e);
	return r;
}
