/* The conversion job (job.h): every front end's one path from an input
 * image to a committed, optionally verified output. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "apply.h"
#include "job.h"
#include "remote.h"

void vdk_job_init(struct vdk_job *j)
{
	memset(j, 0, sizeof(*j));
	vdk_convert_opts_init(&j->conv);
}

static bool job_to_stdout(const struct vdk_job *j)
{
	return !j->sink && j->dst && !strcmp(j->dst, "-");
}

static bool job_same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	if (vdk_is_uri(a) || vdk_is_uri(b))
		return !strcmp(a, b);
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

static int job_resolve_format(struct vdk_job *j, struct vdk_err *e)
{
	if (j->fmt)
		return 0;
	const char *name = j->dst_fmt ? j->dst_fmt : "raw";
	j->fmt = vdk_format_find(name);
	if (!j->fmt || !j->fmt->create)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, NULL, VDK_NO_OFFSET,
		                   "unknown output format '%s' (valid: %s)", name,
		                   vdk_format_names(true));
	return 0;
}

/* Re-read the committed output through its own reader and compare the
 * content digest with the one computed on the way in. Formats that round
 * the size up (VHD's CHS geometry, whole sectors) make the output longer:
 * its digest is taken over the source's size and the rest must be zero. */
static int job_verify(struct vdk_job *j, uint64_t src_size, struct vdk_err *e)
{
	struct vdk_image *img;
	int r = vdk_image_open_path(j->dst, j->fmt->name, &j->open, &img, e);
	if (r)
		return r;
	uint64_t out_size = img->size;
	bool tail_zero = true;
	uint8_t d[VDK_DIGEST_MAX];
	if (out_size > src_size)
		r = vdk_image_is_zero(img, src_size, out_size - src_size, &tail_zero, e);
	if (!r && out_size >= src_size) {
		img->size = src_size;
		r = vdk_image_digest(img, j->conv.threads, d, e);
		img->size = out_size;
	}
	vdk_image_close(img);
	if (!r && (out_size < src_size || !tail_zero || memcmp(d, j->st.digest, VDK_DIGEST_MAX)))
		r = vdk_err_set(e, VDK_E_DIFFER, EIO, j->dst, j->fmt->name, VDK_NO_OFFSET,
		                "verification failed: the output's content differs from the "
		                "source's");
	j->verified = r == 0;
	return r;
}

/* Writer on the sink: pipeline, finalize, hook, commit. */
static int job_write(struct vdk_job *j, struct vdk_sink *sink, struct vdk_err *e)
{
	struct vdk_writer *w;
	int r = vdk_writer_create(j->fmt, sink, j->in->size, j->wopts, j->in, &w, e);
	if (r)
		return r;
	struct vdk_convert_opts o = j->conv;
	o.digest = o.digest || j->verify || j->warm;
	r = vdk_convert(j->in, w, &o, &j->st, e);
	if (!r)
		r = vdk_writer_finalize(w, e);
	if (!r && j->before_commit)
		r = j->before_commit(j, e);
	if (!r)
		r = vdk_sink_commit(sink, e);
	vdk_writer_close(w);
	return r;
}

static int job_open_sink(struct vdk_job *j, struct vdk_sink **out, struct vdk_err *e)
{
	if (job_to_stdout(j))
		return vdk_sink_open_stream(1, "(stdout)", out, e);
	if (!j->dst)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, NULL, VDK_NO_OFFSET,
		                   "internal error: a job needs a sink or a destination");
	if (vdk_is_uri(j->dst))
		return vdk_sink_open_uri(j->dst, j->in->size, out, e);
	return vdk_sink_open_target(j->dst, j->target, out, e);
}

/* --warm: the output must be a local file a delta can later be applied
 * to, and the source a VMDK with a CID. */
static int job_warm_precheck(struct vdk_job *j, struct vdk_err *e)
{
	if (j->sink || !j->dst || job_to_stdout(j) || vdk_is_uri(j->dst))
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, j->dst, NULL, VDK_NO_OFFSET,
		                   "--warm needs a local output file (deltas are applied to it "
		                   "in place later)");
	return vdk_warm_precheck(j->in, j->fmt, j->dst, e);
}

static int job_run_open(struct vdk_job *j, struct vdk_err *e)
{
	int r = job_resolve_format(j, e);
	if (!r && j->warm)
		r = job_warm_precheck(j, e);
	if (r)
		return r;
	if (j->verify && (j->sink || job_to_stdout(j)))
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, j->dst ? j->dst : j->sink->name, NULL,
		                   VDK_NO_OFFSET,
		                   "--verify needs an output file to read back; a stream "
		                   "cannot be verified");
	if (j->sink)
		return job_write(j, j->sink, e);
	struct vdk_sink *sink = NULL;
	r = job_open_sink(j, &sink, e);
	if (!r)
		r = job_write(j, sink, e);
	if (!r && j->verify)
		r = job_verify(j, j->in->size, e);
	if (!r && j->warm)
		r = vdk_warm_record_init(j->in, j->dst, j->fmt->name, j->st.digest, e);
	if (r && sink) /* never leave a wrong output looking valid, extents too */
		vdk_sink_withdraw(sink);
	vdk_sink_close(sink); /* removes the temporary output unless committed */
	return r;
}

int vdk_job_run(struct vdk_job *j, struct vdk_err *e)
{
	memset(&j->st, 0, sizeof(j->st));
	j->verified = false;
	if (j->in)
		return job_run_open(j, e);
	if (!j->src)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, NULL, NULL, VDK_NO_OFFSET,
		                   "internal error: a job needs an input");
	if (!j->sink && j->dst && !job_to_stdout(j) && job_same_file(j->src, j->dst))
		return vdk_err_set(e, VDK_E_USAGE, EEXIST, j->dst, NULL, VDK_NO_OFFSET,
		                   "output is the input file: refused");
	int r = vdk_image_open_path(j->src, j->src_fmt, &j->open, &j->in, e);
	if (r)
		return r;
	r = job_run_open(j, e);
	vdk_image_close(j->in);
	j->in = NULL;
	return r;
}

int vdk_convert_in_place(const char *path, const char *new_name, const char *src_fmt,
                         const char *dst_fmt, struct vdk_opts *wopts, struct vdk_err *e)
{
	const struct vdk_format *f = dst_fmt ? vdk_format_find(dst_fmt) : NULL;
	if (!f || !f->in_place)
		return vdk_err_set(e, VDK_E_USAGE, ENOTSUP, path, dst_fmt, VDK_NO_OFFSET,
		                   "in-place conversion is not available for this output "
		                   "format (available: %s)",
		                   vdk_format_names_in_place());
	if (!src_fmt || strcmp(src_fmt, f->in_place_from))
		return vdk_err_set(e, VDK_E_USAGE, ENOTSUP, path, f->name, VDK_NO_OFFSET,
		                   "in-place conversion to %s takes -f %s input", f->name,
		                   f->in_place_from);
	static struct vdk_opts no_opts;
	return f->in_place(path, new_name, wopts ? wopts : &no_opts, e);
}
