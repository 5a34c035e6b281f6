/* qcow2 module internals (qemu's docs/interop/qcow2.txt). The reader is
 * split in qcow2.c (header, extensions, L1, snapshots, info, vtable) and
 * qcow2_map.c (L2 lookups, extents, reads, compressed clusters); the writer
 * is qcow2_write.c. */
#ifndef VDK_QCOW2_H
#define VDK_QCOW2_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "format.h"
#include "pool.h"

#define QCOW2_MAGIC      0x514649fbu /* "QFI\xfb" */
#define QCOW2_HDR_V2_LEN 72u
#define QCOW2_HDR_V3_LEN 104u
#define QCOW2_HDR_MAX    112u /* v3 header with compression_type, padded to 8 */

#define QCOW2_MIN_CLUSTER_BITS 9u
#define QCOW2_MAX_CLUSTER_BITS 21u /* qemu's limit: 2 MiB */
/* qemu's implementation limits (qcow2.txt): L1 table <= 32 MiB, refcount
 * table <= 8 MiB, backing file name < 1024 bytes, snapshots <= 65536. */
#define QCOW2_MAX_L1_BYTES     (32u << 20)
#define QCOW2_MAX_RT_BYTES     (8u << 20)
#define QCOW2_MAX_BACKING_NAME 1023u
#define QCOW2_MAX_SNAPSHOTS    65536u
#define QCOW2_MAX_STRING_EXT   4096u

/* Header extension types (qcow2.txt "Header extensions"). */
#define QCOW2_EXT_END         0x00000000u
#define QCOW2_EXT_BACKING_FMT 0xe2792acau
#define QCOW2_EXT_FEATURES    0x6803f857u
#define QCOW2_EXT_BITMAPS     0x23852875u
#define QCOW2_EXT_CRYPTO      0x0537be77u
#define QCOW2_EXT_DATA_FILE   0x44415441u

/* Feature bits. */
#define QCOW2_INCOMPAT_DIRTY       (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT     (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2       (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN       0x1full
#define QCOW2_COMPAT_LAZY          (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS    (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_RAW   (1ull << 1)

#define QCOW2_COMP_ZLIB 0u
#define QCOW2_COMP_ZSTD 1u

/* L1 / L2 entry bits (qcow2.txt "Cluster mapping"). */
#define QCOW2_OFLAG_COPIED     (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO       (1ull << 0)
#define QCOW2_OFFSET_MASK      0x00fffffffffffe00ull
/* Reserved bits (qcow2.txt "L1 table entry", "Standard Cluster Descriptor"). */
#define QCOW2_L1_RESERVED  0x7f000000000001ffull
#define QCOW2_L2_RESERVED  0x3f000000000001feull
#define QCOW2_RT_OFFSET    0xfffffffffffffe00ull
#define QCOW2_L2_ALL_ALLOC 0x00000000ffffffffull

/* Metadata kinds of the host ranges the reader must never treat as data
 * (qemu's overlap check idea). */
enum qcow2_meta_kind {
	QCOW2_M_HEADER = 1,
	QCOW2_M_L1,
	QCOW2_M_L2,
	QCOW2_M_RT,
	QCOW2_M_RB,
	QCOW2_M_SNAPTAB,
	QCOW2_M_SNAPL1,
	QCOW2_M_BITMAPS,
	QCOW2_M_DATA, /* check only */
	QCOW2_M_NKINDS,
};

struct qcow2_range {
	uint64_t off, end;
	uint64_t kind;
};
#define QCOW2_SUBCLUSTERS 32u

/* What one guest cluster (or subcluster) is. */
enum qcow2_kind {
	QCOW2_UNALLOC, /* HOLE: the backing file shows through */
	QCOW2_ZERO,    /* reads as zeroes */
	QCOW2_DATA,    /* standard cluster at host offset */
	QCOW2_COMPRESSED,
};

struct qcow2_snapshot {
	char *id, *name;
	uint64_t l1_off;
	uint32_t date_sec, date_nsec;
	uint64_t vm_clock_nsec;
	uint64_t vm_state_size;
	uint64_t disk_size;
	uint64_t icount; /* UINT64_MAX when absent */
	uint32_t l1_size;
};

struct qcow2_l2slot {
	uint64_t host;  /* host offset of the L2 table, 0 when empty */
	uint64_t *ent;  /* decoded entries (2 per entry with extended L2) */
	uint64_t stamp; /* LRU */
};


struct qcow2_state {
	uint32_t version;
	uint32_t cluster_bits, cluster_size;
	uint64_t incompat, compat, autoclear;
	uint32_t refcount_order;
	uint32_t comp_type;
	bool extl2;
	uint32_t l2_entries;  /* entries per L2 table */
	uint32_t sub_size;    /* subcluster size (extended L2), else cluster size */
	uint32_t csize_shift; /* compressed descriptor: sector count shift */
	uint64_t csize_mask, coff_mask;

	uint64_t *l1;
	uint32_t l1_size;
	uint64_t l1_off;
	uint64_t rt_off;
	uint32_t rt_clusters;

	char *backing_name, *backing_fmt, *data_name;
	struct vdk_src *data; /* external data file (owned), else NULL */

	uint32_t nb_snapshots;
	uint64_t snapshots_off, snapshots_size;
	struct qcow2_snapshot *snaps;

	/* Bitmaps extension (counted only with the autoclear bit, as qemu). */
	bool have_bitmaps;
	uint32_t nb_bitmaps;
	uint64_t bm_dir_off, bm_dir_size;

	/* Sorted metadata ranges and their running maximum end. */
	struct qcow2_range *meta;
	uint64_t *meta_maxend;
	size_t nmeta;

	/* L2 table cache, shared by worker threads (pread/extents may run
	 * concurrently), and their decompression contexts. */
	pthread_mutex_t lock;
	bool lock_ok;
	struct qcow2_l2slot *slots;
	unsigned nslots;
	uint64_t clock;
	struct vdk_pool dctx;
};

/* Writer state. Guest cluster g maps to l2[g / l2_entries][g % l2_entries]
 * (final on-disk values); in fixed-layout modes (preallocation=metadata,
 * data_file) the map is computed, not stored: host = base + g * cluster. */
struct qcow2_wstate {
	uint32_t version, cluster_bits, cluster_size;
	uint32_t l2_entries;
	uint32_t comp_type;
	int level;
	bool compress, fixed, data_mode, data_raw;
	uint64_t nclusters; /* guest clusters */
	uint64_t l1_size;
	uint64_t l1_off;
	uint64_t *l1;  /* host offsets of the L2 tables, 0 when none */
	uint64_t **l2; /* per L1 index, NULL when none */
	uint64_t base; /* fixed layout: host offset of guest cluster 0 */
	/* Refcount table at cluster 1 (rt_clusters, sized for the largest
	 * image the disk can make); refcount blocks inline (rb[], nrb). */
	uint64_t rt_clusters;
	uint64_t *rb;
	uint64_t nrb, rb_cap;
	uint64_t cursor; /* end of the allocated host clusters (aligned) */
	uint64_t ccur;   /* next free byte for compressed data */
	uint16_t *rc;    /* compress mode: refcount per host cluster */
	uint64_t rc_len;
	struct vdk_pool cctx; /* compressors (encode runs on workers) */
	int data_fd;
	uint64_t data_dev, data_ino;
	char *data_ref;    /* the name stored in the image */
	int prealloc;      /* 0 off, 1 metadata, 2 falloc, 3 full */
	char *backing;     /* backing_file (create only), NULL: none */
	char *backing_fmt; /* backing_fmt header extension, NULL: none */
};

/* The source guest data lives in (the image file or the external one). */
static inline struct vdk_src *qcow2_data_src(struct vdk_image *img)
{
	struct qcow2_state *s = img->state;
	return s->data ? s->data : img->src;
}

/* qcow2_map.c */
int qcow2_map_init(struct vdk_image *img, struct vdk_err *e);
void qcow2_map_free(struct qcow2_state *s);
int qcow2_extents(struct vdk_image *img, uint64_t off, uint64_t len, struct vdk_extents *out,
                  struct vdk_err *e);
int qcow2_pread(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e);
/* Copy up to max entries of L2 table l1_idx starting at index first into
 * ent (two words per entry with extended L2, the second the subcluster
 * bitmap). *n gets the count copied; an unallocated L2 table gives zeroes. */
int qcow2_l2_read(struct vdk_image *img, uint64_t l1_idx, uint32_t first, uint32_t max,
                  uint64_t *ent, uint32_t *n, struct vdk_err *e);

/* qcow2_meta.c: the metadata range list (built at open, read-only then).
 * qcow2_meta_l2_ok: the L2 table for L1 index l1_idx at host may be read;
 * qcow2_meta_data_ok: guest data at host [off, off+len) hits no metadata
 * and lies inside the file (what names the entry for the message). */
int qcow2_meta_init(struct vdk_image *img, struct vdk_err *e);
void qcow2_meta_free(struct qcow2_state *s);
int qcow2_meta_l2_ok(struct vdk_image *img, uint64_t l1_idx, uint64_t host, struct vdk_err *e);
int qcow2_meta_data_ok(struct vdk_image *img, uint64_t off, uint64_t len, uint64_t guest,
                       struct vdk_err *e);
/* File offset of the L2 entry mapping guest offset g (for messages). */
uint64_t qcow2_entry_off(const struct qcow2_state *s, uint64_t g);
const char *qcow2_meta_name(unsigned kind);

/* qcow2_check.c: refcount rebuild and comparison (qemu-img check). */
int qcow2_check(struct vdk_image *img, struct vdk_check *r, bool repair, struct vdk_err *e);

/* qcow2_write.c: the writer half of the vtable. */
int qcow2_create(struct vdk_writer *w, struct vdk_err *e);
int qcow2_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off, struct vdk_err *e);
int qcow2_encode(struct vdk_writer *w, const void *buf, size_t len, uint64_t off,
                 struct vdk_buf *out, struct vdk_err *e);
int qcow2_write_encoded(struct vdk_writer *w, const struct vdk_buf *enc, uint64_t off, uint64_t len,
                        struct vdk_err *e);
int qcow2_write_zeroes(struct vdk_writer *w, uint64_t off, uint64_t len, struct vdk_err *e);
int qcow2_clone(struct vdk_writer *w, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
                enum vdk_clone_mode mode, struct vdk_err *e);
int qcow2_finalize(struct vdk_writer *w, struct vdk_err *e);
void qcow2_wclose(struct vdk_writer *w);

/* qcow2_rebase.c: rebase -u (the format's set_backing callback) and the
 * options commit's emptying of IMAGE recreates it from (empty_opts). */
int qcow2_set_backing(const char *path, const char *backing, const char *backing_fmt,
                      struct vdk_err *e);
int qcow2_empty_opts(struct vdk_image *img, struct vdk_opts *o, const char **why,
                     struct vdk_err *e);
/* qcow2_resize.c: the format's resize callback. */
int qcow2_resize(const char *path, uint64_t size, bool shrink, struct vdk_opts *opts,
                 struct vdk_err *e);

/* qcow2_update.c: the update half of the vtable (convert/update.h). */
/* Tables held between flushes; past this a flush runs (bounded memory). */
#define QCOW2_UPD_MAX_TABS  64u
#define QCOW2_UPD_MAX_BYTES (64u << 20)
#define QCOW2_UPD_SEC       512u

/* A piece of metadata held in memory as it is on disk (big-endian), with
 * one dirty byte per 512-byte sector so a flush writes only what changed. */
struct qcow2_upd_tab {
	uint64_t key;  /* L1 index (L2 tables) or refcount table index (blocks) */
	uint64_t host; /* where it lives in the file */
	uint8_t *raw;
	uint8_t *dirty;
	size_t len;
	bool fresh; /* allocated by this update: written whole before use */
};

struct qcow2_upd_set {
	struct qcow2_upd_tab *v;
	size_t n, cap;
};

struct qcow2_ustate {
	struct vdk_image *img; /* the reader: validated header, old content */
	uint32_t cs, cbits, l2n, version;
	unsigned rc_bytes; /* bytes per refcount entry */
	uint64_t rb_entries;
	struct qcow2_upd_tab l1, rt;
	uint64_t rt_n;
	uint64_t orig_end; /* file size at open, rounded to a cluster */
	uint64_t end;      /* next free host offset */
	struct qcow2_upd_set l2, rb;
	uint64_t *drop; /* host clusters whose refcount falls once C is durable */
	size_t ndrop, capdrop;
	uint8_t *buf; /* one cluster, for read-modify-write */
};

int qcow2_update_open(struct vdk_update *u, struct vdk_err *e);
int qcow2_update_write(struct vdk_update *u, const void *buf, size_t len, uint64_t off,
                       struct vdk_err *e);
int qcow2_update_zero(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e);
int qcow2_update_flush(struct vdk_update *u, struct vdk_err *e);
void qcow2_update_close(struct vdk_update *u);

#endif
