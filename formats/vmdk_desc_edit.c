/* Editing a VMDK descriptor where it lives: a text file of its own, or the
 * text embedded in a hosted sparse extent's reserved sectors (spec 5.0,
 * "The Descriptor File" and "Hosted Sparse Extent Header": descriptorOffset
 * and descriptorSize). Used by the updater (a new CID when the content
 * changes, as VMware and qemu do) and by rebase -u (parentFileNameHint).
 *
 * Edits are textual: only the lines named change, so everything a producer
 * wrote (comments, ddb keys, their order) stays as it was. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "util.h"
#include "vmdk.h"

static int vmdk_edit_read(int fd, const char *name, uint64_t off, uint64_t len, char **out,
                          struct vdk_err *e)
{
	char *t = malloc(len + 1);
	if (!t)
		return vdk_nomem(e, name, "vmdk", "the descriptor");
	ssize_t got = pread(fd, t, len, (off_t)off);
	if (got < 0 || (uint64_t)got != len) {
		free(t);
		return vdk_err_set(e, VDK_E_IO, got < 0 ? errno : EIO, name, "vmdk", off,
		                   "cannot read the descriptor");
	}
	t[len] = 0;
	t[strlen(t)] = 0; /* embedded text ends at the first NUL of its padding */
	*out = t;
	return 0;
}

int vmdk_dloc_read(int fd, const char *name, struct vmdk_dloc *d, struct vdk_err *e)
{
	memset(d, 0, sizeof(*d));
	struct stat st;
	uint8_t h[VMDK_SECTOR] = {0};
	if (fstat(fd, &st))
		return vdk_ioerr(e, errno, name, "stat failed: %s", strerror(errno));
	uint64_t size = (uint64_t)st.st_size;
	if (size >= 4 && pread(fd, h, sizeof(h), 0) < 4)
		return vdk_ioerr(e, errno, name, "cannot read the header");
	if (vdk_le32(h) == VMDK_MAGIC_COWD || vmdk_se_magic(h, sizeof(h)))
		return vdk_unsup(e, name, "vmdk", 0,
		                 "a vmfsSparse or seSparse extent holds no descriptor: edit the "
		                 "descriptor file that names it");
	if (vdk_le32(h) == VMDK_MAGIC_KDMV) {
		uint64_t so = vdk_le64(h + VMDK_H_DESC_OFF), sn = vdk_le64(h + VMDK_H_DESC_SIZE);
		if (so == 0 || sn == 0)
			return vdk_unsup(e, name, "vmdk", VMDK_H_DESC_OFF,
			                 "this sparse extent has no embedded descriptor");
		if (so > size / VMDK_SECTOR || sn > VMDK_DESC_MAX / VMDK_SECTOR ||
		    !vdk_range_ok(so * VMDK_SECTOR, sn * VMDK_SECTOR, size))
			return vdk_bad(e, name, "vmdk", VMDK_H_DESC_OFF,
			               "embedded descriptor lies outside the file");
		d->embedded = true;
		d->off = so * VMDK_SECTOR;
		d->cap = sn * VMDK_SECTOR;
	} else {
		if (size > VMDK_DESC_MAX)
			return vdk_bad(e, name, "vmdk", 0, "descriptor larger than %u bytes",
			               VMDK_DESC_MAX);
		d->cap = VMDK_DESC_MAX;
		d->mode = st.st_mode & 07777;
	}
	int r = vmdk_edit_read(fd, name, d->off, d->embedded ? d->cap : size, &d->text, e);
	if (r == 0)
		d->len = strlen(d->text);
	return r;
}

void vmdk_dloc_free(struct vmdk_dloc *d)
{
	free(d->text);
	d->text = NULL;
}

/* The line "key = value" (key matched case-insensitively at a line start,
 * not inside a longer key): start of the line, start and end of the value
 * without quotes, end of the line (after its newline). false: no such line. */
static bool vmdk_edit_find(const char *t, const char *key, size_t *ls, size_t *vs, size_t *ve,
                           size_t *le)
{
	size_t kn = strlen(key);
	for (const char *l = t; *l;) {
		const char *nl = strchr(l, '\n');
		const char *end = nl ? nl + 1 : l + strlen(l);
		const char *p = l;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!strncasecmp(p, key, kn) && (p[kn] == '=' || p[kn] == ' ' || p[kn] == '\t')) {
			const char *v = p + kn;
			while (*v == ' ' || *v == '\t')
				v++;
			if (*v == '=') {
				v++;
				while (*v == ' ' || *v == '\t')
					v++;
				const char *x = v;
				while (x < end && *x != '\n' && *x != '\r')
					x++;
				while (x > v && (x[-1] == ' ' || x[-1] == '\t'))
					x--;
				if (x - v >= 2 && *v == '"' && x[-1] == '"') {
					v++;
					x--;
				}
				*ls = (size_t)(l - t);
				*vs = (size_t)(v - t);
				*ve = (size_t)(x - t);
				*le = (size_t)(end - t);
				return true;
			}
		}
		l = end;
	}
	return false;
}

/* Replace [a, b) of d->text by rep. */
static int vmdk_edit_splice(struct vmdk_dloc *d, size_t a, size_t b, const char *rep)
{
	size_t rn = strlen(rep), n = d->len - (b - a) + rn;
	char *t = malloc(n + 1);
	if (!t)
		return -ENOMEM;
	memcpy(t, d->text, a);
	memcpy(t + a, rep, rn);
	memcpy(t + a + rn, d->text + b, d->len - b + 1);
	free(d->text);
	d->text = t;
	d->len = n;
	return 0;
}

int vmdk_dloc_set(struct vmdk_dloc *d, const char *key, const char *val, bool quote,
                  const char *after)
{
	size_t ls, vs, ve, le;
	if (vmdk_edit_find(d->text, key, &ls, &vs, &ve, &le)) {
		if (!val)
			return vmdk_edit_splice(d, ls, le, "");
		if (quote && (vs == 0 || d->text[vs - 1] != '"')) {
			char *q = malloc(strlen(val) + 3);
			if (!q)
				return -ENOMEM;
			sprintf(q, "\"%s\"", val);
			int r = vmdk_edit_splice(d, vs, ve, q);
			free(q);
			return r;
		}
		return vmdk_edit_splice(d, vs, ve, val);
	}
	if (!val)
		return 0;
	/* A new line goes after the line of key `after` (or at the top). */
	size_t at = 0;
	if (after && vmdk_edit_find(d->text, after, &ls, &vs, &ve, &le))
		at = le;
	char *line = malloc(strlen(key) + strlen(val) + 6);
	if (!line)
		return -ENOMEM;
	sprintf(line, quote ? "%s=\"%s\"\n" : "%s=%s\n", key, val);
	int r = vmdk_edit_splice(d, at, at, line);
	free(line);
	return r;
}

int vmdk_dloc_value(const struct vmdk_dloc *d, const char *key, size_t *off, size_t *len)
{
	size_t ls, vs, ve, le;
	if (!vmdk_edit_find(d->text, key, &ls, &vs, &ve, &le))
		return -ENOENT;
	*off = vs;
	*len = ve - vs;
	return 0;
}

/* A separate descriptor file is replaced whole: a temporary file in the
 * same folder, fsync, rename, fsync of the folder. A reader sees the old
 * or the new descriptor, never a mix. */
static int vmdk_dloc_replace(const char *path, const struct vmdk_dloc *d, struct vdk_err *e)
{
	size_t pn = strlen(path);
	char *tmp = malloc(pn + 16);
	if (!tmp)
		return vdk_nomem(e, path, "vmdk", "a file name");
	memcpy(tmp, path, pn);
	memcpy(tmp + pn, ".vdkit-XXXXXX", 14);
	int fd = mkstemp(tmp);
	if (fd < 0) {
		int err = errno;
		free(tmp);
		return vdk_ioerr(e, err, path, "cannot create a temporary descriptor: %s",
		                 strerror(err));
	}
	int r = 0;
	if (fchmod(fd, d->mode) || vdk_pwrite_full(fd, d->text, d->len, 0) || fsync(fd))
		r = vdk_ioerr(e, errno, tmp, "writing the new descriptor failed: %s",
		              strerror(errno));
	close(fd);
	if (!r && rename(tmp, path))
		r = vdk_ioerr(e, errno, path, "cannot replace the descriptor: %s", strerror(errno));
	if (r)
		unlink(tmp);
	free(tmp);
	if (!r)
		vdk_fsync_dir_of(path);
	return r;
}

int vmdk_dloc_write(int fd, const char *path, const struct vmdk_dloc *d, struct vdk_err *e)
{
	if (!d->embedded)
		return vmdk_dloc_replace(path, d, e);
	if (d->len >= d->cap)
		return vdk_bad(e, path, "vmdk", d->off,
		               "the new descriptor (%zu bytes) does not fit in the %" PRIu64
		               " bytes reserved for it in the sparse extent: refused, nothing "
		               "changed",
		               d->len, d->cap);
	/* One write of the whole reserved area, the rest NUL as producers pad
	 * it: a process killed around it leaves the old or the new text. */
	char *buf = calloc(1, d->cap);
	if (!buf)
		return vdk_nomem(e, path, "vmdk", "the descriptor");
	memcpy(buf, d->text, d->len);
	int r = 0;
	if (vdk_pwrite_full(fd, buf, d->cap, d->off) || fdatasync(fd))
		r = vdk_ioerr(e, errno, path, "writing the descriptor failed: %s", strerror(errno));
	free(buf);
	return r;
}

/* A random CID of exactly n hex digits (1..8) other than old, so that the
 * new value overwrites the old one byte for byte; never ffffffff, which a
 * child's parentCID uses for "no parent". */
uint32_t vmdk_cid_like(uint32_t old, size_t n)
{
	uint32_t lo = n <= 1 ? 1 : 1u << (4 * (n - 1));
	uint64_t span = (n >= 8 ? (1ull << 32) : (1ull << (4 * n))) - lo;
	for (;;) {
		uint32_t v = 0;
		if (getrandom(&v, sizeof(v), 0) != sizeof(v))
			v = (uint32_t)time(NULL) ^ (uint32_t)getpid() ^ old;
		v = (uint32_t)(lo + v % span);
		if (v != old && v != UINT32_MAX)
			return v;
	}
}

/* The CID of the new parent, when it can be opened now (relative to the
 * child's folder, as the reader will open it): the child's parentCID then
 * names it, so the chain opens over the parent the user named. A parent
 * not there yet (qemu-img rebase -u allows it) keeps the old parentCID. */
static bool vmdk_rebase_parent_cid(const char *path, const char *backing, uint32_t *cid)
{
	const char *slash = strrchr(path, '/');
	size_t dn = backing[0] == '/' || !slash ? 0 : (size_t)(slash - path) + 1;
	char *full = malloc(dn + strlen(backing) + 1);
	if (!full)
		return false;
	memcpy(full, path, dn);
	strcpy(full + dn, backing);
	struct vdk_open_opts oo = {.no_backing = true};
	struct vdk_image *img;
	struct vdk_err e = {0};
	bool ok = false;
	if (vdk_image_open_path(full, "vmdk", &oo, &img, &e) == 0) {
		const struct vmdk_state *st = img->state;
		ok = st->desc.has_cid;
		*cid = st->desc.cid;
		vdk_image_close(img);
	}
	free(full);
	return ok;
}

static int vmdk_rebase_edit(struct vmdk_dloc *d, const char *path, const char *backing,
                            struct vdk_err *e)
{
	int r;
	if (!backing || !*backing) {
		/* No parent: VMware's parentCID for a base disk. */
		r = vmdk_dloc_set(d, "parentFileNameHint", NULL, true, NULL);
		if (!r)
			r = vmdk_dloc_set(d, "parentCID", "ffffffff", false, "CID");
	} else {
		if (strpbrk(backing, "\"\r\n"))
			return vdk_err_set(e, VDK_E_USAGE, EINVAL, path, "vmdk", VDK_NO_OFFSET,
			                   "a parent file name with a quote or a line break cannot "
			                   "be written into a descriptor");
		size_t o, n;
		uint32_t pcid;
		char hex[9];
		r = 0;
		if (vmdk_rebase_parent_cid(path, backing, &pcid)) {
			snprintf(hex, sizeof(hex), "%08" PRIx32, pcid);
			r = vmdk_dloc_set(d, "parentCID", hex, false, "CID");
		} else if (vmdk_dloc_value(d, "parentCID", &o, &n)) {
			r = vmdk_dloc_set(d, "parentCID", "ffffffff", false, "CID");
		}
		if (!r)
			r = vmdk_dloc_set(d, "parentFileNameHint", backing, true, "createType");
	}
	if (r)
		return vdk_nomem(e, path, "vmdk", "the new descriptor");
	/* What we write must still be a descriptor this reader accepts. */
	struct vmdk_desc check = {0};
	r = vmdk_desc_parse(d->text, d->len, path, d->off, &check, e);
	vmdk_desc_free(&check);
	return r;
}

int vmdk_set_backing(const char *path, const char *backing, const char *backing_fmt,
                     struct vdk_err *e)
{
	if (backing_fmt && *backing_fmt && strcasecmp(backing_fmt, "vmdk"))
		return vdk_unsup(e, path, "vmdk", VDK_NO_OFFSET,
		                 "a VMDK's parent is a VMDK (parentFileNameHint names no format): "
		                 "-F %s refused",
		                 backing_fmt);
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return vdk_ioerr(e, errno, path, "cannot open for update: %s", strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int err = errno;
		close(fd);
		return vdk_ioerr(e, err, path, "another process is updating this image (%s)",
		                 strerror(err));
	}
	struct vmdk_dloc d;
	int r = vmdk_dloc_read(fd, path, &d, e);
	if (!r)
		r = vmdk_rebase_edit(&d, path, backing, e);
	if (!r)
		r = vmdk_dloc_write(fd, path, &d, e);
	vmdk_dloc_free(&d);
	close(fd);
	return r;
}
