/* Unpack and pack. Unpack converts each disk straight out of the .ova,
 * reading it through the verifying source (ova_vsrc.c), so the manifest
 * digest is known when the conversion ends; outputs are committed (renamed into place) only after
 * it matched. Pack streams each disk as streamOptimized VMDK into its tar member; the .ovf and .mf,
 * which must come first but depend on the results, are written last into space reserved at the
 * front. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "job.h"
#include "ova_private.h"
#include "util.h"

#define XF_CHUNK (4u << 20)

/* Unpack -------------------------------------------------------------- */

struct xf_unpack {
	struct ova_pkg *p;
	const char *dir;
	struct ova_unpack_opts *o;
	struct ova_report *r;
	const struct vdk_format *ofmt;
	char **names; /* output names used, to refuse collisions */
	size_t nnames;
};

static const char *xf_base(const char *href)
{
	const char *s = strrchr(href, '/');
	return s ? s + 1 : href;
}

/* DIR/<base of href, extension replaced>; never outside DIR. */
static int xf_out_path(struct xf_unpack *u, const char *href, const char *ext, char *out,
                       size_t cap, struct vdk_err *e)
{
	char base[NAME_MAX + 1];
	snprintf(base, sizeof(base), "%s", xf_base(href));
	if (ext) {
		char *dot = strrchr(base, '.');
		if (dot && !strcasecmp(dot, ".gz")) {
			*dot = 0;
			dot = strrchr(base, '.');
		}
		if (dot && dot != base)
			*dot = 0;
		size_t l = strlen(base);
		snprintf(base + l, sizeof(base) - l, ".%s", ext);
	}
	if (!ova_name_ok(base) || strchr(base, '/'))
		return vdk_bad(e, u->p->label, "ova", VDK_NO_OFFSET, "bad output name for %s",
		               href);
	for (size_t i = 0; i < u->nnames; i++)
		if (!strcmp(u->names[i], base))
			return vdk_bad(e, u->p->label, "ova", VDK_NO_OFFSET,
			               "two files would be written as %s", base);
	char **v = realloc(u->names, (u->nnames + 1) * sizeof(*v));
	if (v)
		u->names = v;
	if (!v || !(v[u->nnames] = strdup(base)))
		return vdk_nomem(e, u->p->label, "ova", "the list of output names");
	u->nnames++;
	snprintf(out, cap, "%s/%s", u->dir, base);
	return 0;
}

static void xf_add_output(struct ova_report *r, const char *path)
{
	char **v = realloc(r->outputs, (r->nout + 1) * sizeof(*v));
	if (!v)
		return;
	r->outputs = v;
	if ((v[r->nout] = strdup(path)))
		r->nout++;
}

/* A temporary file in DIR, already unlinked: gunzipped disks. */
static int xf_tmpfile(const char *dir, int *fd, struct vdk_err *e)
{
	*fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (*fd >= 0)
		return 0;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/.vdkit-gunzip-XXXXXX", dir);
	*fd = mkstemp(path);
	if (*fd < 0)
		return vdk_ioerr(e, errno, dir, "cannot create a temporary file: %s",
		                 strerror(errno));
	unlink(path);
	return 0;
}

/* Inflate a gzip member into an unlinked temporary file, hashing the
 * compressed bytes in order; bounded by limit (a gzip bomb stops there). */
static int xf_gunzip(struct vdk_src *in, int fd, uint64_t limit, struct vdk_err *e)
{
	z_stream z = {0};
	uint8_t *ib = malloc(XF_CHUNK), *ob = malloc(XF_CHUNK);
	int r = 0, zr = Z_OK;
	uint64_t off = 0, outlen = 0;
	if (!ib || !ob || inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
		free(ib);
		free(ob);
		return vdk_ioerr(e, ENOMEM, in->name, "out of memory");
	}
	while (r == 0 && zr != Z_STREAM_END) {
		if (z.avail_in == 0) {
			size_t n = (size_t)VDK_MIN((uint64_t)XF_CHUNK, in->size - off);
			if (n == 0) {
				r = vdk_bad(e, in->name, "gzip", off, "truncated gzip stream");
				break;
			}
			r = vdk_src_pread(in, ib, n, off, e);
			z.next_in = ib;
			z.avail_in = (uInt)n;
			off += n;
		}
		z.next_out = ob;
		z.avail_out = XF_CHUNK;
		zr = inflate(&z, Z_NO_FLUSH);
		if (r == 0 && zr != Z_OK && zr != Z_STREAM_END)
			r = vdk_bad(e, in->name, "gzip", off, "corrupt gzip stream");
		size_t got = XF_CHUNK - z.avail_out;
		if (r == 0 && (outlen += got) > limit)
			r = vdk_bad(e, in->name, "gzip", off, "inflates past the disk's capacity");
		int wr = r == 0 && got ? vdk_pwrite_full(fd, ob, got, outlen - got) : 0;
		if (wr)
			r = vdk_ioerr(e, -wr, in->name, "cannot write: %s", strerror(-wr));
	}
	inflateEnd(&z);
	free(ib);
	free(ob);
	return r;
}

/* The reader the DiskSection's ovf:format names (the registry holds the
 * URIs), or NULL to probe. */
static const char *xf_src_format(const struct ova_disk *d)
{
	const struct vdk_format *f = vdk_format_for_ovf(d->format);
	return f ? f->name : NULL;
}

struct xf_commit_ctx {
	struct xf_unpack *u;
	struct vdk_src *vs; /* the verifying source, or NULL (already checked) */
	const char *out_path;
};

/* Before an output is renamed into place: every byte it came from matched
 * the manifest, and the package did not change while it was read. */
static int xf_before_commit(struct vdk_job *j, struct vdk_err *e)
{
	struct xf_commit_ctx *c = j->ctx;
	const char *bad = NULL;
	int r = c->vs ? ova_vsrc_finish(c->vs, &bad, NULL, e) : 0;
	if (r == 0 && bad) {
		vdk_findings_add(&c->u->r->issues, VDK_ERROR, bad, VDK_NO_OFFSET,
		                 "digest mismatch: %s not written", c->out_path);
		return 1;
	}
	return r ? r : ova_pkg_stable(c->u->p, e);
}

/* Convert one opened image to out_path through the library's job. */
static int xf_convert(struct xf_unpack *u, struct vdk_image *img, const char *out_path,
                      struct vdk_src *vs, struct vdk_err *e)
{
	struct xf_commit_ctx c = {.u = u, .vs = vs, .out_path = out_path};
	struct vdk_job j;
	vdk_job_init(&j);
	j.in = img;
	j.fmt = u->ofmt;
	j.dst = out_path;
	j.wopts = u->o->wopts;
	j.conv = u->o->conv;
	j.before_commit = xf_before_commit;
	j.ctx = &c;
	int r = vdk_job_run(&j, e);
	if (r == 0) {
		xf_add_output(u->r, out_path);
		u->r->checked++;
	}
	return r;
}

static int xf_unpack_gzip(struct xf_unpack *u, const struct ova_disk *d, struct vdk_src *vs,
                          const char *out_path, struct vdk_err *e)
{
	int fd;
	const char *bad = NULL;
	const struct ova_file *f = &u->p->desc.files[d->file];
	int r = xf_tmpfile(u->dir, &fd, e);
	if (r < 0)
		return r;
	uint64_t limit = d->capacity + d->capacity / 4 + (64u << 20);
	r = xf_gunzip(vs, fd, limit, e);
	if (r == 0)
		r = ova_vsrc_finish(vs, &bad, NULL, e);
	if (r == 0 && bad) {
		vdk_findings_add(&u->r->issues, VDK_ERROR, bad, VDK_NO_OFFSET,
		                 "digest mismatch: %s not written", out_path);
		close(fd);
		return 1;
	}
	struct vdk_src *ts = NULL;
	struct vdk_image *img = NULL;
	if (r == 0)
		r = vdk_src_open_fd(fd, f->href, &ts, e);
	else
		close(fd);
	if (r == 0)
		r = vdk_image_open(ts, true, xf_src_format(d), NULL, &img, e);
	else if (ts)
		vdk_src_close(ts);
	if (r == 0)
		r = xf_convert(u, img, out_path, NULL, e);
	vdk_image_close(img);
	return r;
}

static int xf_unpack_disk(struct xf_unpack *u, const struct ova_disk *d, struct vdk_err *e)
{
	const struct ova_file *f = &u->p->desc.files[d->file];
	char out_path[PATH_MAX];
	struct vdk_src *vs;
	/* The format is "vpc" (qemu-img's name); its files are .vhd. */
	const char *ext = strcmp(u->ofmt->name, "vpc") ? u->ofmt->name : "vhd";
	int r = xf_out_path(u, f->href, ext, out_path, sizeof(out_path), e);
	if (r == 0)
		r = ova_vsrc_open(u->p, f, !u->o->no_verify, &vs, e);
	if (r < 0)
		return r;
	if (f->gzip) {
		r = xf_unpack_gzip(u, d, vs, out_path, e);
		vdk_src_close(vs);
		return r;
	}
	struct vdk_image *img = NULL;
	r = vdk_image_open(vs, false, xf_src_format(d), NULL, &img, e);
	if (r == 0)
		r = xf_convert(u, img, out_path, vs, e);
	vdk_image_close(img);
	vdk_src_close(vs);
	return r;
}

/* Files that are not disks (an ISO, a config): copied as they are. */
static int xf_copy_file(struct xf_unpack *u, const struct ova_file *f, struct vdk_err *e)
{
	char out_path[PATH_MAX];
	struct vdk_src *vs;
	struct vdk_sink *k = NULL;
	const char *bad = NULL;
	int r = xf_out_path(u, f->href, NULL, out_path, sizeof(out_path), e);
	if (r == 0)
		r = ova_vsrc_open(u->p, f, !u->o->no_verify, &vs, e);
	if (r < 0)
		return r;
	uint8_t *buf = malloc(XF_CHUNK);
	r = buf ? vdk_sink_create_file(out_path, &k, e)
	        : vdk_ioerr(e, ENOMEM, f->href, "no memory");
	for (uint64_t off = 0; r == 0 && off < vs->size;) {
		size_t n = (size_t)VDK_MIN((uint64_t)XF_CHUNK, vs->size - off);
		r = vdk_src_pread(vs, buf, n, off, e);
		if (r == 0)
			r = vdk_sink_pwrite(k, buf, n, off, e);
		off += n;
	}
	if (r == 0)
		r = ova_vsrc_finish(vs, &bad, NULL, e);
	if (r == 0 && bad) {
		vdk_findings_add(&u->r->issues, VDK_ERROR, bad, VDK_NO_OFFSET,
		                 "digest mismatch: %s not written", out_path);
		r = 1;
	}
	if (r == 0)
		r = vdk_sink_truncate(k, vs->size, e);
	if (r == 0)
		r = vdk_sink_commit(k, e);
	if (r == 0)
		xf_add_output(u->r, out_path);
	vdk_sink_close(k);
	vdk_src_close(vs);
	free(buf);
	return r;
}

static int xf_write_buf(const char *path, const void *buf, size_t len, struct ova_report *r,
                        struct vdk_err *e)
{
	struct vdk_sink *k;
	int rc = vdk_sink_create_file(path, &k, e);
	if (rc < 0)
		return rc;
	rc = len ? vdk_sink_pwrite(k, buf, len, 0, e) : 0;
	if (rc == 0)
		rc = vdk_sink_truncate(k, len, e);
	if (rc == 0)
		rc = vdk_sink_commit(k, e);
	vdk_sink_close(k);
	if (rc == 0)
		xf_add_output(r, path);
	return rc;
}

/* The descriptor (already checked against the manifest) and the inventory
 * beside the disks. */
static int xf_write_meta(struct xf_unpack *u, struct vdk_err *e)
{
	const char *ovf = u->p->m.v[u->p->ovf].name;
	char path[PATH_MAX];
	int r = xf_out_path(u, ovf, NULL, path, sizeof(path), e);
	if (r == 0)
		r = xf_write_buf(path, u->p->ovf_buf, u->p->ovf_len, u->r, e);
	if (r < 0)
		return r;
	struct vdk_json *j = ova_pkg_inventory(u->p);
	struct vdk_json *a = j ? vdk_json_set_arr(j, "outputs") : NULL;
	for (size_t i = 0; a && i < u->r->nout; i++)
		vdk_json_push_str(a, u->r->outputs[i]);
	char *txt = j ? vdk_json_render(j, true) : NULL;
	vdk_json_free(j);
	if (!txt)
		return vdk_ioerr(e, ENOMEM, ovf, "out of memory");
	r = xf_out_path(u, ovf, "json", path, sizeof(path), e);
	if (r == 0)
		r = xf_write_buf(path, txt, strlen(txt), u->r, e);
	free(txt);
	return r;
}

static bool xf_is_disk_file(const struct ova_pkg *p, size_t fi)
{
	for (size_t i = 0; i < p->desc.ndisks; i++)
		if (p->desc.disks[i].file == (int)fi)
			return true;
	return false;
}

/* The descriptor's own digest, from the buffer already in memory. */
static void xf_check_ovf(struct ova_pkg *p, struct ova_report *r)
{
	const struct ova_mf_entry *m =
	    p->mf >= 0 ? ova_mf_find(&p->man, p->m.v[p->ovf].name) : NULL;
	if (!m)
		return;
	uint8_t d[OVA_DIGEST_MAX];
	struct ova_hash *h = ova_hash_new(m->alg);
	if (!h)
		return;
	ova_hash_update(h, p->ovf_buf, p->ovf_len);
	ova_hash_final(h, d);
	ova_hash_free(h);
	if (memcmp(d, m->digest, ova_alg_len(m->alg)))
		vdk_findings_add(&r->issues, VDK_ERROR, m->name, VDK_NO_OFFSET,
		                 "%s digest mismatch", ova_alg_name(m->alg));
}

static int xf_unpack_all(struct xf_unpack *u, struct vdk_err *e)
{
	struct ova_pkg *p = u->p;
	int r = 0;
	for (size_t i = 0; r == 0 && i < p->desc.ndisks; i++)
		if (p->desc.disks[i].file >= 0)
			r = xf_unpack_disk(u, &p->desc.disks[i], e);
	for (size_t i = 0; r == 0 && i < p->desc.nfiles; i++)
		if (!xf_is_disk_file(p, i))
			r = xf_copy_file(u, &p->desc.files[i], e);
	if (r == 0)
		r = xf_write_meta(u, e);
	return r;
}

int ova_unpack(struct ova_pkg *p, const char *dir, struct ova_unpack_opts *o, struct ova_report *r,
               struct vdk_err *e)
{
	struct xf_unpack u = {.p = p, .dir = dir, .o = o, .r = r};
	u.ofmt = vdk_format_find(o->out_fmt ? o->out_fmt : "raw");
	if (!u.ofmt)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, NULL, VDK_NO_OFFSET,
		                   "unknown output format '%s'", o->out_fmt);
	bool *want = calloc(p->m.n, sizeof(bool));
	if (!want)
		return vdk_ioerr(e, ENOMEM, p->label, "out of memory");
	struct ova_verify_opts vo = {.cafile = o->cafile};
	if (!o->no_verify) {
		ova_check_structure(p, &vo, r, want);
		xf_check_ovf(p, r);
	}
	free(want);
	if (r->issues.errors)
		return 0; /* nothing written: the report says why */
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return vdk_ioerr(e, errno, dir, "cannot create: %s", strerror(errno));
	int rc = xf_unpack_all(&u, e);
	ova_free_names(u.names, u.nnames);
	if (rc != 0 || r->issues.errors) {
		/* All or nothing: a bad package leaves no disk behind, not even
		 * the ones that verified before the bad one. */
		for (size_t i = 0; i < r->nout; i++) {
			unlink(r->outputs[i]);
			free(r->outputs[i]);
		}
		r->nout = 0;
	}
	return rc > 0 ? 0 : rc;
}

/* Pack ---------------------------------------------------------------- */

struct xf_pack {
	const struct ova_pack_opts *o;
	char *name; /* VirtualSystem and file stem */
	char ovf_name[NAME_MAX + 1], mf_name[NAME_MAX + 1], cert_name[NAME_MAX + 1];
	size_t ndisks;
	struct vdk_image **imgs;
	struct ova_pack_disk *pd;
	char **hrefs;
	uint8_t (*digests)[OVA_DIGEST_MAX];
	uint64_t ovf_res, mf_len, cert_res; /* reserved data sizes */
	uint64_t mtime;
	struct vdk_sink *out;
	struct ova_vm vm; /* the hardware the OVF describes (ova_vm.c) */
};

static char *xf_default_name(const char *out)
{
	const char *b = xf_base(out);
	size_t n = strlen(b);
	if (n > 4 && !strcasecmp(b + n - 4, ".ova"))
		n -= 4;
	char *s = strndup(b, n);
	for (char *c = s; c && *c; c++)
		if (*c == '/' || (unsigned char)*c < 0x20 || *c == '(' || *c == ')')
			*c = '_';
	return s;
}

static int xf_pack_open(struct xf_pack *k, const char *const *disks, struct vdk_err *e)
{
	/* A VM folder's .vmx brings its hardware and its disks (chains
	 * opened); bare disks get generic hardware. */
	int r = ova_vm_pack_open(&k->vm, disks, &k->ndisks, &k->imgs, e);
	if (r < 0)
		return r;
	k->vm.id = k->name;
	k->pd = calloc(k->ndisks, sizeof(*k->pd));
	k->hrefs = calloc(k->ndisks, sizeof(*k->hrefs));
	k->digests = calloc(k->ndisks, sizeof(*k->digests));
	if (!k->imgs || !k->pd || !k->hrefs || !k->digests)
		return vdk_ioerr(e, ENOMEM, k->name, "out of memory");
	for (size_t i = 0; i < k->ndisks; i++) {
		if (!k->imgs[i] &&
		    (r = vdk_image_open_path(disks[i], k->o->in_fmt, NULL, &k->imgs[i], e)) < 0)
			return r;
		if (asprintf(&k->hrefs[i], "%s-disk%zu.vmdk", k->name, i + 1) < 0)
			return vdk_ioerr(e, ENOMEM, k->name, "out of memory");
		k->pd[i].href = k->hrefs[i];
		k->pd[i].capacity = k->imgs[i]->size;
		k->pd[i].file_size = UINT64_MAX;
		k->pd[i].populated = UINT64_MAX;
	}
	return 0;
}

/* Sizes of the .ovf (largest possible: every number 20 digits), .mf
 * (exact) and .cert (a trial signature, plus slack for ECDSA's variable
 * length) that are written at the front once the disks are done. */
static int xf_pack_reserve(struct xf_pack *k, struct vdk_err *e)
{
	uint8_t *buf;
	size_t len;
	int r = ova_ovf_write(&k->vm, k->pd, k->ndisks, &buf, &len, e);
	if (r < 0)
		return r;
	free(buf);
	k->ovf_res = len;
	uint8_t zero[OVA_DIGEST_MAX] = {0};
	char line[OVA_NAME_MAX + 256];
	k->mf_len = ova_mf_line(line, sizeof(line), k->o->alg, k->ovf_name, zero);
	for (size_t i = 0; i < k->ndisks; i++)
		k->mf_len += ova_mf_line(line, sizeof(line), k->o->alg, k->hrefs[i], zero);
	if (!k->o->sign_key)
		return 0;
	char *cert;
	size_t clen;
	r = ova_cert_sign(k->o->sign_key, k->o->sign_cert, k->o->alg, zero, 1, k->mf_name, &cert,
	                  &clen, e);
	if (r < 0)
		return r;
	free(cert);
	k->cert_res = clen + 64;
	return 0;
}

static uint64_t xf_member_span(const char *name, uint64_t size)
{
	return ova_tar_hdr_len(name) + vdk_round_up(size, 512);
}

/* Padding inside a reserved member: whitespace, which XML (after the root
 * element) and PEM ignore, ending with a newline. */
static void xf_filler(uint8_t *p, size_t n)
{
	memset(p, ' ', n);
	if (n)
		p[n - 1] = '\n';
}

static int xf_put_member(struct xf_pack *k, uint64_t off, const char *name, const void *data,
                         size_t len, uint64_t padded_len, struct vdk_err *e)
{
	size_t hl = ova_tar_hdr_len(name);
	uint8_t *h = malloc(hl);
	if (!h)
		return vdk_ioerr(e, ENOMEM, name, "out of memory");
	int r = ova_tar_hdr(h, hl, name, padded_len, k->mtime, e);
	if (r == 0)
		r = vdk_sink_pwrite(k->out, h, hl, off, e);
	free(h);
	if (r == 0 && len)
		r = vdk_sink_pwrite(k->out, data, len, off + hl, e);
	uint64_t fill = vdk_round_up(padded_len, 512) - len;
	uint8_t *z = r == 0 && fill ? calloc(1, (size_t)fill) : NULL;
	if (z) {
		xf_filler(z, (size_t)(padded_len - len));
		r = vdk_sink_pwrite(k->out, z, (size_t)fill, off + hl + len, e);
		free(z);
	} else if (r == 0 && fill) {
		r = vdk_ioerr(e, ENOMEM, name, "out of memory");
	}
	return r;
}

static int xf_pack_disk(struct xf_pack *k, size_t i, uint64_t *off, struct vdk_err *e)
{
	struct vdk_opts opts = {0};
	struct vdk_sink *ms = NULL;
	struct vdk_job j;
	vdk_job_init(&j);
	j.in = k->imgs[i];
	j.fmt = vdk_format_find("vmdk");
	j.wopts = &opts;
	j.conv = k->o->conv;
	if (!j.fmt)
		return vdk_unsup(e, k->hrefs[i], "vmdk", VDK_NO_OFFSET,
		                 "the VMDK writer is not available");
	int r = vdk_opts_set(&opts, "subformat", "streamOptimized", e);
	if (r == 0)
		r = ova_vm_disk_opts(&k->vm, i, &opts, e);
	if (r == 0)
		r = ova_tar_member_sink(k->out, *off, k->hrefs[i], k->o->alg, k->mtime, &ms, e);
	j.sink = ms;
	if (r == 0)
		r = vdk_job_run(&j, e);
	if (r == 0) {
		ova_tar_member_info(ms, &k->pd[i].file_size, k->digests[i], off);
		k->pd[i].populated = j.st.copied + j.st.cloned + j.st.offloaded;
	}
	vdk_sink_close(ms);
	vdk_opts_free(&opts);
	return r;
}

static int xf_pack_front(struct xf_pack *k, uint64_t *mf_off, struct vdk_err *e)
{
	uint8_t *ovf;
	size_t len;
	int r = ova_ovf_write(&k->vm, k->pd, k->ndisks, &ovf, &len, e);
	if (r < 0)
		return r;
	if (len > k->ovf_res) {
		free(ovf);
		return vdk_err_set(e, VDK_E_IO, EOVERFLOW, k->ovf_name, "ovf", VDK_NO_OFFSET,
		                   "internal error: descriptor outgrew its reservation");
	}
	r = xf_put_member(k, 0, k->ovf_name, ovf, len, k->ovf_res, e);
	uint8_t d[OVA_DIGEST_MAX];
	struct ova_hash *h = ova_hash_new(k->o->alg);
	if (r == 0 && h) {
		/* The digest covers the member as stored, padding included. */
		uint8_t *full = calloc(1, (size_t)k->ovf_res);
		if (full) {
			memcpy(full, ovf, len);
			xf_filler(full + len, (size_t)(k->ovf_res - len));
			ova_hash_update(h, full, (size_t)k->ovf_res);
			free(full);
		}
		ova_hash_final(h, d);
	}
	ova_hash_free(h);
	free(ovf);
	*mf_off = xf_member_span(k->ovf_name, k->ovf_res);
	char *mf = malloc((size_t)k->mf_len + 1);
	if (r < 0 || !mf) {
		free(mf);
		return r < 0 ? r : vdk_ioerr(e, ENOMEM, k->mf_name, "out of memory");
	}
	size_t n = ova_mf_line(mf, (size_t)k->mf_len + 1, k->o->alg, k->ovf_name, d);
	for (size_t i = 0; i < k->ndisks; i++)
		n += ova_mf_line(mf + n, (size_t)k->mf_len + 1 - n, k->o->alg, k->hrefs[i],
		                 k->digests[i]);
	r = xf_put_member(k, *mf_off, k->mf_name, mf, n, n, e);
	if (r == 0 && k->o->sign_key) {
		char *cert;
		size_t clen;
		r = ova_cert_sign(k->o->sign_key, k->o->sign_cert, k->o->alg, (uint8_t *)mf, n,
		                  k->mf_name, &cert, &clen, e);
		if (r == 0 && clen > k->cert_res)
			r = vdk_err_set(e, VDK_E_IO, EOVERFLOW, k->cert_name, NULL, VDK_NO_OFFSET,
			                "internal error: signature outgrew its reservation");
		if (r == 0)
			r = xf_put_member(k, *mf_off + xf_member_span(k->mf_name, n), k->cert_name,
			                  cert, clen, k->cert_res, e);
		if (r == 0)
			free(cert);
	}
	free(mf);
	return r;
}

static int xf_pack_run(struct xf_pack *k, const char *out, struct vdk_err *e)
{
	int r = xf_pack_reserve(k, e);
	if (r == 0)
		r = vdk_sink_create_file(out, &k->out, e);
	if (r < 0)
		return r;
	uint64_t off =
	    xf_member_span(k->ovf_name, k->ovf_res) + xf_member_span(k->mf_name, k->mf_len);
	if (k->o->sign_key)
		off += xf_member_span(k->cert_name, k->cert_res);
	for (size_t i = 0; r == 0 && i < k->ndisks; i++)
		r = xf_pack_disk(k, i, &off, e);
	uint64_t mf_off;
	if (r == 0)
		r = xf_pack_front(k, &mf_off, e);
	static const uint8_t trailer[1024];
	if (r == 0)
		r = vdk_sink_pwrite(k->out, trailer, sizeof(trailer), off, e);
	if (r == 0)
		r = vdk_sink_truncate(k->out, off + sizeof(trailer), e);
	if (r == 0)
		r = vdk_sink_commit(k->out, e);
	return r;
}

int ova_pack(const char *out, const char *const *disks, size_t ndisks,
             const struct ova_pack_opts *o, struct vdk_err *e)
{
	struct xf_pack k = {.o = o, .ndisks = ndisks, .mtime = (uint64_t)time(NULL)};
	k.name = o->name ? strdup(o->name) : xf_default_name(out);
	if (!k.name)
		return vdk_ioerr(e, ENOMEM, out, "out of memory");
	int r = 0;
	if (!ova_name_ok(k.name) || strchr(k.name, '/') || strlen(k.name) > 200 ||
	    strpbrk(k.name, "()"))
		r = vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, NULL, VDK_NO_OFFSET,
		                "bad package name '%s'", k.name);
	snprintf(k.ovf_name, sizeof(k.ovf_name), "%s.ovf", k.name);
	snprintf(k.mf_name, sizeof(k.mf_name), "%s.mf", k.name);
	snprintf(k.cert_name, sizeof(k.cert_name), "%s.cert", k.name);
	if (r == 0)
		r = xf_pack_open(&k, disks, e);
	if (r == 0)
		r = xf_pack_run(&k, out, e);
	vdk_sink_close(k.out);
	for (size_t i = 0; i < k.ndisks; i++) {
		if (k.imgs)
			vdk_image_close(k.imgs[i]);
		if (k.hrefs)
			free(k.hrefs[i]);
	}
	free(k.imgs);
	free(k.hrefs);
	free(k.pd);
	free(k.digests);
	free(k.name);
	ova_vm_free(&k.vm);
	return r;
}
