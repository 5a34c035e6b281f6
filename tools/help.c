/* One table of verbs: each verb's synopsis lines and every option it takes.
 * `vdkit VERB --help`, `vdkit help VERB`, `vdkit --help` and the man pages
 * (checked by tests/it_cli.sh) all come from here. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "version.h"

struct help_verb {
	const char *name;
	const char *synopsis; /* one or more lines, each without "vdkit " */
	const char *summary;
	const char *options; /* "  -x ARG   text\n" lines */
};

#define HELP_OPEN                                                                                  \
	"  --allow-dir DIR        let extents/backing files come from DIR (repeatable)\n"          \
	"  --allow-any-path       let extents/backing files come from anywhere\n"                  \
	"  --force                open despite a parent CID mismatch\n"                            \
	"  --backing-format FMT   format of the backing file\n"                                    \
	"  --timeout SECONDS      a remote server (nbd://, nfs://) may stall this long (60)\n"

static const struct help_verb help_verbs[] = {
    {"info", "info [-f FMT] [--output=json|human] [--backing-chain] [-U] IMAGE",
     "Describe an image (qemu-img info's fields; backing files need not exist).",
     "  -f, --format FMT       image format (probed when absent)\n"
     "  --output=json|human    output format (default human)\n"
     "  --backing-chain        describe the image and each backing file (JSON: an array)\n"
     "  -U, --force-share      accepted (vdkit never locks images)\n" HELP_OPEN},
    {"check", "check [-f FMT] [--output=json|human] [-r leaks|all] [-q] [-T CACHE] IMAGE",
     "Check an image's structure and read every byte of it.",
     "  -f, --format FMT       image format (probed when absent)\n"
     "  --output=json|human    output format (default human)\n"
     "  -r leaks|all           repair leaks only, or everything that can be repaired (bare -r: all)\n"
     "  -q                     quiet: no report, the exit code only (0 clean, 2 corruptions, 3 leaks)\n"
     "  -T CACHE               cache mode (accepted, ignored)\n" HELP_OPEN},
    {"convert",
     "convert [-f FMT] [-O FMT] [-o OPTS] [-c] [-p] [--progress=json] [-q] [-S SIZE]\n"
     "[-t CACHE] [-T CACHE] [-W] [-m N] [-U] [-n] [--target-is-zero]\n"
     "[--clone=auto|always|never] [--verify] [--warm] [--threads N] SRC DST\n"
     "convert --in-place -f raw -O vpc -o azure=on FILE [NEW-NAME]",
     "Convert SRC to DST (a file, a block device or - for stdout).",
     "  -f FMT                 source format (probed when absent)\n"
     "  -O FMT                 output format: raw (default), qcow2, vmdk, vhdx, vpc\n"
     "  -o OPTS                output options key=value,... ('-o help' lists them)\n"
     "  -c                     compress (qcow2, streamOptimized vmdk)\n"
     "  -p                     progress as qemu-img prints it: (NN.NN/100%) on stdout\n"
     "  --progress=json        progress as JSON lines on stderr\n"
     "  -q                     quiet: no summary\n"
     "  -S SIZE                zero runs of SIZE bytes stay sparse; -S 0: fully allocated\n"
     "  -t CACHE               output cache: writeback (default), none (O_DIRECT),\n"
     "                         unsafe (no fsync), writethrough, directsync\n"
     "  -T CACHE               source cache mode (accepted)\n"
     "  -W                     out-of-order writes (accepted; vdkit writes in parallel)\n"
     "  -m N                   parallel workers (same as --threads)\n"
     "  -U, --force-share      accepted (vdkit never locks images)\n"
     "  -n                     DST exists: write into it in place, do not create it\n"
     "  --target-is-zero       DST already reads as zeroes: skip zero ranges\n"
     "  --clone=auto|always|never  share blocks with the source (default auto)\n"
     "  --verify               re-read DST and compare its content digest\n"
     "  --warm                 record SRC's identity (VMDK CID, content digest) in\n"
     "                         DST.vdkit-warm, so snapshot deltas can be applied to DST\n"
     "  --threads N            worker threads (default: one per CPU, at most 8;\n"
     "                         an NBD source: up to 32)\n"
     "  --in-place             turn the raw FILE itself into an Azure fixed VHD\n" HELP_OPEN},
    {"apply",
     "apply [-f FMT] [-F TARGET_FMT] [--force] [-p|--progress] [--output=json|human] [-q]\n"
     "[--allow-dir DIR] [--allow-any-path] DELTA TARGET",
     "Write a VMware snapshot delta into TARGET in place (warm migration).",
     "  -f FMT                 delta format (probed when absent; a VMDK delta)\n"
     "  -F TARGET_FMT          TARGET's format (default: the one its warm record names)\n"
     "  --force                accept a TARGET whose size or mtime changed since its record\n"
     "  -p, --progress         progress as (NN.NN/100%) on stdout\n"
     "  --output=json|human    summary format (default human)\n"
     "  -q                     quiet: no summary\n"
     "  --allow-dir DIR        let the delta's extent files come from DIR (repeatable)\n"
     "  --allow-any-path       let the delta's extent files come from anywhere\n"},
    {"create", "create [-f FMT] [-o OPTS] [-b BACKING -F BFMT] [-q] FILE SIZE",
     "Create an empty image of SIZE bytes (suffixes k, M, G, T, P).",
     "  -f FMT                 format: raw (default), qcow2, vmdk, vhdx, vpc\n"
     "  -o OPTS                format options key=value,... ('-o help' lists them)\n"
     "  -b BACKING             backing file (qcow2 only)\n"
     "  -F BFMT                format of the backing file (qcow2 only)\n"
     "  --preallocation=MODE   same as -o preallocation=MODE\n"
     "  -q                     quiet\n"},
    {"resize", "resize [-f FMT] [--shrink] [--preallocation=MODE] [-q] FILE [+|-]SIZE",
     "Grow (or with --shrink, shrink) an image's virtual size.",
     "  -f FMT                 image format (probed when absent)\n"
     "  --shrink               allow the size to go down (raw, qcow2)\n"
     "  --preallocation=MODE   raw: off, falloc or full for the new part\n"
     "  -q                     quiet\n"},
    {"commit", "commit [-f FMT] [-d] [-b BASE] [-p] [-q] [-t CACHE] [-r RATE] [--force] IMAGE",
     "Write IMAGE's own data into its backing file (or into BASE, with every layer between), "
     "in place.",
     "  -f FMT                 format of IMAGE (probed when absent)\n"
     "  -d                     keep IMAGE as it is (else a qcow2 IMAGE is emptied, as\n"
     "                         qemu-img does; a VMDK IMAGE is always kept, as qemu-img keeps it)\n"
     "  -b BASE                commit down into BASE, an image of IMAGE's chain (implies -d)\n"
     "  -p                     progress: (NN.NN/100%) on stdout\n"
     "  -q                     quiet\n"
     "  -t CACHE               cache mode (accepted; the base is synced in crash-safe order)\n"
     "  -r RATE                rate limit (accepted, not applied)\n"
     "  --allow-dir DIR        let extents/backing files come from DIR (repeatable)\n"
     "  --allow-any-path       let extents/backing files come from anywhere\n"
     "  --force                commit despite a parent CID mismatch above BASE\n"},
    {"rebase", "rebase [-u] -b BACKING [-F BFMT] [-f FMT] [-p] [-q] IMAGE",
     "Make BACKING IMAGE's backing file; IMAGE reads the same afterwards (with -u: only the "
     "reference changes).",
     "  -u                     unsafe: change the reference only, read and write no data\n"
     "  -b BACKING             the new backing file, as it will be written (\"\" for none)\n"
     "  -F BFMT                its format (qcow2 -u: required, as qemu-img)\n"
     "  -f FMT                 format of IMAGE (probed when absent)\n"
     "  -p                     progress (safe mode): (NN.NN/100%) on stdout\n"
     "  -q                     quiet\n"
     "  --allow-dir DIR        let extents/backing files come from DIR (repeatable)\n"
     "  --allow-any-path       let extents/backing files come from anywhere\n"},
    {"measure", "measure [--output=json|human] [-O FMT] [-o OPTS] [--size SIZE | [-f FMT] IMAGE]",
     "How many bytes a conversion to FMT needs (qemu-img's required, fully-allocated).",
     "  --output=json|human    output format (default human)\n"
     "  -O FMT                 output format (default raw)\n"
     "  -o OPTS                output options key=value,...\n"
     "  --size SIZE            measure a new empty image of SIZE bytes\n"
     "  -f FMT                 format of IMAGE (probed when absent)\n" HELP_OPEN},
    {"compare", "compare [-f FMT] [-F FMT] [-q] [-s] [-U] A B",
     "Compare two images' content: exit 0 identical, 1 different, 2 cannot open.",
     "  -f FMT                 format of A\n"
     "  -F FMT                 format of B\n"
     "  -q                     quiet\n"
     "  -s                     strict (accepted: sizes that differ always differ in content)\n"
     "  -U, --force-share      accepted\n" HELP_OPEN},
    {"map", "map [-f FMT] [--output=json|human] IMAGE",
     "Print the image's extents (qemu-img map's fields).",
     "  -f, --format FMT       image format (probed when absent)\n"
     "  --output=json|human    output format (default human)\n" HELP_OPEN},
    {"ova",
     "ova verify [--require-trusted CAFILE] [--output=json] PKG\n"
     "ova list [--output=json] PKG\n"
     "ova unpack [-O FMT] [-o OPTS] [-p] [--require-trusted CAFILE] PKG DIR\n"
     "ova pack [--name NAME] [--sha1|--sha256|--sha512] [--sign KEY --cert CERT] [-f FMT]"
     " [-p] OUT.ova DISK...\n"
     "ova scan [--output=json] DIR",
     "OVA/OVF packages: verify manifests and signatures, list, unpack, pack, scan.",
     "  --require-trusted CAFILE  the signature must chain to CAFILE\n"
     "  --output=json          JSON output\n"
     "  -O FMT                 unpack: disk format (default: as stored)\n"
     "  -o OPTS                unpack: output options\n"
     "  -p                     progress\n"
     "  --name NAME            pack: the VM's name\n"
     "  --sha1|--sha256|--sha512  pack: manifest digest (default sha256)\n"
     "  --sign KEY --cert CERT pack: sign the manifest\n"
     "  -f FMT                 pack: format of the disks\n"},
    {"help", "help [VERB]", "Print the verbs, or one verb's options.", ""},
    {"vmdk2vhdx",
     "vmdk2vhdx [-p] [-q] [--fixed] [--block-size N] [--logical-sector-size 512|4096]\n"
     "[--clone=auto|always|never] [--verify] [--progress=json] [--allow-dir DIR]\n"
     "SRC.vmdk DST.vhdx",
     "Convert a VMDK (flat, vmfs, sparse, streamOptimized, snapshot chain) to a VHDX.",
     "  -p                     progress: (NN.NN/100%) on stdout\n"
     "  --progress=json        progress as JSON lines on stderr\n"
     "  -q                     quiet\n"
     "  --fixed                fixed VHDX (default dynamic)\n"
     "  --block-size N         payload block size (default 32M)\n"
     "  --logical-sector-size 512|4096\n"
     "  --source-format FMT    source format (default vmdk)\n"
     "  --clone=auto|always|never  share blocks with the source (default auto)\n"
     "  --verify               re-read DST and compare its content digest\n"
     "  --version              print the version\n" HELP_OPEN},
};

#define HELP_N (sizeof(help_verbs) / sizeof(help_verbs[0]))

static const struct help_verb *help_find(const char *name)
{
	for (size_t i = 0; i < HELP_N; i++)
		if (!strcmp(help_verbs[i].name, name))
			return &help_verbs[i];
	return NULL;
}

/* Each synopsis line; continuation lines (not starting with the verb)
 * are indented under the first. */
static void help_synopsis(FILE *f, const struct help_verb *v, const char *lead)
{
	const char *prog = strcmp(v->name, "vmdk2vhdx") ? "vdkit " : "";
	const char *s = v->synopsis;
	while (*s) {
		const char *nl = strchr(s, '\n');
		int n = nl ? (int)(nl - s) : (int)strlen(s);
		bool cont = strncmp(s, v->name, strlen(v->name)) != 0;
		fprintf(f, "%s%s%.*s\n", lead, cont ? "      " : prog, n, s);
		s += n + (nl ? 1 : 0);
	}
}

int cli_help_verb(const char *name, FILE *f)
{
	const struct help_verb *v = help_find(name);
	if (!v)
		return cli_usage("no help for unknown command '%s'", name);
	help_synopsis(f, v, "usage: ");
	fprintf(f, "%s\n", v->summary);
	if (*v->options)
		fprintf(f, "\noptions:\n%s", v->options);
	if (!strcmp(name, "convert") || !strcmp(name, "compare") || !strcmp(name, "vmdk2vhdx"))
		fprintf(f, "\nexit codes: 0 ok, 1 %s, 2 %s, 3 I/O failure\n",
		        strcmp(name, "compare") ? "bad input" : "images differ",
		        strcmp(name, "compare") ? "usage" : "an image could not be opened");
	return CLI_OK;
}

void cli_help_all(FILE *f)
{
	fprintf(f,
	        "vdkit %s: convert virtual disks (raw, vmdk, vhdx, qcow2, vpc) and OVA "
	        "packages\n\nusage:\n",
	        VDK_VERSION);
	for (size_t i = 0; i < HELP_N; i++)
		if (strcmp(help_verbs[i].name, "vmdk2vhdx"))
			help_synopsis(f, &help_verbs[i], "  ");
	fprintf(f, "\nformats:");
	for (const struct vdk_format *const *fm = vdk_formats; *fm; fm++)
		fprintf(f, " %s", (*fm)->name);
	fprintf(f, "\n\n'vdkit VERB --help' or 'vdkit help VERB' lists a verb's options.\n"
	           "exit codes: 0 ok, 1 bad input or images differ, 2 usage (compare: cannot "
	           "open), 3 I/O failure\n");
}

void cli_version(FILE *f)
{
	fprintf(f, "%s version %s\n", cli_prog, VDK_VERSION);
}

bool cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			return false;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	}
	return false;
}

void cli_help_format_opts(const struct vdk_format *fmt, FILE *f)
{
	fprintf(f, "Supported options for %s (-o key=value,...):\n", fmt->name);
	const struct vdk_opt_desc *d = fmt->wopts;
	if (!d || !d->name)
		fprintf(f, "  (none)\n");
	for (; d && d->name; d++) {
		fprintf(f, "  %-22s %-7s %s\n", d->name, d->type, d->help);
		fprintf(f, "  %-22s         default: %s", "", d->def ? d->def : "(none)");
		if (d->allowed)
			fprintf(f, "; allowed: %s", d->allowed);
		fprintf(f, "\n");
	}
}

int cli_bad_format(const char *what, const char *name, bool writable)
{
	char list[256] = "";
	size_t n = 0;
	for (const struct vdk_format *const *fm = vdk_formats; *fm; fm++) {
		if (writable && !(*fm)->create)
			continue;
		int w = snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "", (*fm)->name);
		if (w < 0 || (size_t)w >= sizeof(list) - n)
			break;
		n += (size_t)w;
	}
	return cli_usage("unknown %s format '%s' (valid: %s)", what, name, list);
}

const struct vdk_format *cli_find_format(const char *what, const char *name, bool writable)
{
	const struct vdk_format *f = vdk_format_find(name);
	if (!f || (writable && !f->create)) {
		cli_bad_format(what, name, writable);
		return NULL;
	}
	return f;
}
