/* vdk-gen: deterministic test images. Writes FILE of SIZE bytes made of
 * 64 KiB regions chosen by a seeded PRNG: data (half random bytes, half
 * compressible text), explicitly written zeroes, holes, and partial regions
 * (data in one 512-byte sector only), so every reader and writer meets all
 * the cases. -d PCT sets the share of data regions (default 45);
 * -k random makes every byte random (clone tests), -k text all text. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define REGION 65536u

static uint64_t gen_state;

static uint64_t gen_next(void)
{
	/* splitmix64: tiny, fast and reproducible everywhere. */
	uint64_t z = (gen_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void gen_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = gen_next();
		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

static void gen_text(uint8_t *p, size_t n, uint64_t region)
{
	static const char *const words[] = {"virtual ", "disk ",  "extent ", "grain ",
	                                    "cluster ", "block ", "sector ", "vdkit "};
	size_t i = 0;
	int line = snprintf((char *)p, n, "region %llu: ", (unsigned long long)region);
	i = line > 0 ? (size_t)line : 0;
	while (i < n) {
		const char *w = words[gen_next() % 8];
		for (; *w && i < n; w++)
			p[i++] = (uint8_t)*w;
	}
}

int main(int argc, char **argv)
{
	int pct = 45, c;
	const char *kind = "pattern";
	while ((c = getopt(argc, argv, "d:k:")) != -1) {
		if (c == 'd')
			pct = atoi(optarg);
		else if (c == 'k')
			kind = optarg;
		else
			return 2;
	}
	if (argc - optind < 2) {
		fprintf(stderr,
		        "usage: vdk-gen [-d PCT] [-k pattern|random|text] FILE SIZE [SEED]\n");
		return 2;
	}
	const char *path = argv[optind];
	uint64_t size = strtoull(argv[optind + 1], NULL, 0);
	gen_state = argc - optind > 2 ? strtoull(argv[optind + 2], NULL, 0) : 1;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
		perror(path);
		return 1;
	}
	static uint8_t buf[REGION];
	for (uint64_t off = 0, region = 0; off < size; off += REGION, region++) {
		size_t n = size - off < REGION ? (size_t)(size - off) : REGION;
		unsigned roll = (unsigned)(gen_next() % 100);
		int r = 0;
		if (!strcmp(kind, "random") ||
		    (!strcmp(kind, "pattern") && roll < (unsigned)pct / 2)) {
			gen_random(buf, n);
			r = vdk_pwrite_full(fd, buf, n, off);
		} else if (!strcmp(kind, "text") || roll < (unsigned)pct) {
			gen_text(buf, n, region);
			r = vdk_pwrite_full(fd, buf, n, off);
		} else if (roll < (unsigned)pct + 10) {
			memset(buf, 0, n); /* allocated zeroes */
			r = vdk_pwrite_full(fd, buf, n, off);
		} else if (roll < (unsigned)pct + 15 && n > 1024) {
			gen_random(buf, 512); /* one sector in a hole */
			r = vdk_pwrite_full(fd, buf, 512, off + 512 * (gen_next() % (n / 512)));
		}
		if (r) {
			perror(path);
			return 1;
		}
	}
	return close(fd) ? 1 : 0;
}
