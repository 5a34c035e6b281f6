/* fuzz-diff: differential fuzzing of vdkit's readers against qemu-img.
 * Seeds (fuzz/corpus and images qemu-img makes at start) are mutated with
 * structure-aware operators; each mutant is read by vdkit (in a forked
 * child, through the library) and by `qemu-img convert -O raw`, and the
 * two contents are compared by a sparse digest. */
#ifndef VDK_FUZZ_DIFF_H
#define VDK_FUZZ_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum fd_kind { FD_QCOW2, FD_VMDK, FD_VHD, FD_VHDX, FD_SESPARSE, FD_NKINDS };

struct fd_seed {
	char name[96];
	enum fd_kind kind;
	uint8_t *d;
	size_t n;
};

struct fd_seeds {
	struct fd_seed *v;
	size_t n, cap;
	size_t skipped; /* too large (diff_mut.c) */
};

/* splitmix64: one independent stream per mutant, so that a mutant is
 * rebuilt from (seed, index) alone. */
struct fd_rng {
	uint64_t s;
};
uint64_t fd_rand(struct fd_rng *r);
static inline uint64_t fd_below(struct fd_rng *r, uint64_t n)
{
	return n ? fd_rand(r) % n : 0;
}

/* Names: the format for -f (both tools), for messages. */
const char *fd_kind_fmt(enum fd_kind k);
const char *fd_kind_name(enum fd_kind k);

/* Seeds: every file of dir as kind (".vxsp" files are expanded). */
int fd_seeds_add_dir(struct fd_seeds *s, const char *dir, enum fd_kind kind);
int fd_seeds_add_file(struct fd_seeds *s, const char *path, enum fd_kind kind);
void fd_seeds_free(struct fd_seeds *s);

/* A mutant of seed: malloc'ed into *out (*outn bytes); desc says what was
 * done ("field@65536/8=0xff..; fix"), for the divergence report. */
int fd_mutate(const struct fd_seed *seed, struct fd_rng *r, uint8_t **out, size_t *outn, char *desc,
              size_t desclen);
/* Recompute the checksums a format keeps (VHD footer and dynamic header,
 * VHDX headers and region tables) so that mutants reach past them. */
void fd_fixup(enum fd_kind kind, uint8_t *d, size_t n);

/* A w-byte word at off (0 past the end), in either byte order. */
uint64_t fd_rd(const uint8_t *d, size_t n, uint64_t off, unsigned w, bool be);

/* A copy of a dynamic VHD with every allocated block's bitmap all set
 * (diff_hint.c), to tell a bitmap divergence from others. */
int fd_vhd_fill_bitmaps(const uint8_t *d, size_t n, uint8_t **out);

/* A VMDK descriptor with a blank line before an extent line, which
 * qemu-img reads twice (diff_hint.c). */
bool fd_vmdk_blank_before_extent(const uint8_t *d, size_t n);

/* Why qemu-img may have refused a mutant vdkit read, where a look at the
 * bytes tells (diff_hint.c); NULL when it cannot. */
const char *fd_lenient_cause(enum fd_kind kind, const uint8_t *d, size_t n);

/* Outcome of one tool on one mutant. */
enum fd_status { FD_ACCEPT, FD_REFUSE, FD_CRASH, FD_TIMEOUT, FD_SKIP };

struct fd_result {
	enum fd_status st;
	uint64_t size;  /* virtual size */
	uint8_t dig[8]; /* sparse digest of the content */
	char msg[256];  /* refusal message, normalized to its class */
	int sig;        /* crash: the signal */
};

/* The digest both sides compute over the virtual size, then each non-zero
 * 4 KiB block's offset and bytes (so sparse outputs cost what their data
 * costs). */
struct fd_digest;
struct fd_digest *fd_digest_new(uint64_t size);
void fd_digest_block(struct fd_digest *g, uint64_t off, const uint8_t *b, size_t n);
void fd_digest_end(struct fd_digest *g, uint8_t out[8]);

/* A zygote: a small process, forked before the seeds are loaded, that
 * forks one reader per request; forking the worker itself (hundreds of MiB
 * of seeds) cost tens of milliseconds of page tables per mutant. others:
 * the sockets of zygotes started before, closed in the new one. Returns
 * the socket, or -1. */
int fd_zygote_start(const int *others, unsigned nothers);
/* Reads path (a mutant written in a private folder) with vdkit in a child
 * of zygote zfd, bounded by timeout_s and by max_size (larger: FD_SKIP). */
void fd_run_vdkit(int zfd, const char *path, enum fd_kind kind, uint64_t max_size, int timeout_s,
                  struct fd_result *res);
/* `qemu-img convert -f FMT -O raw path out` and the digest of out. */
void fd_run_qemu(const char *qemu, const char *path, enum fd_kind kind, const char *out,
                 int timeout_s, struct fd_result *res);
/* A message's class: the text with the file name, numbers and offsets
 * replaced, so that equal causes count together. */
void fd_msg_class(const char *msg, const char *path, char *out, size_t outlen);

struct fd_opts {
	unsigned long n, seed;
	unsigned jobs;
	const char *out, *qemu;
	char work[512];
	uint64_t max_size;
	int timeout;
	bool qemu_seeds, report_only;
	long index;
	int zfd[64]; /* one zygote per worker (diff_run.c) */
};

/* Mutant i rebuilt and run again in the work folder, saved in o->out as
 * TAG-KIND-I.img with a .txt of both tools' results; echo: a summary. */
int fd_rerun_save(const struct fd_opts *o, const struct fd_seeds *s, unsigned long i,
                  const char *tag, FILE *echo);
/* Mutant i rebuilt and run again: its class and the message that names
 * the cause (qemu-img's for lenient, vdkit's otherwise). */
int fd_rerun(const struct fd_opts *o, const struct fd_seeds *s, unsigned long i, char *cls,
             size_t clslen, char *msg, size_t msglen);
/* Reads the workers' result lines, prints the counts and classes, saves
 * the examples. 0, or 1 when something is unexplained (see diff_report.c). */
int fd_report(const struct fd_opts *o, const struct fd_seeds *s, FILE *out);

#endif
