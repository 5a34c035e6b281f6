/* fuzz-diff: causes. When the two readers disagree, a look at the
 * mutant's bytes often tells why (a bitmap qemu-img ignores, a footer
 * copy only qemu-img needs, a feature it lacks); the known classes table
 * (diff_report.c) explains each cause these name. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"
#include "util.h"

/* --- divergence hints ----------------------------------------------- */

/* A copy of a dynamic VHD with every allocated block's sector bitmap set:
 * qemu-img does not read the bitmaps (a block is all data), vdkit does
 * (a clear bit reads as zero, VHD spec "Block Bitmap"); if vdkit reads
 * this copy as qemu-img read the original, the bitmap is the cause. */
int fd_vhd_fill_bitmaps(const uint8_t *d, size_t n, uint8_t **out)
{
	bool tail = n >= 512 && !memcmp(d + n - 512, "conectix", 8);
	uint64_t f = tail ? n - 512 : 0;
	uint64_t dh = fd_rd(d, n, f + 16, 8, true);
	uint64_t bat = fd_rd(d, n, dh + 16, 8, true), batn = fd_rd(d, n, dh + 28, 4, true);
	uint64_t bs = fd_rd(d, n, dh + 32, 4, true), bm = vdk_round_up(bs / 512 / 8, 512);
	if (n < 512 || memcmp(d + f, "conectix", 8) || dh >= n || bat >= n || !bm || bm > n)
		return -EINVAL;
	uint8_t *c = malloc(n);
	if (!c)
		return -ENOMEM;
	memcpy(c, d, n);
	for (uint64_t i = 0; i < batn && bat + 4 * i + 4 <= n; i++) {
		uint64_t s = fd_rd(d, n, bat + 4 * i, 4, true) * 512;
		if (s != 0xffffffffull * 512 && s <= n - bm)
			memset(c + s, 0xff, bm);
	}
	*out = c;
	return 0;
}

/* qemu-img's descriptor parser reads an extent line twice when a blank
 * line precedes it (its sscanf skips the newline of the blank line into
 * the extent line, then it steps one line on): the disk comes out with
 * that extent doubled. True when d has such a pair of lines. */
bool fd_vmdk_blank_before_extent(const uint8_t *d, size_t n)
{
	static const char *const access[] = {"RW ", "RDONLY ", "NOACCESS "};
	for (size_t i = 0; i < n; i++) {
		if (d[i] != '\n')
			continue;
		size_t j = i + 1;
		while (j < n && (d[j] == ' ' || d[j] == '\t' || d[j] == '\r'))
			j++;
		if (j >= n || d[j] != '\n')
			continue;
		while (++j < n && (d[j] == ' ' || d[j] == '\t'))
			;
		for (size_t k = 0; k < 3; k++)
			if (n - j >= strlen(access[k]) &&
			    !memcmp(d + j, access[k], strlen(access[k])))
				return true;
	}
	return false;
}

/* --- lenient hints: why qemu-img refused what vdkit read ------------ */

static bool fd_vhd_footer_ok(const uint8_t *p)
{
	uint32_t sum = 0;
	if (memcmp(p, "conectix", 8))
		return false;
	for (size_t i = 0; i < 512; i++)
		sum += i >= 64 && i < 68 ? 0 : p[i];
	return ~sum == vdk_be32(p + 64);
}

/* qemu-img looks for the footer of a dynamic disk only in the copy at 0,
 * and at the end only for a fixed disk. */
/* qemu sizes the data area from every BAT entry up to max table entries
 * and refuses a block past the end of the file even when its index lies
 * past the disk's last block (the disk is the current size, or CHS, in
 * whole sectors). True when only such an unused entry points past EOF. */
static bool fd_vhd_dead_entry_past_eof(const uint8_t *d, size_t n)
{
	const uint8_t *f = d + n - 512;
	uint64_t dh = vdk_be64(f + 16), chs = (uint64_t)vdk_be16(f + 56) * f[58] * f[59];
	uint64_t sz = chs == 65535ull * 16 * 255 || !memcmp(f + 28, "tap\0", 4)
	                  ? vdk_be64(f + 48) / 512 * 512
	                  : chs * 512;
	uint64_t bat = fd_rd(d, n, dh + 16, 8, true), max = fd_rd(d, n, dh + 28, 4, true);
	uint64_t bs = fd_rd(d, n, dh + 32, 4, true), span = bs + vdk_round_up(bs / 4096, 512);
	if (vdk_be32(f + 60) == 2 || bs < 4096 || !vdk_is_pow2(bs) || max > n / 4)
		return false;
	uint64_t used = sz / bs + (sz % bs != 0);
	bool dead = false;
	for (uint64_t i = 0; i < max && bat + 4 * i + 4 <= n; i++) {
		uint64_t at = fd_rd(d, n, bat + 4 * i, 4, true);
		if (at == 0xffffffffu || at * 512 + span <= n)
			continue;
		if (i < used)
			return false;
		dead = true;
	}
	return dead;
}

static const char *fd_vhd_cause(const uint8_t *d, size_t n)
{
	if (n < 512 || !fd_vhd_footer_ok(d + n - 512))
		return NULL;
	if (vdk_be32(d + n - 512 + 60) != 2 && !fd_vhd_footer_ok(d))
		return "dynamic disk whose footer copy at 0 is damaged";
	if (fd_vhd_dead_entry_past_eof(d, n))
		return "BAT entry past the disk's last block points past the end of the file";
	return NULL;
}

static bool fd_vhdx_table_ok(const uint8_t *d, size_t n, uint64_t at)
{
	uint8_t *t;
	if (at + 65536 > n || memcmp(d + at, "regi", 4) || !(t = malloc(65536)))
		return false;
	memcpy(t, d + at, 65536);
	memset(t + 4, 0, 4);
	bool ok = vdk_crc32c(0, t, 65536) == vdk_le32(d + at + 4);
	free(t);
	return ok;
}

/* The logical sector size item of the metadata region (VHDX 2.6.2.4). */
static uint32_t fd_vhdx_logical_sector(const uint8_t *d, size_t n, uint64_t table)
{
	static const uint8_t meta[16] = {0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
	                                 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e};
	static const uint8_t lss[16] = {0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47,
	                                0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f};
	uint64_t cnt = VDK_MIN(fd_rd(d, n, table + 8, 4, false), 64);
	for (uint64_t i = 0; i < cnt; i++) {
		uint64_t e = table + 16 + 32 * i, m = fd_rd(d, n, e + 16, 8, false);
		if (e + 32 > n || memcmp(d + e, meta, 16) || m + 32 > n ||
		    memcmp(d + m, "metadata", 8))
			continue;
		uint64_t k = VDK_MIN(fd_rd(d, n, m + 10, 2, false), 64);
		for (uint64_t j = 0; j < k; j++) {
			uint64_t x = m + 32 + 32 * j;
			if (x + 32 <= n && !memcmp(d + x, lss, 16))
				return (uint32_t)fd_rd(d, n, m + fd_rd(d, n, x + 16, 4, false), 4,
				                       false);
		}
	}
	return 0;
}

static const char *fd_vhdx_cause(const uint8_t *d, size_t n)
{
	bool t1 = fd_vhdx_table_ok(d, n, 192 << 10), t2 = fd_vhdx_table_ok(d, n, 256 << 10);
	if (!t1 && t2)
		return "first region table damaged, the second valid";
	uint32_t lss = fd_vhdx_logical_sector(d, n, t1 ? 192 << 10 : 256 << 10);
	if (lss && lss != 512)
		return "logical sector size other than 512";
	return NULL;
}

/* The VHDX header in use (the valid one with the larger sequence
 * number) has a log GUID: the log must be replayed (VHDX 2.3.1). */
static bool fd_vhdx_dirty(const uint8_t *d, size_t n)
{
	static const uint8_t zero[16];
	uint64_t best = 0, seq = 0;
	for (uint64_t h = 64 << 10; h <= 128 << 10 && h + 4096 <= n; h += 64 << 10) {
		uint8_t t[4096];
		if (memcmp(d + h, "head", 4))
			continue;
		memcpy(t, d + h, sizeof t);
		memset(t + 4, 0, 4);
		uint64_t q = fd_rd(d, n, h + 8, 8, false);
		if (vdk_crc32c(0, t, sizeof t) == vdk_le32(d + h + 4) && (!best || q > seq)) {
			best = h;
			seq = q;
		}
	}
	return best && memcmp(d + best + 48, zero, 16) != 0;
}

/* A hosted sparse VMDK whose embedded descriptor has no KEY line
 * (KEY=hex): qemu-img reads the CID and the parentCID at open and fails
 * without either. */
static bool fd_vmdk_no_key(const uint8_t *d, size_t n, const char *key)
{
	uint64_t off = fd_rd(d, n, 28, 8, false) * 512, len = fd_rd(d, n, 36, 8, false) * 512;
	size_t k = strlen(key);
	if (n < 512 || memcmp(d, "KDMV", 4) || !off || off >= n)
		return false;
	len = VDK_MIN(VDK_MIN(len, n - off), 1u << 20);
	for (uint64_t i = 0; i + k + 1 <= len; i++)
		if (!memcmp(d + off + i, key, k) && d[off + i + k] == '=')
			return false;
	return true;
}

/* qemu reads the redundant grain directory at open (a backup it uses
 * only when writing) and fails when it lies past the end of the file. */
static bool fd_vmdk_rgd_past_eof(const uint8_t *d, size_t n)
{
	uint64_t flags = fd_rd(d, n, 8, 4, false), cap = fd_rd(d, n, 12, 8, false);
	uint64_t grain = fd_rd(d, n, 20, 8, false), gtes = fd_rd(d, n, 44, 4, false);
	uint64_t rgd = fd_rd(d, n, 48, 8, false);
	if (n < 512 || memcmp(d, "KDMV", 4) || !(flags & 2) || !grain || !gtes ||
	    grain > 1u << 20 || gtes > 1u << 20)
		return false;
	uint64_t span = grain * gtes, gdb = (cap / span + (cap % span != 0)) * 4;
	return rgd > n / 512 || rgd * 512 + gdb > n;
}

/* qcow2 header fields qemu-img checks at open and vdkit does not consult
 * to read the active layer: the snapshot table offset (checked even with
 * no snapshots), header extensions (walked to the end of cluster 0). */
static const char *fd_qcow2_cause(const uint8_t *d, size_t n)
{
	uint32_t cb = (uint32_t)fd_rd(d, n, 20, 4, true);
	uint64_t cs = cb >= 9 && cb <= 21 ? 1ull << cb : 65536;
	uint64_t rt = fd_rd(d, n, 48, 8, true), rtb = fd_rd(d, n, 56, 4, true) * cs;
	if (rt % cs || rt > INT64_MAX - VDK_MIN(rtb, INT64_MAX))
		return "refcount table offset invalid";
	uint64_t snap = fd_rd(d, n, 64, 8, true);
	if (snap % cs || snap > INT64_MAX)
		return "snapshot table offset invalid";
	uint64_t pos = fd_rd(d, n, 4, 4, true) >= 3 ? fd_rd(d, n, 100, 4, true) : 72;
	/* the length is checked first, even the end marker's */
	while (pos + 8 <= VDK_MIN(cs, n)) {
		uint64_t len = fd_rd(d, n, pos + 4, 4, true);
		if (len > cs - pos - 8)
			return "header extension too large";
		if (fd_rd(d, n, pos, 4, true) == 0)
			break;
		pos += 8 + vdk_round_up(len, 8);
	}
	return NULL;
}

const char *fd_lenient_cause(enum fd_kind kind, const uint8_t *d, size_t n)
{
	if (kind == FD_QCOW2)
		return fd_qcow2_cause(d, n);
	if (kind == FD_VMDK && fd_vmdk_no_key(d, n, "CID"))
		return "embedded descriptor without a CID line";
	if (kind == FD_VMDK && fd_vmdk_no_key(d, n, "parentCID"))
		return "embedded descriptor without a parentCID line";
	if (kind == FD_VMDK && fd_vmdk_rgd_past_eof(d, n))
		return "redundant grain directory past the end of the file";
	if (kind == FD_VHDX && fd_vhdx_dirty(d, n))
		return "dirty log";
	if (n % 512 && (kind == FD_VHD || kind == FD_VMDK))
		return "file size not a multiple of 512";
	if (kind == FD_VMDK && n >= 4 && !memcmp(d, "COWD", 4))
		return "COWD extent opened alone";
	if (kind == FD_VHD)
		return fd_vhd_cause(d, n);
	if (kind == FD_VHDX)
		return fd_vhdx_cause(d, n);
	return NULL;
}
