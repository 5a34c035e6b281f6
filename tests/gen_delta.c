/* vdk-gen-delta: writes ESXi snapshot deltas on purpose, for tests: a text
 * descriptor DESC (createType seSparse or vmfsSparse) and its extent,
 * NAME-sesparse.vmdk (seSparse) or NAME-delta.vmdk (COWD vmfsSparse), over
 * an optional parent whose CID it reads. Grains follow PATTERN (one
 * character per grain: D data, Z zero grain, U SCSI-unmapped, . unallocated)
 * or, without -g, a pattern drawn from SEED. -x makes one field hostile.
 *
 *   vdk-gen-delta [-t sesparse|cowd] [-p PARENT] [-s SEED] [-g PATTERN]
 *                 [-G GRAIN_SECTORS (cowd)] [-b FIRST_GRAIN_INDEX (sesparse)]
 *                 [-x HOSTILE] DESC SECTORS
 *
 * The seSparse layout is the one qemu's reader expects (block/vmdk.c): two
 * header sectors, journal, grain directory, grain tables, free bitmap, back
 * map, grains; tables and grains are deliberately not in disk order. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define SE_GT_SEC 64u
#define SE_GTES   4096u

static uint64_t gd_state;

static uint64_t gd_next(void)
{
	uint64_t z = (gd_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct gd_opts {
	const char *type, *parent, *pattern, *hostile, *desc;
	uint64_t seed, sectors, base;
	unsigned grain_sec;
};

static void gd_data(uint8_t *p, size_t n, uint64_t grain)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = gd_next();
		memcpy(p + i, &v, 8);
	}
	snprintf((char *)p, n, "grain %llu seed %llu", (unsigned long long)grain,
	         (unsigned long long)gd_state);
}

/* The parent's CID as qemu finds it: the first "CID=" in its first MiB. */
static uint32_t gd_parent_cid(const char *desc, const char *parent)
{
	char path[4096];
	const char *slash = strrchr(desc, '/');
	if (parent[0] == '/' || !slash)
		snprintf(path, sizeof(path), "%s", parent);
	else
		snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - desc), desc, parent);
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0xffffffffu;
	static char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	for (size_t i = 0; i + 4 < n; i++)
		if ((i == 0 || buf[i - 1] == '\n') && !memcmp(buf + i, "CID=", 4))
			return (uint32_t)strtoul(buf + i + 4, NULL, 16);
	return 0xffffffffu;
}

static char gd_pick(const struct gd_opts *o, uint64_t g)
{
	if (o->pattern)
		return g < strlen(o->pattern) ? o->pattern[g] : '.';
	uint64_t r = gd_next() % 100;
	return r < 40 ? '.' : r < 75 ? 'D' : r < 90 ? 'Z' : 'U';
}

static int gd_descriptor(const struct gd_opts *o, const char *ext)
{
	FILE *f = fopen(o->desc, "w");
	if (!f)
		return -1;
	uint32_t pcid = o->parent ? gd_parent_cid(o->desc, o->parent) : 0xffffffffu;
	const char *slash = strrchr(ext, '/');
	bool se = !strcmp(o->type, "sesparse");
	fprintf(f,
	        "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=%08x\nparentCID=%08x\n"
	        "createType=\"%s\"\n",
	        (uint32_t)(gd_next() | 1), pcid, se ? "seSparse" : "vmfsSparse");
	if (o->parent)
		fprintf(f, "parentFileNameHint=\"%s\"\n", o->parent);
	fprintf(f, "\n# Extent description\nRW %llu %s \"%s\"\n\n# The Disk Data Base\n#DDB\n\n",
	        (unsigned long long)o->sectors, se ? "SESPARSE" : "VMFSSPARSE",
	        slash ? slash + 1 : ext);
	fprintf(f, "ddb.adapterType = \"lsilogic\"\nddb.virtualHWVersion = \"14\"\n");
	return fclose(f);
}

/* ---- seSparse ------------------------------------------------------- */

struct gd_se {
	uint64_t reg[8][2]; /* sectors: volatile .. grains, as in the header */
	uint64_t cap, n_gt, gd_sec;
	uint64_t *gd, *gt; /* gt: n_gt tables, slot order */
	uint8_t *kind;     /* per grain */
	uint64_t *cluster; /* per grain, allocated ones */
	uint64_t n_alloc;
};

enum { R_VOL, R_JH, R_J, R_GD, R_GT, R_FB, R_BM, R_GR };

static void gd_se_layout(struct gd_se *s, const struct gd_opts *o)
{
	uint64_t grains = (o->sectors + 7) / 8;
	s->cap = o->sectors;
	s->n_gt = (grains + SE_GTES - 1) / SE_GTES;
	s->gd_sec = (s->n_gt * 8 + 511) / 512;
	uint64_t at = 1;
	uint64_t sizes[8] = {1, 1, 8, s->gd_sec, s->n_gt * SE_GT_SEC, 8, 8, 0};
	for (int i = 0; i < 8; i++) {
		at = i >= R_GD ? (at + 7) / 8 * 8 : at; /* 4 KiB-aligned tables and grains */
		s->reg[i][0] = at;
		s->reg[i][1] = sizes[i];
		at += sizes[i];
	}
}

static int gd_se_fill(struct gd_se *s, const struct gd_opts *o)
{
	uint64_t grains = s->n_gt * SE_GTES;
	s->gd = calloc(s->gd_sec * 64, 8);
	s->gt = calloc(s->n_gt * SE_GTES, 8);
	s->kind = calloc(grains, 1);
	s->cluster = calloc(grains, 8);
	if (!s->gd || !s->gt || !s->kind || !s->cluster)
		return -1;
	uint64_t used = 0, next = o->base;
	for (uint64_t t = 0; t < s->n_gt; t++) {
		bool any = false;
		for (uint64_t j = 0; j < SE_GTES; j++) {
			uint64_t g = t * SE_GTES + j;
			s->kind[g] = g * 8 < s->cap ? (uint8_t)gd_pick(o, g) : '.';
			any |= s->kind[g] != '.';
		}
		if (!any)
			continue;
		/* Tables in reverse slot order, grains mostly in order with
		 * some swapped: the index arithmetic is exercised both ways. */
		uint64_t slot = s->n_gt - 1 - used++;
		s->gd[t] = 0x1000000000000000ull | slot;
		for (uint64_t j = 0; j < SE_GTES; j++) {
			uint64_t g = t * SE_GTES + j, v = 0;
			char k = (char)s->kind[g];
			if (k == 'Z')
				v = 0x2000000000000000ull | (gd_next() & 0xfff);
			else if (k == 'U')
				v = 0x1000000000000000ull;
			else if (k == 'D') {
				uint64_t c = next++;
				if (j > 0 && s->kind[g - 1] == 'D' && gd_next() % 4 == 0) {
					uint64_t pv = c; /* swap with the previous grain */
					c = s->cluster[g - 1];
					s->cluster[g - 1] = pv;
					s->gt[slot * SE_GTES + j - 1] = 0x3000000000000000ull |
					                                ((pv & 0xfff) << 48) |
					                                (pv >> 12);
				}
				s->cluster[g] = c;
				v = 0x3000000000000000ull | ((c & 0xfff) << 48) | (c >> 12);
				s->n_alloc++;
			}
			s->gt[slot * SE_GTES + j] = v;
		}
	}
	s->reg[R_GR][1] = next * 8;
	return 0;
}

static void gd_se_hostile(struct gd_se *s, const char *h, uint64_t file_sec)
{
	if (!h)
		return;
	if (!strcmp(h, "gt-past-eof"))
		s->reg[R_GT][0] = file_sec + 64; /* the tables' region past the end */
	else if (!strcmp(h, "gt-index"))
		for (uint64_t t = 0; t < s->n_gt; t++)
			s->gd[t] = s->gd[t] ? 0x1000000000000000ull | 0x7ffffff : 0;
	else if (!strcmp(h, "capacity-huge"))
		s->cap = 1ull << 60;
	else if (!strcmp(h, "capacity-big"))
		s->cap = 1ull << 40;
	else if (!strcmp(h, "gd-over-header"))
		s->reg[R_GD][0] = 0;
	else if (!strcmp(h, "grains-over-gd"))
		s->reg[R_GR][0] = s->reg[R_GD][0];
	for (uint64_t i = 0; i < s->n_gt * SE_GTES; i++) {
		uint64_t v = s->gt[i];
		if ((v >> 60) != 3)
			continue;
		if (!strcmp(h, "grain-past-eof")) {
			uint64_t c = (s->reg[R_GR][1] / 8) + 1000;
			s->gt[i] = 0x3000000000000000ull | ((c & 0xfff) << 48) | (c >> 12);
			s->reg[R_GR][1] = (c + 1) * 8;
		} else if (!strcmp(h, "bad-type")) {
			s->gt[i] = 0x5000000000000000ull;
		} else if (!strcmp(h, "stray-bits")) {
			s->gt[i] = 0x0000000000000042ull;
		}
		break;
	}
}

static int gd_se_write(int fd, struct gd_se *s, const struct gd_opts *o)
{
	uint8_t h[512] = {0}, v[512] = {0};
	vdk_put_le64(h, 0xcafebabeull);
	vdk_put_le64(h + 8, 0x200000001ull);
	vdk_put_le64(h + 16, s->cap);
	vdk_put_le64(h + 24, 8);
	vdk_put_le64(h + 32, SE_GT_SEC);
	for (int i = 0; i < 8; i++) {
		vdk_put_le64(h + 80 + 16 * i, s->reg[i][0]);
		vdk_put_le64(h + 88 + 16 * i, s->reg[i][1]);
	}
	vdk_put_le64(v, 0xcafecafeull);
	vdk_put_le64(v + 8, s->n_gt);
	vdk_put_le64(v + 16, 1);
	if (o->hostile && !strcmp(o->hostile, "dirty"))
		vdk_put_le64(v + 24, 1);
	uint64_t vol = s->reg[R_VOL][0];
	uint64_t gdb = s->gd_sec * 512, gtb = s->n_gt * SE_GT_SEC * 512;
	uint8_t *gd = malloc(gdb), *gt = malloc(gtb ? gtb : 1), *grain = malloc(4096);
	if (!gd || !gt || !grain)
		return -1;
	for (uint64_t i = 0; i < gdb / 8; i++)
		vdk_put_le64(gd + 8 * i, s->gd[i]);
	for (uint64_t i = 0; i < gtb / 8; i++)
		vdk_put_le64(gt + 8 * i, s->gt[i]);
	int r = vdk_pwrite_full(fd, h, 512, 0) | vdk_pwrite_full(fd, v, 512, vol * 512) |
	        vdk_pwrite_full(fd, gd, gdb, s->reg[R_GD][0] * 512 + (s->reg[R_GD][0] ? 0 : 4096)) |
	        vdk_pwrite_full(fd, gt, gtb, s->reg[R_GT][0] * 512);
	for (uint64_t g = 0; r == 0 && g < s->n_gt * SE_GTES; g++) {
		if (s->kind[g] != 'D')
			continue;
		gd_data(grain, 4096, g);
		r = vdk_pwrite_full(fd, grain, 4096, (s->reg[R_GR][0] + s->cluster[g] * 8) * 512);
	}
	uint64_t end = (s->reg[R_GR][0] + (o->base + s->n_alloc) * 8) * 512;
	if (r == 0 && ftruncate(fd, (off_t)end) < 0)
		r = -1;
	free(gd);
	free(gt);
	free(grain);
	return r;
}

static int gd_sesparse(const struct gd_opts *o, int fd)
{
	struct gd_se s = {0};
	gd_se_layout(&s, o);
	int r = gd_se_fill(&s, o);
	if (r == 0) {
		uint64_t file_sec = s.reg[R_GR][0] + s.reg[R_GR][1];
		gd_se_hostile(&s, o->hostile, file_sec);
		r = gd_se_write(fd, &s, o);
	}
	free(s.gd);
	free(s.gt);
	free(s.kind);
	free(s.cluster);
	return r;
}

/* ---- vmfsSparse (COWD) ---------------------------------------------- */

static int gd_cowd(const struct gd_opts *o, int fd)
{
	uint64_t gs = o->grain_sec, grains = (o->sectors + gs - 1) / gs;
	uint64_t n_gt = (grains + 4095) / 4096, gd_sec = 4, gt_at = gd_sec + (n_gt * 4 + 511) / 512;
	uint64_t next = gt_at + n_gt * 32;
	uint8_t h[2048] = {0};
	memcpy(h, "COWD", 4);
	vdk_put_le32(h + 4, 1);
	vdk_put_le32(h + 8, 3);
	vdk_put_le32(h + 12, (uint32_t)o->sectors);
	vdk_put_le32(h + 16, (uint32_t)gs);
	vdk_put_le32(h + 20, (uint32_t)gd_sec);
	vdk_put_le32(h + 24, (uint32_t)n_gt);
	uint8_t *gd = calloc(1, n_gt * 4 + 512), *gt = calloc(n_gt, 16384);
	uint8_t *grain = malloc(gs * 512);
	int r = gd && gt && grain ? vdk_pwrite_full(fd, h, sizeof(h), 0) : -1;
	for (uint64_t t = 0; t < n_gt; t++)
		vdk_put_le32(gd + 4 * t, (uint32_t)(gt_at + t * 32));
	for (uint64_t g = 0; r == 0 && g < grains; g++) {
		char k = gd_pick(o, g);
		if (k == '.')
			continue;
		/* COWD has no zero grain: Z and U are grains of zeroes. */
		if (k == 'D')
			gd_data(grain, gs * 512, g);
		else
			memset(grain, 0, gs * 512);
		vdk_put_le32(gt + 4 * g, (uint32_t)next);
		r = vdk_pwrite_full(fd, grain, gs * 512, next * 512);
		next += gs;
	}
	if (r == 0)
		r = vdk_pwrite_full(fd, gd, n_gt * 4, gd_sec * 512) |
		    vdk_pwrite_full(fd, gt, n_gt * 16384, gt_at * 512);
	vdk_put_le32(h + 28, (uint32_t)next); /* file sectors */
	if (r == 0)
		r = vdk_pwrite_full(fd, h, sizeof(h), 0);
	free(gd);
	free(gt);
	free(grain);
	return r;
}

int main(int argc, char **argv)
{
	struct gd_opts o = {.type = "sesparse", .seed = 1, .grain_sec = 8};
	int c;
	while ((c = getopt(argc, argv, "t:p:s:g:G:b:x:")) != -1) {
		switch (c) {
		case 't':
			o.type = optarg;
			break;
		case 'p':
			o.parent = optarg;
			break;
		case 's':
			o.seed = strtoull(optarg, NULL, 0);
			break;
		case 'g':
			o.pattern = optarg;
			break;
		case 'G':
			o.grain_sec = (unsigned)atoi(optarg);
			break;
		case 'b':
			o.base = strtoull(optarg, NULL, 0);
			break;
		case 'x':
			o.hostile = optarg;
			break;
		default:
			return 2;
		}
	}
	if (argc - optind != 2 || !o.grain_sec) {
		fprintf(stderr, "usage: vdk-gen-delta [-t sesparse|cowd] [-p PARENT] [-s SEED] "
		                "[-g PATTERN] [-G SECTORS] [-b INDEX] [-x HOSTILE] DESC SECTORS\n");
		return 2;
	}
	o.desc = argv[optind];
	o.sectors = strtoull(argv[optind + 1], NULL, 0);
	gd_state = o.seed;
	bool se = !strcmp(o.type, "sesparse");
	char ext[4096];
	size_t n = strlen(o.desc);
	if (n > 5 && !strcmp(o.desc + n - 5, ".vmdk"))
		n -= 5;
	snprintf(ext, sizeof(ext), "%.*s-%s.vmdk", (int)n, o.desc, se ? "sesparse" : "delta");
	int fd = open(ext, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror(ext);
		return 1;
	}
	int r = se ? gd_sesparse(&o, fd) : gd_cowd(&o, fd);
	if (close(fd) < 0 || r < 0 || gd_descriptor(&o, ext) < 0) {
		fprintf(stderr, "vdk-gen-delta: cannot write %s\n", ext);
		return 1;
	}
	return 0;
}
