/* nbdkit-vdkit-plugin: serves any image vdkit reads, read-only, over NBD.
 *
 *   nbdkit nbdkit-vdkit-plugin.so [file=]FILE [format=FMT] [member=NAME]
 *          [allow-dir=DIR]... [allow-any-path=true] [force=true]
 *          [backing-format=FMT]
 *
 * Every VMDK kind (snapshot chains too), VHDX (an unreplayed log is
 * replayed in memory, the file is never written), VHD, qcow2 with backing
 * files, raw, and a disk inside an OVA/OVF package chosen with member=.
 *
 * The image is opened once, in get_ready (before nbdkit forks or changes
 * folder), and shared by every connection: vdkit's readers are safe to
 * call from several threads (format.h), so the thread model is PARALLEL
 * and multi-conn is advertised (nothing is ever written, so every
 * connection sees the same bytes). Related files (extents, backing files,
 * parents) are confined to the image's own folder unless allow-dir= or
 * allow-any-path= says otherwise, as with the vdkit command line.
 *
 * Errors go to nbdkit_error with vdkit's message, which names the file,
 * the format and the offset, and nbdkit_set_error gets its errno. */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "format.h"
#include "ova.h"
#include "util.h"
#include "version.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* More folders than anyone names on a command line; bounded so the
 * NULL-terminated array never grows. */
#define VDKP_MAX_ALLOW 64

static struct {
	char *file;
	const char *format; /* NULL: probe */
	const char *member; /* disk inside an OVA/OVF package */
	const char *backing_format;
	char *allow[VDKP_MAX_ALLOW + 1];
	size_t nallow;
	struct vdk_open_opts opts;
	struct ova_pkg *pkg; /* the member's source is a window of it */
	struct vdk_image *img;
	char desc[256];
} vdkp;

static void vdkp_report(const struct vdk_err *e, int fallback_errno)
{
	nbdkit_error("%s", e->msg[0] ? e->msg : "vdkit: unknown error");
	nbdkit_set_error(e->code > 0 ? e->code : fallback_errno);
}

static void vdkp_unload(void)
{
	vdk_image_close(vdkp.img);
	vdkp.img = NULL;
	if (vdkp.pkg)
		ova_pkg_close(vdkp.pkg);
	vdkp.pkg = NULL;
	free(vdkp.file);
	for (size_t i = 0; i < vdkp.nallow; i++)
		free(vdkp.allow[i]);
	vdkp.nallow = 0;
}

static int vdkp_bool(const char *value, bool *out)
{
	int b = nbdkit_parse_bool(value);
	if (b < 0)
		return -1; /* nbdkit_parse_bool reported it */
	*out = b;
	return 0;
}

static int vdkp_add_allow(const char *value)
{
	if (vdkp.nallow >= VDKP_MAX_ALLOW) {
		nbdkit_error("allow-dir: at most %d folders", VDKP_MAX_ALLOW);
		return -1;
	}
	/* Absolute now: nbdkit may change folder before the image is read. */
	char *p = nbdkit_absolute_path(value);
	if (!p)
		return -1;
	vdkp.allow[vdkp.nallow++] = p;
	vdkp.opts.access.allow_dirs = (const char *const *)vdkp.allow;
	return 0;
}

static int vdkp_config(const char *key, const char *value)
{
	if (!strcmp(key, "file")) {
		if (vdkp.file) {
			nbdkit_error("file given twice ('%s' and '%s')", vdkp.file, value);
			return -1;
		}
		/* nbdkit_absolute_path keeps a symlinked image's own folder as the
		 * confinement root, as the command line does (realpath would not). */
		vdkp.file = nbdkit_absolute_path(value);
		return vdkp.file ? 0 : -1;
	}
	if (!strcmp(key, "format")) {
		vdkp.format = value;
		return 0;
	}
	if (!strcmp(key, "member")) {
		vdkp.member = value;
		return 0;
	}
	if (!strcmp(key, "backing-format")) {
		vdkp.opts.backing_fmt = value;
		return 0;
	}
	if (!strcmp(key, "allow-dir"))
		return vdkp_add_allow(value);
	if (!strcmp(key, "allow-any-path"))
		return vdkp_bool(value, &vdkp.opts.access.allow_any);
	if (!strcmp(key, "force"))
		return vdkp_bool(value, &vdkp.opts.force);
	nbdkit_error("unknown parameter '%s' (see nbdkit vdkit --help)", key);
	return -1;
}

static bool vdkp_is_package(const char *path)
{
	size_t n = strlen(path);
	return n >= 4 && (!strcasecmp(path + n - 4, ".ova") || !strcasecmp(path + n - 4, ".ovf"));
}

static int vdkp_config_complete(void)
{
	if (!vdkp.file) {
		nbdkit_error("no image: give file=FILE (or FILE as the first parameter)");
		return -1;
	}
	if (vdkp.format && !vdk_format_find(vdkp.format)) {
		nbdkit_error("%s: unknown image format '%s'", vdkp.file, vdkp.format);
		return -1;
	}
	if (vdkp.opts.backing_fmt && !vdk_format_find(vdkp.opts.backing_fmt)) {
		nbdkit_error("%s: unknown backing format '%s'", vdkp.file, vdkp.opts.backing_fmt);
		return -1;
	}
	/* Serving the tar itself as a raw disk is never what was meant. */
	if (!vdkp.member && vdkp_is_package(vdkp.file)) {
		nbdkit_error("%s: an OVA/OVF package: choose a disk with member=NAME "
		             "(vdkit ova list shows the members)",
		             vdkp.file);
		return -1;
	}
	return 0;
}

static int vdkp_open_member(struct vdk_err *e)
{
	int r = ova_pkg_open(vdkp.file, &vdkp.pkg, e);
	if (r)
		return r;
	int idx = ova_pkg_find(vdkp.pkg, vdkp.member);
	if (idx < 0)
		return vdk_bad(e, vdkp.file, "ova", VDK_NO_OFFSET, "no member named '%s'",
		               vdkp.member);
	struct vdk_src *src;
	r = ova_member_src(vdkp.pkg, idx, &src, e);
	if (r)
		return r;
	return vdk_image_open(src, true, vdkp.format, &vdkp.opts, &vdkp.img, e);
}

/* Opened here, once for all connections, and before nbdkit forks into
 * the background: a refused image makes nbdkit exit with the reason. */
static int vdkp_get_ready(void)
{
	struct vdk_err e = {0};
	int r = vdkp.member
	            ? vdkp_open_member(&e)
	            : vdk_image_open_path(vdkp.file, vdkp.format, &vdkp.opts, &vdkp.img, &e);
	if (r) {
		vdkp_report(&e, EINVAL);
		/* vdkit's message names the command line's option. */
		if (e.code == EPERM)
			nbdkit_error(
			    "to allow a folder here, add allow-dir=DIR (or allow-any-path=true)");
		return -1;
	}
	snprintf(vdkp.desc, sizeof(vdkp.desc), "%s image %s%s%s (vdkit %s, read-only)",
	         vdkp.img->fmt->name, vdkp.file, vdkp.member ? ":" : "",
	         vdkp.member ? vdkp.member : "", VDK_VERSION);
	nbdkit_debug("vdkit: %s, %llu bytes%s", vdkp.desc, (unsigned long long)vdkp.img->size,
	             vdkp.img->dirty ? ", dirty (log replayed in memory)" : "");
	return 0;
}

static void vdkp_dump_plugin(void)
{
	printf("vdkit_version=%s\n", VDK_VERSION);
	const char *sep = "";
	printf("vdkit_formats=");
	for (size_t i = 0; vdk_formats[i]; i++) {
		if (vdk_formats[i]->open) {
			printf("%s%s", sep, vdk_formats[i]->name);
			sep = ",";
		}
	}
	printf("\n");
	printf("vdkit_packages=ova,ovf\n");
}

/* Every connection shares the one image; the handle only has to be
 * non-NULL. */
static void *vdkp_open(int readonly)
{
	(void)readonly;
	return &vdkp;
}

static void vdkp_close(void *handle)
{
	(void)handle;
}

static int64_t vdkp_get_size(void *handle)
{
	(void)handle;
	return (int64_t)vdkp.img->size;
}

static int vdkp_false(void *handle)
{
	(void)handle;
	return 0;
}

static int vdkp_true(void *handle)
{
	(void)handle;
	return 1;
}

static const char *vdkp_export_description(void *handle)
{
	(void)handle;
	return vdkp.desc;
}

/* A preferred size of the format's cluster or grain (within what NBD
 * allows) keeps qemu's and nbdcopy's requests on allocation boundaries. */
static int vdkp_block_size(void *handle, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
	(void)handle;
	uint32_t c = vdkp.img->cluster_size;
	bool pow2 = c && !(c & (c - 1));
	*minimum = 1;
	*preferred = pow2 && c >= 4096 && c <= (32u << 20) ? c : 4096;
	*maximum = 0xffffffff;
	return 0;
}

static int vdkp_pread(void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	(void)handle;
	(void)flags;
	struct vdk_err e = {0};
	if (vdk_image_pread(vdkp.img, buf, count, offset, &e)) {
		vdkp_report(&e, EIO);
		return -1;
	}
	return 0;
}

static uint32_t vdkp_nbd_type(uint32_t flags)
{
	if (flags & VDK_EXT_HOLE)
		return NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
	if (flags & VDK_EXT_ZERO)
		return NBDKIT_EXTENT_ZERO;
	return 0;
}

/* The resolved view (backing files looked through): a HOLE there reads
 * as zeroes all the way down. Batches are added until the request is
 * covered, or after the first extent when the client asked for one. */
static int vdkp_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags,
                        struct nbdkit_extents *out)
{
	(void)handle;
	struct vdk_err e = {0};
	struct vdk_extents x = {0};
	uint64_t pos = offset, end = offset + count;
	bool one = flags & NBDKIT_FLAG_REQ_ONE;
	int r = 0;
	while (!r && pos < end) {
		vdk_extents_reset(&x);
		if (vdk_image_extents(vdkp.img, pos, end - pos, &x, &e)) {
			vdkp_report(&e, EIO);
			r = -1;
			break;
		}
		if (x.n == 0)
			break;
		for (size_t i = 0; !r && i < x.n; i++)
			r = nbdkit_add_extent(out, x.v[i].off, x.v[i].len,
			                      vdkp_nbd_type(x.v[i].flags));
		pos = x.v[x.n - 1].off + x.v[x.n - 1].len;
		if (one)
			break;
	}
	vdk_extents_free(&x);
	return r;
}

static struct nbdkit_plugin plugin = {
    .name = "vdkit",
    .longname = "vdkit: VMDK, VHDX, VHD, qcow2, raw and OVA disks, read-only",
    .version = VDK_VERSION,
    .description = "Serves any virtual disk vdkit reads (VMDK of every kind with snapshot "
                   "chains, VHDX with an unreplayed log, VHD, qcow2 with backing files, raw, "
                   "a disk inside an OVA), read-only.",
    .unload = vdkp_unload,
    .config = vdkp_config,
    .config_complete = vdkp_config_complete,
    .config_help = "[file=]FILE            The image (or .ova/.ovf package with member=).\n"
                   "format=FMT             vmdk, vhdx, vpc, qcow2, raw (default: probe).\n"
                   "member=NAME            Serve the disk NAME inside the OVA/OVF package.\n"
                   "allow-dir=DIR          Extents/backing files may also come from DIR\n"
                   "                       (repeatable; default: the image's folder only).\n"
                   "allow-any-path=true    Allow related files from anywhere.\n"
                   "force=true             Open e.g. a snapshot whose parent CID differs.\n"
                   "backing-format=FMT     Format of the first backing file.",
    .magic_config_key = "file",
    .get_ready = vdkp_get_ready,
    .dump_plugin = vdkp_dump_plugin,
    .open = vdkp_open,
    .close = vdkp_close,
    .get_size = vdkp_get_size,
    .export_description = vdkp_export_description,
    .block_size = vdkp_block_size,
    .can_write = vdkp_false,
    .can_flush = vdkp_false,
    .can_trim = vdkp_false,
    .can_zero = vdkp_false,
    .can_multi_conn = vdkp_true,
    .can_extents = vdkp_true,
    .pread = vdkp_pread,
    .extents = vdkp_extents,
};

NBDKIT_REGISTER_PLUGIN(plugin)
