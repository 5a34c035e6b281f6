/* The VMDK updater (convert/update.h): guest data written into an existing
 * VMDK, the parent of a commit. Flat extents (monolithicFlat, vmfs,
 * twoGbMaxExtentFlat) take the data in place. Hosted sparse extents
 * (monolithicSparse, twoGbMaxExtentSparse) write a present grain in place
 * and put a new one at the end of its extent file.
 *
 * Crash order for a new grain (the update contract): the grain's data is
 * durable before the grain-table entry that names it; a new grain table
 * is durable before the grain-directory entries (primary and redundant)
 * that name it. Killed in between, the extent holds an orphan grain or
 * table at worst, never an entry pointing at garbage.
 *
 * The first change writes a new CID into the descriptor, as VMware and
 * qemu do when a disk's content changes (qemu: vmdk_write_cid on the first
 * write after open), and makes it durable before any data moves: a child
 * made from the old content no longer matches its parent. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "update.h"
#include "util.h"
#include "vmdk.h"

/* A crash loses at most this much allocated-but-unreferenced data. */
#define VMDK_UPD_PENDING_MAX (64u << 20)

static int vmdk_upd_refuse_ext(const char *path, const struct vmdk_ext *x, size_t i,
                               struct vdk_err *e)
{
	const char *f = x->file ? x->file : path;
	if (x->kind == VMDK_EK_SESPARSE || x->kind == VMDK_EK_VMFSSPARSE)
		return vdk_unsup(e, f, "vmdk", VDK_NO_OFFSET,
		                 "extent %zu is %s (an ESXi snapshot format vdkit only reads): "
		                 "it cannot be committed into",
		                 i + 1, vmdk_ext_kind_name(x->kind));
	if (x->zero)
		return vdk_unsup(e, f, "vmdk", VDK_NO_OFFSET,
		                 "extent %zu is a ZERO extent: it has no file to hold data", i + 1);
	if (!x->flat && (x->sp.compressed || x->sp.markers || x->sp.footer))
		return vdk_unsup(e, f, "vmdk", VDK_NO_OFFSET,
		                 "streamOptimized: its grains are deflated and laid end to end in "
		                 "a stream, so a grain cannot be rewritten in place; convert it to "
		                 "monolithicSparse first");
	if (!x->flat && x->kind != VMDK_EK_SPARSE)
		return vdk_unsup(e, f, "vmdk", VDK_NO_OFFSET, "extent %zu (%s) cannot be updated",
		                 i + 1, vmdk_ext_kind_name(x->kind));
	return 0;
}

/* The extent file again, read-write: the reader opened it under the
 * related-file rules (inside the image's folder); the same inode is
 * reopened, anything swapped in meanwhile is refused. */
static int vmdk_upd_reopen(const struct vmdk_ext *x, struct vmdk_upd_ext *ux, struct vdk_err *e)
{
	int fd = open(x->src->name, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd < 0)
		return vdk_ioerr(e, errno, x->src->name, "cannot open the extent for update: %s",
		                 strerror(errno));
	if (fstat(fd, &st) || st.st_dev != x->src->dev || st.st_ino != x->src->ino ||
	    !S_ISREG(st.st_mode)) {
		close(fd);
		return vdk_bad(e, x->src->name, "vmdk", VDK_NO_OFFSET,
		               "the extent file changed while it was opened: refused");
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int err = errno;
		close(fd);
		return vdk_ioerr(e, err, x->src->name,
		                 "another process is updating this extent (%s)", strerror(err));
	}
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	ux->fd = fd;
	ux->own_fd = true;
	return 0;
}

/* The redundant directory's tables get every entry the primary ones get
 * (VMware keeps both; qemu updates both). Entries that point outside the
 * file are dropped: that table is simply not kept up to date. */
static int vmdk_upd_load_rgd(const struct vmdk_ext *x, struct vmdk_upd_ext *ux, uint64_t fsize,
                             struct vdk_err *e)
{
	const struct vmdk_sparse *sp = &x->sp;
	uint64_t gdb = sp->gd_n * 4, gtb = (uint64_t)sp->gtes * 4;
	if (!sp->rgd_off || !sp->gd_n || !vdk_range_ok(sp->rgd_off, gdb, fsize))
		return 0;
	uint8_t *raw = malloc(gdb);
	ux->rgd = calloc(sp->gd_n, sizeof(*ux->rgd));
	if (!raw || !ux->rgd) {
		free(raw);
		return vdk_nomem(e, ux->name, "vmdk", "the redundant grain directory");
	}
	if (pread(ux->fd, raw, gdb, (off_t)sp->rgd_off) != (ssize_t)gdb) {
		free(raw);
		return vdk_ioerr(e, errno ? errno : EIO, ux->name,
		                 "cannot read the redundant grain directory");
	}
	for (uint64_t i = 0; i < sp->gd_n; i++) {
		uint32_t v = vdk_le32(raw + 4 * i);
		bool ok =
		    v && vdk_range_ok((uint64_t)v * VMDK_SECTOR, gtb, fsize) && v != sp->gd[i];
		ux->rgd[i] = ok ? v : 0;
	}
	free(raw);
	return 0;
}

static int vmdk_upd_ext_open(struct vdk_update *u, size_t i, struct vdk_err *e)
{
	struct vmdk_upd *s = u->state;
	const struct vmdk_state *st = s->img->state;
	const struct vmdk_ext *x = &st->ext[i];
	struct vmdk_upd_ext *ux = &s->x[i];
	ux->fd = -1;
	int r = vmdk_upd_refuse_ext(u->path, x, i, e);
	if (r)
		return r;
	ux->name = x->src->name;
	if (x->src == s->img->src)
		ux->fd = u->fd;
	else if ((r = vmdk_upd_reopen(x, ux, e)))
		return r;
	struct stat sb;
	if (fstat(ux->fd, &sb))
		return vdk_ioerr(e, errno, ux->name, "stat failed: %s", strerror(errno));
	ux->end = vdk_round_up((uint64_t)sb.st_size, VMDK_SECTOR);
	if (x->flat)
		return 0;
	if (!(ux->dirty = calloc(VDK_MAX(x->sp.gd_n, 1), 1)))
		return vdk_nomem(e, ux->name, "vmdk", "the table of changed grain tables");
	return vmdk_upd_load_rgd(x, ux, (uint64_t)sb.st_size, e);
}

int vmdk_update_open(struct vdk_update *u, struct vdk_err *e)
{
	struct vmdk_upd *s = u->state;
	s->opts.access = *u->access;
	int r = vdk_image_open_path(u->path, "vmdk", &s->opts, &s->img, e);
	if (r)
		return r;
	struct stat sb;
	if (fstat(u->fd, &sb) || sb.st_dev != s->img->src->dev || sb.st_ino != s->img->src->ino)
		return vdk_bad(e, u->path, "vmdk", VDK_NO_OFFSET,
		               "the file changed while it was opened: refused");
	const struct vmdk_state *st = s->img->state;
	if (st->create_type && !strcasecmp(st->create_type, "streamOptimized"))
		return vdk_unsup(
		    e, u->path, "vmdk", VDK_NO_OFFSET,
		    "streamOptimized: its grains are deflated and laid end to end in a "
		    "stream, so a grain cannot be rewritten in place; convert it to "
		    "monolithicSparse first");
	if (!(s->x = calloc(st->n_ext, sizeof(*s->x))))
		return vdk_nomem(e, u->path, "vmdk", "the update state");
	uint32_t grain = 0;
	for (size_t i = 0; i < st->n_ext; i++) {
		s->n = i + 1;
		if ((r = vmdk_upd_ext_open(u, i, e)))
			return r;
		if (!st->ext[i].flat)
			grain = VDK_MAX(grain, st->ext[i].sp.grain);
	}
	if (grain && !(s->gbuf = malloc(grain)))
		return vdk_nomem(e, u->path, "vmdk", "a grain buffer");
	u->size = s->img->size;
	u->granularity = grain ? grain : VMDK_SECTOR;
	return 0;
}

/* Bytes into one of the extent files, counted as update.h wants. */
static int vmdk_upd_pw(struct vdk_update *u, struct vmdk_upd_ext *ux, const void *buf, size_t len,
                       uint64_t off, bool meta, struct vdk_err *e)
{
	int r;
	if (ux->fd == u->fd)
		r = vdk_update_pwrite(u, buf, len, off, meta, e);
	else if (vdk_pwrite_full(ux->fd, buf, len, off))
		r = vdk_ioerr(e, errno, ux->name,
		              "write of %zu bytes at offset %" PRIu64 " failed: %s", len, off,
		              strerror(errno));
	else {
		r = 0;
		if (meta)
			u->st.meta_bytes += len;
		else
			u->st.data_bytes += len;
	}
	if (!r && off + len > ux->end)
		ux->end = vdk_round_up(off + len, VMDK_SECTOR);
	if (!r && !meta)
		ux->data_dirty = true;
	return r;
}

static int vmdk_upd_sync(struct vdk_update *u, struct vmdk_upd_ext *ux, struct vdk_err *e)
{
	if (ux->fd == u->fd)
		return vdk_update_sync(u, e);
	u->st.syncs++;
	if (fdatasync(ux->fd))
		return vdk_ioerr(e, errno, ux->name, "fdatasync failed: %s", strerror(errno));
	return 0;
}

/* A new CID of as many hex digits as the old one, written over it in
 * place (one small write: a kill leaves the old or the new value). */
static int vmdk_upd_cid(struct vdk_update *u, struct vdk_err *e)
{
	struct vmdk_upd *s = u->state;
	if (s->cid_done)
		return 0;
	struct vmdk_dloc d;
	int r = vmdk_dloc_read(u->fd, u->path, &d, e);
	size_t off, len;
	if (r || vmdk_dloc_value(&d, "CID", &off, &len) || len == 0 || len > 8) {
		vmdk_dloc_free(&d);
		s->cid_done = !r; /* no CID of the usual shape: nothing a child could match */
		return r;
	}
	char old[9] = {0}, hex[10];
	memcpy(old, d.text + off, len);
	uint32_t cid = vmdk_cid_like((uint32_t)strtoul(old, NULL, 16), len);
	snprintf(hex, sizeof(hex), "%0*" PRIx32, (int)len, cid);
	r = vdk_update_pwrite(u, hex, len, d.off + off, true, e);
	if (!r)
		r = vdk_update_sync(u, e);
	vmdk_dloc_free(&d);
	s->cid_done = !r;
	return r;
}

static void vmdk_upd_set_gte(struct vmdk_sparse *sp, struct vmdk_upd_ext *ux, uint64_t g,
                             uint32_t v)
{
	uint64_t gdi = g / sp->gtes;
	sp->gt[gdi][g % sp->gtes] = v;
	ux->dirty[gdi] = 1;
}

static int vmdk_upd_table(struct vmdk_sparse *sp, uint64_t gdi, struct vdk_err *e, const char *name)
{
	if (sp->gt[gdi])
		return 0;
	if (!(sp->gt[gdi] = calloc(sp->gtes, sizeof(uint32_t))))
		return vdk_nomem(e, name, "vmdk", "a grain table");
	return 0;
}

/* A grain not yet in this extent: the whole grain goes at the end of the
 * file, what the write does not cover taken from what the disk read there
 * before (the parent's data, or zeroes). data NULL: zeroes. */
static int vmdk_upd_alloc(struct vdk_update *u, size_t i, uint64_t rel, const void *data,
                          uint64_t n, struct vdk_err *e)
{
	struct vmdk_upd *s = u->state;
	struct vmdk_state *st = s->img->state;
	struct vmdk_ext *x = &st->ext[i];
	struct vmdk_sparse *sp = &x->sp;
	struct vmdk_upd_ext *ux = &s->x[i];
	uint64_t g = rel / sp->grain, gstart = g * sp->grain, in = rel - gstart;
	uint64_t have = VDK_MIN((uint64_t)sp->grain, x->len - gstart);
	int r = vmdk_upd_table(sp, g / sp->gtes, e, ux->name);
	if (r)
		return r;
	memset(s->gbuf, 0, sp->grain);
	if ((in || n < have) &&
	    (r = vdk_image_pread(s->img, s->gbuf, (size_t)have, x->start + gstart, e)))
		return r;
	if (data)
		memcpy(s->gbuf + in, data, (size_t)n);
	else
		memset(s->gbuf + in, 0, (size_t)n);
	uint64_t at = ux->end;
	if (at / VMDK_SECTOR > UINT32_MAX - sp->grain / VMDK_SECTOR)
		return vdk_unsup(e, ux->name, "vmdk", at,
		                 "the extent file is full (grain offsets are 32-bit sectors)");
	if ((r = vmdk_upd_pw(u, ux, s->gbuf, sp->grain, at, false, e)))
		return r;
	vmdk_upd_set_gte(sp, ux, g, (uint32_t)(at / VMDK_SECTOR));
	s->pending += sp->grain;
	return 0;
}

/* [rel, rel+n) inside one grain of sparse extent i. data NULL: zeroes. */
static int vmdk_upd_grain(struct vdk_update *u, size_t i, uint64_t rel, const void *data,
                          uint64_t n, struct vdk_err *e)
{
	struct vmdk_upd *s = u->state;
	struct vmdk_state *st = s->img->state;
	struct vmdk_sparse *sp = &st->ext[i].sp;
	if (rel >= sp->capacity)
		return vdk_bad(e, s->x[i].name, "vmdk", VDK_NO_OFFSET,
		               "the descriptor gives this extent more sectors than its header's "
		               "capacity: no grain can hold offset %" PRIu64,
		               rel);
	uint32_t gte = vmdk_sparse_gte(sp, rel);
	if (gte > VMDK_GTE_ZEROED) {
		static const uint8_t zero[4096];
		uint64_t at = (uint64_t)gte * VMDK_SECTOR + rel % sp->grain;
		for (uint64_t k = 0; !data && k < n; k += sizeof(zero)) {
			int r = vmdk_upd_pw(u, &s->x[i], zero, (size_t)VDK_MIN(n - k, sizeof(zero)),
			                    at + k, false, e);
			if (r)
				return r;
		}
		return data ? vmdk_upd_pw(u, &s->x[i], data, (size_t)n, at, false, e) : 0;
	}
	if (!data && (gte == VMDK_GTE_ZEROED || !s->img->backing))
		return 0; /* already reads as zeroes */
	if (!data && sp->zero_grain && rel % sp->grain == 0 && n == sp->grain) {
		int r = vmdk_upd_table(sp, rel / sp->grain / sp->gtes, e, s->x[i].name);
		if (!r)
			vmdk_upd_set_gte(sp, &s->x[i], rel / sp->grain, VMDK_GTE_ZEROED);
		return r;
	}
	return vmdk_upd_alloc(u, i, rel, data, n, e);
}

static int vmdk_upd_flat(struct vdk_update *u, size_t i, uint64_t rel, const void *data, uint64_t n,
                         struct vdk_err *e)
{
	struct vmdk_upd *s = u->state;
	const struct vmdk_ext *x = &((struct vmdk_state *)s->img->state)->ext[i];
	uint64_t at = x->flat_off + rel;
	if (data)
		return vmdk_upd_pw(u, &s->x[i], data, (size_t)n, at, false, e);
	if (fallocate(s->x[i].fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)at,
	              (off_t)n) == 0) {
		s->x[i].data_dirty = true;
		return 0;
	}
	static const uint8_t zero[65536];
	for (uint64_t k = 0; k < n; k += sizeof(zero)) {
		int r = vmdk_upd_pw(u, &s->x[i], zero, (size_t)VDK_MIN(n - k, sizeof(zero)), at + k,
		                    false, e);
		if (r)
			return r;
	}
	return 0;
}

static int vmdk_upd_range(struct vdk_update *u, const uint8_t *data, uint64_t len, uint64_t off,
                          struct vdk_err *e)
{
	struct vmdk_upd *s = u->state;
	const struct vmdk_state *st = s->img->state;
	int r = vmdk_upd_cid(u, e);
	size_t i = vmdk_find(st, off);
	while (!r && len) {
		const struct vmdk_ext *x = &st->ext[i];
		if (off >= x->start + x->len) {
			i++;
			continue;
		}
		uint64_t rel = off - x->start, n = VDK_MIN(len, x->start + x->len - off);
		if (!x->flat)
			n = VDK_MIN(n, x->sp.grain - rel % x->sp.grain);
		r = x->flat ? vmdk_upd_flat(u, i, rel, data, n, e)
		            : vmdk_upd_grain(u, i, rel, data, n, e);
		off += n;
		len -= n;
		if (data)
			data += n;
	}
	if (!r && s->pending >= VMDK_UPD_PENDING_MAX)
		r = vmdk_update_flush(u, e);
	return r;
}

int vmdk_update_write(struct vdk_update *u, const void *buf, size_t len, uint64_t off,
                      struct vdk_err *e)
{
	return vmdk_upd_range(u, buf, len, off, e);
}

int vmdk_update_zero(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e)
{
	return vmdk_upd_range(u, NULL, len, off, e);
}

/* One grain table as the file stores it (le32), at sector sec. */
static int vmdk_upd_put_table(struct vdk_update *u, struct vmdk_upd_ext *ux,
                              const struct vmdk_sparse *sp, uint64_t gdi, uint64_t sec,
                              uint8_t *buf, struct vdk_err *e)
{
	size_t gtb = (size_t)sp->gtes * 4;
	memset(buf, 0, vdk_round_up(gtb, VMDK_SECTOR));
	for (uint32_t j = 0; sp->gt[gdi] && j < sp->gtes; j++)
		vdk_put_le32(buf + 4 * j, sp->gt[gdi][j]);
	return vmdk_upd_pw(u, ux, buf, gtb, sec * VMDK_SECTOR, true, e);
}

/* Tables the directory does not have yet: written (with their redundant
 * copies) at the end of the file, durable, then named in the GD and RGD. */
static int vmdk_upd_new_tables(struct vdk_update *u, struct vmdk_ext *x, struct vmdk_upd_ext *ux,
                               uint8_t *buf, struct vdk_err *e)
{
	struct vmdk_sparse *sp = &x->sp;
	uint64_t gts = vdk_round_up((uint64_t)sp->gtes * 4, VMDK_SECTOR) / VMDK_SECTOR;
	int r = 0;
	for (uint64_t gdi = 0; !r && gdi < sp->gd_n; gdi++) {
		if (!ux->dirty[gdi] || sp->gd[gdi])
			continue;
		uint64_t sec = ux->end / VMDK_SECTOR;
		if (sec > UINT32_MAX - 2 * gts)
			return vdk_unsup(
			    e, ux->name, "vmdk", ux->end,
			    "the extent file is full (table offsets are 32-bit sectors)");
		r = vmdk_upd_put_table(u, ux, sp, gdi, sec, buf, e);
		if (!r && ux->rgd)
			r = vmdk_upd_put_table(u, ux, sp, gdi, sec + gts, buf, e);
		if (!r)
			r = vmdk_upd_sync(u, ux, e);
		uint8_t le[4];
		vdk_put_le32(le, (uint32_t)sec);
		if (!r)
			r = vmdk_upd_pw(u, ux, le, 4, sp->gd_off + 4 * gdi, true, e);
		vdk_put_le32(le, (uint32_t)(sec + gts));
		if (!r && ux->rgd) {
			r = vmdk_upd_pw(u, ux, le, 4, sp->rgd_off + 4 * gdi, true, e);
			ux->rgd[gdi] = (uint32_t)(sec + gts);
		}
		if (!r) {
			sp->gd[gdi] = (uint32_t)sec;
			ux->dirty[gdi] = 0;
		}
	}
	return r;
}

static int vmdk_upd_flush_ext(struct vdk_update *u, size_t i, uint8_t *buf, struct vdk_err *e)
{
	struct vmdk_upd *s = u->state;
	struct vmdk_ext *x = &((struct vmdk_state *)s->img->state)->ext[i];
	struct vmdk_upd_ext *ux = &s->x[i];
	int r = 0;
	if (ux->data_dirty && !(r = vmdk_upd_sync(u, ux, e)))
		ux->data_dirty = false;
	if (r || x->flat)
		return r;
	if ((r = vmdk_upd_new_tables(u, x, ux, buf, e)))
		return r;
	bool meta = false;
	for (uint64_t gdi = 0; !r && gdi < x->sp.gd_n; gdi++) {
		if (!ux->dirty[gdi])
			continue;
		r = vmdk_upd_put_table(u, ux, &x->sp, gdi, x->sp.gd[gdi], buf, e);
		if (!r && ux->rgd && ux->rgd[gdi])
			r = vmdk_upd_put_table(u, ux, &x->sp, gdi, ux->rgd[gdi], buf, e);
		ux->dirty[gdi] = 0;
		meta = true;
	}
	return r || !meta ? r : vmdk_upd_sync(u, ux, e);
}

int vmdk_update_flush(struct vdk_update *u, struct vdk_err *e)
{
	struct vmdk_upd *s = u->state;
	const struct vmdk_state *st = s->img->state;
	size_t gtmax = VMDK_SECTOR;
	for (size_t i = 0; i < st->n_ext; i++)
		if (!st->ext[i].flat)
			gtmax = VDK_MAX(
			    gtmax, vdk_round_up((uint64_t)st->ext[i].sp.gtes * 4, VMDK_SECTOR));
	uint8_t *buf = malloc(gtmax);
	if (!buf)
		return vdk_nomem(e, u->path, "vmdk", "a grain table buffer");
	int r = 0;
	for (size_t i = 0; !r && i < s->n; i++)
		r = vmdk_upd_flush_ext(u, i, buf, e);
	free(buf);
	if (!r)
		s->pending = 0;
	return r;
}

void vmdk_update_close(struct vdk_update *u)
{
	struct vmdk_upd *s = u->state;
	for (size_t i = 0; i < s->n; i++) {
		if (s->x[i].own_fd)
			close(s->x[i].fd);
		free(s->x[i].rgd);
		free(s->x[i].dirty);
	}
	free(s->x);
	free(s->gbuf);
	vdk_image_close(s->img);
	memset(s, 0, sizeof(*s));
}
