/* VHD reader ("vpc"): fixed, dynamic and differencing disks.
 *
 * Layout (spec v1.0): every disk ends with a 512-byte footer; dynamic and
 * differencing disks also keep a copy of it at offset 0, then a 1024-byte
 * dynamic header, a block allocation table (BAT) of big-endian sector
 * numbers, and blocks made of a sector bitmap followed by the data. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "format.h"
#include "util.h"
#include "vhd.h"

#define FMT "vpc"
/* Parent locators hold one path; anything longer is not a path. */
#define VHD_LOCATOR_MAX 8192u
#define VHD_PATH_MAX    4096u

_Static_assert(VHD_H_LOCATORS + VHD_LOCATORS * VHD_LOCATOR_SIZE <= VHD_DYNHDR_SIZE - 256,
               "dynamic header layout");

/* Probe -------------------------------------------------------------- */

/* Like qemu: only the footer copy at offset 0 (dynamic and differencing
 * disks) identifies a VHD; a fixed disk probes as raw and needs -f vpc. */
static int vhd_probe(const uint8_t *buf, size_t len, uint64_t size)
{
	(void)size;
	return len >= 8 && memcmp(buf, "conectix", 8) == 0 ? 100 : 0;
}

/* Footer ------------------------------------------------------------- */

/* A dynamic or differencing disk keeps a copy of its footer at offset 0.
 * qemu-img reads the copy, vdkit (like the spec) the footer at the end:
 * when both are valid and disagree on what decides the content, which one
 * describes the disk is ambiguous (found by `make fuzz-diff`). A fixed
 * disk has no copy: sector 0 is the guest's. */
static int vhd_copy_agrees(struct vdk_image *img, const struct vhd_state *s, const uint8_t *head,
                           struct vdk_err *e)
{
	struct vhd_footer h;
	const struct vhd_footer *t = &s->f;
	if (t->type == VHD_TYPE_FIXED || !vhd_footer_decode(head, &h) || !vhd_footer_csum_ok(head))
		return 0;
	static const struct {
		size_t at;
		const char *what;
	} fields[] = {{VHD_F_TYPE, "disk type"},
	              {VHD_F_DATA_OFFSET, "dynamic header offset"},
	              {VHD_F_CUR_SIZE, "current size"},
	              {VHD_F_CYLS, "disk size (geometry, creator)"}};
	bool differ[] = {h.type != t->type, h.data_offset != t->data_offset,
	                 h.cur_size != t->cur_size,
	                 vhd_footer_disk_size(&h) != vhd_footer_disk_size(t)};
	for (size_t i = 0; i < sizeof differ / sizeof *differ; i++)
		if (differ[i])
			return vdk_bad(
			    e, img->src->name, FMT, fields[i].at,
			    "the footer copy at 0 and the footer at %llu disagree on the %s: "
			    "which one describes the disk is ambiguous",
			    (unsigned long long)s->footer_off, fields[i].what);
	return 0;
}

static int vhd_read_footer(struct vdk_image *img, struct vhd_state *s, struct vdk_err *e)
{
	struct vdk_src *src = img->src;
	uint64_t fsize = src->size;
	if (fsize == VDK_SIZE_UNKNOWN || (src->flags & VDK_SRC_STREAM))
		return vdk_unsup(e, src->name, FMT, VDK_NO_OFFSET,
		                 "a VHD is read from its footer at the end: needs a seekable file");
	if (fsize < VHD_FOOTER_SIZE)
		return vdk_bad(e, src->name, FMT, 0, "file of %llu bytes is too small for a VHD",
		               (unsigned long long)fsize);
	uint8_t tail[VHD_FOOTER_SIZE], head[VHD_FOOTER_SIZE];
	uint64_t toff = fsize - VHD_FOOTER_SIZE;
	int r = vdk_src_pread(src, tail, sizeof(tail), toff, e);
	if (!r)
		r = vdk_src_pread(src, head, sizeof(head), 0, e);
	if (r)
		return r;
	struct vhd_footer hf;
	bool tail_cookie = vhd_footer_decode(tail, &s->f);
	s->tail_cookie = tail_cookie;
	if (tail_cookie && vhd_footer_csum_ok(tail)) {
		s->footer_off = toff;
		return vhd_copy_agrees(img, s, head, e);
	}
	/* The copy at offset 0 exists for this: a damaged or missing footer
	 * (an interrupted append) of a dynamic or differencing disk. */
	bool head_cookie = vhd_footer_decode(head, &hf);
	if (head_cookie && vhd_footer_csum_ok(head) && hf.type != VHD_TYPE_FIXED) {
		s->f = hf;
		s->footer_off = 0;
		return 0;
	}
	if (tail_cookie || head_cookie) {
		const uint8_t *raw = tail_cookie ? tail : head;
		return vdk_bad(e, src->name, FMT, tail_cookie ? toff : 0,
		               "footer checksum mismatch (stored 0x%08x, computed 0x%08x)",
		               vdk_be32(raw + VHD_F_CHECKSUM),
		               vhd_checksum(raw, VHD_FOOTER_SIZE, VHD_F_CHECKSUM));
	}
	return vdk_bad(e, src->name, FMT, toff, "no VHD footer (cookie \"conectix\") here or at 0");
}

/* Dynamic header and BAT --------------------------------------------- */

static int vhd_read_header(struct vdk_image *img, struct vhd_state *s, struct vdk_err *e)
{
	const char *name = img->src->name;
	uint64_t fsize = img->src->size;
	s->hdr_off = s->f.data_offset;
	if (!vdk_range_ok(s->hdr_off, VHD_DYNHDR_SIZE, fsize))
		return vdk_bad(e, name, FMT, s->footer_off + VHD_F_DATA_OFFSET,
		               "dynamic header offset %llu lies outside the file",
		               (unsigned long long)s->hdr_off);
	int r = vdk_src_pread(img->src, s->hdr, VHD_DYNHDR_SIZE, s->hdr_off, e);
	if (r)
		return r;
	if (memcmp(s->hdr, "cxsparse", 8) != 0)
		return vdk_bad(e, name, FMT, s->hdr_off, "no dynamic header (cookie \"cxsparse\")");
	uint32_t want = vhd_checksum(s->hdr, VHD_DYNHDR_SIZE, VHD_H_CHECKSUM);
	uint32_t have = vdk_be32(s->hdr + VHD_H_CHECKSUM);
	if (want != have)
		return vdk_bad(e, name, FMT, s->hdr_off,
		               "dynamic header checksum mismatch (stored 0x%08x, computed 0x%08x)",
		               have, want);
	s->block_size = vdk_be32(s->hdr + VHD_H_BLOCK_SIZE);
	if (!vdk_is_pow2(s->block_size) || s->block_size < VHD_SECTOR)
		return vdk_bad(e, name, FMT, s->hdr_off + VHD_H_BLOCK_SIZE,
		               "block size %u is not a power of two of at least 512",
		               s->block_size);
	/* Under 8 sectors the bitmap is a fraction of a byte: qemu-img (and
	 * the size rule below) make it 0 bytes, so the block's first data byte
	 * would be read as its bitmap (found by `make fuzz-diff`). Hyper-V,
	 * Virtual PC and qemu-img write 2 MiB blocks. */
	if (s->block_size < 8 * VHD_SECTOR)
		return vdk_bad(e, name, FMT, s->hdr_off + VHD_H_BLOCK_SIZE,
		               "block size %u is under 8 sectors: its sector bitmap would be less "
		               "than a byte",
		               s->block_size);
	/* One bit per sector, padded to whole sectors. */
	s->bitmap_size = (uint32_t)vdk_round_up(s->block_size / VHD_SECTOR / 8, VHD_SECTOR);
	s->max_entries = vdk_be32(s->hdr + VHD_H_MAX_ENTRIES);
	s->bat_off = vdk_be64(s->hdr + VHD_H_TABLE_OFFSET);
	s->nblocks = (img->size + s->block_size - 1) / s->block_size;
	/* qemu refuses more than INT_MAX / 4 entries; the whole table, as the
	 * header sizes it, must also be in the file (qemu reads all of it). */
	if (s->max_entries > INT32_MAX / 4 || (uint64_t)s->max_entries * 4 > fsize)
		return vdk_bad(e, name, FMT, s->hdr_off + VHD_H_MAX_ENTRIES,
		               "max table entries %u (0x%08x) is more than a %llu-byte file holds",
		               s->max_entries, s->max_entries, (unsigned long long)fsize);
	if (s->nblocks > s->max_entries)
		return vdk_bad(e, name, FMT, s->hdr_off + VHD_H_MAX_ENTRIES,
		               "the BAT has %u entries but the %llu-byte disk needs %llu",
		               s->max_entries, (unsigned long long)img->size,
		               (unsigned long long)s->nblocks);
	return 0;
}

/* A block (bitmap and data) must not cover the footer copy, the dynamic
 * header, the BAT or the footer: reading it would hand metadata to the
 * guest as data, and writing it (Hyper-V, qemu) would destroy the table. */
static int vhd_block_meta(struct vdk_image *img, const struct vhd_state *s, uint64_t i, uint64_t at,
                          uint64_t span, struct vdk_err *e)
{
	uint64_t fsize = img->src->size;
	struct {
		uint64_t off, len;
		const char *what;
	} m[] = {
	    {0, VHD_FOOTER_SIZE, "footer copy"},
	    {s->hdr_off, VHD_DYNHDR_SIZE, "dynamic header"},
	    {s->bat_off, vdk_round_up((uint64_t)s->max_entries * 4, VHD_SECTOR), "BAT"},
	    /* a footer whose checksum is bad is still no guest data */
	    {fsize - VHD_FOOTER_SIZE, s->footer_off || s->tail_cookie ? VHD_FOOTER_SIZE : 0,
	     "footer"},
	};
	for (size_t k = 0; k < VDK_ARRAY_SIZE(m); k++)
		if (m[k].len && at < m[k].off + m[k].len && m[k].off < at + span)
			return vdk_bad(
			    e, img->src->name, FMT, s->bat_off + 4 * i,
			    "BAT entry %llu points block [%llu, +%llu) into the %s at %llu",
			    (unsigned long long)i, (unsigned long long)at, (unsigned long long)span,
			    m[k].what, (unsigned long long)m[k].off);
	return 0;
}

struct vhd_blk {
	uint64_t at, i;
};

static int vhd_blk_cmp(const void *a, const void *b)
{
	const struct vhd_blk *x = a, *y = b;
	return x->at < y->at ? -1 : x->at > y->at;
}

/* Two blocks that share sectors without being the same block: one's
 * bitmap is the other's data, so a read hands a bitmap to the guest as
 * data (qemu-img reads it so; found by `make fuzz-diff`). Entries naming
 * the very same block read consistently and are left to check, as VMDK
 * grains shared by two entries are. */
static int vhd_blocks_overlap(struct vdk_image *img, const struct vhd_state *s, uint64_t span,
                              struct vdk_err *e)
{
	if (s->allocated < 2)
		return 0;
	struct vhd_blk *v = malloc(s->allocated * sizeof(*v));
	size_t n = 0;
	int r = 0;
	if (!v)
		return vdk_nomem(e, img->src->name, FMT, "the block list");
	for (uint64_t i = 0; i < s->nblocks && n < s->allocated; i++)
		if (s->bat[i] != VHD_BAT_UNUSED)
			v[n++] = (struct vhd_blk){(uint64_t)s->bat[i] * VHD_SECTOR, i};
	qsort(v, n, sizeof(*v), vhd_blk_cmp);
	for (size_t k = 0; !r && k + 1 < n; k++)
		if (v[k].at != v[k + 1].at && v[k].at + span > v[k + 1].at)
			r = vdk_bad(
			    e, img->src->name, FMT, s->bat_off + 4 * v[k + 1].i,
			    "BAT entry %llu puts block [%llu, +%llu) inside block %llu at %llu",
			    (unsigned long long)v[k + 1].i, (unsigned long long)v[k + 1].at,
			    (unsigned long long)span, (unsigned long long)v[k].i,
			    (unsigned long long)v[k].at);
	free(v);
	return r;
}

static int vhd_read_bat(struct vdk_image *img, struct vhd_state *s, struct vdk_err *e)
{
	const char *name = img->src->name;
	uint64_t fsize = img->src->size;
	uint64_t bytes = s->nblocks * 4;
	if (!vdk_range_ok(s->bat_off, bytes, fsize))
		return vdk_bad(e, name, FMT, s->hdr_off + VHD_H_TABLE_OFFSET,
		               "BAT of %llu bytes at %llu runs past the end of the file",
		               (unsigned long long)bytes, (unsigned long long)s->bat_off);
	if (!s->nblocks)
		return 0;
	uint8_t *raw = malloc(bytes);
	s->bat = malloc(s->nblocks * sizeof(*s->bat));
	if (!raw || !s->bat) {
		free(raw);
		return vdk_ioerr(e, ENOMEM, name, "out of memory for the BAT");
	}
	int r = vdk_src_pread(img->src, raw, bytes, s->bat_off, e);
	uint64_t span = (uint64_t)s->bitmap_size + s->block_size;
	for (uint64_t i = 0; !r && i < s->nblocks; i++) {
		uint32_t v = vdk_be32(raw + 4 * i);
		s->bat[i] = v;
		if (v == VHD_BAT_UNUSED)
			continue;
		s->allocated++;
		/* Whole blocks inside the file, as qemu requires. */
		if (!vdk_range_ok((uint64_t)v * VHD_SECTOR, span, fsize))
			r = vdk_bad(e, name, FMT, s->bat_off + 4 * i,
			            "block %llu at offset %llu runs past the end of the file "
			            "(truncated image?)",
			            (unsigned long long)i, (unsigned long long)v * VHD_SECTOR);
		else
			r = vhd_block_meta(img, s, i, (uint64_t)v * VHD_SECTOR, span, e);
	}
	free(raw);
	return r ? r : vhd_blocks_overlap(img, s, span, e);
}

/* Differencing: parent locators -------------------------------------- */

/* UTF-16 (big- or little-endian) to UTF-8, stopping at NUL. */
static char *vhd_utf16(const uint8_t *p, size_t n, bool be)
{
	char *out = malloc(n / 2 * 3 + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i + 1 < n; i += 2) {
		uint32_t c = be ? vdk_be16(p + i) : vdk_le16(p + i);
		if (c == 0)
			break;
		if (c >= 0xd800 && c < 0xdc00 && i + 3 < n) {
			uint32_t lo = be ? vdk_be16(p + i + 2) : vdk_le16(p + i + 2);
			if (lo < 0xdc00 || lo >= 0xe000)
				goto bad;
			c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
			i += 2;
		} else if (c >= 0xd800 && c < 0xe000) {
			goto bad;
		}
		/* 3 output bytes per 2 input bytes covers every case. */
		if (c < 0x80) {
			out[o++] = (char)c;
		} else if (c < 0x800) {
			out[o++] = (char)(0xc0 | (c >> 6));
			out[o++] = (char)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			out[o++] = (char)(0xe0 | (c >> 12));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (c & 0x3f));
		} else {
			out[o++] = (char)(0xf0 | (c >> 18));
			out[o++] = (char)(0x80 | ((c >> 12) & 0x3f));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (c & 0x3f));
		}
	}
	out[o] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* Windows separators to '/', "./" prefixes dropped. NULL for paths that
 * cannot name a file here (drive letters, UNC shares, empty). */
static char *vhd_fix_path(char *p)
{
	if (!p)
		return NULL;
	for (char *q = p; *q; q++)
		if (*q == '\\')
			*q = '/';
	char *start = p;
	while (start[0] == '.' && start[1] == '/')
		start += 2;
	bool drive = ((start[0] | 0x20) >= 'a' && (start[0] | 0x20) <= 'z' && start[1] == ':');
	if (!*start || drive || (start[0] == '/' && start[1] == '/') ||
	    strlen(start) > VHD_PATH_MAX) {
		free(p);
		return NULL;
	}
	memmove(p, start, strlen(start) + 1);
	return p;
}

static char *vhd_decode_locator(const char *code, const uint8_t *d, size_t n)
{
	if (!strcmp(code, "W2ru") || !strcmp(code, "W2ku"))
		return vhd_fix_path(vhd_utf16(d, n, false));
	if (!strcmp(code, "MacX")) {
		/* A file URL (RFC 2396), UTF-8. */
		const char *pfx = "file://";
		size_t pl = strlen(pfx);
		if (n < pl || memcmp(d, pfx, pl) != 0)
			return NULL;
		char *p = strndup((const char *)d + pl, n - pl);
		if (p && !strncmp(p, "localhost/", 10))
			memmove(p, p + 9, strlen(p + 9) + 1);
		return vhd_fix_path(p);
	}
	return NULL; /* "Mac " aliases, deprecated Wi2r/Wi2k, unknown codes */
}

static int vhd_read_locators(struct vdk_image *img, struct vhd_state *s, struct vdk_err *e)
{
	uint8_t *buf = NULL;
	int r = 0;
	for (int i = 0; !r && i < VHD_LOCATORS; i++) {
		const uint8_t *l = s->hdr + VHD_H_LOCATORS + i * VHD_LOCATOR_SIZE;
		struct vhd_parent_loc *pl = &s->loc[i];
		memcpy(pl->code, l, 4);
		uint32_t len = vdk_be32(l + 8);
		uint64_t off = vdk_be64(l + 16);
		if (!vdk_be32(l) || !len)
			continue;
		if (len > VHD_LOCATOR_MAX || !vdk_range_ok(off, len, img->src->size)) {
			r = vdk_bad(e, img->src->name, FMT,
			            s->hdr_off + VHD_H_LOCATORS + i * VHD_LOCATOR_SIZE,
			            "parent locator %d (%u bytes at %llu) lies outside the file", i,
			            len, (unsigned long long)off);
			break;
		}
		if (!buf && !(buf = malloc(VHD_LOCATOR_MAX)))
			r = vdk_ioerr(e, ENOMEM, img->src->name, "out of memory");
		if (!r)
			r = vdk_src_pread(img->src, buf, len, off, e);
		if (!r)
			pl->path = vhd_decode_locator(pl->code, buf, len);
	}
	free(buf);
	return r;
}

static int vhd_check_parent_uuid(struct vdk_image *img, struct vhd_state *s, struct vdk_err *e)
{
	const struct vdk_image *p = img->backing;
	if (!p || p->fmt != img->fmt || img->opts->force) /* !p: no_backing */
		return 0;
	const struct vhd_state *ps = p->state;
	const uint8_t *want = s->hdr + VHD_H_PARENT_UUID;
	if (!memcmp(ps->f.uuid, want, 16))
		return 0;
	char a[37], b[37];
	uuid_unparse(ps->f.uuid, a);
	uuid_unparse(want, b);
	return vdk_bad(e, img->src->name, FMT, s->hdr_off + VHD_H_PARENT_UUID,
	               "parent '%s' has UUID %s, this disk expects %s (changed parent?)",
	               p->src->name, a, b);
}

/* Try the relative locator first, then absolute ones, then the parent's
 * file name next to this disk. The core confines every candidate. */
static int vhd_open_parent(struct vdk_image *img, struct vhd_state *s, struct vdk_err *e)
{
	int r = vhd_read_locators(img, s, e);
	if (r)
		return r;
	char *pn = vhd_utf16(s->hdr + VHD_H_PARENT_NAME, 512, true);
	if (pn) {
		/* A file name by the spec: keep only the last component. */
		char *slash = strrchr(pn, '\\'), *s2 = strrchr(pn, '/');
		slash = s2 > slash ? s2 : slash;
		if (slash)
			memmove(pn, slash + 1, strlen(slash + 1) + 1);
		s->parent_name = vhd_fix_path(pn);
	}
	const char *order[] = {"W2ru", "MacX", "W2ku"};
	const char *cand[VHD_LOCATORS + 1];
	size_t nc = 0;
	for (size_t k = 0; k < VDK_ARRAY_SIZE(order); k++)
		for (int i = 0; i < VHD_LOCATORS; i++)
			if (s->loc[i].path && !strcmp(s->loc[i].code, order[k]))
				cand[nc++] = s->loc[i].path;
	if (s->parent_name)
		cand[nc++] = s->parent_name;
	if (!nc)
		return vdk_bad(e, img->src->name, FMT, s->hdr_off + VHD_H_LOCATORS,
		               "differencing disk without a usable parent locator or name");
	struct vdk_err first = {0};
	for (size_t i = 0; i < nc; i++) {
		bool dup = false;
		for (size_t j = 0; j < i; j++)
			dup |= !strcmp(cand[i], cand[j]);
		if (dup)
			continue;
		struct vdk_err one = {0};
		r = vdk_image_open_backing(img, cand[i], FMT, &one);
		if (!r) {
			s->parent_used = cand[i];
			return vhd_check_parent_uuid(img, s, e);
		}
		if (first.cls == VDK_E_NONE)
			first = one;
	}
	*e = e->cls == VDK_E_NONE ? first : *e;
	return -(first.code ? first.code : ENOENT);
}

/* Open ----------------------------------------------------------------- */

static int vhd_open(struct vdk_image *img, struct vdk_err *e)
{
	struct vhd_state *s = img->state;
	int r = vhd_read_footer(img, s, e);
	if (r)
		return r;
	uint64_t size = vhd_footer_disk_size(&s->f);
	if (size / VHD_SECTOR > VHD_MAX_SECTORS)
		return vdk_unsup(e, img->src->name, FMT, s->footer_off + VHD_F_CUR_SIZE,
		                 "disk of %llu bytes is larger than 2040 GiB",
		                 (unsigned long long)size);
	img->size = size;
	switch (s->f.type) {
	case VHD_TYPE_FIXED:
		if (size > img->src->size - VHD_FOOTER_SIZE)
			return vdk_bad(e, img->src->name, FMT, s->footer_off + VHD_F_CUR_SIZE,
			               "fixed disk of %llu bytes in a file of %llu (truncated?)",
			               (unsigned long long)size,
			               (unsigned long long)img->src->size);
		return 0;
	case VHD_TYPE_DYNAMIC:
	case VHD_TYPE_DIFF:
		break;
	default:
		return vdk_unsup(e, img->src->name, FMT, s->footer_off + VHD_F_TYPE,
		                 "disk type %u is not fixed (2), dynamic (3) or differencing (4)",
		                 s->f.type);
	}
	r = vhd_read_header(img, s, e);
	if (!r)
		r = vhd_read_bat(img, s, e);
	if (r)
		return r;
	img->cluster_size = s->block_size;
	return s->f.type == VHD_TYPE_DIFF ? vhd_open_parent(img, s, e) : 0;
}

static void vhd_close(struct vdk_image *img)
{
	struct vhd_state *s = img->state;
	if (!s)
		return;
	free(s->bat);
	free(s->parent_name);
	for (int i = 0; i < VHD_LOCATORS; i++)
		free(s->loc[i].path);
}

/* Extents and reads ---------------------------------------------------- */

static int vhd_add(struct vdk_image *img, struct vdk_extents *out, uint64_t off, uint64_t len,
                   uint32_t flags, uint64_t file_off, struct vdk_err *e)
{
	int fd = (flags || img->src->fd < 0) ? -1 : img->src->fd;
	if (vdk_extents_add(out, off, len, flags, fd, img->src->fd_off + file_off))
		return vdk_ioerr(e, ENOMEM, img->src->name, "out of memory");
	return 0;
}

/* Fixed disks: the payload is the file; holes in the file read as zero. */
static int vhd_fixed_extents(struct vdk_image *img, uint64_t off, uint64_t len,
                             struct vdk_extents *out, struct vdk_err *e)
{
	struct vdk_src *src = img->src;
	uint64_t end = off + len, pos = off;
	while (pos < end && !vdk_extents_full(out)) {
		uint64_t data, hole;
		vdk_src_next_data(src, pos, end, &data, &hole);
		int r = vhd_add(img, out, pos, data - pos, VDK_EXT_ZERO, pos, e);
		if (!r && hole > data)
			r = vhd_add(img, out, data, hole - data, 0, data, e);
		if (r)
			return r;
		pos = hole;
	}
	return 0;
}

static bool vhd_bit(const uint8_t *bm, uint64_t i)
{
	return (bm[i / 8] >> (7 - i % 8)) & 1; /* most significant bit first */
}

/* One allocated block: the sector bitmap decides, sector by sector. */
static int vhd_block_extents(struct vdk_image *img, struct vhd_state *s, uint64_t blk, uint64_t pos,
                             uint64_t n, uint32_t hole, struct vdk_extents *out, struct vdk_err *e)
{
	uint64_t bm_off = (uint64_t)s->bat[blk] * VHD_SECTOR;
	uint64_t data_off = bm_off + s->bitmap_size;
	uint64_t in = pos - blk * s->block_size;
	uint64_t s0 = in / VHD_SECTOR, s1 = (in + n - 1) / VHD_SECTOR;
	uint64_t b0 = s0 / 8, nb = s1 / 8 - b0 + 1;
	uint8_t small[512], *bm = nb <= sizeof(small) ? small : malloc(nb);
	if (!bm)
		return vdk_ioerr(e, ENOMEM, img->src->name, "out of memory");
	int r = vdk_src_pread(img->src, bm, nb, bm_off + b0, e);
	uint64_t end = pos + n;
	while (!r && pos < end) {
		uint64_t sec = (pos - blk * s->block_size) / VHD_SECTOR;
		bool set = vhd_bit(bm, sec - b0 * 8);
		uint64_t run = sec + 1;
		while (run <= s1 && vhd_bit(bm, run - b0 * 8) == set)
			run++;
		uint64_t stop = VDK_MIN(end, blk * s->block_size + run * VHD_SECTOR);
		r = vhd_add(img, out, pos, stop - pos, set ? 0 : hole,
		            data_off + (pos - blk * s->block_size), e);
		pos = stop;
	}
	if (bm != small)
		free(bm);
	return r;
}

static int vhd_extents(struct vdk_image *img, uint64_t off, uint64_t len, struct vdk_extents *out,
                       struct vdk_err *e)
{
	struct vhd_state *s = img->state;
	if (s->f.type == VHD_TYPE_FIXED)
		return vhd_fixed_extents(img, off, len, out, e);
	uint32_t hole = img->backing ? VDK_EXT_HOLE : VDK_EXT_HOLE | VDK_EXT_ZERO;
	uint64_t pos = off, end = off + len;
	int r = 0;
	while (!r && pos < end && !vdk_extents_full(out)) {
		uint64_t blk = pos / s->block_size;
		uint64_t n = VDK_MIN(end - pos, (blk + 1) * s->block_size - pos);
		if (blk >= s->nblocks || s->bat[blk] == VHD_BAT_UNUSED)
			r = vhd_add(img, out, pos, n, hole, 0, e);
		else
			r = vhd_block_extents(img, s, blk, pos, n, hole, out, e);
		pos += n;
	}
	return r;
}

/* Reads what extents called DATA. Unallocated blocks read as zero, like
 * qemu; the bitmap is not consulted here (the core never asks for the
 * sectors it marked absent). Tables are read-only: safe from threads. */
static int vhd_pread(struct vdk_image *img, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	struct vhd_state *s = img->state;
	if (s->f.type == VHD_TYPE_FIXED)
		return vdk_src_pread(img->src, buf, len, off, e);
	uint8_t *p = buf;
	while (len) {
		uint64_t blk = off / s->block_size, in = off % s->block_size;
		size_t n = (size_t)VDK_MIN((uint64_t)len, s->block_size - in);
		if (blk >= s->nblocks || s->bat[blk] == VHD_BAT_UNUSED) {
			memset(p, 0, n);
		} else {
			uint64_t at = (uint64_t)s->bat[blk] * VHD_SECTOR + s->bitmap_size + in;
			int r = vdk_src_pread(img->src, p, n, at, e);
			if (r)
				return r;
		}
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* info and check -------------------------------------------------------- */

static const char *vhd_type_name(uint32_t t)
{
	return t == VHD_TYPE_FIXED ? "fixed" : t == VHD_TYPE_DYNAMIC ? "dynamic" : "differencing";
}

static void vhd_printable(char *dst, const char *src)
{
	int i = 0;
	for (; i < 4 && src[i]; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

static void vhd_info_parent(struct vhd_state *s, struct vdk_json *data)
{
	char u[37];
	uuid_unparse(s->hdr + VHD_H_PARENT_UUID, u);
	vdk_json_set_str(data, "parent-uuid", u);
	if (s->parent_name)
		vdk_json_set_str(data, "parent-name", s->parent_name);
	if (s->parent_used)
		vdk_json_set_str(data, "parent-used", s->parent_used);
	struct vdk_json *arr = vdk_json_set_arr(data, "parent-locators");
	for (int i = 0; i < VHD_LOCATORS; i++) {
		if (!vdk_be32(s->hdr + VHD_H_LOCATORS + i * VHD_LOCATOR_SIZE))
			continue;
		struct vdk_json *o = vdk_json_push_obj(arr);
		char code[5];
		vhd_printable(code, s->loc[i].code);
		vdk_json_set_str(o, "platform", code);
		if (s->loc[i].path)
			vdk_json_set_str(o, "path", s->loc[i].path);
	}
}

static int vhd_info(struct vdk_image *img, struct vdk_json *data, struct vdk_err *e)
{
	(void)e;
	struct vhd_state *s = img->state;
	const struct vhd_footer *f = &s->f;
	char app[5], os[5], ver[16], u[37];
	vhd_printable(app, f->creator_app);
	vhd_printable(os, f->creator_os);
	snprintf(ver, sizeof(ver), "%u.%u", f->creator_ver >> 16, f->creator_ver & 0xffff);
	uuid_unparse(f->uuid, u);
	vdk_json_set_str(data, "subformat", vhd_type_name(f->type));
	vdk_json_set_str(data, "creator-app", app);
	vdk_json_set_str(data, "creator-version", ver);
	vdk_json_set_str(data, "creator-os", os);
	vdk_json_set_str(data, "uuid", u);
	vdk_json_set_u64(data, "cylinders", f->cyls);
	vdk_json_set_u64(data, "heads", f->heads);
	vdk_json_set_u64(data, "sectors-per-track", f->secs);
	vdk_json_set_u64(data, "current-size", f->cur_size);
	vdk_json_set_u64(data, "original-size", f->orig_size);
	vdk_json_set_str(data, "size-from", vhd_uses_current_size(f) ? "current-size" : "chs");
	vdk_json_set_bool(data, "saved-state", f->saved_state != 0);
	if (s->footer_off == 0)
		vdk_json_set_bool(data, "footer-from-copy", true);
	if (f->type == VHD_TYPE_FIXED)
		return 0;
	vdk_json_set_u64(data, "block-size", s->block_size);
	vdk_json_set_u64(data, "bat-entries", s->max_entries);
	vdk_json_set_u64(data, "allocated-blocks", s->allocated);
	if (f->type == VHD_TYPE_DIFF)
		vhd_info_parent(s, data);
	return 0;
}

struct vhd_span {
	uint64_t off, len;
	uint64_t what; /* block index, or UINT64_MAX for metadata */
};

static int vhd_span_cmp(const void *a, const void *b)
{
	const struct vhd_span *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Blocks must not overlap each other or the metadata. */
static int vhd_check(struct vdk_image *img, struct vdk_check *r, bool repair, struct vdk_err *e)
{
	struct vhd_state *s = img->state;
	if (repair)
		return vdk_unsup(e, img->src->name, FMT, VDK_NO_OFFSET, "repair is not supported");
	if (s->f.type == VHD_TYPE_FIXED)
		return 0;
	size_t n = 0, cap = (size_t)s->allocated + 4;
	struct vhd_span *v = calloc(cap, sizeof(*v));
	if (!v)
		return vdk_nomem(e, img->src->name, FMT, "the check's block list");
	uint64_t fsize = img->src->size;
	v[n++] = (struct vhd_span){0, VHD_FOOTER_SIZE, UINT64_MAX};
	v[n++] = (struct vhd_span){s->hdr_off, VHD_DYNHDR_SIZE, UINT64_MAX};
	v[n++] = (struct vhd_span){s->bat_off, s->nblocks * 4, UINT64_MAX};
	v[n++] = (struct vhd_span){fsize - VHD_FOOTER_SIZE, VHD_FOOTER_SIZE, UINT64_MAX};
	for (uint64_t i = 0; i < s->nblocks; i++)
		if (s->bat[i] != VHD_BAT_UNUSED)
			v[n++] = (struct vhd_span){(uint64_t)s->bat[i] * VHD_SECTOR,
			                           (uint64_t)s->bitmap_size + s->block_size, i};
	qsort(v, n, sizeof(*v), vhd_span_cmp);
	for (size_t i = 1; i < n; i++) {
		if (v[i].off >= v[i - 1].off + v[i - 1].len || !v[i].len || !v[i - 1].len)
			continue;
		r->corruptions++;
		vdk_findings_add(&r->findings, VDK_ERROR, img->src->name, v[i].off,
		                 "block or table overlaps the one at %llu",
		                 (unsigned long long)v[i - 1].off);
	}
	free(v);
	return 0;
}

static const struct vdk_opt_desc vhd_wopts[] = {
    {"subformat", "enum", "dynamic", "dynamic, fixed",
     "dynamic: sparse blocks; fixed: raw + footer"},
    {"force_size", "bool", "off", "on, off", "keep the exact size (no CHS rounding)"},
    {"azure", "bool", "off", "on, off", "Azure: fixed, force_size, whole MiB"},
    {NULL, NULL, NULL, NULL, NULL},
};

const struct vdk_format vdk_format_vhd = {
    .name = "vpc",
    .aliases = "vhd",
    .description = "Microsoft VHD (Virtual PC, Hyper-V, Azure): fixed, dynamic, differencing",
    .state_size = sizeof(struct vhd_state),
    .probe = vhd_probe,
    .open = vhd_open,
    .extents = vhd_extents,
    .pread = vhd_pread,
    .info = vhd_info,
    .check = vhd_check,
    .close = vhd_close,

    .wstate_size = sizeof(struct vhd_wstate),
    /* create() sets the real caps; SEQUENTIAL here lets a fixed disk be
     * streamed to a pipe (the core refuses streams otherwise). */
    .wcaps = VDK_WCAP_ZEROED | VDK_WCAP_SEQUENTIAL,
    .create = vhd_create,
    .write = vhd_write,
    .write_zeroes = vhd_write_zeroes,
    .clone = vhd_clone,
    .finalize = vhd_finalize,
    .wclose = vhd_wclose,
    .in_place = vhd_in_place,
    .in_place_from = "raw",
    .wopts = vhd_wopts,
    .ustate_size = sizeof(struct vhd_ustate),
    .update_open = vhd_update_open,
    .update_write = vhd_update_write,
    .update_zero = vhd_update_zero,
    .update_flush = vhd_update_flush,
    .update_close = vhd_update_close,
};
