/* qcow2 reader: header, header extensions, feature bits, L1 table,
 * snapshot table, info, and the format vtable. Layout facts from qemu's
 * docs/interop/qcow2.txt; the cluster mapping itself is in qcow2_map.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util.h"

#define FMT "qcow2"

_Static_assert(QCOW2_HDR_V2_LEN == 72, "v2 header is 72 bytes");
_Static_assert(QCOW2_HDR_MAX % 8 == 0, "header length is a multiple of 8");

static int qcow2_probe(const uint8_t *buf, size_t len, uint64_t size)
{
	(void)size;
	if (len < 8 || vdk_be32(buf) != QCOW2_MAGIC)
		return 0;
	uint32_t v = vdk_be32(buf + 4);
	return (v == 2 || v == 3) ? 100 : 50;
}

/* A string extension or the backing name: bounded copy, NUL-terminated. */
static char *qcow2_strndup(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		return NULL;
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static int qcow2_parse_header(struct vdk_image *img, const uint8_t *h, uint32_t *hdr_len,
                              struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	const char *n = img->src->name;
	if (vdk_be32(h) != QCOW2_MAGIC)
		return vdk_bad(e, n, FMT, 0, "bad magic");
	s->version = vdk_be32(h + 4);
	if (s->version != 2 && s->version != 3)
		return vdk_unsup(e, n, FMT, 4, "version %u is not supported (2 or 3)", s->version);
	s->cluster_bits = vdk_be32(h + 20);
	if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return vdk_bad(e, n, FMT, 20, "cluster_bits %u out of range 9..21",
		               s->cluster_bits);
	s->cluster_size = 1u << s->cluster_bits;
	img->size = vdk_be64(h + 24);
	uint32_t crypt = vdk_be32(h + 32);
	if (crypt)
		return vdk_unsup(e, n, FMT, 32, "encrypted image (%s) is not supported",
		                 crypt == 1   ? "AES"
		                 : crypt == 2 ? "LUKS"
		                              : "unknown method");
	s->l1_size = vdk_be32(h + 36);
	s->l1_off = vdk_be64(h + 40);
	s->rt_off = vdk_be64(h + 48);
	s->rt_clusters = vdk_be32(h + 56);
	s->nb_snapshots = vdk_be32(h + 60);
	s->snapshots_off = vdk_be64(h + 64);
	s->refcount_order = 4;
	*hdr_len = QCOW2_HDR_V2_LEN;
	if (s->version == 2)
		return 0;
	s->incompat = vdk_be64(h + 72);
	s->compat = vdk_be64(h + 80);
	s->autoclear = vdk_be64(h + 88);
	s->refcount_order = vdk_be32(h + 96);
	*hdr_len = vdk_be32(h + 100);
	if (s->refcount_order > 6)
		return vdk_bad(e, n, FMT, 96, "refcount_order %u > 6", s->refcount_order);
	if (*hdr_len < QCOW2_HDR_V3_LEN || *hdr_len % 8 || *hdr_len > s->cluster_size)
		return vdk_bad(e, n, FMT, 100, "bad header_length %u", *hdr_len);
	if (*hdr_len > 104)
		s->comp_type = h[104];
	return 0;
}

/* Name a refused incompatible bit from the image's own feature table. */
static void qcow2_feature_name(const uint8_t *tab, uint32_t len, unsigned bit, char *out,
                               size_t outlen)
{
	snprintf(out, outlen, "bit %u", bit);
	for (uint32_t i = 0; tab && i + 48 <= len; i += 48) {
		if (tab[i] == 0 && tab[i + 1] == bit) {
			char nm[47];
			memcpy(nm, tab + i + 2, 46);
			nm[46] = '\0';
			snprintf(out, outlen, "bit %u '%s'", bit, nm);
			return;
		}
	}
}

static int qcow2_check_features(struct vdk_image *img, const uint8_t *ftab, uint32_t flen,
                                struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	const char *n = img->src->name;
	uint64_t unknown = s->incompat & ~QCOW2_INCOMPAT_KNOWN;
	if (unknown) {
		char nm[80];
		qcow2_feature_name(ftab, flen, (unsigned)__builtin_ctzll(unknown), nm, sizeof(nm));
		return vdk_unsup(e, n, FMT, 72, "unknown incompatible feature %s (0x%llx)", nm,
		                 (unsigned long long)unknown);
	}
	img->dirty = (s->incompat & QCOW2_INCOMPAT_DIRTY) != 0;
	if (s->incompat & QCOW2_INCOMPAT_COMPRESSION) {
		if (s->comp_type == QCOW2_COMP_ZLIB)
			return vdk_bad(e, n, FMT, 104, "compression type bit set but type is zlib");
	} else if (s->comp_type != QCOW2_COMP_ZLIB) {
		return vdk_bad(e, n, FMT, 104, "compression type %u without its feature bit",
		               s->comp_type);
	}
	if (s->comp_type > QCOW2_COMP_ZSTD)
		return vdk_unsup(e, n, FMT, 104, "unknown compression type %u", s->comp_type);
	s->extl2 = (s->incompat & QCOW2_INCOMPAT_EXTL2) != 0;
	if (s->extl2 && s->cluster_bits < 14)
		return vdk_bad(e, n, FMT, 20, "extended L2 entries need clusters >= 16 KiB");
	if ((s->autoclear & QCOW2_AUTOCLEAR_DATA_RAW) && !(s->incompat & QCOW2_INCOMPAT_DATA_FILE))
		return vdk_bad(e, n, FMT, 88, "raw external data bit without a data file");
	return 0;
}

static int qcow2_take_string(struct vdk_image *img, char **dst, const uint8_t *p, uint32_t len,
                             uint64_t off, const char *what, struct vdk_err *e)
{
	if (*dst)
		return vdk_bad(e, img->src->name, FMT, off, "duplicate %s extension", what);
	if (len == 0 || len > QCOW2_MAX_STRING_EXT || memchr(p, 0, len))
		return vdk_bad(e, img->src->name, FMT, off, "bad %s extension", what);
	*dst = qcow2_strndup(p, len);
	return *dst ? 0 : -ENOMEM;
}

/* Header extensions sit between the header and the end of the first cluster
 * (or the backing file name, which qemu stores after them). */
static int qcow2_read_extensions(struct vdk_image *img, uint32_t hdr_len, uint64_t bfo,
                                 struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	uint64_t end = s->cluster_size;
	if (bfo && bfo < end)
		end = bfo;
	end = VDK_MIN(end, img->src->size);
	if (end <= hdr_len)
		return qcow2_check_features(img, NULL, 0, e);
	size_t n = (size_t)(end - hdr_len);
	uint8_t *b = malloc(n);
	if (!b)
		return vdk_nomem(e, img->src->name, FMT, "the header extensions");
	int r = vdk_src_pread(img->src, b, n, hdr_len, e);
	const uint8_t *ftab = NULL;
	uint32_t flen = 0;
	for (size_t i = 0; r == 0 && i + 8 <= n;) {
		uint32_t type = vdk_be32(b + i), len = vdk_be32(b + i + 4);
		uint64_t at = hdr_len + i;
		if (type == QCOW2_EXT_END)
			break;
		if (len > n - i - 8) {
			r = vdk_bad(e, img->src->name, FMT, at, "header extension 0x%08x overruns",
			            type);
			break;
		}
		const uint8_t *p = b + i + 8;
		if (type == QCOW2_EXT_BACKING_FMT)
			r = qcow2_take_string(img, &s->backing_fmt, p, len, at, "backing format",
			                      e);
		else if (type == QCOW2_EXT_DATA_FILE)
			r = qcow2_take_string(img, &s->data_name, p, len, at, "data file", e);
		else if (type == QCOW2_EXT_FEATURES) {
			ftab = p;
			flen = len;
		} else if (type == QCOW2_EXT_BITMAPS && len >= 24) {
			s->have_bitmaps = true;
			s->nb_bitmaps = vdk_be32(p);
			s->bm_dir_size = vdk_be64(p + 8);
			s->bm_dir_off = vdk_be64(p + 16);
		}
		i += 8 + (size_t)vdk_round_up(len, 8);
	}
	if (r == 0)
		r = qcow2_check_features(img, ftab, flen, e);
	free(b);
	return r;
}

static int qcow2_load_l1(struct vdk_image *img, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	const char *n = img->src->name;
	uint64_t per_l2 = (uint64_t)s->l2_entries << s->cluster_bits, need;
	need = img->size / per_l2 + (img->size % per_l2 != 0);
	if (s->l1_size < need)
		return vdk_bad(e, n, FMT, 36, "L1 table too small (%u entries, %llu needed)",
		               s->l1_size, (unsigned long long)need);
	uint64_t bytes = (uint64_t)s->l1_size * 8;
	if (bytes > QCOW2_MAX_L1_BYTES)
		return vdk_bad(e, n, FMT, 36, "L1 table of %u entries is too large", s->l1_size);
	if (s->l1_size == 0)
		return 0;
	if (s->l1_off % s->cluster_size || !vdk_range_ok(s->l1_off, bytes, img->src->size))
		return vdk_bad(e, n, FMT, 40, "L1 table at %llu (%llu bytes) outside the file",
		               (unsigned long long)s->l1_off, (unsigned long long)bytes);
	uint8_t *raw = malloc(bytes);
	s->l1 = malloc(bytes);
	if (!raw || !s->l1) {
		free(raw);
		return vdk_nomem(e, n, FMT, "the L1 table");
	}
	int r = vdk_src_pread(img->src, raw, bytes, s->l1_off, e);
	for (uint32_t i = 0; r == 0 && i < s->l1_size; i++)
		s->l1[i] = vdk_be64(raw + 8 * (size_t)i);
	free(raw);
	return r;
}

static int qcow2_snapshot_entry(struct vdk_image *img, uint64_t *pos, struct qcow2_snapshot *sn,
                                struct vdk_err *e)
{
	const char *n = img->src->name;
	uint8_t h[40], extra[24];
	int r = vdk_src_pread(img->src, h, sizeof(h), *pos, e);
	if (r)
		return r;
	sn->l1_off = vdk_be64(h);
	sn->l1_size = vdk_be32(h + 8);
	uint16_t idlen = vdk_be16(h + 12), nmlen = vdk_be16(h + 14);
	sn->date_sec = vdk_be32(h + 16);
	sn->date_nsec = vdk_be32(h + 20);
	sn->vm_clock_nsec = vdk_be64(h + 24);
	sn->vm_state_size = vdk_be32(h + 32);
	uint32_t xlen = vdk_be32(h + 36);
	sn->disk_size = img->size;
	sn->icount = UINT64_MAX;
	if (xlen > 1024)
		return vdk_bad(e, n, FMT, *pos + 36, "snapshot extra data of %u bytes", xlen);
	uint32_t xr = VDK_MIN(xlen, (uint32_t)sizeof(extra));
	if ((r = vdk_src_pread(img->src, extra, xr, *pos + 40, e)))
		return r;
	if (xr >= 8)
		sn->vm_state_size = vdk_be64(extra);
	if (xr >= 16)
		sn->disk_size = vdk_be64(extra + 8);
	if (xr >= 24)
		sn->icount = vdk_be64(extra + 16);
	uint64_t at = *pos + 40 + xlen;
	uint8_t *str = malloc((size_t)idlen + nmlen + 1);
	if (!str)
		return vdk_nomem(e, n, FMT, "a snapshot name");
	r = vdk_src_pread(img->src, str, (size_t)idlen + nmlen, at, e);
	if (r == 0) {
		sn->id = qcow2_strndup(str, idlen);
		sn->name = qcow2_strndup(str + idlen, nmlen);
	}
	free(str);
	if (r)
		return r;
	if (!sn->id || !sn->name)
		return vdk_nomem(e, n, FMT, "a snapshot name");
	*pos = vdk_round_up(at + idlen + nmlen, 8);
	return 0;
}

/* Internal snapshots are listed by info, never read. */
static int qcow2_load_snapshots(struct vdk_image *img, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	if (!s->nb_snapshots)
		return 0;
	const char *n = img->src->name;
	/* Every entry takes at least 40 bytes: bound the count by the file. */
	if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS || s->snapshots_off % s->cluster_size ||
	    !vdk_range_ok(s->snapshots_off, (uint64_t)s->nb_snapshots * 40, img->src->size))
		return vdk_bad(e, n, FMT, 60, "bad snapshot table (%u entries at %llu)",
		               s->nb_snapshots, (unsigned long long)s->snapshots_off);
	s->snaps = calloc(s->nb_snapshots, sizeof(*s->snaps));
	if (!s->snaps)
		return vdk_nomem(e, n, FMT, "the snapshot table");
	uint64_t pos = s->snapshots_off;
	for (uint32_t i = 0; i < s->nb_snapshots; i++) {
		int r = qcow2_snapshot_entry(img, &pos, &s->snaps[i], e);
		if (r)
			return r;
	}
	s->snapshots_size = pos - s->snapshots_off;
	return 0;
}

static int qcow2_open_data_file(struct vdk_image *img, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	if (!(s->incompat & QCOW2_INCOMPAT_DATA_FILE))
		return 0;
	if (!s->data_name)
		return vdk_unsup(e, img->src->name, FMT, 72,
		                 "external data file without a name in the image");
	if (s->nb_snapshots)
		return vdk_bad(e, img->src->name, FMT, 60, "snapshots with an external data file");
	const struct vdk_access *acc = img->opts ? &img->opts->access : NULL;
	return vdk_src_open_related(img->src, s->data_name, acc, &s->data, e);
}

static int qcow2_open_backing(struct vdk_image *img, uint64_t bfo, uint32_t bfs, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	const char *n = img->src->name;
	if (bfs == 0 || bfs > QCOW2_MAX_BACKING_NAME || !vdk_range_ok(bfo, bfs, img->src->size))
		return vdk_bad(e, n, FMT, 8, "bad backing file name (%u bytes at %llu)", bfs,
		               (unsigned long long)bfo);
	if (s->autoclear & QCOW2_AUTOCLEAR_DATA_RAW)
		return vdk_bad(e, n, FMT, 8, "backing file with a raw external data file");
	uint8_t b[QCOW2_MAX_BACKING_NAME];
	int r = vdk_src_pread(img->src, b, bfs, bfo, e);
	if (r)
		return r;
	if (memchr(b, 0, bfs))
		return vdk_bad(e, n, FMT, bfo, "NUL byte in the backing file name");
	if (!(s->backing_name = qcow2_strndup(b, bfs)))
		return vdk_nomem(e, n, FMT, "the backing file name");
	const char *fmt =
	    img->opts && img->opts->backing_fmt ? img->opts->backing_fmt : s->backing_fmt;
	return vdk_image_open_backing(img, s->backing_name, fmt, e);
}

static int qcow2_open(struct vdk_image *img, struct vdk_err *e)
{
	struct qcow2_state *s = img->state;
	struct vdk_src *src = img->src;
	if (src->size == VDK_SIZE_UNKNOWN || (src->flags & VDK_SRC_STREAM))
		return vdk_unsup(e, src->name, FMT, VDK_NO_OFFSET, "needs random access");
	uint8_t h[QCOW2_HDR_MAX] = {0};
	if (src->size < QCOW2_HDR_V2_LEN)
		return vdk_bad(e, src->name, FMT, 0, "file too small for a header");
	int r = vdk_src_pread(src, h, (size_t)VDK_MIN(src->size, sizeof(h)), 0, e);
	uint32_t hdr_len = 0;
	if (r || (r = qcow2_parse_header(img, h, &hdr_len, e)))
		return r;
	if (hdr_len > src->size)
		return vdk_bad(e, src->name, FMT, 100, "header longer than the file");
	if (hdr_len < 105) /* compression_type absent: zlib */
		s->comp_type = QCOW2_COMP_ZLIB;
	uint64_t bfo = vdk_be64(h + 8);
	uint32_t bfs = vdk_be32(h + 16);
	if ((r = qcow2_read_extensions(img, hdr_len, bfo, e)))
		return r;
	s->l2_entries = s->cluster_size / (s->extl2 ? 16 : 8);
	s->sub_size = s->extl2 ? s->cluster_size / QCOW2_SUBCLUSTERS : s->cluster_size;
	s->csize_shift = 62 - (s->cluster_bits - 8);
	s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
	s->coff_mask = (1ull << s->csize_shift) - 1;
	img->cluster_size = s->cluster_size;
	if ((r = qcow2_load_l1(img, e)) || (r = qcow2_load_snapshots(img, e)) ||
	    (r = qcow2_map_init(img, e)) || (r = qcow2_meta_init(img, e)) ||
	    (r = qcow2_open_data_file(img, e)))
		return r;
	if (bfo)
		return qcow2_open_backing(img, bfo, bfs, e);
	return 0;
}

static void qcow2_close(struct vdk_image *img)
{
	struct qcow2_state *s = img->state;
	if (!s)
		return;
	qcow2_map_free(s);
	qcow2_meta_free(s);
	free(s->l1);
	free(s->backing_name);
	free(s->backing_fmt);
	free(s->data_name);
	if (s->data)
		vdk_src_close(s->data);
	for (uint32_t i = 0; s->snaps && i < s->nb_snapshots; i++) {
		free(s->snaps[i].id);
		free(s->snaps[i].name);
	}
	free(s->snaps);
}

/* The keys and values qemu-img 7.2 prints under format-specific data. */
static int qcow2_info(struct vdk_image *img, struct vdk_json *d, struct vdk_err *e)
{
	(void)e;
	struct qcow2_state *s = img->state;
	static const char *const comp[] = {"zlib", "zstd"};
	vdk_json_set_str(d, "compat", s->version == 2 ? "0.10" : "1.1");
	vdk_json_set_str(d, "compression-type", comp[s->comp_type & 1]);
	if (s->version >= 3)
		vdk_json_set_bool(d, "lazy-refcounts", s->compat & QCOW2_COMPAT_LAZY);
	vdk_json_set_u64(d, "refcount-bits", 1ull << s->refcount_order);
	if (s->data_name)
		vdk_json_set_str(d, "data-file", s->data_name);
	if (s->incompat & QCOW2_INCOMPAT_DATA_FILE)
		vdk_json_set_bool(d, "data-file-raw", s->autoclear & QCOW2_AUTOCLEAR_DATA_RAW);
	if (s->version >= 3) {
		vdk_json_set_bool(d, "corrupt", s->incompat & QCOW2_INCOMPAT_CORRUPT);
		vdk_json_set_bool(d, "extended-l2", s->extl2);
	}
	if (!s->nb_snapshots)
		return 0;
	/* Listed as qemu-img lists them (top-level "snapshots" there). */
	struct vdk_json *arr = vdk_json_set_arr(d, "snapshots");
	for (uint32_t i = 0; i < s->nb_snapshots; i++) {
		const struct qcow2_snapshot *sn = &s->snaps[i];
		struct vdk_json *o = vdk_json_push_obj(arr);
		if (sn->icount != UINT64_MAX)
			vdk_json_set_u64(o, "icount", sn->icount);
		vdk_json_set_u64(o, "vm-clock-nsec", sn->vm_clock_nsec % 1000000000ull);
		vdk_json_set_str(o, "name", sn->name);
		vdk_json_set_u64(o, "date-sec", sn->date_sec);
		vdk_json_set_u64(o, "date-nsec", sn->date_nsec);
		vdk_json_set_u64(o, "vm-clock-sec", sn->vm_clock_nsec / 1000000000ull);
		vdk_json_set_str(o, "id", sn->id);
		vdk_json_set_u64(o, "vm-state-size", sn->vm_state_size);
	}
	return 0;
}

/* oVirt and Red Hat exports write ...qemu.org/...qcow2... style URIs. */
static const char *const qcow2_ovf_formats[] = {"qcow", NULL};
static const struct vdk_opt_desc qcow2_wopts[] = {
    {"compat", "enum", "1.1", "1.1, 0.10, v3, v2", "qcow2 version (0.10 = v2)"},
    {"cluster_size", "size", "64K", "512 .. 2M, a power of two", "cluster size"},
    {"preallocation", "enum", "off", "off, metadata, falloc, full",
     "metadata: every cluster mapped; falloc: and reserved; full: and zeroed"},
    {"compress", "bool", "off", "on, off", "compress every cluster (same as -c)"},
    {"compression_type", "enum", "zlib", "zlib, zstd", "compression algorithm (zstd: compat=1.1)"},
    {"compression_level", "number", "0", "0 .. 19", "0: the library's default"},
    {"data_file", "string", NULL, NULL, "external data file holding the clusters"},
    {"data_file_raw", "bool", "off", "on, off", "the data file is a valid raw image"},
    {"backing_file", "string", NULL, NULL, "backing file name stored in the header (create)"},
    {"backing_fmt", "string", NULL, NULL, "format of the backing file (create)"},
    {NULL, NULL, NULL, NULL, NULL},
};

const struct vdk_format vdk_format_qcow2 = {
    .name = "qcow2",
    .description = "QEMU copy-on-write v2/v3 (KVM, OpenShift)",
    .state_size = sizeof(struct qcow2_state),
    .probe = qcow2_probe,
    .open = qcow2_open,
    .extents = qcow2_extents,
    .pread = qcow2_pread,
    .info = qcow2_info,
    .check = qcow2_check,
    .close = qcow2_close,
    .wstate_size = sizeof(struct qcow2_wstate),
    .wcaps = VDK_WCAP_ZEROED | VDK_WCAP_CLONE,
    .create = qcow2_create,
    .write = qcow2_write,
    .encode = qcow2_encode,
    .write_encoded = qcow2_write_encoded,
    .write_zeroes = qcow2_write_zeroes,
    .clone = qcow2_clone,
    .finalize = qcow2_finalize,
    .wclose = qcow2_wclose,
    .ovf_formats = qcow2_ovf_formats,
    .wopts = qcow2_wopts,
    .resize = qcow2_resize,
    .set_backing = qcow2_set_backing,
    .empty_opts = qcow2_empty_opts,
    .ustate_size = sizeof(struct qcow2_ustate),
    .update_open = qcow2_update_open,
    .update_write = qcow2_update_write,
    .update_zero = qcow2_update_zero,
    .update_flush = qcow2_update_flush,
    .update_close = qcow2_update_close,
};
