/* vdkit commit and rebase -u (commit.h), over the update layer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commit.h"
#include "create.h"
#include "format.h"
#include "json.h"
#include "util.h"

#define COMMIT_MAX_LAYERS 64
#define REBASE_CHUNK      (1u << 20)

/* The image of img's chain (below img) that is the file base names: by
 * identity, so "./b.vmdk", "b.vmdk" and an absolute path all match. */
static int commit_find_base(struct vdk_image *img, const char *base, struct vdk_image **out,
                            struct vdk_err *e)
{
	if (!base) {
		if (!img->backing)
			return vdk_err_set(e, VDK_E_INPUT, EINVAL, img->src->name, img->fmt->name,
			                   VDK_NO_OFFSET,
			                   "has no backing file: there is nothing to commit into");
		*out = img->backing;
		return 0;
	}
	struct stat st;
	if (stat(base, &st))
		return vdk_err_set(e, VDK_E_USAGE, errno, base, NULL, VDK_NO_OFFSET,
		                   "cannot find the base image: %s", strerror(errno));
	for (struct vdk_image *b = img->backing; b; b = b->backing)
		if (b->src->dev == st.st_dev && b->src->ino == st.st_ino) {
			*out = b;
			return 0;
		}
	return vdk_err_set(e, VDK_E_USAGE, EINVAL, img->src->name, img->fmt->name, VDK_NO_OFFSET,
	                   "'%s' is not in this image's backing chain", base);
}

/* A VMDK's CID and parentCID, from its info (the core does not name
 * formats' internals). false for other formats. */
static bool commit_cids(struct vdk_image *l, uint64_t *cid, uint64_t *pcid)
{
	struct vdk_err e = {0};
	if (strcmp(l->fmt->name, "vmdk"))
		return false;
	struct vdk_json *j = vdk_image_info(l, NULL, &e);
	const struct vdk_json *d =
	    j ? vdk_json_get(vdk_json_get(j, "format-specific"), "data") : NULL;
	bool ok = d && vdk_json_get_u64(d, "cid", cid) && vdk_json_get_u64(d, "parent-cid", pcid);
	vdk_json_free(j);
	return ok;
}

/* The chain was opened without CID checks; they are done here, above the
 * base, where they still mean something: a layer whose parent changed
 * after it was made is refused (unless forced). The link into the base is
 * exempt: the first write of an interrupted commit changed the base's
 * CID, and the rerun must complete it (qemu-img commit checks no CID). */
static int commit_check_cids(struct vdk_image *img, struct vdk_image *base, bool force,
                             struct vdk_err *e)
{
	for (struct vdk_image *l = img; l != base && l->backing != base; l = l->backing) {
		uint64_t c, pc, pcid, ppc;
		if (force || !commit_cids(l, &c, &pc) || !commit_cids(l->backing, &pcid, &ppc) ||
		    pc == 0xffffffffu || pc == pcid)
			continue;
		return vdk_bad(e, l->src->name, "vmdk", VDK_NO_OFFSET,
		               "parentCID %08llx does not match the CID %08llx of parent %s: the "
		               "parent was modified after this snapshot (use --force to commit "
		               "anyway)",
		               (unsigned long long)pc, (unsigned long long)pcid,
		               l->backing->src->name);
	}
	return 0;
}

/* Layers above the base, deepest first: the top's data is written last
 * and wins, as the chain reads. */
static int commit_layers(struct vdk_image *img, struct vdk_image *base, struct vdk_image **v,
                         unsigned *n)
{
	unsigned k = 0;
	for (struct vdk_image *l = img; l && l != base; l = l->backing) {
		if (k == COMMIT_MAX_LAYERS)
			return -ELOOP;
		v[k++] = l;
	}
	for (unsigned i = 0; i < k / 2; i++) {
		struct vdk_image *t = v[i];
		v[i] = v[k - 1 - i];
		v[k - 1 - i] = t;
	}
	*n = k;
	return 0;
}

/* One bar over every layer: layer i of n covers [i/n, (i+1)/n). */
struct commit_prog {
	const struct vdk_commit_opts *o;
	unsigned i, n;
};

static void commit_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct commit_prog *p = ctx;
	if (total && p->o->progress)
		p->o->progress(p->o->ctx, (uint64_t)p->i * total + done, (uint64_t)p->n * total);
}

static int commit_into(struct vdk_image *img, struct vdk_image *base,
                       const struct vdk_commit_opts *o, struct vdk_commit_result *res,
                       struct vdk_err *e)
{
	struct vdk_image *v[COMMIT_MAX_LAYERS];
	unsigned n = 0;
	if (commit_layers(img, base, v, &n))
		return vdk_bad(e, img->src->name, img->fmt->name, VDK_NO_OFFSET,
		               "backing chain deeper than %d images", COMMIT_MAX_LAYERS);
	struct vdk_update *u;
	int r = vdk_update_open_access(base->src->name, base->fmt->name, &o->access, &u, e);
	if (r)
		return r;
	struct commit_prog p = {.o = o, .n = n};
	for (unsigned i = 0; !r && i < n; i++) {
		p.i = i;
		r = vdk_update_copy_own(u, v[i], commit_progress, &p, e);
	}
	if (!r)
		r = vdk_update_flush(u, e);
	res->st = u->st;
	res->layers = n;
	res->base_size = u->size;
	vdk_update_close(u);
	return r;
}

/* qemu-img empties IMAGE unless -d (and -b implies -d). Its vmdk driver
 * has no make_empty, so a VMDK stays as it was and qemu-img says nothing:
 * vdkit does the same. A format that can be emptied names the options its
 * writer makes IMAGE again from, or why it cannot (kept, with the reason). */
static int commit_empty_plan(struct vdk_image *img, struct vdk_opts *eo, bool *empty,
                             struct vdk_commit_result *res, struct vdk_err *e)
{
	const struct vdk_format *f = img->fmt;
	if (img->src->flags & VDK_SRC_REMOTE) {
		res->kept_why = "it is not a local file";
		return 0;
	}
	if (!f->empty_opts || !f->create) {
		res->kept_why = strcmp(f->name, "vmdk") ? "this format cannot be emptied" : NULL;
		return 0;
	}
	const char *why = NULL;
	int r = vdk_err_ensure(e, f->empty_opts(img, eo, &why, e), img->src->name, f->name,
	                       "planning the emptying");
	res->kept_why = why;
	*empty = !r && !why;
	return r;
}

/* IMAGE made again with no data of its own, beside it, then renamed over
 * it (vdk_sink_create_file keeps the owner and mode): a kill leaves the
 * committed full IMAGE or the empty one, and both read as the base. */
static int commit_empty(const char *path, const struct vdk_format *f, uint64_t size,
                        struct vdk_opts *eo, struct vdk_err *e)
{
	struct vdk_sink *sink;
	int r = vdk_sink_create_file(path, &sink, e);
	if (r)
		return r;
	r = vdk_image_create(f, sink, size, eo, e);
	vdk_sink_close(sink); /* removes the temporary unless committed */
	if (r) {
		size_t n = strlen(e->msg);
		snprintf(e->msg + n, sizeof(e->msg) - n,
		         " (the commit itself completed; IMAGE was kept as it was)");
	}
	return r;
}

int vdk_commit(const char *path, const struct vdk_commit_opts *o, struct vdk_commit_result *res,
               struct vdk_err *e)
{
	memset(res, 0, sizeof(*res));
	/* CIDs are not checked on the way down (force): commit reads only
	 * what the layers above the base hold themselves, never the base
	 * through them, as qemu-img commit does; and the base's CID changed
	 * with the first write of an interrupted commit, which a rerun must
	 * still be able to complete. The base's own parent is checked when
	 * its updater opens it. */
	struct vdk_open_opts oo = {.access = o->access, .force = true};
	struct vdk_image *img, *base = NULL;
	int r = vdk_image_open_path(path, o->fmt, &oo, &img, e);
	if (r)
		return r;
	r = commit_find_base(img, o->base, &base, e);
	if (!r)
		r = commit_check_cids(img, base, o->force, e);
	if (!r)
		r = commit_into(img, base, o, res, e);
	struct vdk_opts eo = {0};
	bool empty = false;
	if (!r && !o->keep && !o->base)
		r = commit_empty_plan(img, &eo, &empty, res, e);
	const struct vdk_format *fmt = img->fmt;
	uint64_t size = img->size;
	vdk_image_close(img);
	if (!r && empty)
		r = commit_empty(path, fmt, size, &eo, e);
	vdk_opts_free(&eo);
	return r;
}

/* backing as IMAGE will resolve it: relative to IMAGE's folder. */
static char *rebase_resolve(const char *path, const char *backing)
{
	const char *slash = strrchr(path, '/');
	size_t dn = backing[0] == '/' || !slash ? 0 : (size_t)(slash - path) + 1;
	char *full = malloc(dn + strlen(backing) + 1);
	if (full) {
		memcpy(full, path, dn);
		strcpy(full + dn, backing);
	}
	return full;
}

/* Write into u the old content of [off, off+len) wherever the new
 * backing file (NULL: zeroes) reads differently, one update unit at a time. */
static int rebase_hole(struct vdk_update *u, struct vdk_image *img, struct vdk_image *nb,
                       uint8_t *a, uint8_t *b, uint64_t off, uint64_t len, struct vdk_err *e)
{
	uint64_t unit = VDK_MAX(u->granularity, 512u);
	while (len) {
		size_t n = (size_t)VDK_MIN(len, (uint64_t)REBASE_CHUNK);
		uint64_t have = nb && off < nb->size ? VDK_MIN((uint64_t)n, nb->size - off) : 0;
		int r = vdk_image_pread(img, a, n, off, e);
		memset(b + have, 0, n - have);
		if (!r && have)
			r = vdk_image_pread(nb, b, (size_t)have, off, e);
		for (size_t i = 0; !r && i < n;) {
			size_t k = (size_t)VDK_MIN((uint64_t)(n - i), unit - (off + i) % unit);
			if (memcmp(a + i, b + i, k))
				r = vdk_update_write(u, a + i, k, off + i, e);
			i += k;
		}
		if (r)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

static int rebase_copy(struct vdk_update *u, struct vdk_image *img, struct vdk_image *nb,
                       const struct vdk_rebase_opts *o, struct vdk_err *e)
{
	uint8_t *a = malloc(REBASE_CHUNK), *b = malloc(REBASE_CHUNK);
	struct vdk_extents x = {0};
	int r = a && b ? 0 : vdk_nomem(e, img->src->name, img->fmt->name, "the rebase buffers");
	for (uint64_t off = 0; !r && off < img->size;) {
		r = vdk_image_own_extents(img, off, img->size - off, &x, e);
		for (size_t i = 0; !r && i < x.n; i++)
			if (x.v[i].flags & VDK_EXT_HOLE)
				r = rebase_hole(u, img, nb, a, b, x.v[i].off, x.v[i].len, e);
		if (!r && x.n)
			off = x.v[x.n - 1].off + x.v[x.n - 1].len;
		if (o->progress)
			o->progress(o->ctx, off, img->size);
	}
	if (!r)
		r = vdk_update_flush(u, e);
	vdk_extents_free(&x);
	free(a);
	free(b);
	return r;
}

static int rebase_safe(const char *path, struct vdk_rebase_opts *o, struct vdk_update_stats *st,
                       struct vdk_err *e)
{
	struct vdk_open_opts oo = {.access = o->access}, no = {.access = o->access};
	struct vdk_image *img = NULL, *nb = NULL;
	struct vdk_update *u = NULL;
	char *full = o->backing ? rebase_resolve(path, o->backing) : NULL;
	int r = o->backing && !full ? vdk_nomem(e, path, NULL, "a file name") : 0;
	if (!r)
		r = vdk_image_open_path(path, o->fmt, &oo, &img, e);
	if (!r && full)
		r = vdk_image_open_path(full, o->backing_fmt, &no, &nb, e);
	if (!r && nb && !o->backing_fmt)
		o->backing_fmt = nb->fmt->name; /* as probed, as qemu-img records it */
	if (!r)
		r = vdk_update_open_access(path, img->fmt->name, &o->access, &u, e);
	if (!r)
		r = rebase_copy(u, img, nb, o, e);
	if (u)
		*st = u->st;
	vdk_update_close(u);
	vdk_image_close(nb);
	vdk_image_close(img);
	free(full);
	return r;
}

int vdk_rebase(const char *path, const struct vdk_rebase_opts *o, struct vdk_update_stats *st,
               struct vdk_err *e)
{
	memset(st, 0, sizeof(*st));
	struct vdk_rebase_opts ro = *o;
	if (ro.backing && !*ro.backing)
		ro.backing = NULL;
	if (!ro.backing)
		ro.backing_fmt = NULL;
	struct vdk_open_opts oo = {.no_backing = true};
	struct vdk_image *img;
	int r = vdk_image_open_path(path, ro.fmt, &oo, &img, e);
	if (r)
		return r;
	const struct vdk_format *f = img->fmt;
	vdk_image_close(img);
	if (!f->set_backing)
		return vdk_unsup(e, path, f->name, VDK_NO_OFFSET,
		                 "this format has no backing file reference to change (qcow2 and "
		                 "vmdk have)");
	if (!ro.unsafe && (r = rebase_safe(path, &ro, st, e)))
		return r;
	return vdk_err_ensure(e, f->set_backing(path, ro.backing, ro.backing_fmt, e), path, f->name,
	                      "changing the backing file");
}
