/* VMDK module internals: the descriptor (vmdk_desc.c), hosted sparse and
 * COWD extents (vmdk_sparse.c), seSparse (vmdk_sesparse.c), the reader
 * (vmdk.c) and the writers (vmdk_write.c, vmdk_stream.c). Facts from
 * VMware's "Virtual Disk Format 5.0" and qemu's block/vmdk.c behaviour. */
#ifndef VDK_VMDK_H
#define VDK_VMDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "pool.h"

#define VMDK_SECTOR 512u
/* A text descriptor larger than this is not a descriptor (qemu uses 1 MiB). */
#define VMDK_DESC_MAX (1u << 20)
/* twoGbMaxExtent* of an 8 TiB disk has 4096 extents; allow twice that. */
#define VMDK_MAX_EXTENTS 8192u
#define VMDK_MAX_NAME    4096u
/* Real producers use 64 KiB grains; 2 MiB bounds per-read buffers. */
#define VMDK_MAX_GRAIN_SECTORS 4096u
/* Virtual size cap: 2^31 sectors * 2^31 keeps every sum in 64 bits. */
#define VMDK_MAX_SECTORS (1ull << 50)

#define VMDK_MAGIC_KDMV 0x564d444bu /* "KDMV" read little-endian */
#define VMDK_MAGIC_COWD 0x44574f43u /* "COWD" read little-endian */

/* Hosted sparse header flags (spec 5.0, "Hosted Sparse Extent Header"). */
#define VMDK_FLAG_NL_DETECT   (1u << 0)
#define VMDK_FLAG_RGD         (1u << 1)
#define VMDK_FLAG_ZERO_GRAIN  (1u << 2)
#define VMDK_FLAG_COMPRESSED  (1u << 16)
#define VMDK_FLAG_MARKERS     (1u << 17)
#define VMDK_GD_AT_END        UINT64_MAX
#define VMDK_COMPRESS_DEFLATE 1u
#define VMDK_GTE_ZEROED       1u

/* Stream markers: le64 value, le32 size, le32 type (when size is 0). */
enum {
	VMDK_MARKER_EOS = 0,
	VMDK_MARKER_GT = 1,
	VMDK_MARKER_GD = 2,
	VMDK_MARKER_FOOTER = 3,
};
#define VMDK_GRAIN_MARKER_LEN 12u

/* Header field offsets (512-byte packed header). */
enum {
	VMDK_H_MAGIC = 0,
	VMDK_H_VERSION = 4,
	VMDK_H_FLAGS = 8,
	VMDK_H_CAPACITY = 12,
	VMDK_H_GRAIN = 20,
	VMDK_H_DESC_OFF = 28,
	VMDK_H_DESC_SIZE = 36,
	VMDK_H_GTES = 44,
	VMDK_H_RGD = 48,
	VMDK_H_GD = 56,
	VMDK_H_OVERHEAD = 64,
	VMDK_H_UNCLEAN = 72,
	VMDK_H_EOL = 73, /* '\n', ' ', '\r', '\n' */
	VMDK_H_COMPRESS = 77,
	VMDK_H_END = 79, /* 433 bytes of padding follow */
};

/* ---- descriptor ---------------------------------------------------- */

enum vmdk_access {
	VMDK_ACC_RW,
	VMDK_ACC_RDONLY,
	VMDK_ACC_NOACCESS,
};

enum vmdk_ext_kind {
	VMDK_EK_FLAT,
	VMDK_EK_SPARSE,
	VMDK_EK_ZERO,
	VMDK_EK_VMFS,
	VMDK_EK_VMFSSPARSE,
	VMDK_EK_SESPARSE,
	VMDK_EK_VMFSRDM,
	VMDK_EK_VMFSRAW,
};

struct vmdk_desc_extent {
	enum vmdk_access access;
	enum vmdk_ext_kind kind;
	uint64_t sectors;
	char *file;      /* NULL for ZERO */
	uint64_t offset; /* sectors, FLAT only */
	unsigned line;
};

struct vmdk_kv {
	char *key;
	char *val;
};

struct vmdk_desc {
	unsigned version;
	uint32_t cid, parent_cid;
	bool has_cid, has_parent_cid;
	char *create_type;
	char *parent_hint; /* parentFileNameHint */
	struct vmdk_desc_extent *ext;
	size_t n_ext;
	struct vmdk_kv *kv; /* every other key, ddb.* included, in order */
	size_t n_kv;
};

/* Parse text[0..len) (stops at a NUL: embedded descriptors are padded).
 * file/base_off name the place in messages. */
int vmdk_desc_parse(const char *text, size_t len, const char *file, uint64_t base_off,
                    struct vmdk_desc *d, struct vdk_err *e);
void vmdk_desc_free(struct vmdk_desc *d);
/* Value of key (case-insensitive, as VMware treats ddb keys), or NULL. */
const char *vmdk_desc_get(const struct vmdk_desc *d, const char *key);
/* Add or replace a key (copies). 0 or -ENOMEM. */
int vmdk_desc_set(struct vmdk_desc *d, const char *key, const char *val);
int vmdk_desc_add_extent(struct vmdk_desc *d, enum vmdk_access acc, enum vmdk_ext_kind kind,
                         uint64_t sectors, const char *file, uint64_t offset);
const char *vmdk_ext_kind_name(enum vmdk_ext_kind k);
/* Render as text (malloc'ed, NUL-terminated, *len without the NUL). */
int vmdk_desc_render(const struct vmdk_desc *d, char **out, size_t *len);

/* ---- sparse extents (KDMV hosted sparse and COWD vmfsSparse) -------- */

struct vmdk_sparse {
	bool cowd;
	uint32_t version, flags;
	uint64_t capacity; /* bytes */
	uint32_t grain;    /* bytes */
	uint32_t gtes;     /* entries per grain table */
	uint64_t gd_n;
	uint32_t **gt;               /* gd_n tables (host order), NULL when absent or all 0 */
	uint64_t desc_off, desc_len; /* embedded descriptor, bytes (0: none) */
	uint64_t gd_off, rgd_off;    /* bytes */
	uint64_t file_size;
	bool compressed, markers, zero_grain, unclean;
	uint64_t gt_loaded; /* bytes of grain tables loaded */
	uint32_t *gd;       /* gd_n grain directory entries (sectors), host order */
	uint64_t overhead;  /* bytes, KDMV overHead */
	uint64_t desc_hdr;  /* descriptor bytes the header claims (uncapped) */
	bool footer;        /* header read from a stream footer (GD at end) */
};

/* Read the header (the footer's copy when gdOffset is GD_AT_END), the
 * grain directory and every grain table. */
int vmdk_sparse_open(struct vdk_src *src, struct vmdk_sparse *sp, struct vdk_err *e);
void vmdk_sparse_free(struct vmdk_sparse *sp);
/* vmdk_check.c: refuse grain table entries that point into metadata or past
 * the end of the file, and tables that point into other metadata. */
int vmdk_sparse_validate(struct vdk_src *src, struct vmdk_sparse *sp, struct vdk_err *e);
/* vmdk_check.c: the .check op's structural findings for one sparse extent. */
int vmdk_sparse_check(const struct vmdk_sparse *sp, const char *file, struct vdk_check *r);
/* Grain table entry for extent-relative byte off (0: unallocated). */
uint32_t vmdk_sparse_gte(const struct vmdk_sparse *sp, uint64_t off);
/* Bytes from off to the end of the run sharing one lookup: a grain, or a
 * whole grain table span when that table is absent. */
uint64_t vmdk_sparse_span(const struct vmdk_sparse *sp, uint64_t off);
/* A worker's read context, reused from a pool (vmdk.c) across reads.
 * cbuf holds the bytes [woff, woff + wlen) of the file wsrc: the grains of
 * one request that follow each other in the file (how every stream
 * producer lays them out) come from a single read up to `ahead`, the last
 * grain's offset, and on to `bound` when it is known: the next grain's
 * offset, where the last grain must end. */
struct vmdk_rctx {
	struct vdk_inflater *dec;
	uint8_t *cbuf, *ubuf;
	size_t ccap, ucap;
	size_t guess; /* deflate size to read with the next grain marker */
	const struct vdk_src *wsrc;
	uint64_t woff, ahead, bound;
	size_t wlen;
};
/* Read-ahead bound per request, beyond the two grains one marker needs. */
#define VMDK_RCTX_WINDOW (512u << 10)
void vmdk_rctx_free(struct vmdk_rctx *c);
/* Read [off, off+len) inside one allocated grain whose entry is gte. */
int vmdk_sparse_read(struct vdk_src *src, const struct vmdk_sparse *sp, uint32_t gte, void *buf,
                     size_t len, uint64_t off, struct vmdk_rctx *c, struct vdk_err *e);

/* ---- seSparse extents (vmdk_sesparse.c) ----------------------------- */

/* ESXi 6.5+ space-efficient sparse: every VMFS6 snapshot delta. VMware
 * never published it; facts from qemu's reader (block/vmdk.c, read-only
 * since 4.1). All fields are le64, offsets and sizes in sectors. */
#define VMDK_SE_MAGIC   0x00000000cafebabeull /* constant header, sector 0 */
#define VMDK_SE_VMAGIC  0x00000000cafecafeull /* volatile header */
#define VMDK_SE_VERSION 0x0000000200000001ull
#define VMDK_SE_GRAIN   4096u /* the only grain size (8 sectors) qemu knows */
#define VMDK_SE_GTES    4096u /* entries per grain table (64 sectors) */

struct vmdk_sesparse {
	uint64_t capacity; /* bytes */
	uint64_t gd_n;     /* grain directory entries covering the capacity */
	/* gd_n tables of decoded entries (NULL when the table is absent):
	 * VMDK_SE_E_HOLE, VMDK_SE_E_ZERO, or the grain's byte offset. */
	uint64_t **gt;
	uint64_t gd_off, gt_off, grains_off; /* bytes */
	uint64_t file_size;
};
#define VMDK_SE_E_HOLE 0u
#define VMDK_SE_E_ZERO 1u

/* True when h (len bytes from offset 0) starts with the constant magic. */
bool vmdk_se_magic(const uint8_t *h, size_t len);
/* Read and check both headers, the grain directory and every grain table;
 * every entry is checked against the file here, so lookups cannot fail. */
int vmdk_se_open(struct vdk_src *src, struct vmdk_sesparse *se, struct vdk_err *e);
void vmdk_se_free(struct vmdk_sesparse *se);
/* Entry for extent-relative byte off, and how many bytes from off (at most
 * n) share its kind and, for data, continue it in the file. */
uint64_t vmdk_se_run(const struct vmdk_sesparse *se, uint64_t off, uint64_t n, uint64_t *entry);
/* Grains that two table entries share (check). 0 or -ENOMEM. */
int vmdk_se_check(const struct vmdk_sesparse *se, uint64_t *dup);

/* ---- the reader's state --------------------------------------------- */

struct vmdk_ext {
	enum vmdk_ext_kind kind; /* FLAT/VMFS read flat, SPARSE/VMFSSPARSE sparse */
	bool flat, zero;
	uint64_t start, len; /* virtual bytes */
	struct vdk_src *src;
	bool own_src;
	char *file;
	uint64_t flat_off; /* bytes */
	struct vmdk_sparse sp;
	struct vmdk_sesparse se; /* SESPARSE */
};

struct vmdk_state {
	struct vmdk_desc desc;
	bool has_desc;
	const char *create_type;
	struct vmdk_ext *ext;
	size_t n_ext;
	struct vdk_pool rpool; /* read contexts (reads run on worker threads) */
};

extern const struct vdk_format vdk_format_vmdk;

/* ---- writers (vmdk_write.c, vmdk_stream.c) -------------------------- */

enum vmdk_subformat {
	VMDK_SUB_MONO_SPARSE,
	VMDK_SUB_MONO_FLAT,
	VMDK_SUB_2GB_SPARSE,
	VMDK_SUB_2GB_FLAT,
	VMDK_SUB_STREAM,
	VMDK_SUB_VMFS,
};

struct vmdk_wext {
	struct vdk_sink *sink; /* the main sink or a companion */
	uint64_t start, len;   /* virtual bytes */
	/* sparse: gt[i] holds grain table i's entries, NULL until a grain
	 * in it is allocated, so memory follows the data, not the disk size */
	uint32_t **gt;
	uint64_t n_grains, gt_n, gd_sectors;
	uint64_t rgd, gd, overhead, next; /* sectors */
	uint64_t desc_sectors;
};

struct vmdk_wstate {
	enum vmdk_subformat sub;
	bool zero_grain;
	struct vmdk_desc desc;
	struct vmdk_wext *ext;
	size_t n_ext;
	uint32_t grain; /* bytes */
	/* streamOptimized */
	uint8_t header[VMDK_SECTOR];
	uint64_t pos; /* bytes appended to the sink */
	uint32_t *gd;
	uint64_t gd_n;
	uint32_t gt[512];
	uint64_t gt_idx;
	bool gt_used;
	int level;
};

/* Grain-table entries per grain table: every producer writes 512, and the
 * writers do too. */
#define VMDK_GTES 512u

/* Fill the descriptor and header common to every subformat. */
int vmdk_write_prepare(struct vdk_writer *w, struct vdk_err *e);
void vmdk_put_header(uint8_t *h, uint32_t version, uint32_t flags, uint64_t capacity_sectors,
                     uint64_t grain_sectors, uint64_t desc_off, uint64_t desc_sectors, uint64_t rgd,
                     uint64_t gd, uint64_t overhead, uint16_t compress);

int vmdk_stream_create(struct vdk_writer *w, struct vdk_err *e);
int vmdk_stream_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                      struct vdk_err *e);
int vmdk_stream_encode(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                       struct vdk_buf *out, struct vdk_err *e);
int vmdk_stream_write_encoded(struct vdk_writer *w, const struct vdk_buf *enc, uint64_t off,
                              uint64_t len, struct vdk_err *e);
int vmdk_stream_finalize(struct vdk_writer *w, struct vdk_err *e);

int vmdk_wcreate(struct vdk_writer *w, struct vdk_err *e);
int vmdk_wwrite(struct vdk_writer *w, const void *buf, size_t len, uint64_t off, struct vdk_err *e);
int vmdk_wencode(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                 struct vdk_buf *out, struct vdk_err *e);
int vmdk_wwrite_encoded(struct vdk_writer *w, const struct vdk_buf *enc, uint64_t off, uint64_t len,
                        struct vdk_err *e);
int vmdk_wclone(struct vdk_writer *w, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
                enum vdk_clone_mode mode, struct vdk_err *e);
int vmdk_wfinalize(struct vdk_writer *w, struct vdk_err *e);
void vmdk_wclose(struct vdk_writer *w);

/* ---- descriptor edits in place (vmdk_desc_edit.c) -------------------- */

/* Where an image's descriptor text is: a file of its own (replaced whole
 * by rename) or the reserved sectors of a hosted sparse extent. */
struct vmdk_dloc {
	bool embedded;
	uint64_t off, cap; /* bytes: where the text starts, room reserved for it */
	unsigned mode;     /* a descriptor file's permissions */
	char *text;        /* NUL-terminated */
	size_t len;
};
int vmdk_dloc_read(int fd, const char *name, struct vmdk_dloc *d, struct vdk_err *e);
void vmdk_dloc_free(struct vmdk_dloc *d);
/* Set key to val (quoted when quote), or remove the line when val is NULL;
 * a new line goes after the line of key `after`. 0 or -ENOMEM. */
int vmdk_dloc_set(struct vmdk_dloc *d, const char *key, const char *val, bool quote,
                  const char *after);
/* Offset and length of key's value in d->text, or -ENOENT. */
int vmdk_dloc_value(const struct vmdk_dloc *d, const char *key, size_t *off, size_t *len);
/* Write d back: in the reserved sectors (refused when it no longer fits),
 * or a descriptor file replaced by temp + fsync + rename. */
int vmdk_dloc_write(int fd, const char *path, const struct vmdk_dloc *d, struct vdk_err *e);
uint32_t vmdk_cid_like(uint32_t old, size_t ndigits);

/* vmdk_update.c: the update half of the vtable (commit into a VMDK). */
struct vmdk_upd_ext {
	int fd; /* O_RDWR: the update's own fd, or this extent file's */
	bool own_fd;
	const char *name;
	uint32_t *rgd;   /* redundant grain directory (sectors), or NULL */
	uint64_t end;    /* bytes: where the next grain or table goes */
	uint8_t *dirty;  /* per grain table: entries changed, not yet written */
	bool data_dirty; /* data written since the last fdatasync */
};

struct vmdk_upd {
	struct vdk_open_opts opts;
	struct vdk_image *img; /* the reader over the same files */
	struct vmdk_upd_ext *x;
	size_t n;
	bool cid_done;
	uint64_t pending; /* bytes of grains allocated, not yet referenced */
	uint8_t *gbuf;    /* one grain */
};

int vmdk_update_open(struct vdk_update *u, struct vdk_err *e);
int vmdk_update_write(struct vdk_update *u, const void *buf, size_t len, uint64_t off,
                      struct vdk_err *e);
int vmdk_update_zero(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e);
int vmdk_update_flush(struct vdk_update *u, struct vdk_err *e);
void vmdk_update_close(struct vdk_update *u);
/* rebase -u: parentFileNameHint (NULL or "": none) and, when removed,
 * parentCID. */
int vmdk_set_backing(const char *path, const char *backing, const char *backing_fmt,
                     struct vdk_err *e);

/* Index of the extent holding virtual byte off (extents are sorted). */
static inline size_t vmdk_find(const struct vmdk_state *st, uint64_t off)
{
	size_t lo = 0, hi = st->n_ext;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (st->ext[mid].start <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

#endif
