/* Writers: creation, option checking, defaults for optional callbacks. */
#include <errno.h>
#include <stdlib.h>

#include "format.h"
#include "util.h"

int vdk_writer_create(const struct vdk_format *fmt, struct vdk_sink *sink, uint64_t size,
                      struct vdk_opts *opts, const struct vdk_image *source,
                      struct vdk_writer **out, struct vdk_err *e)
{
	if (!fmt->create)
		return vdk_err_set(e, VDK_E_USAGE, ENOTSUP, sink->name, fmt->name, VDK_NO_OFFSET,
		                   "this format can be read but not written");
	if ((sink->flags & VDK_SINK_SEQUENTIAL) && !(fmt->wcaps & VDK_WCAP_SEQUENTIAL))
		return vdk_err_set(e, VDK_E_USAGE, ESPIPE, sink->name, fmt->name, VDK_NO_OFFSET,
		                   "this format cannot be written to a stream");
	static struct vdk_opts no_opts;
	struct vdk_writer *w = calloc(1, sizeof(*w));
	if (!w || (fmt->wstate_size && !(w->state = calloc(1, fmt->wstate_size)))) {
		free(w);
		return vdk_nomem(e, sink->name, fmt->name, "the writer's state");
	}
	w->fmt = fmt;
	w->sink = sink;
	w->size = size;
	w->opts = opts ? opts : &no_opts;
	w->caps = fmt->wcaps | (fmt->encode ? VDK_WCAP_ENCODE : 0);
	w->granularity = 512;
	w->source = source;
	int r = vdk_err_ensure(e, fmt->create(w, e), sink->name, fmt->name, "creating the output");
	if (!r)
		r = vdk_opts_check_unused(w->opts, fmt->name, e);
	if (!r &&
	    (!vdk_is_pow2(w->granularity) || w->granularity < 512 || w->granularity > (32u << 20)))
		r = vdk_err_set(e, VDK_E_IO, EPROTO, sink->name, fmt->name, VDK_NO_OFFSET,
		                "internal error: bad writer granularity %u", w->granularity);
	if (r) {
		vdk_writer_close(w);
		return r;
	}
	*out = w;
	return 0;
}

int vdk_writer_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                     struct vdk_err *e)
{
	if (!vdk_range_ok(off, len, w->size))
		return vdk_err_set(e, VDK_E_IO, EINVAL, vdk_writer_name(w), w->fmt->name, off,
		                   "write past the end of the virtual disk");
	return vdk_err_ensure(e, w->fmt->write(w, buf, len, off, e), vdk_writer_name(w),
	                      w->fmt->name, "writing the output");
}

int vdk_writer_zero(struct vdk_writer *w, uint64_t off, uint64_t len, struct vdk_err *e)
{
	if (!vdk_range_ok(off, len, w->size))
		return vdk_err_set(e, VDK_E_IO, EINVAL, vdk_writer_name(w), w->fmt->name, off,
		                   "write past the end of the virtual disk");
	if (w->fmt->write_zeroes)
		return vdk_err_ensure(e, w->fmt->write_zeroes(w, off, len, e), vdk_writer_name(w),
		                      w->fmt->name, "writing zeroes");
	size_t bufsz = (size_t)VDK_MIN(len, (uint64_t)1 << 20);
	uint8_t *z = calloc(1, bufsz ? bufsz : 1);
	if (!z)
		return vdk_nomem(e, vdk_writer_name(w), w->fmt->name, "a zero buffer");
	int r = 0;
	while (!r && len) {
		size_t n = (size_t)VDK_MIN(len, (uint64_t)bufsz);
		r = w->fmt->write(w, z, n, off, e);
		off += n;
		len -= n;
	}
	free(z);
	return r;
}

int vdk_writer_finalize(struct vdk_writer *w, struct vdk_err *e)
{
	int r = w->fmt->finalize ? w->fmt->finalize(w, e) : 0;
	return vdk_err_ensure(e, r, vdk_writer_name(w), w->fmt->name, "finishing the output");
}

int vdk_writer_finish(struct vdk_writer *w, struct vdk_err *e)
{
	int r = vdk_writer_finalize(w, e);
	if (!r)
		r = vdk_sink_commit(w->sink, e);
	return r;
}

void vdk_writer_close(struct vdk_writer *w)
{
	if (!w)
		return;
	if (w->fmt->wclose)
		w->fmt->wclose(w);
	free(w->state);
	free(w);
}
