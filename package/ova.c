/* OVA/OVF packages: open (a .ova, a .ovf or a folder), inventory, verify
 * against the manifest (DSP0243 5.1) and scan a share the way MTV does.
 * Unpack and pack live in ova_xfer.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ova_private.h"
#include "remote.h"
#include "util.h"

#define OVA_IO_CHUNK (4u << 20) /* NFS: large sequential requests */

static bool ova_ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcasecmp(s + a - b, suffix);
}

/* Reports ------------------------------------------------------------ */

void ova_report_free(struct ova_report *r)
{
	vdk_findings_free(&r->issues);
	for (size_t i = 0; i < r->nout; i++)
		free(r->outputs[i]);
	free(r->outputs);
	memset(r, 0, sizeof(*r));
}

/* Opening ------------------------------------------------------------- */

int ova_pkg_find(const struct ova_pkg *p, const char *name)
{
	for (size_t i = 0; i < p->m.n; i++)
		if (!p->m.v[i].dir && !strcmp(p->m.v[i].name, name))
			return (int)i;
	return -1;
}

int ova_member_src(struct ova_pkg *p, int idx, struct vdk_src **out, struct vdk_err *e)
{
	const struct ova_member *m = &p->m.v[idx];
	if (p->tar) {
		char label[OVA_NAME_MAX + 64];
		snprintf(label, sizeof(label), "%s:%s", p->label, m->name);
		return vdk_src_open_window(p->src, m->off, m->size, label, out, e);
	}
	/* Folder packages: the file must still be the regular file seen at
	 * open (no symlink swapped in), with the same size. */
	struct vdk_fstat st;
	int r = vdk_path_stat(m->path, false, &st, e);
	if (r)
		return r;
	if (st.type != VDK_FT_REG || st.size != m->size)
		return vdk_bad(e, m->path, "ovf", VDK_NO_OFFSET,
		               "changed since the package was opened (or is not a regular file)");
	return vdk_src_open_uri(m->path, out, e);
}

static int ova_read_member(struct ova_pkg *p, int idx, size_t max, uint8_t **buf, size_t *len,
                           struct vdk_err *e)
{
	const struct ova_member *m = &p->m.v[idx];
	if (m->size > max)
		return vdk_bad(e, p->label, "ova", m->off, "%s is too large (%llu bytes)", m->name,
		               (unsigned long long)m->size);
	struct vdk_src *s;
	int r = ova_member_src(p, idx, &s, e);
	if (r < 0)
		return r;
	*buf = malloc((size_t)m->size + 1);
	if (!*buf)
		r = vdk_ioerr(e, ENOMEM, p->label, "out of memory");
	else
		r = vdk_src_pread(s, *buf, (size_t)m->size, 0, e);
	vdk_src_close(s);
	if (r == 0) {
		(*buf)[m->size] = 0;
		*len = (size_t)m->size;
	}
	return r;
}

static int ova_add_file(struct ova_pkg *p, const char *dir, const char *name, uint64_t size,
                        struct vdk_err *e)
{
	if (p->m.n >= OVA_MEMBERS_MAX)
		return vdk_bad(e, dir, "ovf", VDK_NO_OFFSET, "too many files in the folder");
	struct ova_member *v = realloc(p->m.v, (p->m.n + 1) * sizeof(*v));
	if (!v)
		return vdk_ioerr(e, ENOMEM, dir, "out of memory");
	p->m.v = v;
	struct ova_member *m = &v[p->m.n];
	memset(m, 0, sizeof(*m));
	m->name = strdup(name);
	m->size = size;
	if (m->name)
		m->path = vdk_path_join(dir, name);
	if (!m->name || !m->path) {
		free(m->name);
		free(m->path);
		return vdk_ioerr(e, ENOMEM, dir, "out of memory");
	}
	p->m.n++;
	return 0;
}

/* The folder's regular files; symlinks and subfolders are not members. */
static int ova_list_dir(struct ova_pkg *p, struct vdk_err *e)
{
	struct vdk_dirent *v;
	size_t n;
	int r = vdk_dir_list(p->dir, &v, &n, e);
	for (size_t i = 0; r == 0 && i < n; i++)
		if (v[i].st.type == VDK_FT_REG && ova_name_ok(v[i].name))
			r = ova_add_file(p, p->dir, v[i].name, v[i].st.size, e);
	vdk_dir_free(v, n);
	return r;
}

/* An href with folders ("sub/disk.vmdk"): a regular file under the
 * package folder, reached without following symlinks. */
static int ova_add_nested(struct ova_pkg *p, const char *href, struct vdk_err *e)
{
	if (!strchr(href, '/') || ova_pkg_find(p, href) >= 0)
		return 0;
	for (const char *s = href; *s;) {
		const char *sl = strchr(s, '/');
		char *prefix = strndup(href, sl ? (size_t)(sl - href) : strlen(href));
		char *path = prefix ? vdk_path_join(p->dir, prefix) : NULL;
		struct vdk_fstat st;
		struct vdk_err ignore = {0};
		int r = path ? vdk_path_stat(path, false, &st, &ignore) : -ENOMEM;
		free(prefix);
		free(path);
		if (r == -ENOMEM)
			return vdk_ioerr(e, ENOMEM, p->dir, "out of memory");
		if (r || st.type == VDK_FT_LNK)
			return 0;
		if (!sl)
			return st.type == VDK_FT_REG ? ova_add_file(p, p->dir, href, st.size, e)
			                             : 0;
		s = sl + 1;
	}
	return 0;
}

static int ova_find_suffix(struct ova_pkg *p, const char *suffix, int *out, struct vdk_err *e)
{
	*out = -1;
	for (size_t i = 0; i < p->m.n; i++) {
		if (p->m.v[i].dir || !ova_ends_with(p->m.v[i].name, suffix))
			continue;
		if (*out >= 0)
			return vdk_bad(e, p->label, "ova", VDK_NO_OFFSET,
			               "more than one %s file (%s, %s)", suffix, p->m.v[*out].name,
			               p->m.v[i].name);
		*out = (int)i;
	}
	return 0;
}

/* The .mf and .cert that go with the descriptor: same base name
 * (DSP0243), else the only one there is. */
static int ova_find_companion(struct ova_pkg *p, const char *ext, int *out, struct vdk_err *e)
{
	const char *ovf = p->m.v[p->ovf].name;
	char want[OVA_NAME_MAX + 8];
	snprintf(want, sizeof(want), "%.*s%s", (int)(strlen(ovf) - 4), ovf, ext);
	*out = ova_pkg_find(p, want);
	if (*out >= 0)
		return 0;
	return ova_find_suffix(p, ext, out, e);
}

static int ova_open_tar(struct ova_pkg *p, struct vdk_err *e)
{
	int r = vdk_src_open_uri(p->path, &p->src, e);
	if (r < 0)
		return r;
	if (p->src->fd < 0) { /* remote: the source took size and mtime at open */
		p->st_size = p->src->size;
		p->mtime.tv_sec = (time_t)(p->src->mtime_ns / 1000000000);
		p->mtime.tv_nsec = (long)(p->src->mtime_ns % 1000000000);
		return ova_tar_index(p->src, &p->m, e);
	}
	struct stat st;
	if (fstat(p->src->fd, &st) != 0)
		return vdk_ioerr(e, errno, p->path, "%s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return vdk_bad(e, p->path, "ova", VDK_NO_OFFSET, "not a regular file");
	p->st_size = (uint64_t)st.st_size;
	p->mtime = st.st_mtim;
	return ova_tar_index(p->src, &p->m, e);
}

static int ova_open_folder(struct ova_pkg *p, const char *ovf_name, struct vdk_err *e)
{
	int r = ova_list_dir(p, e);
	if (r < 0)
		return r;
	if (ovf_name) {
		p->ovf = ova_pkg_find(p, ovf_name);
		if (p->ovf < 0)
			return vdk_bad(e, p->path, "ovf", VDK_NO_OFFSET,
			               "not a regular file in its folder");
		return 0;
	}
	return ova_find_suffix(p, ".ovf", &p->ovf, e);
}

/* *ovf_name (malloc'd) is set for a .ovf, p->dir for folder packages. */
static int ova_split_path(struct ova_pkg *p, char **ovf_name, struct vdk_err *e)
{
	struct vdk_fstat st;
	*ovf_name = NULL;
	int r = vdk_path_stat(p->path, true, &st, e);
	if (r)
		return r;
	if (st.type == VDK_FT_DIR) {
		p->dir = strdup(p->path);
		return p->dir ? 0 : -ENOMEM;
	}
	char *base;
	r = vdk_path_split(p->path, &p->dir, &base);
	if (r == -EINVAL) /* no last component: not a .ovf */
		return vdk_bad(e, p->path, "ova", VDK_NO_OFFSET, "not a package file");
	if (r)
		return r;
	if (!ova_ends_with(base, ".ovf")) {
		free(base);
		free(p->dir);
		p->dir = NULL;
		p->tar = true;
		return 0;
	}
	*ovf_name = base;
	return 0;
}

static int ova_load_meta(struct ova_pkg *p, struct vdk_err *e)
{
	if (p->ovf < 0)
		return vdk_bad(e, p->label, "ova", VDK_NO_OFFSET,
		               "no .ovf descriptor in the package");
	char label[PATH_MAX + OVA_NAME_MAX];
	snprintf(label, sizeof(label), "%s%s%s", p->tar ? p->label : "", p->tar ? ":" : "",
	         p->tar ? p->m.v[p->ovf].name : p->m.v[p->ovf].path);
	int r = ova_read_member(p, p->ovf, OVA_OVF_MAX, &p->ovf_buf, &p->ovf_len, e);
	if (r == 0)
		r = ova_ovf_parse(p->ovf_buf, p->ovf_len, label, &p->desc, e);
	for (size_t i = 0; r == 0 && !p->tar && i < p->desc.nfiles; i++)
		r = ova_add_nested(p, p->desc.files[i].href, e);
	if (r == 0)
		r = ova_find_companion(p, ".mf", &p->mf, e);
	if (r == 0)
		r = ova_find_companion(p, ".cert", &p->cert, e);
	if (r == 0 && p->mf >= 0)
		r = ova_read_member(p, p->mf, OVA_MF_MAX, &p->mf_buf, &p->mf_len, e);
	if (r == 0 && p->mf >= 0)
		r = ova_mf_parse((const char *)p->mf_buf, p->mf_len, p->m.v[p->mf].name, &p->man,
		                 e);
	if (r == 0 && p->cert >= 0)
		r = ova_read_member(p, p->cert, OVA_CERT_MAX, &p->cert_buf, &p->cert_len, e);
	return r;
}

int ova_pkg_open(const char *path, struct ova_pkg **out, struct vdk_err *e)
{
	struct ova_pkg *p = calloc(1, sizeof(*p));
	if (!p || !(p->path = strdup(path))) {
		free(p);
		return vdk_ioerr(e, ENOMEM, path, "out of memory");
	}
	p->ovf = p->mf = p->cert = -1;
	char *ovf_name;
	int r = ova_split_path(p, &ovf_name, e);
	if (r == -ENOMEM)
		r = vdk_ioerr(e, ENOMEM, path, "out of memory");
	if (r == 0) {
		p->label = strdup(path);
		if (p->tar) {
			r = ova_open_tar(p, e);
			if (r == 0)
				r = ova_find_suffix(p, ".ovf", &p->ovf, e);
		} else {
			r = ova_open_folder(p, ovf_name, e);
		}
	}
	free(ovf_name);
	if (r == 0)
		r = ova_load_meta(p, e);
	if (r < 0) {
		ova_pkg_close(p);
		return r;
	}
	*out = p;
	return 0;
}

void ova_pkg_close(struct ova_pkg *p)
{
	if (!p)
		return;
	ova_tar_free(&p->m);
	ova_ovf_free(&p->desc);
	ova_mf_free(&p->man);
	vdk_src_close(p->src);
	free(p->ovf_buf);
	free(p->mf_buf);
	free(p->cert_buf);
	free(p->dir);
	free(p->label);
	free(p->path);
	free(p);
}

int ova_pkg_stable(struct ova_pkg *p, struct vdk_err *e)
{
	struct stat st;
	if (!p->tar)
		return 0;
	if (p->src->fd < 0) { /* remote: its own stat at open and now */
		struct vdk_err ce = {0};
		if (vdk_src_check_unchanged(p->src, &ce) == 0)
			return 0;
		if (ce.code != EBUSY)
			return vdk_err_set(e, ce.cls, ce.code, NULL, NULL, VDK_NO_OFFSET, "%s",
			                   ce.msg);
		return vdk_err_set(e, VDK_E_IO, EAGAIN, p->path, "ova", VDK_NO_OFFSET,
		                   "the package changed during the run (still being copied?)");
	}
	if (fstat(p->src->fd, &st) != 0)
		return vdk_ioerr(e, errno, p->path, "%s", strerror(errno));
	if ((uint64_t)st.st_size != p->st_size || st.st_mtim.tv_sec != p->mtime.tv_sec ||
	    st.st_mtim.tv_nsec != p->mtime.tv_nsec)
		return vdk_err_set(e, VDK_E_IO, EAGAIN, p->path, "ova", VDK_NO_OFFSET,
		                   "the package changed during the run (still being copied?)");
	return 0;
}

struct vdk_json *ova_pkg_inventory(const struct ova_pkg *p)
{
	struct vdk_json *j = vdk_json_new_obj();
	if (j)
		ova_pkg_inventory_into(p, j);
	return j;
}

void ova_pkg_inventory_into(const struct ova_pkg *p, struct vdk_json *j)
{
	vdk_json_set_str(j, "package", p->path);
	vdk_json_set_str(j, "type", p->tar ? "ova" : "ovf");
	vdk_json_set_str(j, "descriptor", p->m.v[p->ovf].name);
	if (p->mf >= 0)
		vdk_json_set_str(j, "manifest", p->m.v[p->mf].name);
	if (p->cert >= 0)
		vdk_json_set_str(j, "certificate", p->m.v[p->cert].name);
	ova_ovf_json(&p->desc, j);
	struct vdk_json *a = vdk_json_set_arr(j, "members");
	for (size_t i = 0; i < p->m.n; i++) {
		if (p->m.v[i].dir)
			continue;
		struct vdk_json *m = vdk_json_push_obj(a);
		vdk_json_set_str(m, "name", p->m.v[i].name);
		vdk_json_set_u64(m, "size", p->m.v[i].size);
		if (p->tar)
			vdk_json_set_u64(m, "offset", p->m.v[i].off);
	}
}

/* Verify ------------------------------------------------------------- */

/* Names a referenced file stands for: itself, or its chunks
 * "href.000000000", "href.000000001"... (DSP0243 5.3). */
static int ova_chunk_names(const struct ova_pkg *p, const struct ova_file *f, char ***out,
                           size_t *n)
{
	*out = NULL;
	*n = 0;
	for (size_t k = 0; k < 1000000000; k++) {
		char name[OVA_NAME_MAX + 16];
		if (f->chunk)
			snprintf(name, sizeof(name), "%s.%09zu", f->href, k);
		else
			snprintf(name, sizeof(name), "%s", f->href);
		if (k > 0 && ova_pkg_find(p, name) < 0)
			break;
		char **v = realloc(*out, (*n + 1) * sizeof(*v));
		if (!v || !(v[*n] = strdup(name))) {
			free(v ? v : *out);
			return -ENOMEM;
		}
		*out = v;
		(*n)++;
		if (!f->chunk)
			break;
	}
	return 0;
}

void ova_free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Structure: every referenced file present, listed and of the right size. */
static void ova_check_file(struct ova_pkg *p, const struct ova_file *f, struct ova_report *r,
                           bool *want)
{
	char **names;
	size_t n;
	if (ova_chunk_names(p, f, &names, &n) < 0) {
		vdk_findings_add(&r->issues, VDK_ERROR, f->href, VDK_NO_OFFSET, "out of memory");
		return;
	}
	uint64_t total = 0;
	for (size_t k = 0; k < n; k++) {
		int idx = ova_pkg_find(p, names[k]);
		if (idx < 0) {
			vdk_findings_add(&r->issues, VDK_ERROR, names[k], VDK_NO_OFFSET,
			                 "referenced by the OVF but missing "
			                 "from the package");
			continue;
		}
		want[idx] = true;
		total += p->m.v[idx].size;
		if (p->mf >= 0 && !ova_mf_find(&p->man, names[k]))
			vdk_findings_add(&r->issues, VDK_ERROR, names[k], VDK_NO_OFFSET,
			                 "not listed in the manifest");
	}
	if (f->has_size && total != f->size && n && ova_pkg_find(p, names[0]) >= 0)
		vdk_findings_add(&r->issues, f->gzip ? VDK_WARN : VDK_ERROR, f->href, VDK_NO_OFFSET,
		                 "size %llu differs from the descriptor's %llu",
		                 (unsigned long long)total, (unsigned long long)f->size);
	ova_free_names(names, n);
}

/* Everything verify checks without reading file contents. want[i] says
 * which members are part of the package. */
int ova_check_structure(struct ova_pkg *p, const struct ova_verify_opts *o, struct ova_report *r,
                        bool *want)
{
	const char *ovf = p->m.v[p->ovf].name;
	want[p->ovf] = true;
	if (p->mf < 0)
		vdk_findings_add(&r->issues, VDK_WARN, NULL, VDK_NO_OFFSET,
		                 "no manifest: file digests cannot be checked");
	else if (!ova_mf_find(&p->man, ovf))
		vdk_findings_add(&r->issues, VDK_ERROR, ovf, VDK_NO_OFFSET,
		                 "the descriptor is not listed in the manifest");
	for (size_t i = 0; i < p->desc.nfiles; i++)
		ova_check_file(p, &p->desc.files[i], r, want);
	for (size_t i = 0; i < p->man.n; i++) {
		int idx = ova_pkg_find(p, p->man.v[i].name);
		if (idx < 0)
			vdk_findings_add(&r->issues, VDK_ERROR, p->man.v[i].name, VDK_NO_OFFSET,
			                 "listed in the manifest but not in the package");
		else
			want[idx] = true;
	}
	if (p->mf >= 0)
		want[p->mf] = true;
	if (p->cert >= 0)
		want[p->cert] = true;
	for (size_t i = 0; i < p->m.n; i++)
		if (!want[i] && !p->m.v[i].dir)
			vdk_findings_add(&r->issues, VDK_WARN, p->m.v[i].name, VDK_NO_OFFSET,
			                 "not referenced by the descriptor (ignored)");
	if (p->cert >= 0) {
		struct vdk_err ce = {0};
		if (p->mf < 0)
			vdk_findings_add(&r->issues, VDK_ERROR, p->m.v[p->cert].name, VDK_NO_OFFSET,
			                 "a certificate without a manifest");
		else if (ova_cert_verify(p->cert_buf, p->cert_len, p->m.v[p->cert].name, p->mf_buf,
		                         p->mf_len, p->m.v[p->mf].name, o ? o->cafile : NULL,
		                         &r->cert, &ce) < 0)
			vdk_findings_add(&r->issues, VDK_ERROR, p->m.v[p->cert].name, VDK_NO_OFFSET,
			                 "%s", ce.msg);
		else if (!r->cert.sig_ok)
			vdk_findings_add(&r->issues, VDK_ERROR, p->m.v[p->cert].name, VDK_NO_OFFSET,
			                 "the signature over the manifest does not verify");
		else if (!r->cert.trusted || !r->cert.time_ok)
			vdk_findings_add(&r->issues, o && o->cafile ? VDK_ERROR : VDK_WARN,
			                 p->m.v[p->cert].name, VDK_NO_OFFSET, "signer %s is %s%s",
			                 r->cert.subject,
			                 r->cert.self_signed ? "self-signed" : "not trusted",
			                 r->cert.time_ok ? "" : ", certificate not valid now");
	}
	return 0;
}

static int ova_hash_member(struct ova_pkg *p, int idx, const struct ova_mf_entry *m, uint8_t *buf,
                           struct ova_report *r, struct vdk_err *e)
{
	struct vdk_src *s;
	int rc = ova_member_src(p, idx, &s, e);
	if (rc < 0)
		return rc;
	struct ova_hash *h = ova_hash_new(m->alg);
	if (!h) {
		vdk_src_close(s);
		return vdk_ioerr(e, ENOMEM, p->label, "out of memory");
	}
	for (uint64_t off = 0; rc == 0 && off < s->size;) {
		size_t n = (size_t)VDK_MIN((uint64_t)OVA_IO_CHUNK, s->size - off);
		rc = vdk_src_pread(s, buf, n, off, e);
		if (rc == 0)
			ova_hash_update(h, buf, n);
		off += n;
	}
	uint8_t d[OVA_DIGEST_MAX];
	ova_hash_final(h, d);
	ova_hash_free(h);
	vdk_src_close(s);
	if (rc < 0)
		return rc;
	if (memcmp(d, m->digest, ova_alg_len(m->alg)))
		vdk_findings_add(&r->issues, VDK_ERROR, m->name, VDK_NO_OFFSET,
		                 "%s digest mismatch", ova_alg_name(m->alg));
	else
		r->checked++;
	return 0;
}

int ova_verify(struct ova_pkg *p, const struct ova_verify_opts *o, struct ova_report *r,
               struct vdk_err *e)
{
	bool *want = calloc(p->m.n, sizeof(bool));
	uint8_t *buf = malloc(OVA_IO_CHUNK);
	int rc = 0;
	if (!want || !buf) {
		free(want);
		free(buf);
		return vdk_ioerr(e, ENOMEM, p->label, "out of memory");
	}
	ova_check_structure(p, o, r, want);
	/* Members are indexed in file order: one sequential pass. */
	for (size_t i = 0; rc == 0 && i < p->m.n; i++) {
		const struct ova_mf_entry *m =
		    p->m.v[i].dir ? NULL : ova_mf_find(&p->man, p->m.v[i].name);
		if (m)
			rc = ova_hash_member(p, (int)i, m, buf, r, e);
	}
	if (rc == 0)
		rc = ova_pkg_stable(p, e);
	free(want);
	free(buf);
	return rc;
}

/* Scan ---------------------------------------------------------------- */

const char *ova_scan_kind_name(enum ova_scan_kind k)
{
	return k == OVA_SCAN_OVA     ? "ova"
	       : k == OVA_SCAN_OVF   ? "ovf"
	       : k == OVA_SCAN_ERROR ? "error"
	                             : "skipped";
}

struct ova_scan_ctx {
	struct ova_scan *s;
	struct vdk_json *json;
	time_t now;
};

static struct ova_scan_item *ova_scan_push(struct ova_scan_ctx *c, enum ova_scan_kind k,
                                           const char *path, const char *msg,
                                           const struct ova_pkg *p)
{
	struct ova_scan *s = c->s;
	if (c->json) {
		struct vdk_json *o = vdk_json_push_obj(c->json);
		vdk_json_set_str(o, "path", path);
		vdk_json_set_str(o, "kind", ova_scan_kind_name(k));
		if (msg)
			vdk_json_set_str(o, k == OVA_SCAN_ERROR ? "error" : "reason", msg);
		if (p)
			ova_pkg_inventory_into(p, vdk_json_set_obj(o, "inventory"));
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		struct ova_scan_item *v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		s->v = v;
		s->cap = cap;
	}
	struct ova_scan_item *it = &s->v[s->n++];
	memset(it, 0, sizeof(*it));
	it->kind = k;
	it->path = strdup(path);
	it->msg = msg ? strdup(msg) : NULL;
	it->name = p && p->desc.name ? strdup(p->desc.name) : NULL;
	return it;
}

static void ova_scan_pkg(struct ova_scan_ctx *c, const char *path, const struct vdk_fstat *st,
                         enum ova_scan_kind kind)
{
	if (st->size == 0) {
		ova_scan_push(c, OVA_SCAN_SKIPPED, path, "empty: still being copied", NULL);
		return;
	}
	if (st->mtime_ns / 1000000000 > c->now - 30) {
		ova_scan_push(c, OVA_SCAN_SKIPPED, path,
		              "modified in the last 30 seconds: still being copied", NULL);
		return;
	}
	struct ova_pkg *p;
	struct vdk_err e = {0};
	if (ova_pkg_open(path, &p, &e) < 0) {
		ova_scan_push(c, OVA_SCAN_ERROR, path, e.msg, NULL);
		return;
	}
	ova_scan_push(c, kind, path, NULL, p);
	ova_pkg_close(p);
}

/* depth: 1 for files in the share's root (MTV counts path components). */
static void ova_scan_walk(struct ova_scan_ctx *c, const char *dir, int depth)
{
	struct vdk_dirent *v;
	size_t n, novf = 0;
	struct vdk_err le = {0};
	if (vdk_dir_list(dir, &v, &n, &le) < 0) {
		ova_scan_push(c, OVA_SCAN_ERROR, dir, le.msg, NULL);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (depth <= 3 && ova_ends_with(v[i].name, ".ovf"))
			novf++;
	for (size_t i = 0; i < n; i++) {
		const char *name = v[i].name;
		enum vdk_ftype t = v[i].st.type; /* symlinks are not followed */
		bool ova = t == VDK_FT_REG && depth <= 2 && ova_ends_with(name, ".ova");
		bool ovf = t == VDK_FT_REG && ova_ends_with(name, ".ovf") && novf == 1;
		if ((t != VDK_FT_DIR || depth >= 3) && !ova && !ovf)
			continue;
		char *path = vdk_path_join(dir, name);
		if (!path) {
			ova_scan_push(c, OVA_SCAN_ERROR, dir, "out of memory", NULL);
			continue;
		}
		if (t == VDK_FT_DIR)
			ova_scan_walk(c, path, depth + 1);
		else
			ova_scan_pkg(c, path, &v[i].st, ova ? OVA_SCAN_OVA : OVA_SCAN_OVF);
		free(path);
	}
	if (novf > 1) {
		char msg[128];
		snprintf(msg, sizeof(msg), "%zu .ovf files in one folder: one package per folder",
		         novf);
		ova_scan_push(c, OVA_SCAN_ERROR, dir, msg, NULL);
	}
	vdk_dir_free(v, n);
}

int ova_scan_dir(const char *dir, time_t now, struct ova_scan *s, struct vdk_json *json,
                 struct vdk_err *e)
{
	struct vdk_fstat st;
	memset(s, 0, sizeof(*s));
	int r = vdk_path_stat(dir, true, &st, e);
	if (r)
		return r;
	if (st.type != VDK_FT_DIR)
		return vdk_err_set(e, VDK_E_USAGE, ENOTDIR, dir, NULL, VDK_NO_OFFSET,
		                   "not a directory");
	struct ova_scan_ctx c = {.s = s, .json = json, .now = now};
	ova_scan_walk(&c, dir, 1);
	return 0;
}

void ova_scan_free(struct ova_scan *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].path);
		free(s->v[i].msg);
		free(s->v[i].name);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}
