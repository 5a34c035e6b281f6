/* VHDX reader: file identifier, the two headers, the region table and the
 * metadata region (MS-VHDX v1.00 sections 2.1-2.6). The log is replayed in
 * memory (vhdx_log.c) before anything but the headers is read, because a log
 * entry may rewrite the region table, the metadata or the BAT. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vhdx.h"

#define VHDX_NAME(img)       ((img)->src->name)
#define BAD(img, off, ...)   vdk_bad(e, VHDX_NAME(img), "vhdx", (off), __VA_ARGS__)
#define UNSUP(img, off, ...) vdk_unsup(e, VHDX_NAME(img), "vhdx", (off), __VA_ARGS__)

static void vhdx_guid_str(const uint8_t *g, char out[37])
{
	snprintf(out, 37, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", vdk_le32(g),
	         vdk_le16(g + 4), vdk_le16(g + 6), g[8], g[9], g[10], g[11], g[12], g[13], g[14],
	         g[15]);
}

static int vhdx_probe(const uint8_t *buf, size_t len, uint64_t size)
{
	(void)size;
	return len >= 8 && memcmp(buf, "vhdxfile", 8) == 0 ? 100 : 0;
}

/* Headers (MS-VHDX 2.2.2) --------------------------------------------- */

static bool vhdx_hdr_valid(const uint8_t *h)
{
	return memcmp(h + VHDX_H_SIG, "head", 4) == 0 &&
	       vhdx_crc(h, VHDX_HDR_SIZE, VHDX_H_CRC) == vdk_le32(h + VHDX_H_CRC) &&
	       vdk_le16(h + VHDX_H_VERSION) == 1;
}

static int vhdx_check_log_region(struct vdk_image *img, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	uint64_t hoff = VHDX_HDR_OFF(s->hdr_idx);
	if (s->log_len == 0)
		return 0;
	if (s->log_off % VHDX_MiB || s->log_off < VHDX_MiB || s->log_len % VHDX_MiB)
		return BAD(img, hoff + VHDX_H_LOGOFF,
		           "log region at %llu, length %u is not 1 MiB aligned",
		           (unsigned long long)s->log_off, s->log_len);
	if (!vdk_range_ok(s->log_off, s->log_len, img->src->size))
		return BAD(img, hoff + VHDX_H_LOGOFF,
		           "log region [%llu, +%u) is beyond the end of the file",
		           (unsigned long long)s->log_off, s->log_len);
	return 0;
}

static int vhdx_read_headers(struct vdk_image *img, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	uint8_t h[2][VHDX_HDR_SIZE];
	char sig[8];
	int r = vdk_src_pread(img->src, sig, 8, 0, e);
	if (r < 0)
		return r;
	if (memcmp(sig, "vhdxfile", 8) != 0)
		return BAD(img, 0, "no \"vhdxfile\" file type identifier");
	if (img->src->size < VHDX_RT2_OFF + VHDX_RT_SIZE)
		return BAD(img, 0, "file of %llu bytes is too small for the VHDX header area",
		           (unsigned long long)img->src->size);
	if ((r = vdk_src_pread(img->src, h[0], VHDX_HDR_SIZE, VHDX_HDR1_OFF, e)) < 0 ||
	    (r = vdk_src_pread(img->src, h[1], VHDX_HDR_SIZE, VHDX_HDR2_OFF, e)) < 0)
		return r;
	bool v0 = vhdx_hdr_valid(h[0]), v1 = vhdx_hdr_valid(h[1]);
	if (!v0 && !v1)
		return BAD(img, VHDX_HDR1_OFF,
		           "neither header is valid (bad signature, CRC-32C or version)");
	if (v0 && v1 && vdk_le64(h[1] + VHDX_H_SEQ) == vdk_le64(h[0] + VHDX_H_SEQ) &&
	    memcmp(h[0], h[1], VHDX_HDR_SIZE) != 0)
		/* MS-VHDX 2.2.2.1: the current header has the greater sequence
		 * number. Disk2vhd writes two identical headers; two different
		 * ones with one number leave no current header (qemu agrees). */
		return BAD(img, VHDX_HDR2_OFF + VHDX_H_SEQ,
		           "both headers are valid with sequence number %llu but differ: "
		           "which one is current is ambiguous",
		           (unsigned long long)vdk_le64(h[0] + VHDX_H_SEQ));
	if (v0 && v1)
		s->hdr_idx = vdk_le64(h[1] + VHDX_H_SEQ) > vdk_le64(h[0] + VHDX_H_SEQ) ? 1 : 0;
	else
		s->hdr_idx = v1 ? 1 : 0;
	const uint8_t *c = h[s->hdr_idx];
	s->hdr_seq = vdk_le64(c + VHDX_H_SEQ);
	memcpy(s->fw_guid, c + VHDX_H_FWGUID, 16);
	memcpy(s->dw_guid, c + VHDX_H_DWGUID, 16);
	memcpy(s->log_guid, c + VHDX_H_LOGGUID, 16);
	s->log_len = vdk_le32(c + VHDX_H_LOGLEN);
	s->log_off = vdk_le64(c + VHDX_H_LOGOFF);
	if (vdk_le16(c + VHDX_H_LOGVER) != 0)
		return UNSUP(img, VHDX_HDR_OFF(s->hdr_idx) + VHDX_H_LOGVER,
		             "log version %u (only 0 is defined)", vdk_le16(c + VHDX_H_LOGVER));
	return vhdx_check_log_region(img, e);
}

/* Region table (MS-VHDX 2.2.3) ----------------------------------------- */

struct vhdx_region {
	uint64_t off, len;
	const char *what;
};

static bool vhdx_regions_overlap(const struct vhdx_region *a, const struct vhdx_region *b)
{
	return a->len && b->len && a->off < b->off + b->len && b->off < a->off + a->len;
}

static int vhdx_check_regions(struct vdk_image *img, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	struct vhdx_region rg[4] = {
	    {0, VHDX_MiB, "header area"},
	    {s->log_off, s->log_len, "log"},
	    {s->bat_off, s->bat_len, "BAT"},
	    {s->meta_off, s->meta_len, "metadata"},
	};
	for (int i = 0; i < 4; i++)
		for (int j = i + 1; j < 4; j++)
			if (vhdx_regions_overlap(&rg[i], &rg[j]))
				return BAD(img, rg[j].off, "the %s region overlaps the %s region",
				           rg[j].what, rg[i].what);
	return 0;
}

static int vhdx_rt_entry(struct vdk_image *img, const uint8_t *ent, uint64_t at, bool *got_bat,
                         bool *got_meta, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	uint64_t off = vdk_le64(ent + 16);
	uint32_t len = vdk_le32(ent + 24);
	bool required = vdk_le32(ent + 28) & 1;
	bool is_bat = memcmp(ent, vhdx_guid_bat, 16) == 0;
	bool is_meta = memcmp(ent, vhdx_guid_meta, 16) == 0;
	if (!is_bat && !is_meta) {
		if (required)
			return UNSUP(img, at, "unknown required region");
		return 0;
	}
	if ((is_bat && *got_bat) || (is_meta && *got_meta))
		return BAD(img, at, "duplicate %s region entry", is_bat ? "BAT" : "metadata");
	if (off % VHDX_MiB || off < VHDX_MiB || len % VHDX_MiB || len == 0)
		return BAD(img, at, "%s region at %llu, length %u is not 1 MiB aligned",
		           is_bat ? "BAT" : "metadata", (unsigned long long)off, len);
	if (!vdk_range_ok(off, len, s->fsize))
		return BAD(img, at, "%s region [%llu, +%u) is beyond the end of the file",
		           is_bat ? "BAT" : "metadata", (unsigned long long)off, len);
	if (is_bat) {
		s->bat_off = off, s->bat_len = len, *got_bat = true;
	} else {
		s->meta_off = off, s->meta_len = len, *got_meta = true;
	}
	return 0;
}

static int vhdx_parse_rt(struct vdk_image *img, const uint8_t *rt, uint64_t base, struct vdk_err *e)
{
	uint32_t n = vdk_le32(rt + 8);
	bool got_bat = false, got_meta = false;
	if (n > VHDX_RT_MAX_ENTRY)
		return BAD(img, base + 8, "region table has %u entries (at most %u)", n,
		           VHDX_RT_MAX_ENTRY);
	for (uint32_t i = 0; i < n; i++) {
		int r = vhdx_rt_entry(img, rt + 16 + 32 * (size_t)i, base + 16 + 32 * (uint64_t)i,
		                      &got_bat, &got_meta, e);
		if (r < 0)
			return r;
	}
	if (!got_bat || !got_meta)
		return BAD(img, base, "region table lacks the %s region",
		           got_bat ? "metadata" : "BAT");
	return vhdx_check_regions(img, e);
}

static int vhdx_read_rt(struct vdk_image *img, struct vdk_err *e)
{
	uint8_t *rt = malloc(VHDX_RT_SIZE);
	if (!rt)
		return vdk_nomem(e, img->src->name, "vhdx", "the region table");
	int r = -EINVAL;
	for (int i = 0; i < 2; i++) {
		uint64_t base = i ? VHDX_RT2_OFF : VHDX_RT1_OFF;
		if ((r = vhdx_fread(img, rt, VHDX_RT_SIZE, base, e)) < 0)
			break;
		if (memcmp(rt, "regi", 4) == 0 &&
		    vhdx_crc(rt, VHDX_RT_SIZE, 4) == vdk_le32(rt + 4)) {
			r = vhdx_parse_rt(img, rt, base, e);
			break;
		}
		r = BAD(img, VHDX_RT1_OFF,
		        "neither region table is valid (bad signature or CRC-32C)");
	}
	free(rt);
	return r;
}

/* Metadata (MS-VHDX 2.6) ------------------------------------------------- */

/* UTF-16LE to UTF-8, '\\' becoming '/'. NULL on bad input or ENOMEM. */
static char *vhdx_utf16_to_path(const uint8_t *p, size_t len)
{
	if (len % 2)
		return NULL;
	char *out = malloc(len / 2 * 3 + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 2) {
		uint32_t c = vdk_le16(p + i);
		if (c >= 0xD800 && c < 0xDC00 && i + 4 <= len) {
			uint32_t lo = vdk_le16(p + i + 2);
			if (lo >= 0xDC00 && lo < 0xE000) {
				c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
				i += 2;
			}
		}
		if (c == 0 || (c >= 0xD800 && c < 0xE000)) {
			free(out);
			return NULL;
		}
		if (c == '\\')
			c = '/';
		if (c < 0x80) {
			*o++ = (char)c;
		} else if (c < 0x800) {
			*o++ = (char)(0xC0 | (c >> 6));
			*o++ = (char)(0x80 | (c & 0x3F));
		} else if (c < 0x10000) {
			*o++ = (char)(0xE0 | (c >> 12));
			*o++ = (char)(0x80 | ((c >> 6) & 0x3F));
			*o++ = (char)(0x80 | (c & 0x3F));
		} else {
			/* 4-byte sequence consumed two UTF-16 units: 6 bytes budgeted */
			*o++ = (char)(0xF0 | (c >> 18));
			*o++ = (char)(0x80 | ((c >> 12) & 0x3F));
			*o++ = (char)(0x80 | ((c >> 6) & 0x3F));
			*o++ = (char)(0x80 | (c & 0x3F));
		}
	}
	*o = 0;
	return out;
}

static bool vhdx_key_is(const uint8_t *k, size_t klen, const char *name)
{
	size_t n = strlen(name);
	if (klen != 2 * n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (vdk_le16(k + 2 * i) != (uint8_t)name[i])
			return false;
	return true;
}

static int vhdx_parse_locator(struct vdk_image *img, const uint8_t *p, uint32_t len, uint64_t at,
                              struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	if (len < 20)
		return BAD(img, at, "parent locator of %u bytes is too short", len);
	if (memcmp(p, vhdx_guid_parent_type, 16) != 0)
		return UNSUP(img, at, "parent locator type is not VHDX");
	uint32_t n = vdk_le16(p + 18);
	if (20 + 12 * (uint64_t)n > len)
		return BAD(img, at + 18, "parent locator has %u entries for %u bytes", n, len);
	static const char *const keys[] = {"parent_linkage", "relative_path", "absolute_win32_path",
	                                   "volume_path"};
	char **dst[] = {&s->parent_linkage, &s->parent_rel, &s->parent_abs, &s->parent_vol};
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *ent = p + 20 + 12 * i;
		uint32_t ko = vdk_le32(ent), vo = vdk_le32(ent + 4);
		uint16_t kl = vdk_le16(ent + 8), vl = vdk_le16(ent + 10);
		if (!vdk_range_ok(ko, kl, len) || !vdk_range_ok(vo, vl, len))
			return BAD(img, at + 20 + 12 * i, "parent locator entry %u out of bounds",
			           i);
		for (size_t k = 0; k < VDK_ARRAY_SIZE(keys); k++) {
			if (!vhdx_key_is(p + ko, kl, keys[k]) || *dst[k])
				continue;
			*dst[k] = vhdx_utf16_to_path(p + vo, vl);
			if (!*dst[k])
				return BAD(img, at + vo, "parent locator value %s is not UTF-16",
				           keys[k]);
		}
	}
	return 0;
}

struct vhdx_item {
	const uint8_t *guid;
	uint32_t len; /* expected length; 0: variable (parent locator) */
	bool seen;
};

enum { VHDX_IT_FP, VHDX_IT_VSIZE, VHDX_IT_P83, VHDX_IT_LSS, VHDX_IT_PSS, VHDX_IT_PL, VHDX_IT_N };

static int vhdx_meta_item(struct vdk_image *img, int kind, const uint8_t *p, uint32_t len,
                          uint64_t at, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	switch (kind) {
	case VHDX_IT_FP:
		s->block_size = vdk_le32(p);
		s->leave_alloc = vdk_le32(p + 4) & 1;
		s->has_parent = (vdk_le32(p + 4) >> 1) & 1;
		break;
	case VHDX_IT_VSIZE:
		img->size = vdk_le64(p);
		break;
	case VHDX_IT_P83:
		memcpy(s->page83, p, 16);
		break;
	case VHDX_IT_LSS:
		s->lss = vdk_le32(p);
		break;
	case VHDX_IT_PSS:
		s->pss = vdk_le32(p);
		break;
	case VHDX_IT_PL:
		return vhdx_parse_locator(img, p, len, at, e);
	}
	return 0;
}

static int vhdx_meta_entry(struct vdk_image *img, const uint8_t *ent, uint64_t at,
                           struct vhdx_item *items, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	uint32_t off = vdk_le32(ent + 16), len = vdk_le32(ent + 20), flags = vdk_le32(ent + 24);
	int kind = -1;
	for (int k = 0; k < VHDX_IT_N; k++)
		if (memcmp(ent, items[k].guid, 16) == 0)
			kind = k;
	if (kind < 0)
		return (flags & VHDX_META_IS_REQUIRED)
		           ? UNSUP(img, at, "unknown required metadata item")
		           : 0;
	if (items[kind].seen)
		return BAD(img, at, "duplicate metadata item");
	items[kind].seen = true;
	if (items[kind].len ? len != items[kind].len : (len < 20 || len > VHDX_MiB))
		return BAD(img, at + 20, "metadata item of %u bytes (bad length)", len);
	if (off < VHDX_META_TABLE || !vdk_range_ok(off, len, s->meta_len))
		return BAD(img, at + 16, "metadata item at %u, %u bytes, outside its region", off,
		           len);
	uint8_t *p = malloc(len);
	if (!p)
		return vdk_nomem(e, img->src->name, "vhdx", "a metadata item");
	int r = vhdx_fread(img, p, len, s->meta_off + off, e);
	if (r == 0)
		r = vhdx_meta_item(img, kind, p, len, s->meta_off + off, e);
	free(p);
	return r;
}

static int vhdx_check_params(struct vdk_image *img, bool have_pl, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	uint64_t mo = s->meta_off;
	if (!vdk_is_pow2(s->block_size) || s->block_size < VHDX_MiB ||
	    s->block_size > VHDX_MAX_BLOCK)
		return BAD(img, mo, "block size %u is not a power of two in 1 MiB..256 MiB",
		           s->block_size);
	if (s->lss != 512 && s->lss != 4096)
		return BAD(img, mo, "logical sector size %u (512 or 4096)", s->lss);
	if (s->pss != 512 && s->pss != 4096)
		return BAD(img, mo, "physical sector size %u (512 or 4096)", s->pss);
	if (img->size % s->lss || img->size > VHDX_MAX_SIZE)
		return BAD(img, mo, "virtual size %llu is not a multiple of %u up to 64 TiB",
		           (unsigned long long)img->size, s->lss);
	if (s->has_parent && !have_pl)
		return BAD(img, mo, "differencing disk without a parent locator");
	return 0;
}

static int vhdx_read_meta(struct vdk_image *img, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	struct vhdx_item items[VHDX_IT_N] = {
	    {vhdx_guid_fileparam, 8, false}, {vhdx_guid_vsize, 8, false},
	    {vhdx_guid_page83, 16, false},   {vhdx_guid_lss, 4, false},
	    {vhdx_guid_pss, 4, false},       {vhdx_guid_parent, 0, false},
	};
	uint8_t *t = malloc(VHDX_META_TABLE);
	if (!t)
		return vdk_nomem(e, img->src->name, "vhdx", "the metadata table");
	int r = vhdx_fread(img, t, VHDX_META_TABLE, s->meta_off, e);
	if (r == 0 && memcmp(t, "metadata", 8) != 0)
		r = BAD(img, s->meta_off, "no \"metadata\" table signature");
	uint32_t n = r == 0 ? vdk_le16(t + 10) : 0;
	if (r == 0 && n > VHDX_META_MAX_ENT)
		r = BAD(img, s->meta_off + 10, "metadata table has %u entries (at most %u)", n,
		        VHDX_META_MAX_ENT);
	for (uint32_t i = 0; r == 0 && i < n; i++)
		r = vhdx_meta_entry(img, t + 32 + 32 * (size_t)i, s->meta_off + 32 + 32 * i, items,
		                    e);
	free(t);
	if (r < 0)
		return r;
	for (int k = 0; k < VHDX_IT_PL; k++)
		if (!items[k].seen && k != VHDX_IT_P83)
			return BAD(img, s->meta_off, "required metadata item %d is missing", k);
	return vhdx_check_params(img, items[VHDX_IT_PL].seen, e);
}

/* Open / info / close ---------------------------------------------------- */

static int vhdx_open(struct vdk_image *img, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	if (img->src->flags & VDK_SRC_STREAM || img->src->size == VDK_SIZE_UNKNOWN)
		return UNSUP(img, VDK_NO_OFFSET, "VHDX needs a seekable source");
	s->fsize = img->src->size;
	int r = vhdx_read_headers(img, e);
	if (r == 0)
		r = vhdx_log_load(img, e);
	if (r == 0)
		r = vhdx_read_rt(img, e);
	if (r == 0)
		r = vhdx_read_meta(img, e);
	if (r == 0)
		r = vhdx_bat_load(img, e);
	if (r < 0)
		return r == -ENOMEM && e->cls == VDK_E_NONE
		           ? vdk_ioerr(e, ENOMEM, VHDX_NAME(img), "out of memory")
		           : r;
	img->cluster_size = s->block_size;
	img->dirty = s->nops > 0;
	return s->has_parent ? vhdx_parent_open(img, e) : 0;
}

static const char *vhdx_type(const struct vhdx_state *s)
{
	if (s->has_parent)
		return "differencing";
	return s->leave_alloc ? "fixed" : "dynamic";
}

static int vhdx_info(struct vdk_image *img, struct vdk_json *d, struct vdk_err *e)
{
	struct vhdx_state *s = img->state;
	char g[37];
	(void)e;
	vdk_json_set_str(d, "type", vhdx_type(s));
	vdk_json_set_u64(d, "block-size", s->block_size);
	vdk_json_set_u64(d, "logical-sector-size", s->lss);
	vdk_json_set_u64(d, "physical-sector-size", s->pss);
	vdk_json_set_bool(d, "leave-blocks-allocated", s->leave_alloc);
	vdk_json_set_str(d, "log",
	                 s->nops                          ? "replayed in memory"
	                 : vhdx_guid_is_zero(s->log_guid) ? "empty"
	                                                  : "no active entries");
	vdk_json_set_u64(d, "log-size", s->log_len);
	if (s->log_nentries) {
		vdk_json_set_u64(d, "log-entries", s->log_nentries);
		vdk_json_set_u64(d, "log-sequence", s->log_head_seq);
	}
	vhdx_guid_str(s->dw_guid, g);
	vdk_json_set_str(d, "data-write-guid", g);
	vhdx_guid_str(s->page83, g);
	vdk_json_set_str(d, "page83", g);
	if (s->parent_linkage)
		vdk_json_set_str(d, "parent-linkage", s->parent_linkage);
	if (s->parent_rel)
		vdk_json_set_str(d, "parent-relative-path", s->parent_rel);
	if (s->parent_abs)
		vdk_json_set_str(d, "parent-absolute-path", s->parent_abs);
	return 0;
}

static void vhdx_close(struct vdk_image *img)
{
	struct vhdx_state *s = img->state;
	if (!s)
		return;
	free(s->bat);
	free(s->ops);
	free(s->parent_linkage);
	free(s->parent_rel);
	free(s->parent_abs);
	free(s->parent_vol);
}

/* Hyper-V exports name the disk format by a Microsoft URI ending in vhdx. */
static const char *const vhdx_ovf_formats[] = {"vhdx", NULL};
static const struct vdk_opt_desc vhdx_wopts[] = {
    {"subformat", "enum", "dynamic", "dynamic, fixed", "fixed: every block allocated"},
    {"block_size", "size", "32M", "1M .. 256M, a power of two", "payload block size"},
    {"logical_sector_size", "size", "512", "512, 4096", "sector size the guest sees"},
    {"log_size", "size", "1M", "1M .. 2G, whole MiB", "log region size"},
    {NULL, NULL, NULL, NULL, NULL},
};

const struct vdk_format vdk_format_vhdx = {
    .name = "vhdx",
    .description = "Microsoft Hyper-V VHDX (MS-VHDX v1)",
    .state_size = sizeof(struct vhdx_state),
    .probe = vhdx_probe,
    .open = vhdx_open,
    .extents = vhdx_extents,
    .pread = vhdx_pread,
    .info = vhdx_info,
    .check = vhdx_check,
    .close = vhdx_close,
    .wstate_size = sizeof(struct vhdx_wstate),
    .wcaps = VDK_WCAP_ZEROED | VDK_WCAP_CLONE,
    .create = vhdx_create,
    .write = vhdx_write,
    .write_zeroes = vhdx_write_zeroes,
    .clone = vhdx_clone,
    .finalize = vhdx_finalize,
    .wclose = vhdx_wclose,
    .ovf_formats = vhdx_ovf_formats,
    .wopts = vhdx_wopts,
    .ustate_size = sizeof(struct vhdx_ustate),
    .update_open = vhdx_update_open,
    .update_write = vhdx_update_write,
    .update_zero = vhdx_update_zero,
    .update_flush = vhdx_update_flush,
    .update_close = vhdx_update_close,
};
