/* The format interface. Each module in formats/ fills one struct vdk_format
 * with designated initializers (reader and writer halves); formats/registry.c
 * lists them all. The core allocates per-image state (state_size bytes,
 * zeroed) and always calls close; drivers free only what they allocate. */
#ifndef VDK_FORMAT_H
#define VDK_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "findings.h"
#include "io.h"
#include "json.h"
#include "opts.h"

/* Extents, nbdkit's model: ZERO and HOLE are independent bits.
 *   DATA (no bits)  bytes are stored here; fd >= 0 says where verbatim
 *   ZERO            reads as zeroes (allocated or not)
 *   HOLE            not allocated in this image: a backing file shows
 *                   through, or zeroes when there is none (HOLE|ZERO)
 */
enum {
	VDK_EXT_ZERO = 1u << 0,
	VDK_EXT_HOLE = 1u << 1,
};

struct vdk_extent {
	uint64_t off;
	uint64_t len;
	uint32_t flags;
	uint32_t depth; /* chain depth the data comes from (map) */
	int fd;         /* DATA stored verbatim: fd and physical offset, else -1 */
	uint64_t phys;
};

struct vdk_extents {
	struct vdk_extent *v;
	size_t n, cap;
};

/* Readers stop adding when this says true (bounded memory per call). */
#define VDK_EXTENTS_BATCH 4096
/* Append (merging with the previous extent when flags and verbatim location
 * continue it). Returns 0 or -ENOMEM. Extents must be ascending and
 * contiguous. */
int vdk_extents_add(struct vdk_extents *x, uint64_t off, uint64_t len, uint32_t flags, int fd,
                    uint64_t phys);
static inline bool vdk_extents_full(const struct vdk_extents *x)
{
	return x->n >= VDK_EXTENTS_BATCH;
}
void vdk_extents_reset(struct vdk_extents *x);
void vdk_extents_free(struct vdk_extents *x);

struct vdk_open_opts {
	struct vdk_access access; /* folders parents/extents may come from */
	bool force;               /* e.g. open a snapshot whose parent CID does not match */
	const char *backing_fmt;  /* user's format for the backing file */
	/* info, as qemu-img: record the backing file's name but do not open
	 * it (an overlay is inspected before its parent arrives). */
	bool no_backing;
};

struct vdk_format;
struct vdk_update;

struct vdk_image {
	const struct vdk_format *fmt;
	struct vdk_src *src;
	bool own_src;
	void *state;           /* fmt->state_size bytes, zeroed, owned by the core */
	uint64_t size;         /* virtual size in bytes, set by open */
	uint32_t cluster_size; /* 0 when the format has none */
	bool dirty;            /* unclean-shutdown flag or unreplayed log */
	const struct vdk_open_opts *opts;
	struct vdk_image *backing; /* set by vdk_image_open_backing; core closes */
	struct vdk_image *child;   /* the image whose backing this is */
	unsigned depth;            /* 0 for the top image */
	char *backing_name;        /* as the header stores it (info), or NULL */
	char *backing_fmt_name;    /* the format the header names, or NULL */
};

/* What check may repair (qemu-img check -r leaks|all); in, set by the
 * caller. A check op given repair=true and fix=0 repairs everything. */
enum { VDK_FIX_LEAKS = 1u << 0, VDK_FIX_ERRORS = 1u << 1 };

struct vdk_check {
	uint64_t corruptions;
	uint64_t leaks;
	uint64_t fixed; /* corruptions fixed */
	uint64_t leaks_fixed;
	uint64_t check_errors; /* parts that could not be checked */
	unsigned fix;          /* in: VDK_FIX_* */
	/* Image statistics as qemu-img check reports them (0 when unknown). */
	uint64_t image_end_offset, total_clusters, allocated_clusters;
	uint64_t fragmented_clusters, compressed_clusters;
	struct vdk_findings findings; /* one per problem, with its offset */
};

struct vdk_writer {
	const struct vdk_format *fmt;
	struct vdk_sink *sink;
	void *state;   /* fmt->wstate_size bytes, zeroed, owned by the core */
	uint64_t size; /* virtual size */
	struct vdk_opts *opts;
	unsigned caps; /* VDK_WCAP_*, from fmt->wcaps; create may refine */
	/* Zero runs shorter than this are written as data; data runs handed
	 * to write/encode are aligned to it (grain, cluster). >= 512. */
	uint32_t granularity;
	/* Hints from the source, set before create (descriptor fields etc.). */
	const struct vdk_image *source;
};

enum {
	VDK_WCAP_ZEROED = 1u << 0,     /* unwritten ranges read as zero: skip them */
	VDK_WCAP_SEQUENTIAL = 1u << 1, /* writes must come in ascending order */
	VDK_WCAP_CLONE = 1u << 2,      /* has clone(): payload at aligned offsets */
	/* Data goes through encode/write_encoded (set by the core when the
	 * format has encode; create clears it when this output needs no
	 * transform, e.g. an uncompressed qcow2, so bytes are not copied). */
	VDK_WCAP_ENCODE = 1u << 3,
	/* write() may run on worker threads at once, for disjoint ranges in
	 * any order (a raw file: the offsets are the disk's own). */
	VDK_WCAP_PARALLEL = 1u << 4,
};

/* Encoded output of a worker-thread transform (a deflated grain run...). */
struct vdk_buf {
	uint8_t *data;
	size_t len, cap;
};
int vdk_buf_reserve(struct vdk_buf *b, size_t cap);

/* One writer option, for "-o help" (a table ends with a NULL name). */
struct vdk_opt_desc {
	const char *name;
	const char *type;    /* "size", "bool", "enum", "number", "string" */
	const char *def;     /* default, as the user would type it */
	const char *allowed; /* "a, b, c" or a range; NULL: any value of the type */
	const char *help;
};

struct vdk_format {
	const char *name;    /* -f / -O name, as qemu-img spells it */
	const char *aliases; /* space-separated, or NULL */
	const char *description;

	/* ---- reader ---- */
	size_t state_size;
	/* Score 0..100 from the first bytes (buf holds min(len, 4096)) and
	 * the source size; 0 means "not mine". raw scores 1. */
	int (*probe)(const uint8_t *buf, size_t len, uint64_t size);
	int (*open)(struct vdk_image *img, struct vdk_err *e);
	/* Describe [off, off+len): append ascending contiguous extents starting
	 * at off; may stop early (e.g. when vdk_extents_full), never add nothing.
	 * NULL: everything is DATA. */
	int (*extents)(struct vdk_image *img, uint64_t off, uint64_t len, struct vdk_extents *out,
	               struct vdk_err *e);
	/* Read a range the format reported as DATA (ZERO and HOLE ranges are
	 * served by the core). May be called concurrently from worker threads:
	 * guard mutable caches. */
	int (*pread)(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e);
	/* Format-specific fields for `info` ("format-specific"."data"). */
	int (*info)(struct vdk_image *img, struct vdk_json *data, struct vdk_err *e);
	/* Structural check beyond what open verified; repair when asked. */
	int (*check)(struct vdk_image *img, struct vdk_check *r, bool repair, struct vdk_err *e);
	void (*close)(struct vdk_image *img);

	/* ---- writer ---- */
	size_t wstate_size;
	unsigned wcaps;
	/* Read options from w->opts, lay out the container on w->sink. */
	int (*create)(struct vdk_writer *w, struct vdk_err *e);
	/* Data at off (ascending when SEQUENTIAL; aligned to granularity
	 * except at the end of the disk). */
	int (*write)(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
	             struct vdk_err *e);
	/* Optional thread-safe transform run on worker threads (compress a
	 * grain run); its output then goes to write_encoded, in order. */
	int (*encode)(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
	              struct vdk_buf *out, struct vdk_err *e);
	int (*write_encoded)(struct vdk_writer *w, const struct vdk_buf *enc, uint64_t off,
	                     uint64_t len, struct vdk_err *e);
	/* Optional: make [off, off+len) read as zeroes. Default: the core
	 * writes zero buffers through write. */
	int (*write_zeroes)(struct vdk_writer *w, uint64_t off, uint64_t len, struct vdk_err *e);
	/* Optional (VDK_WCAP_CLONE): place [off, off+len) of the virtual disk
	 * by sharing src_fd@src_off; returns VDK_CLONED/VDK_OFFLOADED, or
	 * -EOPNOTSUPP to make the core copy it through write instead. */
	int (*clone)(struct vdk_writer *w, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
	             enum vdk_clone_mode mode, struct vdk_err *e);
	/* Write metadata, footers, trailers. The core then commits the sink. */
	int (*finalize)(struct vdk_writer *w, struct vdk_err *e);
	void (*wclose)(struct vdk_writer *w);

	/* ---- in place (optional): the file at path becomes this format
	 * without its data moving (vdk_convert_in_place in job.h). 1 when it
	 * already was. in_place_from names the only input format it takes. */
	int (*in_place)(const char *path, const char *new_name, struct vdk_opts *o,
	                struct vdk_err *e);
	const char *in_place_from;

	/* ---- packages: OVF DiskSection ovf:format URIs (DSP0243 9.3) that
	 * name this format, matched case-insensitively as substrings, NULL-
	 * terminated; the OVA code opens such disks with this reader. */
	const char *const *ovf_formats;
	/* The URI written for this format in an OVF we produce, or NULL. */
	const char *ovf_format_uri;
	/* The -o keys create reads (documentation only; create decides). */
	const struct vdk_opt_desc *wopts;

	/* ---- in-place edits (optional) ---- */
	/* Set the virtual size of the image file at path (already opened and
	 * closed as this format by the caller). Shrinking only when shrink;
	 * opts: "preallocation" for the part that grows. */
	int (*resize)(const char *path, uint64_t size, bool shrink, struct vdk_opts *opts,
	              struct vdk_err *e);

	/* ---- update in place (optional; convert/update.h has the crash
	 * contract): guest data written into an existing image. */
	size_t ustate_size;
	/* u->fd is open O_RDWR; set u->size and u->granularity. */
	int (*update_open)(struct vdk_update *u, struct vdk_err *e);
	int (*update_write)(struct vdk_update *u, const void *buf, size_t len, uint64_t off,
	                    struct vdk_err *e);
	/* Optional: default writes zero buffers through update_write. */
	int (*update_zero)(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e);
	/* Make everything written durable and referenced, in crash-safe order. */
	int (*update_flush)(struct vdk_update *u, struct vdk_err *e);
	void (*update_close)(struct vdk_update *u);

	/* ---- rebase -u (optional): make the image at path name backing as
	 * its backing file (NULL: none) of format backing_fmt (NULL: unsaid),
	 * nothing else changed, crash-safe (qemu's bdrv_change_backing_file). */
	int (*set_backing)(const char *path, const char *backing, const char *backing_fmt,
	                   struct vdk_err *e);

	/* ---- commit's emptying of IMAGE (optional): the writer options that
	 * make img again with no data of its own, over the same backing file
	 * (qemu's make_empty). *why instead, a static string, when the writer
	 * cannot make it again (IMAGE is then kept, and the reason said). */
	int (*empty_opts)(struct vdk_image *img, struct vdk_opts *o, const char **why,
	                  struct vdk_err *e);
};

/* Registry (formats/registry.c) ------------------------------------- */

extern const struct vdk_format *const vdk_formats[]; /* NULL-terminated */
const struct vdk_format *vdk_format_find(const char *name);
/* The best-scoring reader for src; raw when nothing else matches. */
int vdk_format_probe(struct vdk_src *src, const struct vdk_format **out, struct vdk_err *e);
/* The reader an OVF ovf:format URI names, or NULL (then probe). */
const struct vdk_format *vdk_format_for_ovf(const char *uri);
/* "raw, vmdk, ..." for messages: every format (writable: only those with a
 * writer), and those with an in-place conversion. Static strings. */
const char *vdk_format_names(bool writable);
const char *vdk_format_names_in_place(void);

/* Images ------------------------------------------------------------ */

/* Open src as format fmt_name (NULL: probe). own_src: close src with the
 * image. opts may be NULL. */
int vdk_image_open(struct vdk_src *src, bool own_src, const char *fmt_name,
                   const struct vdk_open_opts *opts, struct vdk_image **out, struct vdk_err *e);
int vdk_image_open_path(const char *path, const char *fmt_name, const struct vdk_open_opts *opts,
                        struct vdk_image **out, struct vdk_err *e);
/* For readers: open name (relative to img's source) as img's backing file,
 * confined by img->opts->access, at most 64 deep, refusing loops. fmt_name
 * NULL probes, but never into a format riskier than the header says. */
int vdk_image_open_backing(struct vdk_image *img, const char *name, const char *fmt_name,
                           struct vdk_err *e);
void vdk_image_close(struct vdk_image *img);

/* Resolved view: extents with backing files looked through (a HOLE here is
 * zeroes all the way down), and reads of any range. */
int vdk_image_extents(struct vdk_image *img, uint64_t off, uint64_t len, struct vdk_extents *out,
                      struct vdk_err *e);
int vdk_image_pread(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e);
/* What img itself says of [off, off+len), its backing file not looked
 * through (HOLE: not in this image), checked to be well formed. */
int vdk_image_own_extents(struct vdk_image *img, uint64_t off, uint64_t len,
                          struct vdk_extents *out, struct vdk_err *e);
/* The qemu-img-shaped `info` object; NULL with e set on failure. */
struct vdk_json *vdk_image_info(struct vdk_image *img, const char *filename, struct vdk_err *e);

/* Writers ----------------------------------------------------------- */

int vdk_writer_create(const struct vdk_format *fmt, struct vdk_sink *sink, uint64_t size,
                      struct vdk_opts *opts, const struct vdk_image *source,
                      struct vdk_writer **out, struct vdk_err *e);
/* The output's name for messages (NULL for the digest's null writer). */
static inline const char *vdk_writer_name(const struct vdk_writer *w)
{
	return w->sink ? w->sink->name : NULL;
}
int vdk_writer_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                     struct vdk_err *e);
int vdk_writer_zero(struct vdk_writer *w, uint64_t off, uint64_t len, struct vdk_err *e);
/* Write the format's metadata and trailers; the sink is not committed. */
int vdk_writer_finalize(struct vdk_writer *w, struct vdk_err *e);
/* finalize + commit the sink. */
int vdk_writer_finish(struct vdk_writer *w, struct vdk_err *e);
/* Frees; a writer not finished leaves nothing behind (sink aborted). */
void vdk_writer_close(struct vdk_writer *w);

#endif
