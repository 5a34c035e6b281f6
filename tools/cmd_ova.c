/* vdkit ova verify|list|unpack|pack|scan: front end of formats/ova*.c. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "vmx.h"
#include "ova.h"

enum {
	OVA_OPT_REQUIRE_TRUSTED = 0x200,
	OVA_OPT_NAME,
	OVA_OPT_SHA1,
	OVA_OPT_SHA256,
	OVA_OPT_SHA512,
	OVA_OPT_SIGN,
	OVA_OPT_CERT,
	OVA_OPT_NO_VERIFY,
};

static void ova_usage(void)
{
	printf(
	    "usage:\n"
	    "  vdkit ova verify [--require-trusted CAFILE] [--output=json] PKG\n"
	    "  vdkit ova list [--output=json] PKG\n"
	    "  vdkit ova unpack [-O raw|qcow2|vhdx|vmdk] [-o OPTS] [-p] [--require-trusted CAFILE]"
	    " PKG DIR\n"
	    "  vdkit ova pack [--name NAME] [--sha1|--sha256|--sha512] [--sign KEY --cert CERT]"
	    " [-f FMT] [-p] OUT.ova DISK...|VM.vmx\n"
	    "  vdkit ova scan [--output=json] DIR\n"
	    "PKG is a .ova file, a .ovf file or the folder of an extracted package;\n"
	    "unpack also takes a VMware VM's .vmx (every disk, snapshot chains consolidated).\n");
}

static void ova_print_json(struct vdk_json *j)
{
	char *s = j ? vdk_json_render(j, true) : NULL;
	if (s)
		printf("%s\n", s);
	free(s);
}

static void ova_progress(void *ctx, const struct vdk_progress *p)
{
	int *last = ctx;
	int pct = p->total ? (int)(p->done * 100 / p->total) : 100;
	if (pct == *last)
		return;
	*last = pct;
	fprintf(stderr, "\r    (%d.00/100%%)", pct);
	fflush(stderr);
}

/* Findings: human lines on stderr; the exit code from their levels. */
static int ova_print_report(const struct ova_report *r, const char *pkg, bool json)
{
	if (json) {
		struct vdk_json *j = vdk_json_new_obj();
		vdk_json_set_str(j, "package", pkg);
		vdk_json_set_bool(j, "ok", r->issues.errors == 0);
		vdk_json_set_u64(j, "verified-files", r->checked);
		cli_findings_json(&r->issues, vdk_json_set_arr(j, "issues"));
		if (r->cert.present) {
			struct vdk_json *c = vdk_json_set_obj(j, "certificate");
			vdk_json_set_str(c, "subject", r->cert.subject);
			vdk_json_set_str(c, "issuer", r->cert.issuer);
			vdk_json_set_str(c, "not-before", r->cert.not_before);
			vdk_json_set_str(c, "not-after", r->cert.not_after);
			vdk_json_set_bool(c, "signature-ok", r->cert.sig_ok);
			vdk_json_set_bool(c, "self-signed", r->cert.self_signed);
			vdk_json_set_bool(c, "trusted", r->cert.trusted);
		}
		ova_print_json(j);
		vdk_json_free(j);
	}
	cli_print_findings(&r->issues, stderr);
	if (!json && r->cert.present)
		fprintf(stderr, "%s: signed by %s (issuer %s), valid %s to %s, signature %s, %s\n",
		        cli_prog, r->cert.subject, r->cert.issuer, r->cert.not_before,
		        r->cert.not_after, r->cert.sig_ok ? "ok" : "BAD", r->cert.trust_msg);
	return r->issues.errors ? CLI_BAD : CLI_OK;
}

/* "--output=json|human" and exactly one operand (list, scan). */
static int ova_json_one(int argc, char **argv, const char *usage, bool *json)
{
	static const struct option lo[] = {
	    {"output", required_argument, NULL, CLI_OPT_OUTPUT},
	    {NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1)
		if (c != CLI_OPT_OUTPUT || cli_parse_output(optarg, json))
			return CLI_USAGE;
	return optind == argc - 1 ? 0 : cli_usage("%s", usage);
}

static int ova_verify_cmd(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"require-trusted", required_argument, NULL, OVA_OPT_REQUIRE_TRUSTED},
	    {"output", required_argument, NULL, CLI_OPT_OUTPUT},
	    {NULL, 0, NULL, 0},
	};
	struct ova_verify_opts vo = {0};
	bool json = false;
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == OVA_OPT_REQUIRE_TRUSTED)
			vo.cafile = optarg;
		else if (c != CLI_OPT_OUTPUT || cli_parse_output(optarg, &json))
			return CLI_USAGE;
	}
	if (optind != argc - 1)
		return cli_usage("ova verify needs one package");
	struct vdk_err e = {0};
	struct ova_pkg *p;
	if (ova_pkg_open(argv[optind], &p, &e) < 0)
		return cli_fail(&e);
	struct ova_report r = {0};
	int rc = ova_verify(p, &vo, &r, &e);
	if (rc < 0) {
		rc = cli_fail(&e);
	} else {
		rc = ova_print_report(&r, argv[optind], json);
		if (!json && rc == CLI_OK)
			printf("%s: %zu files match the manifest\n", argv[optind], r.checked);
	}
	ova_report_free(&r);
	ova_pkg_close(p);
	return rc;
}

static int ova_list_cmd(int argc, char **argv)
{
	bool json = false;
	int rc = ova_json_one(argc, argv, "ova list needs one package", &json);
	if (rc)
		return rc;
	struct vdk_err e = {0};
	struct ova_pkg *p;
	if (ova_pkg_open(argv[optind], &p, &e) < 0)
		return cli_fail(&e);
	struct vdk_json *j = ova_pkg_inventory(p);
	if (json) {
		ova_print_json(j);
	} else {
		char *s = j ? vdk_json_render_text(j, 0) : NULL;
		if (s)
			fputs(s, stdout);
		free(s);
	}
	vdk_json_free(j);
	ova_pkg_close(p);
	return CLI_OK;
}

static int ova_unpack_cmd(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"require-trusted", required_argument, NULL, OVA_OPT_REQUIRE_TRUSTED},
	    {"no-verify", no_argument, NULL, OVA_OPT_NO_VERIFY},
	    {"threads", required_argument, NULL, CLI_OPT_THREADS},
	    {NULL, 0, NULL, 0},
	};
	struct ova_unpack_opts uo = {.out_fmt = "raw"};
	struct vdk_opts wopts = {0};
	struct vdk_err e = {0};
	int c, last = -1, rc = 0;
	bool progress = false;
	vdk_convert_opts_init(&uo.conv);
	while (!rc && (c = getopt_long(argc, argv, "O:o:p", lo, NULL)) != -1) {
		switch (c) {
		case 'O':
			uo.out_fmt = optarg;
			break;
		case 'o':
			rc = vdk_opts_parse(&wopts, optarg, &e) ? cli_fail(&e) : 0;
			break;
		case 'p':
			progress = true;
			break;
		case OVA_OPT_REQUIRE_TRUSTED:
			uo.cafile = optarg;
			break;
		case OVA_OPT_NO_VERIFY:
			uo.no_verify = true;
			break;
		case CLI_OPT_THREADS:
			uo.conv.threads = (unsigned)atoi(optarg);
			break;
		default:
			rc = CLI_USAGE;
		}
	}
	if (!rc && optind != argc - 2)
		rc = cli_usage("ova unpack needs PKG and DIR");
	if (!rc && !vdk_format_find(uo.out_fmt))
		rc = cli_usage("unknown output format '%s'", uo.out_fmt);
	if (rc) {
		vdk_opts_free(&wopts);
		return rc;
	}
	uo.wopts = &wopts;
	cli_install_signals();
	uo.conv.cancel = &cli_cancel;
	if (progress && isatty(2)) {
		uo.conv.progress = ova_progress;
		uo.conv.progress_ctx = &last;
	}
	if (vmx_is_vmx_path(argv[optind])) { /* a VM folder (tools/cmd_vmx.c) */
		rc = cmd_unpack_vmx(argv[optind], argv[optind + 1], uo.out_fmt, &wopts, &uo.conv);
		vdk_opts_free(&wopts);
		return rc;
	}
	struct ova_pkg *p;
	if (ova_pkg_open(argv[optind], &p, &e) < 0) {
		vdk_opts_free(&wopts);
		return cli_fail(&e);
	}
	struct ova_report r = {0};
	rc = ova_unpack(p, argv[optind + 1], &uo, &r, &e);
	if (uo.conv.progress)
		fprintf(stderr, "\n");
	if (rc < 0) {
		ova_print_report(&r, argv[optind], false);
		rc = cli_fail(&e);
	} else {
		rc = ova_print_report(&r, argv[optind], false);
		for (size_t i = 0; rc == CLI_OK && i < r.nout; i++)
			printf("%s\n", r.outputs[i]);
	}
	ova_report_free(&r);
	ova_pkg_close(p);
	vdk_opts_free(&wopts);
	return rc;
}

static int ova_pack_opt(struct ova_pack_opts *po, int c, const char *arg, bool *progress)
{
	switch (c) {
	case OVA_OPT_NAME:
		po->name = arg;
		return 0;
	case OVA_OPT_SHA1:
		po->alg = OVA_SHA1;
		return 0;
	case OVA_OPT_SHA256:
		po->alg = OVA_SHA256;
		return 0;
	case OVA_OPT_SHA512:
		po->alg = OVA_SHA512;
		return 0;
	case OVA_OPT_SIGN:
		po->sign_key = arg;
		return 0;
	case OVA_OPT_CERT:
		po->sign_cert = arg;
		return 0;
	case 'f':
		po->in_fmt = arg;
		return 0;
	case 'p':
		*progress = true;
		return 0;
	case CLI_OPT_THREADS:
		po->conv.threads = (unsigned)atoi(arg);
		return 0;
	}
	return CLI_USAGE;
}

static int ova_pack_cmd(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"name", required_argument, NULL, OVA_OPT_NAME},
	    {"sha1", no_argument, NULL, OVA_OPT_SHA1},
	    {"sha256", no_argument, NULL, OVA_OPT_SHA256},
	    {"sha512", no_argument, NULL, OVA_OPT_SHA512},
	    {"sign", required_argument, NULL, OVA_OPT_SIGN},
	    {"cert", required_argument, NULL, OVA_OPT_CERT},
	    {"threads", required_argument, NULL, CLI_OPT_THREADS},
	    {NULL, 0, NULL, 0},
	};
	struct ova_pack_opts po = {.alg = OVA_SHA256};
	bool progress = false;
	int c, rc = 0, last = -1;
	vdk_convert_opts_init(&po.conv);
	while (!rc && (c = getopt_long(argc, argv, "f:p", lo, NULL)) != -1)
		rc = ova_pack_opt(&po, c, optarg, &progress);
	if (rc)
		return rc;
	if (optind > argc - 2)
		return cli_usage("ova pack needs OUT.ova and at least one DISK");
	if (!po.sign_key != !po.sign_cert)
		return cli_usage("--sign KEY and --cert CERT go together");
	cli_install_signals();
	po.conv.cancel = &cli_cancel;
	if (progress && isatty(2)) {
		po.conv.progress = ova_progress;
		po.conv.progress_ctx = &last;
	}
	struct vdk_err e = {0};
	rc = ova_pack(argv[optind], (const char *const *)argv + optind + 1,
	              (size_t)(argc - optind - 1), &po, &e);
	if (po.conv.progress)
		fprintf(stderr, "\n");
	return rc < 0 ? cli_fail(&e) : CLI_OK;
}

static int ova_scan_cmd(int argc, char **argv)
{
	bool json = false;
	int rc = ova_json_one(argc, argv, "ova scan needs one folder", &json);
	if (rc)
		return rc;
	struct ova_scan s;
	struct vdk_err e = {0};
	struct vdk_json *arr = json ? vdk_json_new_arr() : NULL;
	if (ova_scan_dir(argv[optind], time(NULL), &s, arr, &e) < 0) {
		vdk_json_free(arr);
		return cli_fail(&e);
	}
	size_t errors = 0;
	for (size_t i = 0; i < s.n; i++) {
		const struct ova_scan_item *it = &s.v[i];
		errors += it->kind == OVA_SCAN_ERROR;
		if (!json)
			printf("%-7s %s%s%s%s%s\n", ova_scan_kind_name(it->kind), it->path,
			       it->name ? "  name=" : "", it->name ? it->name : "",
			       it->msg ? ": " : "", it->msg ? it->msg : "");
	}
	if (json)
		ova_print_json(arr);
	vdk_json_free(arr);
	ova_scan_free(&s);
	return errors ? CLI_BAD : CLI_OK;
}

int cmd_ova(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		ova_usage();
		return argc < 2 ? CLI_USAGE : CLI_OK;
	}
	const char *verb = argv[1];
	argc--;
	argv++;
	optind = 1;
	if (!strcmp(verb, "verify"))
		return ova_verify_cmd(argc, argv);
	if (!strcmp(verb, "list"))
		return ova_list_cmd(argc, argv);
	if (!strcmp(verb, "unpack"))
		return ova_unpack_cmd(argc, argv);
	if (!strcmp(verb, "pack"))
		return ova_pack_cmd(argc, argv);
	if (!strcmp(verb, "scan"))
		return ova_scan_cmd(argc, argv);
	return cli_usage("ova: unknown verb '%s' (verify, list, unpack, pack, scan)", verb);
}
