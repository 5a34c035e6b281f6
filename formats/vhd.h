/* VHD ("vpc" in qemu-img): shared between the reader (vhd.c) and the
 * writer (vhd_write.c). Layout facts are from Microsoft's "Virtual Hard Disk
 * Image Format Specification" v1.0 (2006); size rules follow qemu's vpc
 * driver so that vdkit and qemu-img agree on every image. */
#ifndef VDK_VHD_H
#define VDK_VHD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "format.h"

#define VHD_SECTOR      512u
#define VHD_FOOTER_SIZE 512u
#define VHD_DYNHDR_SIZE 1024u
#define VHD_BAT_UNUSED  0xffffffffu
#define VHD_BLOCK_SIZE  (2u << 20) /* what every producer writes */
#define VHD_NO_OFFSET   UINT64_MAX /* footer data offset of a fixed disk */
#define VHD_EPOCH       946684800  /* VHD timestamps count from 2000-01-01 UTC */
/* qemu refuses anything larger than 2040 GiB; so do we, both ways. */
#define VHD_MAX_SECTORS  0xff000000ull
#define VHD_CHS_MAX_C    65535u
#define VHD_CHS_MAX_H    16u
#define VHD_CHS_MAX_S    255u
#define VHD_MAX_GEOMETRY ((uint64_t)VHD_CHS_MAX_C * VHD_CHS_MAX_H * VHD_CHS_MAX_S)

enum { VHD_TYPE_FIXED = 2, VHD_TYPE_DYNAMIC = 3, VHD_TYPE_DIFF = 4 };

/* Hard disk footer field offsets (spec 2.1; all fields big-endian). */
enum {
	VHD_F_COOKIE = 0, /* "conectix" */
	VHD_F_FEATURES = 8,
	VHD_F_VERSION = 12,
	VHD_F_DATA_OFFSET = 16,
	VHD_F_TIMESTAMP = 24,
	VHD_F_CREATOR_APP = 28,
	VHD_F_CREATOR_VER = 32,
	VHD_F_CREATOR_OS = 36,
	VHD_F_ORIG_SIZE = 40,
	VHD_F_CUR_SIZE = 48,
	VHD_F_CYLS = 56,
	VHD_F_HEADS = 58,
	VHD_F_SECS = 59,
	VHD_F_TYPE = 60,
	VHD_F_CHECKSUM = 64,
	VHD_F_UUID = 68,
	VHD_F_SAVED = 84,
};

/* Dynamic disk header field offsets (spec 2.2). */
enum {
	VHD_H_COOKIE = 0, /* "cxsparse" */
	VHD_H_DATA_OFFSET = 8,
	VHD_H_TABLE_OFFSET = 16,
	VHD_H_VERSION = 24,
	VHD_H_MAX_ENTRIES = 28,
	VHD_H_BLOCK_SIZE = 32,
	VHD_H_CHECKSUM = 36,
	VHD_H_PARENT_UUID = 40,
	VHD_H_PARENT_TS = 56,
	VHD_H_PARENT_NAME = 64, /* 512 bytes of UTF-16BE */
	VHD_H_LOCATORS = 576,   /* 8 entries of 24 bytes */
	VHD_LOCATOR_SIZE = 24,
	VHD_LOCATORS = 8,
};

/* A decoded footer. */
struct vhd_footer {
	uint32_t features, version, timestamp, creator_ver, type, checksum;
	uint64_t data_offset, orig_size, cur_size;
	char creator_app[5], creator_os[5];
	uint16_t cyls;
	uint8_t heads, secs;
	uint8_t uuid[16];
	uint8_t saved_state;
};

/* The reader's state (vhd.c), also read by the updater (vhd_update.c). */
struct vhd_parent_loc {
	char code[5];
	char *path; /* decoded, NULL when unusable */
};

struct vhd_state {
	struct vhd_footer f;
	uint64_t footer_off; /* where the footer we use was read */
	bool tail_cookie;    /* the last sector is a footer, valid or not */
	/* dynamic and differencing */
	uint8_t hdr[VHD_DYNHDR_SIZE];
	uint64_t hdr_off, bat_off;
	uint32_t block_size, bitmap_size, max_entries;
	uint64_t nblocks; /* BAT entries that cover the virtual disk */
	uint32_t *bat;
	uint64_t allocated;
	/* differencing */
	char *parent_name;
	struct vhd_parent_loc loc[VHD_LOCATORS];
	const char *parent_used;
};

/* One's complement of the byte sum, the checksum field counted as zero. */
uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off);
/* Decode raw; false when the cookie is not "conectix". */
bool vhd_footer_decode(const uint8_t *raw, struct vhd_footer *f);
bool vhd_footer_csum_ok(const uint8_t *raw);
/* The virtual size qemu derives from a footer: CHS geometry for the
 * producers that size disks by geometry (Virtual PC, old qemu), the
 * current size for Hyper-V, Disk2vhd, XenServer, XenConverter, qemu with
 * force_size, and for any disk whose geometry is the maximum. */
/* Hyper-V and Disk2vhd disks take their size from current_size, Virtual PC
 * ones from the geometry (qemu's vpc rule). */
bool vhd_uses_current_size(const struct vhd_footer *f);
uint64_t vhd_footer_disk_size(const struct vhd_footer *f);
/* The spec's CHS algorithm (appendix), as qemu applies it. */
void vhd_geometry(uint64_t sectors, uint16_t *c, uint8_t *h, uint8_t *s);
/* qemu-img's sizing: size rounded up to a sector, then (without force)
 * up to the first CHS geometry that holds it; force keeps the size and
 * writes the maximum geometry. Fails with EFBIG past 2040 GiB. */
int vhd_plan_size(uint64_t size, bool force, uint64_t *out, uint16_t *c, uint8_t *h, uint8_t *s);
/* Fill a footer for a new disk (creator "vdk ", fresh UUID, checksum). */
void vhd_footer_build(uint8_t *raw, uint32_t type, uint64_t size, uint16_t c, uint8_t h, uint8_t s,
                      uint64_t data_offset);

/* Writer (vhd_write.c), wired into vdk_format_vhd by vhd.c. */
struct vhd_wstate {
	uint32_t type;
	uint16_t c;
	uint8_t h, s;
	/* dynamic */
	uint32_t nblocks;
	uint32_t *bat; /* BAT as written: sector of each block's bitmap */
	uint64_t bat_bytes, data_base, next_slot;
	bool zero_new; /* the sink does not start zeroed: clear new blocks */
};
int vhd_create(struct vdk_writer *w, struct vdk_err *e);
int vhd_write(struct vdk_writer *w, const void *buf, size_t len, uint64_t off, struct vdk_err *e);
int vhd_write_zeroes(struct vdk_writer *w, uint64_t off, uint64_t len, struct vdk_err *e);
int vhd_clone(struct vdk_writer *w, uint64_t off, uint64_t len, int src_fd, uint64_t src_off,
              enum vdk_clone_mode mode, struct vdk_err *e);
int vhd_finalize(struct vdk_writer *w, struct vdk_err *e);
void vhd_wclose(struct vdk_writer *w);

/* Turn the raw disk at path into an Azure fixed VHD in place: grow it to a
 * whole MiB (zeroes), append the footer, fsync; then, when final_path is
 * not NULL, rename it (without replacing anything) and fsync the folder.
 * The footer is written only after the grown size is durable, so an
 * interrupted run leaves a raw disk a rerun finishes. Returns 0 when
 * converted, 1 when path already ends with a valid Azure footer for its
 * size (only the rename is then done), or a negative errno. */
int vhd_inplace_azure(const char *path, const char *final_path, struct vdk_err *e);
int vhd_in_place(const char *path, const char *new_name, struct vdk_opts *o, struct vdk_err *e);

/* Updates in place (vhd_update.c; convert/update.h). */
struct vhd_ustate {
	uint32_t type;
	uint8_t footer[VHD_FOOTER_SIZE];
	uint64_t footer_off; /* the footer at the end of the file */
	uint64_t next_blk;   /* where the next new block goes (<= footer_off) */
	uint64_t bat_off;
	uint32_t block_size, bitmap_size;
	uint64_t nblocks;
	uint32_t *bat;          /* as on disk, with this session's changes */
	uint8_t *bat_dirty;     /* one bit per 512-byte BAT sector to write at the flush */
	uint8_t *bm_full;       /* one bit per block whose bitmap is known all ones */
	struct vhd_upd_bm *bms; /* bitmaps changed since the flush */
	size_t nbms;
	uint8_t *ones; /* bitmap_size bytes of 0xff */
};
int vhd_update_open(struct vdk_update *u, struct vdk_err *e);
int vhd_update_write(struct vdk_update *u, const void *buf, size_t len, uint64_t off,
                     struct vdk_err *e);
int vhd_update_zero(struct vdk_update *u, uint64_t off, uint64_t len, struct vdk_err *e);
int vhd_update_flush(struct vdk_update *u, struct vdk_err *e);
void vhd_update_close(struct vdk_update *u);

#endif
