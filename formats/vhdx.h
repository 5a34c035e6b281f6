/* VHDX module internals (MS-VHDX v1.00). Shared by vhdx.c (open, headers,
 * region table, metadata), vhdx_log.c (log replay in memory), vhdx_bat.c
 * (BAT, extents, reads, parent) and vhdx_write.c (writer). */
#ifndef VDK_VHDX_H
#define VDK_VHDX_H

#include <stdbool.h>
#include <stdint.h>

#include "format.h"

#define VHDX_KiB 1024u
#define VHDX_MiB (1024u * 1024u)

/* Fixed layout of the first MiB (MS-VHDX 2.1). */
#define VHDX_FILEID_SIZE  (64 * VHDX_KiB)
#define VHDX_HDR1_OFF     (64 * VHDX_KiB)
#define VHDX_HDR2_OFF     (128 * VHDX_KiB)
#define VHDX_HDR_SIZE     (4 * VHDX_KiB)
#define VHDX_HDR_OFF(i)   ((i) ? VHDX_HDR2_OFF : VHDX_HDR1_OFF) /* header 0 or 1 */
#define VHDX_RT1_OFF      (192 * VHDX_KiB)
#define VHDX_RT2_OFF      (256 * VHDX_KiB)
#define VHDX_RT_SIZE      (64 * VHDX_KiB)
#define VHDX_RT_MAX_ENTRY 2047u
#define VHDX_META_TABLE   (64 * VHDX_KiB)
#define VHDX_META_MAX_ENT 2047u
#define VHDX_LOG_SECTOR   4096u
#define VHDX_SB_SIZE      VHDX_MiB /* a sector bitmap block */
#define VHDX_MAX_BLOCK    (256 * VHDX_MiB)
#define VHDX_MAX_SIZE     (64ull << 40) /* 64 TiB (MS-VHDX 2.6.2.2) */

/* Header field offsets (a 4 KiB structure; checksum over all 4 KiB). */
#define VHDX_H_SIG      0
#define VHDX_H_CRC      4
#define VHDX_H_SEQ      8
#define VHDX_H_FWGUID   16
#define VHDX_H_DWGUID   32
#define VHDX_H_LOGGUID  48
#define VHDX_H_LOGVER   64
#define VHDX_H_VERSION  66
#define VHDX_H_LOGLEN   68
#define VHDX_H_LOGOFF   72
#define VHDX_H_USED_END 80

/* Log entry header fields (64 bytes; MS-VHDX 2.3.1.1). Descriptors are 32
 * bytes, 128 to a 4 KiB sector, the entry header taking the first two
 * slots; a data sector is "data", the high 32 bits of the sequence number,
 * 4084 bytes of the target sector and the low 32 bits. */
#define VHDX_LE_CRC          4
#define VHDX_LE_LEN          8
#define VHDX_LE_TAIL         12
#define VHDX_LE_SEQ          16
#define VHDX_LE_NDESC        24
#define VHDX_LE_GUID         32
#define VHDX_LE_FLUSHED      48
#define VHDX_LE_LAST         56
#define VHDX_DESC_PER_SECTOR 128u

/* BAT entry states (MS-VHDX 2.5.1.1 and 2.5.1.2). */
enum {
	VHDX_PB_NOT_PRESENT = 0,
	VHDX_PB_UNDEFINED = 1,
	VHDX_PB_ZERO = 2,
	VHDX_PB_UNMAPPED = 3,
	VHDX_PB_FULLY_PRESENT = 6,
	VHDX_PB_PARTIALLY_PRESENT = 7,
	VHDX_SB_NOT_PRESENT = 0,
	VHDX_SB_PRESENT = 6,
};
#define VHDX_BAT_STATE(e) ((unsigned)((e)&7))
#define VHDX_BAT_OFF(e)   (((e) >> 20) << 20) /* FileOffsetMB, in bytes */

/* Metadata entry flags (MS-VHDX 2.6.1.2). */
#define VHDX_META_IS_USER     1u
#define VHDX_META_IS_VDISK    2u
#define VHDX_META_IS_REQUIRED 4u

/* GUIDs in on-disk byte order (first three fields little-endian). */
typedef uint8_t vhdx_guid[16];
extern const vhdx_guid vhdx_guid_bat, vhdx_guid_meta, vhdx_guid_fileparam, vhdx_guid_vsize,
    vhdx_guid_page83, vhdx_guid_lss, vhdx_guid_pss, vhdx_guid_parent, vhdx_guid_parent_type;

/* One write the log replays, in order (MS-VHDX 2.3.1): a 4 KiB data sector
 * whose 4084 middle bytes sit in the log at src (leading 8 and trailing 4
 * bytes come from the descriptor), or zeroes (src == VHDX_OP_ZERO). */
#define VHDX_OP_ZERO UINT64_MAX
struct vhdx_op {
	uint64_t off, len, src;
	uint8_t lead[8], trail[4];
};

struct vhdx_state {
	uint64_t fsize; /* file size as the replayed log leaves it */
	/* active header */
	unsigned hdr_idx; /* 0 or 1 */
	uint64_t hdr_seq;
	uint8_t fw_guid[16], dw_guid[16], log_guid[16];
	uint64_t log_off;
	uint32_t log_len;
	/* regions */
	uint64_t bat_off, meta_off;
	uint32_t bat_len, meta_len;
	/* metadata */
	uint32_t block_size, lss, pss;
	bool leave_alloc, has_parent;
	uint8_t page83[16];
	uint64_t chunk_ratio, data_blocks, bat_entries;
	uint64_t *bat;
	/* log replayed in memory */
	struct vhdx_op *ops;
	size_t nops;
	uint64_t ops_lo, ops_hi; /* bounds of every op, for a quick miss */
	uint64_t log_head_seq;
	unsigned log_nentries;
	/* parent locator (UTF-8, '/' separators), NULL when absent */
	char *parent_linkage, *parent_rel, *parent_abs, *parent_vol;
};

/* vhdx.c */
extern const struct vdk_format vdk_format_vhdx;
bool vhdx_guid_is_zero(const uint8_t *g);
/* CRC-32C of a structure of len bytes whose checksum sits at crc_off,
 * counted as zero (MS-VHDX 2.2.2). */
uint32_t vhdx_crc(const uint8_t *buf, size_t len, size_t crc_off);

/* vhdx_log.c */
int vhdx_log_load(struct vdk_image *img, struct vdk_err *e);
/* Read the file as the replayed log leaves it: the source, zeroes past its
 * end up to fsize, then every log write over the range. */
int vhdx_fread(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e);
bool vhdx_log_touches(const struct vhdx_state *s, uint64_t off, uint64_t len);
/* Apply one replayed write to buf, which holds [off, off+len) of the file. */
int vhdx_log_apply(struct vdk_image *img, const struct vhdx_op *op, uint8_t *buf, size_t len,
                   uint64_t off, struct vdk_err *e);
/* vhdx_repair.c: check -r writes the replayed log into the file. */
int vhdx_log_commit(struct vdk_image *img, struct vdk_err *e);
/* Header update (MS-VHDX 2.2.2.1): h, the current header (slot cur,
 * sequence *seq) with its new fields, goes to the other slot with *seq + 1,
 * then over the current one with *seq + 2, so that both are valid and the
 * newer one wins at every step; put writes 4 KiB at a file offset and makes
 * it durable before returning. *seq is advanced by 2; slot cur stays the
 * current one. */
typedef int (*vhdx_hdr_put_fn)(void *ctx, const uint8_t *h, uint64_t at, struct vdk_err *e);
int vhdx_hdr_update(uint8_t *h, unsigned cur, uint64_t *seq, vhdx_hdr_put_fn put, void *ctx,
                    struct vdk_err *e);

/* vhdx_bat.c */
int vhdx_bat_load(struct vdk_image *img, struct vdk_err *e);
int vhdx_parent_open(struct vdk_image *img, struct vdk_err *e);
int vhdx_extents(struct vdk_image *img, uint64_t off, uint64_t len, struct vdk_extents *out,
                 struct vdk_err *e);
int vhdx_pread(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e);
int vhdx_check(struct vdk_image *img, struct vdk_check *r, bool repair, struct vdk_err *e);
uint64_t vhdx_bat_index(const struct vhdx_state *s, uint64_t block);

/* vhdx_write.c */
struct vhdx_wstate {
	bool fixed;
	uint32_t block_size, lss, pss;
	uint64_t log_off, log_len, meta_off, meta_len, bat_off, bat_len, payload_off;
	uint64_t chunk_ratio, data_blocks, bat_entries;
	uint64_t *bat;      /* host order; written little-endian by finalize */
	uint64_t next_free; /* file offset of the next payload block */
	uint8_t fw_guid[16], dw_guid[16], page83[16];
};
int vhdx_create(struct vdk_writer *w, struct vdk_err *e);
int vhdx_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off, struct vdk_err *e);
int vhdx_write_zeroes(struct vdk_writer *w, uint64_t off, uint64_t len, struct vdk_err *e);
int vhdx_clone(struct vdk_writer *w, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
               enum vdk_clone_mode mode, struct vdk_err *e);
int vhdx_finalize(struct vdk_writer *w, struct vdk_err *e);
void vhdx_wclose(struct vdk_writer *w);

/* vhdx_update.c: in-place updates (convert/update.h); BAT changes go
 * through the log. */
struct vhdx_ustate {
	uint8_t hdr[VHDX_HDR_SIZE]; /* the current header as it is on disk */
	unsigned hdr_idx;
	uint64_t hdr_seq;
	bool touched; /* FileWriteGuid and DataWriteGuid renewed this session */
	bool leave_alloc;
	uint32_t block_size, log_len;
	uint64_t log_off, bat_off, chunk_ratio, data_blocks, bat_entries;
	uint64_t *bat;   /* host order, with this session's changes */
	uint8_t *dirty;  /* one bit per 4 KiB BAT sector changed since the flush */
	uint64_t nsect;  /* 4 KiB sectors the BAT entries span */
	uint64_t ndirty; /* bits set in dirty */
	uint64_t fend;   /* file size, 1 MiB aligned: new blocks go here */
	uint64_t log_seq;
};
int vhdx_update_open(struct vdk_update *u, struct vdk_err *e);
int vhdx_update_write(struct vdk_update *u, const void *buf, size_t len, uint64_t off,
                      struct vdk_err *e);
int vhdx_update_zero(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e);
int vhdx_update_flush(struct vdk_update *u, struct vdk_err *e);
void vhdx_update_close(struct vdk_update *u);

#endif
