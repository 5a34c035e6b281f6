/* I/O sources and sinks. Formats read through a vdk_src and write through a
 * vdk_sink, never through a file name, so the same reader serves a file, a
 * memory buffer (fuzzers), a window of another source (a member inside an
 * OVA, a VMDK extent at an offset) or a forward-only stream (stdin). */
#ifndef VDK_IO_H
#define VDK_IO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define VDK_SIZE_UNKNOWN UINT64_MAX

struct vdk_src;
struct vdk_access;

struct vdk_src_ops {
	/* Read exactly len bytes at off (already range-checked by the core). */
	int (*pread)(struct vdk_src *s, void *buf, size_t len, uint64_t off, struct vdk_err *e);
	/* Open another file that belongs with this one (a VMDK extent, a backing
	 * file, an OVA member). NULL: not possible (memory buffers). */
	int (*open_related)(struct vdk_src *s, const char *name, const struct vdk_access *acc,
	                    struct vdk_src **out, struct vdk_err *e);
	void (*close)(struct vdk_src *s);
	/* Optional, for sources that are not local files (nfs://): an error
	 * when the file changed size or mtime since it was opened. */
	int (*check_unchanged)(struct vdk_src *s, struct vdk_err *e);
	/* Optional, for sources that are not files but know where their data
	 * is (NBD block status): as vdk_src_next_data, for off < end <= size.
	 * A failure makes the core treat [off, end) as data. */
	int (*block_status)(const struct vdk_src *s, uint64_t off, uint64_t end, uint64_t *data,
	                    uint64_t *hole, struct vdk_err *e);
};

enum {
	VDK_SRC_STREAM = 1u << 0, /* forward-only: pread offsets never go back */
	VDK_SRC_REMOTE = 1u << 1, /* reads wait on a network (NBD): more in flight help */
};

struct vdk_src {
	const struct vdk_src_ops *ops;
	char *name;    /* for messages: the path, or "ova:member" */
	uint64_t size; /* VDK_SIZE_UNKNOWN for streams of unknown length */
	unsigned flags;
	/* When fd >= 0, byte i of this source is byte fd_off + i of fd: the
	 * pipeline may clone from it. -1 for memory and streams. */
	int fd;
	uint64_t fd_off;
	uint64_t pos; /* streams: next offset */
	dev_t dev;    /* identity of the underlying file, to refuse chain loops */
	ino_t ino;
	int64_t mtime_ns; /* at open: a file still being written is refused */
	/* The last data run and hole lseek found, [a, b) (a == b: none).
	 * SEEK_HOLE costs what lies between the offset and the hole (tmpfs
	 * walks the page cache, XFS the extent list), so each worker asking
	 * about its piece of one long run must not pay for the whole run:
	 * that made a dense 2 GiB file on tmpfs take 27 s of system time. */
	pthread_mutex_t seek_lock;
	uint64_t seek_data[2], seek_hole[2];
	void *priv;
};

/* Which folders open_related may reach. The image's own folder is always
 * allowed; anything else must be named by the user (docs/ARCHITECTURE.md, untrusted
 * input). */
struct vdk_access {
	const char *const *allow_dirs; /* NULL-terminated, or NULL */
	bool allow_any;                /* the user allowed every path */
};

int vdk_src_open_file(const char *path, struct vdk_src **out, struct vdk_err *e);
/* Adopts fd (closed on vdk_src_close). */
int vdk_src_open_fd(int fd, const char *name, struct vdk_src **out, struct vdk_err *e);
/* Memory: the buffer is borrowed and must outlive the source. */
int vdk_src_open_mem(const void *buf, size_t len, const char *name, struct vdk_src **out,
                     struct vdk_err *e);
/* A window [off, off+len) of parent. The window keeps a reference to parent;
 * parent must outlive it. */
int vdk_src_open_window(struct vdk_src *parent, uint64_t off, uint64_t len, const char *name,
                        struct vdk_src **out, struct vdk_err *e);
/* A forward-only stream over a pipe or stdin (fd is not closed). */
int vdk_src_open_stream(int fd, const char *name, struct vdk_src **out, struct vdk_err *e);

/* Read exactly len bytes at off; reading past the end is a bad-input error
 * naming the offset. Streams skip forward and refuse to go back. */
int vdk_src_pread(struct vdk_src *s, void *buf, size_t len, uint64_t off, struct vdk_err *e);
/* Read up to len bytes; *got is set (short only at end of source). */
int vdk_src_pread_upto(struct vdk_src *s, void *buf, size_t len, uint64_t off, size_t *got,
                       struct vdk_err *e);
int vdk_src_open_related(struct vdk_src *s, const char *name, const struct vdk_access *acc,
                         struct vdk_src **out, struct vdk_err *e);
void vdk_src_close(struct vdk_src *s);
/* NFS manners: an error when the file under s changed size or mtime since
 * it was opened (someone is still writing it), so a conversion never
 * trusts a moving source. 0 for sources that are not files. */
int vdk_src_check_unchanged(struct vdk_src *s, struct vdk_err *e);
/* After the caller itself rewrote the file (check -r): its size and mtime
 * now are the ones to compare against. */
void vdk_src_restat(struct vdk_src *s);
/* Where the file under s has data in [off, end) (source offsets, end
 * clipped to the size): *data is the first data byte (end if none) and
 * *hole the first hole after it. Sources with a block_status op answer it
 * themselves. When the source is not a file or its filesystem cannot tell,
 * all of it is data (*data = off, *hole = end). */
void vdk_src_next_data(struct vdk_src *s, uint64_t off, uint64_t end, uint64_t *data,
                       uint64_t *hole);

/* Helper for implementations: allocate a source with its name. */
struct vdk_src *vdk_src_alloc(const struct vdk_src_ops *ops, const char *name);

/* Sinks --------------------------------------------------------------- */

struct vdk_sink;
struct vdk_sink_ops {
	int (*pwrite)(struct vdk_sink *k, const void *buf, size_t len, uint64_t off,
	              struct vdk_err *e);
	/* Optional: make [off, off+len) read as zeroes, deallocating if possible. */
	int (*punch)(struct vdk_sink *k, uint64_t off, uint64_t len, struct vdk_err *e);
	/* Optional: set the final size. */
	int (*truncate)(struct vdk_sink *k, uint64_t size, struct vdk_err *e);
	/* Make written data durable (fsync) and, for files under a temporary
	 * name, rename into place. */
	int (*commit)(struct vdk_sink *k, struct vdk_err *e);
	/* Discard: remove temporary files. Called when not committed. */
	void (*abort)(struct vdk_sink *k);
	void (*close)(struct vdk_sink *k);
	/* Optional: create a companion output next to this one (a flat VMDK's
	 * extent file), committed and aborted together with it. */
	int (*open_related)(struct vdk_sink *k, const char *name, struct vdk_sink **out,
	                    struct vdk_err *e);
	/* Optional: after a commit, remove what it put in place. */
	void (*withdraw)(struct vdk_sink *k);
};

enum {
	VDK_SINK_SEQUENTIAL = 1u << 0, /* offsets must only grow (pipe, tar) */
	VDK_SINK_ZEROED = 1u << 1,     /* unwritten ranges read as zero */
	/* pwrite may run on several threads at once for disjoint ranges */
	VDK_SINK_CONCURRENT = 1u << 2,
};
/* Raise k->pos to end if it is below (safe from any thread). */
void vdk_sink_advance(struct vdk_sink *k, uint64_t end);

struct vdk_sink {
	const struct vdk_sink_ops *ops;
	char *name; /* final name, for messages */
	unsigned flags;
	int fd; /* >= 0 when bytes land verbatim in fd at fd_off + offset */
	uint64_t fd_off;
	uint32_t blksize; /* filesystem block size: clone alignment */
	/* Bytes written so far (sequential sinks); atomic because a
	 * VDK_SINK_CONCURRENT sink is written by several threads at once. */
	_Atomic uint64_t pos;
	uint64_t limit; /* > 0: the output cannot grow past this (a device) */
	bool committed;
	void *priv;
};

/* A new file written under a temporary name in path's folder and renamed
 * into place by vdk_sink_commit (after fsync); removed if never committed. */
int vdk_sink_create_file(const char *path, struct vdk_sink **out, struct vdk_err *e);
/* Where and how a conversion writes its output (qemu-img convert's -n,
 * --target-is-zero and -t). */
struct vdk_target_opts {
	/* -n: path exists and is written in place (no temporary, no rename,
	 * never truncated below what is written). */
	bool existing;
	bool target_is_zero; /* an existing target already reads as zeroes */
	bool direct;         /* -t none: O_DIRECT where offsets and lengths allow */
	bool unsafe;         /* -t unsafe: no fsync on commit */
};
/* The conversion output at path, o may be NULL (a new file):
 *  - a block device (or a symlink to one) is written in place: opened
 *    O_WRONLY, never unlinked or renamed, limit = its size; ranges the
 *    source has as holes are zeroed (discard that reads back as zero,
 *    else BLKZEROOUT, else zero writes) unless target_is_zero;
 *  - o->existing: an existing file written in place the same way;
 *  - otherwise a new file as vdk_sink_create_file, beside the real file a
 *    symlink points at, and a file it replaces keeps its owner, group and
 *    mode. Only this case is all-or-nothing: in place, a failure leaves
 *    what was written so far. */
int vdk_sink_open_target(const char *path, const struct vdk_target_opts *o, struct vdk_sink **out,
                         struct vdk_err *e);
/* Writes to an existing fd that stays open (stdout); sequential. */
int vdk_sink_open_stream(int fd, const char *name, struct vdk_sink **out, struct vdk_err *e);
/* An in-memory sink (fuzzers, tests): the buffer grows up to max bytes. */
int vdk_sink_open_mem(size_t max, struct vdk_sink **out, struct vdk_err *e);
const uint8_t *vdk_sink_mem_data(const struct vdk_sink *k, size_t *len);

int vdk_sink_pwrite(struct vdk_sink *k, const void *buf, size_t len, uint64_t off,
                    struct vdk_err *e);
/* Append at the current position (sequential writers). */
int vdk_sink_write(struct vdk_sink *k, const void *buf, size_t len, struct vdk_err *e);
/* Zeroes: punch where the sink can, else write zero buffers (sequential
 * sinks: pad forward). */
int vdk_sink_zero(struct vdk_sink *k, uint64_t off, uint64_t len, struct vdk_err *e);
int vdk_sink_truncate(struct vdk_sink *k, uint64_t size, struct vdk_err *e);
int vdk_sink_open_related(struct vdk_sink *k, const char *name, struct vdk_sink **out,
                          struct vdk_err *e);
int vdk_sink_commit(struct vdk_sink *k, struct vdk_err *e);
/* Closes; a sink that was not committed is aborted first (temp removed). */
void vdk_sink_close(struct vdk_sink *k);
/* Remove a committed output and its companions (one that failed
 * verification must not stay looking valid). */
void vdk_sink_withdraw(struct vdk_sink *k);
struct vdk_sink *vdk_sink_alloc(const struct vdk_sink_ops *ops, const char *name);
/* fsync the folder holding path, so a rename into it is durable. */
int vdk_fsync_dir_of(const char *path);

/* Block sharing ------------------------------------------------------- */

enum vdk_clone_mode {
	VDK_CLONE_AUTO = 0, /* FICLONERANGE, then copy_file_range on NFS, then copy */
	VDK_CLONE_ALWAYS,   /* FICLONERANGE or fail */
	VDK_CLONE_NEVER,    /* plain read/write */
};

enum vdk_clone_how {
	VDK_CLONED = 1, /* blocks shared (FICLONERANGE) */
	VDK_OFFLOADED,  /* copy_file_range: server-side copy (NFS 4.2) */
};

/* Copy len bytes from src_fd@src_off into the sink at off without passing
 * them through user space. Returns VDK_CLONED or VDK_OFFLOADED, or
 * -EOPNOTSUPP when the caller must copy by reading and writing (wrong
 * alignment, different filesystems, no support); other negatives are real
 * errors. Never partially fails silently: a short copy_file_range resumes. */
int vdk_sink_clone(struct vdk_sink *k, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
                   enum vdk_clone_mode mode, struct vdk_err *e);

#endif
