/* VHD writer ("vpc"): fixed and dynamic disks with qemu-img's options
 * (subformat, force_size), the Azure preset, and the in-place Azure
 * conversion of a raw file.
 *
 * Fixed: the payload at its virtual offset, then the footer: every byte
 * of the source can be shared with FICLONERANGE. Dynamic: footer copy,
 * header and BAT up front, 2 MiB blocks appended in the order they are
 * first written, footer last. Each block's data starts 4 KiB-aligned (the
 * 512-byte bitmap sits just before it, the rest of the slot is a hole), so
 * a later conversion out of this file can clone whole blocks. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"
#include "util.h"
#include "vhd.h"

#define FMT            "vpc"
#define VHDW_MIB       (1ull << 20)
#define VHDW_SLOT_HEAD 4096u /* bitmap at the end of this, data after */
#define VHDW_BAT_OFF   1536u /* footer copy (512) + dynamic header (1024) */

_Static_assert(VHD_BLOCK_SIZE / VHD_SECTOR / 8 == VHD_SECTOR, "one bitmap sector per block");

/* create ----------------------------------------------------------------- */

struct vhdw_opts {
	int sub; /* 0 dynamic, 1 fixed */
	bool force, azure;
};

static int vhdw_read_opts(struct vdk_writer *w, struct vhdw_opts *o, struct vdk_err *e)
{
	static const char *const subs[] = {"dynamic", "fixed", NULL};
	bool sub_given = vdk_opts_get(w->opts, "subformat") != NULL;
	bool force_given = vdk_opts_get(w->opts, "force_size") != NULL;
	int r = vdk_opts_get_enum(w->opts, "subformat", subs, 0, &o->sub, e);
	if (!r)
		r = vdk_opts_get_bool(w->opts, "force_size", false, &o->force, e);
	if (!r)
		r = vdk_opts_get_bool(w->opts, "azure", false, &o->azure, e);
	if (r || !o->azure)
		return r;
	/* Azure takes fixed disks of whole MiB with the exact size in the
	 * footer: qemu-img's subformat=fixed,force_size. */
	if ((sub_given && o->sub != 1) || (force_given && !o->force))
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, w->sink->name, FMT, VDK_NO_OFFSET,
		                   "azure=on writes a fixed disk with force_size=on; "
		                   "drop the conflicting subformat/force_size");
	o->sub = 1;
	o->force = true;
	return 0;
}

static int vhdw_create_dynamic(struct vdk_writer *w, struct vhd_wstate *st, struct vdk_err *e)
{
	if (w->sink->flags & VDK_SINK_SEQUENTIAL)
		return vdk_err_set(e, VDK_E_USAGE, ESPIPE, w->sink->name, FMT, VDK_NO_OFFSET,
		                   "a dynamic VHD cannot be streamed; use subformat=fixed");
	st->type = VHD_TYPE_DYNAMIC;
	st->nblocks = (uint32_t)((w->size + VHD_BLOCK_SIZE - 1) / VHD_BLOCK_SIZE);
	st->bat_bytes = vdk_round_up((uint64_t)st->nblocks * 4, VHD_SECTOR);
	st->data_base = vdk_round_up(VHDW_BAT_OFF + st->bat_bytes, VHDW_SLOT_HEAD);
	st->next_slot = st->data_base;
	st->zero_new = !(w->sink->flags & VDK_SINK_ZEROED);
	if (st->nblocks && !(st->bat = malloc((size_t)st->nblocks * sizeof(*st->bat))))
		return vdk_ioerr(e, ENOMEM, w->sink->name, "out of memory");
	for (uint32_t i = 0; i < st->nblocks; i++)
		st->bat[i] = VHD_BAT_UNUSED;
	w->caps = VDK_WCAP_ZEROED;
	w->granularity = VHD_SECTOR;
	return 0;
}

int vhd_create(struct vdk_writer *w, struct vdk_err *e)
{
	struct vhd_wstate *st = w->state;
	struct vhdw_opts o;
	int r = vhdw_read_opts(w, &o, e);
	if (r)
		return r;
	uint64_t size = w->size, vsize;
	if (o.azure && size > UINT64_MAX - VHDW_MIB)
		size = UINT64_MAX; /* refused just below */
	else if (o.azure)
		size = vdk_round_up(size, VHDW_MIB);
	if (vhd_plan_size(size, o.force, &vsize, &st->c, &st->h, &st->s))
		return vdk_err_set(e, VDK_E_USAGE, EFBIG, w->sink->name, FMT, VDK_NO_OFFSET,
		                   "a disk of %llu bytes is larger than the 2040 GiB VHD limit",
		                   (unsigned long long)w->size);
	/* Rounded up (CHS, MiB): the pipeline pads the tail with zeroes. */
	w->size = vsize;
	if (o.sub == 0)
		return vhdw_create_dynamic(w, st, e);
	st->type = VHD_TYPE_FIXED;
	if (w->sink->flags & VDK_SINK_SEQUENTIAL) {
		w->caps = VDK_WCAP_SEQUENTIAL;
	} else {
		w->caps = VDK_WCAP_CLONE;
		if (w->sink->flags & VDK_SINK_ZEROED)
			w->caps |= VDK_WCAP_ZEROED;
	}
	w->granularity = 4096;
	return 0;
}

/* data ------------------------------------------------------------------- */

/* File offset of block blk's data, allocating the block when needed. */
static int vhdw_block(struct vdk_writer *w, struct vhd_wstate *st, uint64_t blk, uint64_t *data_off,
                      struct vdk_err *e)
{
	if (st->bat[blk] != VHD_BAT_UNUSED) {
		*data_off = (uint64_t)st->bat[blk] * VHD_SECTOR + VHD_SECTOR;
		return 0;
	}
	uint64_t bm = st->next_slot + VHDW_SLOT_HEAD - VHD_SECTOR;
	if (bm / VHD_SECTOR >= VHD_BAT_UNUSED)
		return vdk_err_set(e, VDK_E_USAGE, EFBIG, w->sink->name, FMT, VDK_NO_OFFSET,
		                   "dynamic VHD outgrows its 32-bit BAT");
	/* Every sector present, as qemu and Hyper-V write it: the sectors
	 * never written are still zeroes in the block. */
	uint8_t ones[VHD_SECTOR];
	memset(ones, 0xff, sizeof(ones));
	int r = vdk_sink_pwrite(w->sink, ones, sizeof(ones), bm, e);
	if (!r && st->zero_new)
		r = vdk_sink_zero(w->sink, bm + VHD_SECTOR, VHD_BLOCK_SIZE, e);
	if (r)
		return r;
	st->bat[blk] = (uint32_t)(bm / VHD_SECTOR);
	st->next_slot += VHDW_SLOT_HEAD + VHD_BLOCK_SIZE;
	*data_off = bm + VHD_SECTOR;
	return 0;
}

int vhd_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	struct vhd_wstate *st = w->state;
	if (st->type == VHD_TYPE_FIXED)
		return vdk_sink_pwrite(w->sink, buf, len, off, e);
	const uint8_t *p = buf;
	while (len) {
		uint64_t blk = off / VHD_BLOCK_SIZE, in = off % VHD_BLOCK_SIZE, at;
		size_t n = (size_t)VDK_MIN((uint64_t)len, VHD_BLOCK_SIZE - in);
		int r = vhdw_block(w, st, blk, &at, e);
		if (!r)
			r = vdk_sink_pwrite(w->sink, p, n, at + in, e);
		if (r)
			return r;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int vhd_write_zeroes(struct vdk_writer *w, uint64_t off, uint64_t len, struct vdk_err *e)
{
	struct vhd_wstate *st = w->state;
	if (st->type == VHD_TYPE_FIXED)
		return vdk_sink_zero(w->sink, off, len, e);
	while (len) {
		uint64_t blk = off / VHD_BLOCK_SIZE, in = off % VHD_BLOCK_SIZE;
		uint64_t n = VDK_MIN(len, VHD_BLOCK_SIZE - in);
		if (st->bat[blk] != VHD_BAT_UNUSED) {
			uint64_t at = (uint64_t)st->bat[blk] * VHD_SECTOR + VHD_SECTOR;
			int r = vdk_sink_zero(w->sink, at + in, n, e);
			if (r)
				return r;
		}
		off += n;
		len -= n;
	}
	return 0;
}

int vhd_clone(struct vdk_writer *w, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
              enum vdk_clone_mode mode, struct vdk_err *e)
{
	struct vhd_wstate *st = w->state;
	if (st->type != VHD_TYPE_FIXED)
		return -EOPNOTSUPP;
	return vdk_sink_clone(w->sink, off, len, src_fd, src_off, mode, e);
}

/* metadata --------------------------------------------------------------- */

static void vhdw_build_header(const struct vhd_wstate *st, uint8_t *h)
{
	memset(h, 0, VHD_DYNHDR_SIZE);
	memcpy(h + VHD_H_COOKIE, "cxsparse", 8);
	/* The spec says 0xFFFFFFFF; Microsoft's tools want all 64 bits set. */
	vdk_put_be64(h + VHD_H_DATA_OFFSET, UINT64_MAX);
	vdk_put_be64(h + VHD_H_TABLE_OFFSET, VHDW_BAT_OFF);
	vdk_put_be32(h + VHD_H_VERSION, 0x00010000);
	vdk_put_be32(h + VHD_H_MAX_ENTRIES, st->nblocks);
	vdk_put_be32(h + VHD_H_BLOCK_SIZE, VHD_BLOCK_SIZE);
	vdk_put_be32(h + VHD_H_CHECKSUM, vhd_checksum(h, VHD_DYNHDR_SIZE, VHD_H_CHECKSUM));
}

static int vhdw_finalize_dynamic(struct vdk_writer *w, struct vhd_wstate *st, const uint8_t *foot,
                                 struct vdk_err *e)
{
	uint8_t hdr[VHD_DYNHDR_SIZE];
	vhdw_build_header(st, hdr);
	uint8_t *bat = malloc(st->bat_bytes ? st->bat_bytes : 1);
	if (!bat)
		return vdk_ioerr(e, ENOMEM, w->sink->name, "out of memory");
	memset(bat, 0xff, st->bat_bytes);
	for (uint32_t i = 0; i < st->nblocks; i++)
		vdk_put_be32(bat + 4 * (uint64_t)i, st->bat[i]);
	int r = vdk_sink_pwrite(w->sink, foot, VHD_FOOTER_SIZE, 0, e);
	if (!r)
		r = vdk_sink_pwrite(w->sink, hdr, sizeof(hdr), VHD_FOOTER_SIZE, e);
	if (!r)
		r = vdk_sink_pwrite(w->sink, bat, st->bat_bytes, VHDW_BAT_OFF, e);
	if (!r)
		r = vdk_sink_pwrite(w->sink, foot, VHD_FOOTER_SIZE, st->next_slot, e);
	free(bat);
	return r;
}

int vhd_finalize(struct vdk_writer *w, struct vdk_err *e)
{
	struct vhd_wstate *st = w->state;
	uint8_t foot[VHD_FOOTER_SIZE];
	bool fixed = st->type == VHD_TYPE_FIXED;
	vhd_footer_build(foot, st->type, w->size, st->c, st->h, st->s,
	                 fixed ? VHD_NO_OFFSET : VHD_FOOTER_SIZE);
	if (!fixed)
		return vhdw_finalize_dynamic(w, st, foot, e);
	/* Streams are padded up to the footer by the sink. */
	return vdk_sink_pwrite(w->sink, foot, sizeof(foot), w->size, e);
}

void vhd_wclose(struct vdk_writer *w)
{
	struct vhd_wstate *st = w->state;
	if (st)
		free(st->bat);
}

/* In-place Azure conversion ------------------------------------------------ */

enum vhdw_tail { TAIL_RAW, TAIL_AZURE, TAIL_TORN, TAIL_OTHER_VHD };

/* What the last sector says about a file of sz bytes. */
static int vhdw_classify(int fd, uint64_t sz, enum vhdw_tail *t)
{
	*t = TAIL_RAW;
	if (sz < VHD_FOOTER_SIZE)
		return 0;
	uint8_t raw[VHD_FOOTER_SIZE];
	int r = vdk_pread_full(fd, raw, sizeof(raw), sz - VHD_FOOTER_SIZE);
	if (r)
		return r;
	struct vhd_footer f;
	if (!vhd_footer_decode(raw, &f))
		return 0;
	uint64_t payload = sz - VHD_FOOTER_SIZE;
	bool ours = f.cur_size == payload && payload % VHDW_MIB == 0;
	if (vhd_footer_csum_ok(raw))
		*t = ours && f.type == VHD_TYPE_FIXED && vhd_footer_disk_size(&f) == payload
		         ? TAIL_AZURE
		         : TAIL_OTHER_VHD;
	else if (ours)
		*t = TAIL_TORN; /* our footer, interrupted mid-write */
	return 0;
}

/* Rename without ever replacing a file; a rerun after a crash between
 * link and unlink finds both names on one inode and finishes. */
static int vhdw_rename(const char *from, const char *to, struct vdk_err *e)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return vdk_fsync_dir_of(to);
	int err = errno;
	if (err == EINVAL || err == ENOSYS || err == ENOTSUP) {
		err = link(from, to) == 0 ? 0 : errno;
		if (!err && unlink(from) != 0)
			err = errno;
		if (!err)
			return vdk_fsync_dir_of(to);
	}
	struct stat a, b;
	if (err == EEXIST && stat(from, &a) == 0 && stat(to, &b) == 0 && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino) {
		if (unlink(from) != 0)
			return vdk_ioerr(e, errno, from, "cannot remove the old name: %s",
			                 strerror(errno));
		return vdk_fsync_dir_of(to);
	}
	if (err == EEXIST)
		return vdk_err_set(e, VDK_E_USAGE, EEXIST, to, FMT, VDK_NO_OFFSET,
		                   "already exists; not replaced (the converted disk is still "
		                   "named %s)",
		                   from);
	return vdk_ioerr(e, err, to, "cannot rename %s: %s", from, strerror(err));
}

/* Grow to whole MiB (durably), then write and sync the footer. */
static int vhdw_append_footer(int fd, const char *path, uint64_t sz, struct vdk_err *e)
{
	uint64_t size = vdk_round_up(sz, VHDW_MIB), vsize;
	uint16_t c;
	uint8_t h, s;
	if (sz > UINT64_MAX - VHDW_MIB || vhd_plan_size(size, true, &vsize, &c, &h, &s))
		return vdk_err_set(e, VDK_E_USAGE, EFBIG, path, FMT, VDK_NO_OFFSET,
		                   "%llu bytes is larger than the 2040 GiB VHD limit",
		                   (unsigned long long)sz);
	if (size != sz && (ftruncate(fd, (off_t)size) != 0 || fsync(fd) != 0))
		return vdk_ioerr(e, errno, path, "cannot grow to %llu bytes: %s",
		                 (unsigned long long)size, strerror(errno));
	uint8_t foot[VHD_FOOTER_SIZE];
	vhd_footer_build(foot, VHD_TYPE_FIXED, size, c, h, s, VHD_NO_OFFSET);
	int r = vdk_pwrite_full(fd, foot, sizeof(foot), size);
	if (!r && fsync(fd) != 0)
		r = -errno;
	if (r)
		return vdk_ioerr(e, -r, path, "cannot write the VHD footer: %s", strerror(-r));
	return 0;
}

static int vhdw_inplace_fd(int fd, const char *path, struct vdk_err *e)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return vdk_ioerr(e, errno, path, "%s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, path, FMT, VDK_NO_OFFSET,
		                   "in-place conversion needs a regular file");
	uint64_t sz = (uint64_t)st.st_size;
	if (sz == 0)
		return vdk_bad(e, path, "raw", VDK_NO_OFFSET, "empty file: nothing to convert");
	enum vhdw_tail t;
	int r = vhdw_classify(fd, sz, &t);
	if (r)
		return vdk_ioerr(e, -r, path, "cannot read: %s", strerror(-r));
	switch (t) {
	case TAIL_AZURE:
		return fsync(fd) ? vdk_ioerr(e, errno, path, "fsync: %s", strerror(errno)) : 1;
	case TAIL_OTHER_VHD:
		return vdk_bad(e, path, "raw", sz - VHD_FOOTER_SIZE,
		               "already ends with a VHD footer: this is a VHD, not a raw disk");
	case TAIL_TORN:
		sz -= VHD_FOOTER_SIZE;
		break;
	case TAIL_RAW:
		break;
	}
	return vhdw_append_footer(fd, path, sz, e);
}

int vhd_inplace_azure(const char *path, const char *final_path, struct vdk_err *e)
{
	bool rename_it = final_path && strcmp(final_path, path) != 0;
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT && rename_it) {
		/* A finished earlier run: the disk already has its new name. */
		int fd2 = open(final_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		struct stat st;
		enum vhdw_tail t = TAIL_RAW;
		if (fd2 >= 0 && fstat(fd2, &st) == 0 && S_ISREG(st.st_mode))
			vhdw_classify(fd2, (uint64_t)st.st_size, &t);
		if (fd2 >= 0)
			close(fd2);
		if (t == TAIL_AZURE)
			return 1;
		errno = ENOENT;
	}
	if (fd < 0)
		return vdk_ioerr(e, errno, path, "cannot open: %s", strerror(errno));
	/* Leave alone a file that someone else is converting. */
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int err = errno;
		close(fd);
		return err == EWOULDBLOCK
		           ? vdk_ioerr(e, EBUSY, path, "locked by another process; left alone")
		           : vdk_ioerr(e, err, path, "cannot lock: %s", strerror(err));
	}
	int r = vhdw_inplace_fd(fd, path, e);
	if (r >= 0 && rename_it) {
		int rr = vhdw_rename(path, final_path, e);
		if (rr < 0 && e->cls == VDK_E_NONE)
			rr = vdk_ioerr(e, -rr, final_path, "cannot sync its folder: %s",
			               strerror(-rr));
		if (rr < 0)
			r = rr;
	}
	close(fd); /* drops the lock only once the name is final */
	return r;
}

/* The in-place entry of the format table: only the Azure layout can be
 * made by appending a footer (a dynamic VHD would need the data moved). */
int vhd_in_place(const char *path, const char *new_name, struct vdk_opts *o, struct vdk_err *e)
{
	bool azure = false;
	int r = vdk_opts_get_bool(o, "azure", false, &azure, e);
	if (!r)
		r = vdk_opts_check_unused(o, "vpc", e);
	if (r)
		return r;
	if (!azure)
		return vdk_err_set(e, VDK_E_USAGE, ENOTSUP, path, "vpc", VDK_NO_OFFSET,
		                   "in place, only -o azure=on (a fixed VHD with a footer "
		                   "appended) can be made");
	return vhd_inplace_azure(path, new_name, e);
}
