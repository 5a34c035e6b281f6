/* fuzz-diff: the report. Counts per class and format; every divergence,
 * crash and timeout rebuilt and saved; the refusal classes (vdkit's
 * message when only vdkit refuses, qemu-img's when only qemu-img does)
 * with the explanation from the known classes table below, or
 * UNEXPLAINED. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"

/* --- known classes -------------------------------------------------- */

/* Why the two readers may disagree on a mutant. kind NULL: any format;
 * cls: the outcome class; pat: a substring of the message class (vdkit's
 * for "stricter", qemu-img's for "lenient", either for the others). */
struct fd_known {
	const char *kind, *cls, *pat, *why;
};

static const struct fd_known fd_known[] = {
    /* Divergences: both read, contents differ. */
    {"vhd", "DIVERGE", "content differs: sector bitmap",
     "vdkit honours the sector bitmap of a dynamic VHD block (a clear bit reads as zeroes, "
     "VHD spec \"Block Bitmap\"); qemu-img ignores bitmaps and returns the block's stored "
     "bytes. Not a vdkit bug: Hyper-V, Virtual PC and qemu-img zero a block's unwritten "
     "sectors, so their images read the same in both"},
    {"vmdk", "DIVERGE", "blank line before an extent line",
     "qemu-img bug: its descriptor parser reads an extent line twice when a blank line "
     "precedes it (sscanf skips the blank line's newline), doubling that extent; vdkit reads "
     "the line once"},
    /* Lenient: vdkit reads, qemu-img refuses. */
    {"vhd", "lenient", "[dynamic disk whose footer copy at 0 is damaged]",
     "qemu-img takes a dynamic disk's footer only from the copy at 0; vdkit reads the footer "
     "at the end (the spec's footer; the copy is its backup), which is valid here"},
    {NULL, "lenient", "[file size not a multiple of 512]",
     "qemu-img rounds the file size up to a sector and looks for the VHD footer or the "
     "stream-optimized VMDK footer there; vdkit reads them at the file's exact end"},
    {"vmdk", "lenient", "[COWD extent opened alone]",
     "qemu-img opens a vmfsSparse (COWD) extent only through its descriptor (through one it "
     "reads what vdkit reads); vdkit also opens the extent alone"},
    {"vhdx", "lenient", "[first region table damaged, the second valid]",
     "qemu-img reads only the first region table; vdkit takes the second copy when the "
     "first fails its signature or CRC (VHDX 2.2.3 keeps two for this)"},
    {"vhdx", "lenient", "[logical sector size other than 512]",
     "qemu-img's VHDX driver supports only 512-byte logical sectors (ENOTSUP); vdkit reads "
     "4096-byte ones as Hyper-V writes them"},
    {"vhdx", "lenient", "[dirty log]",
     "vdkit replays a dirty log in memory when reading (the file is not written); qemu-img "
     "refuses to open such an image read-only, or fails on the log first"},
    {"vmdk", "lenient", "[embedded descriptor without a CID line]",
     "qemu-img reads the CID of a hosted sparse file's descriptor at open and fails "
     "(EINVAL) without one; vdkit needs the CID only to match a parent"},
    {"vmdk", "lenient", "[embedded descriptor without a parentCID line]",
     "qemu-img reads the parentCID of a hosted sparse file's descriptor at open and fails "
     "(EINVAL) without one; vdkit needs it only to match a child to its parent"},
    {"vmdk", "lenient", "[redundant grain directory past the end of the file]",
     "qemu-img reads the redundant grain directory at open (it uses it only when writing) and "
     "fails on one past the end; vdkit reads through the primary one, checked, and never the RGD"},
    {"vhd", "lenient", "[BAT entry past the disk's last block points past the end of the file]",
     "qemu-img sizes the data area from all max-table-entries BAT entries and refuses one past "
     "the end of the file; vdkit refuses such a block inside the disk, and one past the disk's "
     "last block maps no sector (same content as qemu-img with the entry cleared)"},
    {"qcow2", "lenient", "[refcount table offset invalid]",
     "qemu-img validates the refcount table offset at open; vdkit reads the active layer "
     "through L1/L2 and uses refcounts only to refuse data on metadata: a table outside the "
     "file covers none (same content as qemu-img with the offset restored)"},
    {"qcow2", "lenient", "[snapshot table offset invalid]",
     "qemu-img checks the snapshot table offset at open even with no snapshots; vdkit "
     "reads the active layer without the table (a field it could refuse: not content)"},
    {"qcow2", "lenient", "[header extension too large]",
     "qemu-img walks every header extension at open; vdkit reads only those it uses and "
     "ignores the rest (not content)"},
    /* qemu-img past its deadline on a mutant vdkit refused at open. */
    {NULL, "qemu-timeout-refused", "",
     "vdkit refused the mutant at open; qemu-img was still converting it at the deadline "
     "(a mutated capacity of TiBs, its tables past the end of the file): nothing to compare"},
    {NULL, NULL, NULL, NULL},
};

static const struct fd_known *fd_explain(const char *kind, const char *cls, const char *msg)
{
	for (const struct fd_known *k = fd_known; k->cls; k++)
		if ((!k->kind || !strcmp(k->kind, kind)) && !strcmp(k->cls, cls) &&
		    strstr(msg, k->pat))
			return k;
	return NULL;
}

/* --- tallies -------------------------------------------------------- */

static const char *const fd_classes[] = {
    "ok",          "stricter",      "lenient",    "both-refuse",  "DIVERGE",
    "CRASH-vdkit", "TIMEOUT-vdkit", "CRASH-qemu", "TIMEOUT-qemu", "qemu-timeout-refused",
    "skip-large",  "skip-write",
};
#define FD_NCLASSES (sizeof fd_classes / sizeof *fd_classes)

struct fd_sub {
	int kind;
	unsigned cls;
	char *msg;
	unsigned long count, first;
};

struct fd_tally {
	const struct fd_opts *o;
	const struct fd_seeds *s;
	unsigned long n[FD_NCLASSES][FD_NKINDS];
	struct fd_sub *sub;
	size_t nsub, cap;
	unsigned long *bad; /* divergences, crashes, timeouts: indices */
	size_t nbad, badcap;
	unsigned long torn; /* result lines cut short by a stopped run */
};

static int fd_kind_of(const char *name)
{
	for (int k = 0; k < FD_NKINDS; k++)
		if (!strcmp(name, fd_kind_name((enum fd_kind)k)))
			return k;
	return -1;
}

static int fd_class_of(const char *name)
{
	for (unsigned c = 0; c < FD_NCLASSES; c++)
		if (!strcmp(name, fd_classes[c]))
			return (int)c;
	return -1;
}

static bool fd_is_bad(unsigned cls)
{
	const char *c = fd_classes[cls];
	return !strcmp(c, "DIVERGE") || !strncmp(c, "CRASH", 5) || !strncmp(c, "TIMEOUT", 7);
}

static int fd_sub_add(struct fd_tally *t, int kind, unsigned cls, const char *msg, unsigned long i)
{
	for (size_t j = 0; j < t->nsub; j++) {
		struct fd_sub *s = &t->sub[j];
		if (s->kind == kind && s->cls == cls && !strcmp(s->msg, msg)) {
			s->count++;
			return 0;
		}
	}
	if (t->nsub == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		struct fd_sub *v = realloc(t->sub, cap * sizeof *v);
		if (!v)
			return -1;
		t->sub = v;
		t->cap = cap;
	}
	char *m = strdup(msg);
	if (!m)
		return -1;
	t->sub[t->nsub++] = (struct fd_sub){kind, cls, m, 1, i};
	return 0;
}

static int fd_bad_add(struct fd_tally *t, unsigned long i)
{
	if (t->nbad == t->badcap) {
		size_t cap = t->badcap ? t->badcap * 2 : 64;
		unsigned long *v = realloc(t->bad, cap * sizeof *v);
		if (!v)
			return -1;
		t->bad = v;
		t->badcap = cap;
	}
	t->bad[t->nbad++] = i;
	return 0;
}

/* idx kind class vsize qsize vdig qdig vmsg qmsg */
static int fd_line(struct fd_tally *t, char *line)
{
	char *f[9], *save = NULL;
	int nf = 0;
	line[strcspn(line, "\n")] = 0;
	for (char *p = strtok_r(line, "\t", &save); p && nf < 9; p = strtok_r(NULL, "\t", &save))
		f[nf++] = p;
	int kind = nf == 9 ? fd_kind_of(f[1]) : -1, cls = nf == 9 ? fd_class_of(f[2]) : -1;
	if (kind < 0 || cls < 0)
		return 1; /* torn: the run was stopped while writing it */
	unsigned long i = strtoul(f[0], NULL, 10);
	const char *msg = !strcmp(f[2], "lenient") || !strncmp(f[2], "CRASH-q", 7) ? f[8] : f[7];
	/* -R: the classes that need a cause are run again, with today's hints */
	char rcls[32], rmsg[256];
	if (t->o->report_only && (!strcmp(f[2], "lenient") || fd_is_bad((unsigned)cls)) &&
	    fd_rerun(t->o, t->s, i, rcls, sizeof rcls, rmsg, sizeof rmsg) == 0 &&
	    fd_class_of(rcls) >= 0) {
		cls = fd_class_of(rcls);
		msg = rmsg;
	}
	t->n[cls][kind]++;
	if (strcmp(fd_classes[cls], "ok") && fd_sub_add(t, kind, (unsigned)cls, msg, i))
		return -1;
	return fd_is_bad((unsigned)cls) ? fd_bad_add(t, i) : 0;
}

static int fd_read_results(const struct fd_opts *o, struct fd_tally *t)
{
	char path[700], line[2048];
	for (unsigned w = 0; w < o->jobs; w++) {
		snprintf(path, sizeof path, "%s/results.w%u", o->out, w);
		FILE *f = fopen(path, "r");
		if (!f)
			return -1;
		int r = 0;
		while (r >= 0 && fgets(line, sizeof line, f))
			if ((r = fd_line(t, line)) > 0)
				t->torn++;
		if (r < 0) {
			fclose(f);
			return -1;
		}
		fclose(f);
	}
	return 0;
}

/* --- printing ------------------------------------------------------- */

static void fd_print_counts(const struct fd_tally *t, FILE *out)
{
	fprintf(out, "\n== mutants per class and format\n%-22s", "class");
	for (int k = 0; k < FD_NKINDS; k++)
		fprintf(out, " %9s", fd_kind_name((enum fd_kind)k));
	fprintf(out, " %9s\n", "total");
	for (unsigned c = 0; c < FD_NCLASSES; c++) {
		unsigned long sum = 0;
		for (int k = 0; k < FD_NKINDS; k++)
			sum += t->n[c][k];
		if (!sum)
			continue;
		fprintf(out, "%-22s", fd_classes[c]);
		for (int k = 0; k < FD_NKINDS; k++)
			fprintf(out, " %9lu", t->n[c][k]);
		fprintf(out, " %9lu\n", sum);
	}
}

static int fd_sub_cmp(const void *a, const void *b)
{
	const struct fd_sub *x = a, *y = b;
	if (x->cls != y->cls)
		return x->cls < y->cls ? -1 : 1;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return x->count > y->count ? -1 : x->count < y->count;
}

/* Every class of message but the both-refuse ones (printed only in
 * aggregate: nothing to compare). Returns how many are unexplained. */
static unsigned fd_print_subs(const struct fd_opts *o, const struct fd_seeds *s, struct fd_tally *t,
                              FILE *out)
{
	unsigned unexplained = 0, last = FD_NCLASSES;
	qsort(t->sub, t->nsub, sizeof *t->sub, fd_sub_cmp);
	for (size_t j = 0; j < t->nsub; j++) {
		const struct fd_sub *u = &t->sub[j];
		const char *cls = fd_classes[u->cls], *kind = fd_kind_name((enum fd_kind)u->kind);
		if (!strcmp(cls, "both-refuse") || !strncmp(cls, "skip", 4))
			continue;
		if (u->cls != last)
			fprintf(out, "\n== %s: by %s message\n", cls,
			        !strcmp(cls, "lenient") ? "qemu-img's" : "vdkit's");
		last = u->cls;
		const struct fd_known *k = fd_explain(kind, cls, u->msg);
		bool need = strcmp(cls, "stricter") != 0; /* stricter: expected (issue 13) */
		fprintf(out, "%7lu %-8s #%-7lu %s\n", u->count, kind, u->first, u->msg);
		fprintf(out, "                           -> %s\n",
		        k      ? k->why
		        : need ? "UNEXPLAINED"
		               : "refused by vdkit (no entry)");
		unexplained += !k && need;
		if (!fd_is_bad(u->cls))
			fd_rerun_save(o, s, u->first, cls, NULL);
	}
	return unexplained;
}

int fd_report(const struct fd_opts *o, const struct fd_seeds *s, FILE *out)
{
	struct fd_tally t = {.o = o, .s = s};
	unsigned long total = 0;
	int rc = fd_read_results(o, &t);
	if (rc) {
		fprintf(stderr, "fuzz-diff: the workers' results are incomplete\n");
		return 1;
	}
	for (unsigned c = 0; c < FD_NCLASSES; c++)
		for (int k = 0; k < FD_NKINDS; k++)
			total += t.n[c][k];
	fd_print_counts(&t, out);
	if (t.torn)
		fprintf(out, "(%lu result lines torn: the run was stopped)\n", t.torn);
	if (t.nbad)
		fprintf(out, "\n== divergences, crashes and timeouts (saved in %s/)\n", o->out);
	for (size_t j = 0; j < t.nbad && j < 1000; j++)
		fd_rerun_save(o, s, t.bad[j], "bad", out);
	unsigned un = fd_print_subs(o, s, &t, out);
	fprintf(out,
	        "\nfuzz-diff: %lu mutants; %zu divergences, crashes or timeouts; "
	        "%u unexplained classes\n",
	        total, t.nbad, un);
	for (size_t j = 0; j < t.nsub; j++)
		free(t.sub[j].msg);
	free(t.sub);
	free(t.bad);
	return un ? 1 : 0;
}
