/* Block sharing: FICLONERANGE (reflink on XFS/Btrfs, CLONE on NFS 4.2),
 * then, on NFS, copy_file_range (server-side COPY), and otherwise tell the
 * caller to copy through user space. */
#include <errno.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "io.h"
#include "util.h"

/* Errors that mean "this path cannot do it here", not "the disk failed". */
static bool clone_unsupported(int err)
{
	return err == EOPNOTSUPP || err == ENOTTY || err == EXDEV || err == EINVAL ||
	       err == ENOSYS || err == EBADF || err == ETXTBSY || err == EPERM;
}

static int clone_ficlone(int dst_fd, uint64_t dst, int src_fd, uint64_t src, uint64_t len)
{
	struct file_clone_range r = {
	    .src_fd = src_fd,
	    .src_offset = src,
	    .src_length = len,
	    .dest_offset = dst,
	};
	return ioctl(dst_fd, FICLONERANGE, &r) == 0 ? 0 : -errno;
}

/* copy_file_range until done; -EOPNOTSUPP when unsupported before any byte
 * moved. */
static int clone_cfr(int dst_fd, uint64_t dst, int src_fd, uint64_t src, uint64_t len,
                     struct vdk_sink *k, struct vdk_err *e)
{
	bool moved = false;
	while (len) {
		loff_t so = (loff_t)src, dof = (loff_t)dst;
		size_t chunk = (size_t)VDK_MIN(len, (uint64_t)1 << 30);
		ssize_t n = copy_file_range(src_fd, &so, dst_fd, &dof, chunk, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && !moved && clone_unsupported(errno))
			return -EOPNOTSUPP;
		if (n < 0)
			return vdk_err_set(e, VDK_E_IO, errno, k->name, NULL, dst,
			                   "copy_file_range failed: %s", strerror(errno));
		if (n == 0)
			return vdk_err_set(e, VDK_E_INPUT, EIO, k->name, NULL, dst,
			                   "source ended early while copying");
		moved = true;
		src += (uint64_t)n;
		dst += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/* copy_file_range is worth it only where the copy happens elsewhere: NFS
 * 4.2 turns it into a server-side COPY. On a local filesystem that cannot
 * share blocks it is just an in-kernel copy that also writes the zero runs
 * inside the range, so the caller's read/write path (which skips zeroes and
 * keeps the output sparse) is better. */
#define CLONE_NFS_MAGIC 0x6969
static bool clone_offload_pays(int fd)
{
	struct statfs sfs;
	return fstatfs(fd, &sfs) == 0 && sfs.f_type == CLONE_NFS_MAGIC;
}

int vdk_sink_clone(struct vdk_sink *k, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
                   enum vdk_clone_mode mode, struct vdk_err *e)
{
	if (mode == VDK_CLONE_NEVER || k->fd < 0 || src_fd < 0 || (k->flags & VDK_SINK_SEQUENTIAL))
		goto unsupported;
	uint64_t dst = k->fd_off + off, blk = k->blksize;
	uint64_t head = len / blk * blk;
	if (dst % blk == 0 && src_off % blk == 0 && head) {
		int r = clone_ficlone(k->fd, dst, src_fd, src_off, head);
		if (r == 0) {
			/* A tail shorter than a block cannot be shared: copy it. */
			if (head < len) {
				r = clone_cfr(k->fd, dst + head, src_fd, src_off + head, len - head,
				              k, e);
				if (r == -EOPNOTSUPP)
					return r;
				if (r)
					return r;
			}
			vdk_sink_advance(k, off + len);
			return VDK_CLONED;
		}
		if (!clone_unsupported(-r))
			return vdk_err_set(e, VDK_E_IO, -r, k->name, NULL, dst,
			                   "sharing blocks failed: %s", strerror(-r));
		if (mode == VDK_CLONE_ALWAYS)
			return vdk_err_set(e, VDK_E_IO, EOPNOTSUPP, k->name, NULL, dst,
			                   "--clone=always: this filesystem cannot share blocks "
			                   "with the source (%s)",
			                   strerror(-r));
	} else if (mode == VDK_CLONE_ALWAYS) {
		return vdk_err_set(e, VDK_E_IO, EOPNOTSUPP, k->name, NULL, dst,
		                   "--clone=always: data at source offset %llu is not aligned to "
		                   "the %llu-byte filesystem block, so it cannot be shared",
		                   (unsigned long long)src_off, (unsigned long long)blk);
	}
	if (!clone_offload_pays(k->fd))
		return -EOPNOTSUPP;
	int r = clone_cfr(k->fd, dst, src_fd, src_off, len, k, e);
	if (r == 0) {
		vdk_sink_advance(k, off + len);
		return VDK_OFFLOADED;
	}
	return r;
unsupported:
	if (mode == VDK_CLONE_ALWAYS)
		return vdk_err_set(e, VDK_E_IO, EOPNOTSUPP, k->name, NULL, VDK_NO_OFFSET,
		                   "--clone=always: this output cannot share blocks");
	return -EOPNOTSUPP;
}
