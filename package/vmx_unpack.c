/* `vdkit ova unpack VM.vmx DIR`: every present hard disk of a VM folder
 * converted into DIR, snapshot chains consolidated (the reader resolves
 * the chain, the writer gets one disk). All or nothing: when one disk
 * fails, the outputs already written are removed. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "job.h"
#include "util.h"
#include "vmx.h"

/* DIR/<disk file's base name, its "-000001" snapshot suffix and its
 * extension dropped>.<fmt>: a chain becomes the disk it snapshots. */
static int vmx_out_name(const char *file, const char *ext, char *out, size_t cap)
{
	const char *b = strrchr(file, '/');
	char base[NAME_MAX + 1];
	snprintf(base, sizeof(base), "%s", b ? b + 1 : file);
	char *dot = strrchr(base, '.');
	if (dot && dot != base)
		*dot = 0;
	size_t n = strlen(base);
	if (n > 7 && base[n - 7] == '-' && strspn(base + n - 6, "0123456789") == 6)
		base[n - 7] = 0;
	if (!base[0] || !strcmp(base, ".") || !strcmp(base, ".."))
		return -EINVAL;
	return (size_t)snprintf(out, cap, "%s.%s", base, ext) < cap ? 0 : -ENAMETOOLONG;
}

static int vmx_unpack_one(struct vmx_folder *f, size_t i, const char *path,
                          struct vmx_unpack_opts *o, struct vdk_err *e)
{
	struct vdk_job j;
	vdk_job_init(&j);
	j.dst = path;
	j.dst_fmt = o->out_fmt;
	j.wopts = o->wopts;
	j.conv = o->conv;
	int r = vmx_open_disk(f, i, o->open, &j.in, e);
	if (r == 0)
		r = vdk_job_run(&j, e);
	vdk_image_close(j.in);
	return r;
}

static int vmx_add_out(struct vmx_unpack_result *res, const char *path)
{
	for (size_t i = 0; i < res->n; i++)
		if (!strcmp(res->paths[i], path))
			return -EEXIST;
	char **v = realloc(res->paths, (res->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	res->paths = v;
	if (!(v[res->n] = strdup(path)))
		return -ENOMEM;
	res->n++;
	return 0;
}

void vmx_unpack_result_free(struct vmx_unpack_result *res)
{
	for (size_t i = 0; i < res->n; i++)
		free(res->paths[i]);
	free(res->paths);
	res->paths = NULL;
	res->n = 0;
}

static int vmx_unpack_all(struct vmx_folder *f, const char *dir, struct vmx_unpack_opts *o,
                          struct vmx_unpack_result *res, struct vdk_err *e)
{
	for (size_t i = 0; i < f->vm.ndisks; i++) {
		const struct vmx_dev *d = &f->vm.disks[i];
		char name[NAME_MAX + 1], path[PATH_MAX];
		if (!d->present)
			continue;
		if (!d->file || vmx_out_name(d->file, o->out_fmt, name, sizeof(name)) < 0)
			return vdk_bad(e, f->path, "vmx", VDK_NO_OFFSET,
			               "%s%u:%u: no usable file name for an output",
			               vmx_bus_name(d->bus), d->ctrl, d->unit);
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
			return vdk_bad(e, dir, NULL, VDK_NO_OFFSET, "output path too long");
		int r = vmx_add_out(res, path);
		if (r == -EEXIST)
			return vdk_bad(e, f->path, "vmx", VDK_NO_OFFSET,
			               "two disks would be written as %s", path);
		if (r < 0)
			return vdk_ioerr(e, ENOMEM, f->path, "out of memory");
		if ((r = vmx_unpack_one(f, i, path, o, e)) < 0) {
			free(res->paths[--res->n]);
			return r;
		}
	}
	return 0;
}

int vmx_unpack(const char *vmx, const char *dir, struct vmx_unpack_opts *o,
               struct vmx_unpack_result *res, struct vdk_err *e)
{
	struct vmx_folder f;
	memset(res, 0, sizeof(*res));
	int r = vmx_open(vmx, &f, e);
	if (r < 0)
		return r;
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		r = vdk_ioerr(e, errno, dir, "cannot create: %s", strerror(errno));
	if (r == 0)
		r = vmx_unpack_all(&f, dir, o, res, e);
	if (r < 0) {
		for (size_t i = 0; i < res->n; i++)
			unlink(res->paths[i]);
		vmx_unpack_result_free(res);
	}
	vmx_close(&f);
	return r;
}
