/* vdk-rawsha: SHA-256 of an image's virtual content as `qemu-img convert -O
 * raw | sha256sum` would compute it, without writing the raw file: zero
 * ranges are fed from a static zero buffer. Lets tests check the listed
 * digests of the huge sparse samples (127 GiB) in about a minute. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "util.h"

#define RS_CHUNK (4u << 20)
static const uint8_t rs_zero[RS_CHUNK];

static int rs_hash_range(struct vdk_image *img, EVP_MD_CTX *md, uint8_t *buf,
                         const struct vdk_extent *x, struct vdk_err *e)
{
	bool zero = x->flags & (VDK_EXT_ZERO | VDK_EXT_HOLE);
	for (uint64_t o = 0; o < x->len; o += RS_CHUNK) {
		size_t n = (size_t)VDK_MIN((uint64_t)RS_CHUNK, x->len - o);
		if (!zero && vdk_image_pread(img, buf, n, x->off + o, e))
			return -1;
		EVP_DigestUpdate(md, zero ? rs_zero : buf, n);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: vdk-rawsha IMAGE [FORMAT]\n");
		return 2;
	}
	struct vdk_err e = {0};
	struct vdk_image *img;
	if (vdk_image_open_path(argv[1], argc > 2 ? argv[2] : NULL, NULL, &img, &e)) {
		fprintf(stderr, "vdk-rawsha: %s\n", e.msg);
		return 1;
	}
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t *buf = malloc(RS_CHUNK);
	struct vdk_extents x = {0};
	int r = md && buf && EVP_DigestInit_ex(md, EVP_sha256(), NULL) ? 0 : -1;
	for (uint64_t pos = 0; !r && pos < img->size;) {
		vdk_extents_reset(&x);
		r = vdk_image_extents(img, pos, img->size - pos, &x, &e);
		for (size_t i = 0; !r && i < x.n; i++)
			r = rs_hash_range(img, md, buf, &x.v[i], &e);
		if (!r && !x.n)
			r = -1;
		if (!r)
			pos = x.v[x.n - 1].off + x.v[x.n - 1].len;
	}
	uint8_t d[32];
	unsigned dn = 0;
	if (!r && EVP_DigestFinal_ex(md, d, &dn)) {
		for (unsigned i = 0; i < dn; i++)
			printf("%02x", d[i]);
		printf("\n");
	} else {
		fprintf(stderr, "vdk-rawsha: %s\n", e.msg[0] ? e.msg : "failed");
		r = -1;
	}
	vdk_extents_free(&x);
	free(buf);
	EVP_MD_CTX_free(md);
	vdk_image_close(img);
	return r ? 1 : 0;
}
