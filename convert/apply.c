/* Warm migration (apply.h): the identity record beside a converted target
 * and the apply job that writes a snapshot delta into it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apply.h"
#include "json.h"
#include "util.h"

/* A record is a few hundred bytes; anything larger is not ours. */
#define APPLY_RECORD_MAX 4096u
#define APPLY_NO_PARENT  0xffffffffu /* VMDK parentCID of a base disk */

/* The record: path, JSON out, JSON in ------------------------------- */

static int apply_record_path(const char *target, char *out, size_t n, struct vdk_err *e)
{
	if ((size_t)snprintf(out, n, "%s%s", target, VDK_WARM_SUFFIX) >= n)
		return vdk_err_set(e, VDK_E_USAGE, ENAMETOOLONG, target, NULL, VDK_NO_OFFSET,
		                   "path too long for its warm record");
	return 0;
}

static void apply_hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

static char *apply_record_render(const struct vdk_warm_record *r)
{
	struct vdk_json *j = vdk_json_new_obj();
	char cid[16], base[16], pend[16], dig[2 * VDK_DIGEST_MAX + 1];
	snprintf(cid, sizeof(cid), "%08" PRIx32, r->cid);
	snprintf(base, sizeof(base), "%08" PRIx32, r->base_cid);
	snprintf(pend, sizeof(pend), "%08" PRIx32, r->pending);
	apply_hex(r->base_digest, VDK_DIGEST_MAX, dig);
	vdk_json_set_u64(j, "vdkit-warm", VDK_WARM_VERSION);
	vdk_json_set_str(j, "cid", cid);
	if (r->has_pending)
		vdk_json_set_str(j, "pending-cid", pend);
	vdk_json_set_str(j, "base-cid", base);
	vdk_json_set_str(j, "base-digest", dig);
	vdk_json_set_u64(j, "virtual-size", r->virtual_size);
	vdk_json_set_str(j, "format", r->format);
	vdk_json_set_u64(j, "target-size", r->target_size);
	vdk_json_set_u64(j, "target-mtime-ns", r->target_mtime_ns);
	vdk_json_set_u64(j, "applied", r->applied);
	char *s = vdk_json_render(j, true);
	vdk_json_free(j);
	return s;
}

static int apply_write_all(int fd, const char *s, size_t n)
{
	int r = vdk_pwrite_full(fd, s, n, 0);
	return r ? r : vdk_pwrite_full(fd, "\n", 1, n);
}

/* Durable replace of path by text: a temporary file in the same folder,
 * fsync, rename, fsync of the folder (a crash leaves the old or the new). */
static int apply_replace_file(const char *path, const char *text, struct vdk_err *e)
{
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= sizeof(tmp))
		return vdk_err_set(e, VDK_E_USAGE, ENAMETOOLONG, path, NULL, VDK_NO_OFFSET,
		                   "path too long");
	int fd = mkstemp(tmp);
	if (fd < 0)
		return vdk_ioerr(e, errno, path, "cannot create a temporary file: %s",
		                 strerror(errno));
	int r = apply_write_all(fd, text, strlen(text));
	if (!r && fsync(fd))
		r = -errno;
	if (close(fd) && !r)
		r = -errno;
	if (!r && rename(tmp, path))
		r = -errno;
	if (r) {
		unlink(tmp);
		return vdk_ioerr(e, -r, path, "cannot write: %s", strerror(-r));
	}
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		r = fsync(dfd) ? -errno : 0;
		close(dfd);
	}
	return r ? vdk_ioerr(e, -r, path, "fsync of its folder failed: %s", strerror(-r)) : 0;
}

int vdk_warm_record_write(const char *target, const struct vdk_warm_record *r, struct vdk_err *e)
{
	char path[4096];
	int rc = apply_record_path(target, path, sizeof(path), e);
	if (rc)
		return rc;
	char *text = apply_record_render(r);
	if (!text)
		return vdk_nomem(e, path, NULL, "the warm record");
	rc = apply_replace_file(path, text, e);
	free(text);
	return rc;
}

/* The reader: one flat object of string and unsigned number members, the
 * only shape we write; anything else is refused as malformed. */
struct apply_parse {
	const char *p, *end;
	struct vdk_warm_record *r;
	unsigned seen;
};

static void apply_ws(struct apply_parse *ps)
{
	while (ps->p < ps->end && strchr(" \t\r\n", *ps->p))
		ps->p++;
}

static bool apply_string(struct apply_parse *ps, char *out, size_t n)
{
	apply_ws(ps);
	if (ps->p >= ps->end || *ps->p != '"')
		return false;
	const char *s = ++ps->p;
	while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\\')
		ps->p++;
	if (ps->p >= ps->end || *ps->p != '"' || (size_t)(ps->p - s) >= n)
		return false;
	memcpy(out, s, (size_t)(ps->p - s));
	out[ps->p - s] = '\0';
	ps->p++;
	return true;
}

static bool apply_number(struct apply_parse *ps, uint64_t *v)
{
	apply_ws(ps);
	uint64_t x = 0;
	const char *s = ps->p;
	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
		if (vdk_mul_overflow(x, 10, &x) ||
		    vdk_add_overflow(x, (uint64_t)(*ps->p - '0'), &x))
			return false;
		ps->p++;
	}
	*v = x;
	return ps->p > s;
}

static int apply_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* we write lower case only */
}

static bool apply_hex32(const char *s, uint32_t *out)
{
	uint32_t v = 0;
	if (strlen(s) != 8)
		return false;
	for (size_t i = 0; i < 8; i++) {
		int d = apply_nibble(s[i]);
		if (d < 0)
			return false;
		v = v << 4 | (uint32_t)d;
	}
	*out = v;
	return true;
}

static bool apply_digest(const char *s, uint8_t *out)
{
	if (strlen(s) != 2 * VDK_DIGEST_MAX)
		return false;
	for (size_t i = 0; i < VDK_DIGEST_MAX; i++) {
		int hi = apply_nibble(s[2 * i]), lo = apply_nibble(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

enum {
	APPLY_K_CID = 1u << 0,
	APPLY_K_BASE = 1u << 1,
	APPLY_K_DIGEST = 1u << 2,
	APPLY_K_VSIZE = 1u << 3,
	APPLY_K_FORMAT = 1u << 4,
	APPLY_K_TSIZE = 1u << 5,
	APPLY_K_MTIME = 1u << 6,
	APPLY_K_VERSION = 1u << 7,
	APPLY_K_ALL = 0xffu,
};

static bool apply_member_str(struct apply_parse *ps, const char *key)
{
	struct vdk_warm_record *r = ps->r;
	char v[2 * VDK_DIGEST_MAX + 1];
	if (!strcmp(key, "format")) {
		ps->seen |= APPLY_K_FORMAT;
		return apply_string(ps, r->format, sizeof(r->format));
	}
	if (!apply_string(ps, v, sizeof(v)))
		return false;
	if (!strcmp(key, "cid")) {
		ps->seen |= APPLY_K_CID;
		return apply_hex32(v, &r->cid);
	}
	if (!strcmp(key, "base-cid")) {
		ps->seen |= APPLY_K_BASE;
		return apply_hex32(v, &r->base_cid);
	}
	if (!strcmp(key, "pending-cid")) {
		r->has_pending = true;
		return apply_hex32(v, &r->pending);
	}
	if (!strcmp(key, "base-digest")) {
		ps->seen |= APPLY_K_DIGEST;
		return apply_digest(v, r->base_digest);
	}
	return true; /* a later version's member */
}

static bool apply_member(struct apply_parse *ps)
{
	char key[32];
	if (!apply_string(ps, key, sizeof(key)))
		return false;
	apply_ws(ps);
	if (ps->p >= ps->end || *ps->p++ != ':')
		return false;
	apply_ws(ps);
	if (ps->p < ps->end && *ps->p == '"')
		return apply_member_str(ps, key);
	uint64_t v;
	if (!apply_number(ps, &v))
		return false;
	struct vdk_warm_record *r = ps->r;
	if (!strcmp(key, "vdkit-warm")) {
		ps->seen |= APPLY_K_VERSION;
		return v == VDK_WARM_VERSION;
	}
	if (!strcmp(key, "virtual-size")) {
		r->virtual_size = v;
		ps->seen |= APPLY_K_VSIZE;
	} else if (!strcmp(key, "target-size")) {
		r->target_size = v;
		ps->seen |= APPLY_K_TSIZE;
	} else if (!strcmp(key, "target-mtime-ns")) {
		r->target_mtime_ns = v;
		ps->seen |= APPLY_K_MTIME;
	} else if (!strcmp(key, "applied")) {
		r->applied = v;
	}
	return true;
}

static bool apply_parse_object(struct apply_parse *ps)
{
	apply_ws(ps);
	if (ps->p >= ps->end || *ps->p++ != '{')
		return false;
	for (;;) {
		if (!apply_member(ps))
			return false;
		apply_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p >= ps->end || *ps->p++ != '}')
			return false;
		apply_ws(ps);
		return ps->p == ps->end && ps->seen == APPLY_K_ALL;
	}
}

static int apply_slurp(const char *path, char *buf, size_t cap, size_t *n, struct vdk_err *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT
		           ? vdk_bad(e, path, NULL, VDK_NO_OFFSET,
		                     "no warm record: convert the base with 'vdkit convert --warm' "
		                     "first")
		           : vdk_ioerr(e, errno, path, "cannot open: %s", strerror(errno));
	ssize_t k = read(fd, buf, cap);
	int err = errno;
	close(fd);
	if (k < 0)
		return vdk_ioerr(e, err, path, "cannot read: %s", strerror(err));
	if ((size_t)k >= cap)
		return vdk_bad(e, path, NULL, VDK_NO_OFFSET, "warm record larger than %u bytes",
		               APPLY_RECORD_MAX);
	*n = (size_t)k;
	return 0;
}

int vdk_warm_record_read(const char *target, struct vdk_warm_record *r, struct vdk_err *e)
{
	char path[4096], buf[APPLY_RECORD_MAX];
	size_t n = 0;
	int rc = apply_record_path(target, path, sizeof(path), e);
	if (!rc)
		rc = apply_slurp(path, buf, sizeof(buf), &n, e);
	if (rc)
		return rc;
	memset(r, 0, sizeof(*r));
	struct apply_parse ps = {.p = buf, .end = buf + n, .r = r};
	if (!apply_parse_object(&ps))
		return vdk_bad(e, path, NULL, (uint64_t)(ps.p - buf),
		               "malformed warm record (version %u expected, every member "
		               "present)",
		               VDK_WARM_VERSION);
	return 0;
}

/* Identity ------------------------------------------------------------- */

int vdk_image_cid(struct vdk_image *img, uint32_t *cid, bool *has_parent, uint32_t *parent,
                  struct vdk_err *e)
{
	const char *n = img->src->name;
	if (!img->fmt->info)
		return vdk_bad(e, n, img->fmt->name, VDK_NO_OFFSET,
		               "not a VMDK: a warm migration needs a VMDK's CID");
	struct vdk_json *j = vdk_json_new_obj();
	if (!j)
		return vdk_nomem(e, n, img->fmt->name, "the image's info");
	int r = vdk_err_ensure(e, img->fmt->info(img, j, e), n, img->fmt->name, "reading info");
	uint64_t c = 0, p = APPLY_NO_PARENT;
	bool ok = !r && vdk_json_get_u64(j, "cid", &c) && vdk_json_get_u64(j, "parent-cid", &p);
	vdk_json_free(j);
	if (r)
		return r;
	if (!ok || c > UINT32_MAX || p > UINT32_MAX)
		return vdk_bad(e, n, img->fmt->name, VDK_NO_OFFSET,
		               "not a VMDK: a warm migration needs a VMDK's CID");
	*cid = (uint32_t)c;
	*parent = (uint32_t)p;
	*has_parent = p != APPLY_NO_PARENT;
	return 0;
}

static uint64_t apply_mtime_ns(const struct stat *st)
{
	return (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
}

int vdk_warm_precheck(struct vdk_image *src, const struct vdk_format *fmt, const char *dst,
                      struct vdk_err *e)
{
	uint32_t cid, parent;
	bool has_parent;
	if (!fmt->update_open)
		return vdk_err_set(e, VDK_E_USAGE, ENOTSUP, dst, fmt->name, VDK_NO_OFFSET,
		                   "--warm: %s images cannot be updated in place, so no delta "
		                   "could be applied",
		                   fmt->name);
	return vdk_image_cid(src, &cid, &has_parent, &parent, e);
}

int vdk_warm_record_init(struct vdk_image *src, const char *target, const char *fmt,
                         const uint8_t digest[VDK_DIGEST_MAX], struct vdk_err *e)
{
	struct vdk_warm_record r = {0};
	bool has_parent;
	uint32_t parent;
	int rc = vdk_image_cid(src, &r.cid, &has_parent, &parent, e);
	if (rc)
		return rc;
	struct stat st;
	if (stat(target, &st))
		return vdk_ioerr(e, errno, target, "stat failed: %s", strerror(errno));
	r.base_cid = r.cid;
	memcpy(r.base_digest, digest, VDK_DIGEST_MAX);
	r.virtual_size = src->size;
	snprintf(r.format, sizeof(r.format), "%s", fmt);
	r.target_size = (uint64_t)st.st_size;
	r.target_mtime_ns = apply_mtime_ns(&st);
	return vdk_warm_record_write(target, &r, e);
}

/* The apply job --------------------------------------------------------- */

struct apply_run {
	struct vdk_apply *a;
	struct vdk_warm_record rec;
	struct vdk_image *delta;
	struct vdk_update *u;
	bool has_parent;
};

static int apply_open_delta(struct apply_run *ar, struct vdk_err *e)
{
	struct vdk_apply *a = ar->a;
	struct vdk_open_opts oo = a->open;
	oo.no_backing = true; /* the parent is TARGET's content, not needed */
	int r = vdk_image_open_path(a->delta, a->delta_fmt, &oo, &ar->delta, e);
	if (!r)
		r = vdk_image_cid(ar->delta, &a->cid, &ar->has_parent, &a->parent_cid, e);
	if (r)
		return r;
	if (!ar->has_parent)
		return vdk_bad(e, a->delta, ar->delta->fmt->name, VDK_NO_OFFSET,
		               "not a snapshot delta: it has no parentCID (a base disk is "
		               "converted, not applied)");
	if (ar->delta->size != ar->rec.virtual_size)
		return vdk_bad(e, a->delta, ar->delta->fmt->name, VDK_NO_OFFSET,
		               "virtual size %llu differs from the %llu bytes %s was made from",
		               (unsigned long long)ar->delta->size,
		               (unsigned long long)ar->rec.virtual_size, a->target);
	return 0;
}

/* The delta's parent is what TARGET holds, or an interrupted apply of this
 * very delta is completed; anything else would mix two disks. */
static int apply_check_lineage(struct apply_run *ar, struct vdk_err *e)
{
	struct vdk_apply *a = ar->a;
	const struct vdk_warm_record *rec = &ar->rec;
	if (rec->has_pending && rec->pending != a->cid)
		return vdk_bad(e, a->target, NULL, VDK_NO_OFFSET,
		               "an apply of the delta with CID %08" PRIx32
		               " was interrupted; rerun that apply first (this delta's CID is "
		               "%08" PRIx32 ")",
		               rec->pending, a->cid);
	if (!rec->has_pending && rec->cid == a->cid) {
		a->already = true;
		return 0;
	}
	if (a->parent_cid != rec->cid)
		return vdk_bad(e, a->delta, ar->delta->fmt->name, VDK_NO_OFFSET,
		               "wrong parent: the delta's parentCID is %08" PRIx32 " but %s holds "
		               "the disk with CID %08" PRIx32 " (apply deltas in order, each onto "
		               "the conversion of its parent)",
		               a->parent_cid, a->target, rec->cid);
	a->rerun = rec->has_pending;
	return 0;
}

static int apply_check_unchanged(struct apply_run *ar, struct vdk_err *e)
{
	struct vdk_apply *a = ar->a;
	struct stat st;
	if (fstat(ar->u->fd, &st))
		return vdk_ioerr(e, errno, a->target, "stat failed: %s", strerror(errno));
	if (a->rerun || a->force)
		return 0; /* our own interrupted writes changed it */
	if ((uint64_t)st.st_size != ar->rec.target_size ||
	    apply_mtime_ns(&st) != ar->rec.target_mtime_ns)
		return vdk_bad(e, a->target, ar->rec.format, VDK_NO_OFFSET,
		               "changed since its warm record (size %llu, recorded %llu; mtime "
		               "differs: %s): it was booted or edited, so a delta of the source "
		               "no longer applies (--force if only its timestamp changed)",
		               (unsigned long long)st.st_size,
		               (unsigned long long)ar->rec.target_size,
		               apply_mtime_ns(&st) != ar->rec.target_mtime_ns ? "yes" : "no");
	return 0;
}

static int apply_measure(struct apply_run *ar, struct vdk_err *e)
{
	struct vdk_extents x = {0};
	uint64_t off = 0;
	int r = 0;
	while (!r && off < ar->delta->size) {
		r = vdk_image_own_extents(ar->delta, off, ar->delta->size - off, &x, e);
		for (size_t i = 0; !r && i < x.n; i++)
			if (!(x.v[i].flags & VDK_EXT_HOLE))
				ar->a->delta_allocated += x.v[i].len;
		if (!r && x.n)
			off = x.v[x.n - 1].off + x.v[x.n - 1].len;
		vdk_extents_reset(&x);
	}
	vdk_extents_free(&x);
	return r;
}

/* After a rerun, the clusters a killed apply allocated but never linked
 * are leaks: repaired so the end state checks clean. */
static int apply_repair_leaks(struct apply_run *ar, struct vdk_err *e)
{
	struct vdk_apply *a = ar->a;
	if (!a->rerun || !ar->u->fmt->check)
		return 0;
	struct vdk_image *img;
	int r = vdk_image_open_path(a->target, ar->u->fmt->name, NULL, &img, e);
	if (r)
		return r;
	struct vdk_check c = {.fix = VDK_FIX_LEAKS};
	r = vdk_err_ensure(e, img->fmt->check(img, &c, true, e), a->target, img->fmt->name,
	                   "repairing leaks");
	vdk_findings_free(&c.findings);
	vdk_image_close(img);
	a->leaks_fixed = c.leaks_fixed;
	if (!r && c.corruptions > c.fixed)
		r = vdk_bad(e, a->target, ar->u->fmt->name, VDK_NO_OFFSET,
		            "%llu corruption(s) found after the apply",
		            (unsigned long long)(c.corruptions - c.fixed));
	return r;
}

static int apply_finish_record(struct apply_run *ar, struct vdk_err *e)
{
	struct stat st;
	if (fstat(ar->u->fd, &st))
		return vdk_ioerr(e, errno, ar->a->target, "stat failed: %s", strerror(errno));
	ar->rec.cid = ar->a->cid;
	ar->rec.has_pending = false;
	ar->rec.applied++;
	ar->rec.target_size = (uint64_t)st.st_size;
	ar->rec.target_mtime_ns = apply_mtime_ns(&st);
	return vdk_warm_record_write(ar->a->target, &ar->rec, e);
}

static int apply_write(struct apply_run *ar, struct vdk_err *e)
{
	struct vdk_apply *a = ar->a;
	ar->rec.has_pending = true;
	ar->rec.pending = a->cid;
	int r = vdk_warm_record_write(a->target, &ar->rec, e);
	if (!r)
		r = vdk_update_copy_own(ar->u, ar->delta, a->progress, a->progress_ctx, e);
	if (!r)
		r = vdk_update_flush(ar->u, e);
	if (!r)
		r = apply_repair_leaks(ar, e);
	if (!r)
		r = apply_finish_record(ar, e);
	a->st = ar->u->st;
	return r;
}

static int apply_steps(struct apply_run *ar, struct vdk_err *e)
{
	struct vdk_apply *a = ar->a;
	int r = vdk_warm_record_read(a->target, &ar->rec, e);
	if (!r)
		r = apply_open_delta(ar, e);
	if (!r)
		r = apply_check_lineage(ar, e);
	if (r || a->already)
		return r;
	const char *fmt = a->target_fmt ? a->target_fmt : ar->rec.format;
	r = vdk_update_open(a->target, fmt, &ar->u, e);
	if (r)
		return r;
	a->format = ar->u->fmt->name;
	if (a->target_fmt && strcmp(ar->u->fmt->name, ar->rec.format))
		return vdk_bad(e, a->target, ar->u->fmt->name, VDK_NO_OFFSET,
		               "the warm record says this target is %s", ar->rec.format);
	if ((r = apply_check_unchanged(ar, e)) || (r = apply_measure(ar, e)))
		return r;
	return apply_write(ar, e);
}

int vdk_apply_run(struct vdk_apply *a, struct vdk_err *e)
{
	struct apply_run ar = {.a = a};
	memset(&a->st, 0, sizeof(a->st));
	a->rerun = a->already = false;
	a->delta_allocated = a->leaks_fixed = 0;
	int r = apply_steps(&ar, e);
	vdk_update_close(ar.u);
	vdk_image_close(ar.delta);
	return r;
}
