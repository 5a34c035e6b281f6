/* Unit tests of the OVA module: tar reader (ustar, GNU, pax, hostile
 * members), tar writer and member sink, manifest syntaxes, OVF parsing
 * (real descriptors, XXE, billion laughs, units) and the OVF writer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ova_private.h"
#include "test.h"
#include "util.h"

#define SHARED "../shared/testdata/ovf"

/* A tar under construction in memory. */
struct tb {
	uint8_t buf[64 * 1024];
	size_t len;
};

static void tb_hdr(struct tb *t, const char *name, uint64_t size, char type)
{
	uint8_t *h = t->buf + t->len;
	struct vdk_err e = {0};
	ova_tar_hdr(h, 512, "placeholder", size, 0, &e);
	memset(h, 0, 100);
	memcpy(h, name, strnlen(name, 100));
	h[156] = (uint8_t)type;
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	t->len += 512;
}

static void tb_resum(uint8_t *h)
{
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
}

static void tb_data(struct tb *t, const void *d, size_t n)
{
	memcpy(t->buf + t->len, d, n);
	t->len += vdk_round_up(n, 512);
}

static void tb_file(struct tb *t, const char *name, const char *data)
{
	tb_hdr(t, name, strlen(data), '0');
	tb_data(t, data, strlen(data));
}

static void tb_end(struct tb *t)
{
	t->len += 1024;
}

static int tb_index(struct tb *t, struct ova_tar *out, struct vdk_err *e)
{
	struct vdk_src *s;
	vdk_err_clear(e);
	vdk_src_open_mem(t->buf, t->len, "t.ova", &s, e);
	int r = ova_tar_index(s, out, e);
	vdk_src_close(s);
	return r;
}

static void test_tar_basic(void)
{
	struct tb t = {0};
	struct ova_tar x;
	struct vdk_err e = {0};
	tb_hdr(&t, "./", 0, '5');
	tb_file(&t, "./a.ovf", "<xml/>");
	tb_file(&t, "b.vmdk", "0123456789");
	tb_end(&t);
	CHECK(tb_index(&t, &x, &e) == 0, "ustar with ./ prefix indexes: %s", e.msg);
	CHECK_EQ_U64(x.n, 2, "two members (the root entry ./ is skipped)");
	if (x.n == 2) {
		CHECK(!strcmp(x.v[0].name, "a.ovf"), "leading ./ dropped");
		CHECK_EQ_U64(x.v[1].size, 10, "member size");
		CHECK_EQ_U64(x.v[1].off, 512 * 4, "member data offset");
		CHECK(!memcmp(t.buf + x.v[1].off, "0123456789", 10), "offset points at data");
	}
	ova_tar_free(&x);

	/* Corrupt a checksum. */
	t.buf[512 + 10] ^= 1;
	CHECK(tb_index(&t, &x, &e) < 0 && strstr(e.msg, "checksum"), "bad checksum refused: %s",
	      e.msg);
}

static void test_tar_gnu_pax(void)
{
	struct tb t = {0};
	struct ova_tar x;
	struct vdk_err e = {0};
	char longname[300];
	memset(longname, 'n', sizeof(longname));
	memcpy(longname + 290, ".vmdk", 6);
	tb_hdr(&t, "././@LongLink", strlen(longname) + 1, 'L');
	tb_data(&t, longname, strlen(longname) + 1);
	tb_file(&t, "truncated", "abc");
	/* pax: path and size override the ustar fields. */
	const char *pax = "21 path=pax-name.img\n10 size=5\n";
	tb_hdr(&t, "PaxHeaders/x", strlen(pax), 'x');
	tb_data(&t, pax, strlen(pax));
	tb_hdr(&t, "ignored", 0, '0');
	tb_data(&t, "hello", 5);
	tb_end(&t);
	CHECK(tb_index(&t, &x, &e) == 0, "GNU L and pax index: %s", e.msg);
	CHECK_EQ_U64(x.n, 2, "two members");
	if (x.n == 2) {
		CHECK(!strcmp(x.v[0].name, longname), "GNU long name");
		CHECK(!strcmp(x.v[1].name, "pax-name.img"), "pax path (%s)", x.v[1].name);
		CHECK_EQ_U64(x.v[1].size, 5, "pax size");
	}
	ova_tar_free(&x);

	/* Base-256 size (GNU) beyond the end is refused, in range accepted. */
	struct tb b = {0};
	tb_hdr(&b, "big", 0, '0');
	uint8_t *sz = b.buf + 124;
	memset(sz, 0, 12);
	sz[0] = 0x80;
	sz[11] = 7;
	memset(b.buf + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += b.buf[i];
	snprintf((char *)b.buf + 148, 8, "%06o", sum);
	tb_data(&b, "1234567", 7);
	tb_end(&b);
	CHECK(tb_index(&b, &x, &e) == 0 && x.n == 1 && x.v[0].size == 7, "base-256 size: %s",
	      e.msg);
	ova_tar_free(&x);
	b.buf[124 + 5] = 1; /* 2^48 + 7 bytes */
	memset(b.buf + 148, ' ', 8);
	sum = 0;
	for (int i = 0; i < 512; i++)
		sum += b.buf[i];
	snprintf((char *)b.buf + 148, 8, "%06o", sum);
	CHECK(tb_index(&b, &x, &e) < 0 && strstr(e.msg, "past the end"),
	      "size past EOF refused: %s", e.msg);
}

static void expect_refused(const char *what, void (*build)(struct tb *), const char *needle)
{
	struct tb t = {0};
	struct ova_tar x;
	struct vdk_err e = {0};
	build(&t);
	tb_end(&t);
	int r = tb_index(&t, &x, &e);
	CHECK(r < 0 && e.cls == VDK_E_INPUT && strstr(e.msg, needle), "%s refused: %s", what,
	      e.msg);
	if (r == 0)
		ova_tar_free(&x);
}

static void b_dotdot(struct tb *t)
{
	tb_file(t, "../evil", "x");
}
static void b_dotdot_mid(struct tb *t)
{
	tb_file(t, "a/../../evil", "x");
}
static void b_abs(struct tb *t)
{
	tb_file(t, "/tmp/evil", "x");
}
static void b_symlink(struct tb *t)
{
	tb_hdr(t, "disk.vmdk", 0, '2');
	memcpy(t->buf + t->len - 512 + 157, "/etc/passwd", 11);
	tb_resum(t->buf + t->len - 512);
}
static void b_hardlink(struct tb *t)
{
	tb_hdr(t, "disk.vmdk", 0, '1');
}
static void b_device(struct tb *t)
{
	tb_hdr(t, "dev", 0, '3');
}
static void b_dup(struct tb *t)
{
	tb_file(t, "a.vmdk", "1");
	tb_file(t, "./a.vmdk", "2");
}
static void b_nul(struct tb *t)
{
	tb_hdr(t, "././@LongLink", 12, 'L');
	tb_data(t, "evil\0.vmdk\0\0", 12);
	tb_file(t, "x", "1");
}
static void b_pax_link(struct tb *t)
{
	const char *pax = "19 linkpath=/etc/x\n";
	tb_hdr(t, "p", strlen(pax), 'x');
	tb_data(t, pax, strlen(pax));
	tb_file(t, "x", "1");
}

static void test_tar_hostile(void)
{
	expect_refused("../evil", b_dotdot, "..");
	expect_refused("a/../../evil", b_dotdot_mid, "..");
	expect_refused("/tmp/evil", b_abs, "absolute");
	expect_refused("symlink to /etc/passwd", b_symlink, "symbolic link");
	expect_refused("hard link", b_hardlink, "hard link");
	expect_refused("device", b_device, "device");
	expect_refused("duplicate names", b_dup, "duplicate");
	expect_refused("NUL in a long name", b_nul, "NUL");
	expect_refused("pax linkpath", b_pax_link, "links");
	CHECK(!ova_name_ok("a//b") && !ova_name_ok("") && !ova_name_ok("x/./y") &&
	          ova_name_ok("sub/disk.vmdk"),
	      "name rules");
}

static void test_member_sink(void)
{
	struct vdk_sink *mem, *m;
	struct vdk_err e = {0};
	char longname[200];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	CHECK(vdk_sink_open_mem(1 << 20, &mem, &e) == 0, "mem sink");
	CHECK(ova_tar_member_sink(mem, 0, longname, OVA_SHA256, 0, &m, &e) == 0, "member sink");
	vdk_sink_write(m, "hello ", 6, &e);
	vdk_sink_write(m, "world", 5, &e);
	CHECK(vdk_sink_pwrite(m, "x", 1, 0, &e) < 0, "member sink refuses going back");
	CHECK(vdk_sink_commit(m, &e) == 0, "member committed: %s", e.msg);
	uint64_t size, end;
	uint8_t d[OVA_DIGEST_MAX];
	ova_tar_member_info(m, &size, d, &end);
	CHECK_EQ_U64(size, 11, "member size");
	CHECK_EQ_U64(end, ova_tar_hdr_len(longname) + 512, "end past the padding");
	char hex[130];
	ova_hex(d, 32, hex);
	CHECK(!strcmp(hex, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"),
	      "member digest is SHA-256 of its bytes");
	vdk_sink_close(m);
	static const uint8_t z[1024];
	vdk_sink_pwrite(mem, z, sizeof(z), end, &e);
	size_t len;
	const uint8_t *data = vdk_sink_mem_data(mem, &len);
	struct vdk_src *s;
	struct ova_tar x;
	vdk_src_open_mem(data, len, "w.ova", &s, &e);
	CHECK(ova_tar_index(s, &x, &e) == 0 && x.n == 1, "written tar reads back: %s", e.msg);
	if (x.n == 1) {
		CHECK(!strcmp(x.v[0].name, longname), "GNU long name round trip");
		CHECK(!memcmp(data + x.v[0].off, "hello world", 11), "data round trip");
	}
	ova_tar_free(&x);
	vdk_src_close(s);
	vdk_sink_close(mem);
}

static void test_manifest(void)
{
	struct ova_mf mf;
	struct vdk_err e = {0};
	const char *good =
	    "SHA1(a.ovf)= 264CAAA216AD928F82F727BB06D8E6E6FBD94DF0\r\n"
	    "SHA256 (disk 1.vmdk) = "
	    "b94d27b9934d3e08a52e52d7da7dabfac484efe37ac5380ee9088f7ace2efcde\n"
	    "\n"
	    "SHA512(x(1).iso)= "
	    "00000000000000000000000000000000000000000000000000000000000000000000000000"
	    "000000000000000000000000000000000000000000000000000000\n";
	CHECK(ova_mf_parse(good, strlen(good), "m.mf", &mf, &e) == 0, "manifest parses: %s", e.msg);
	CHECK_EQ_U64(mf.n, 3, "three entries");
	struct ova_mf_entry *a = ova_mf_find(&mf, "a.ovf");
	CHECK(a && a->alg == OVA_SHA1 && a->digest[0] == 0x26 && a->digest[19] == 0xf0,
	      "upper-case SHA1 hex");
	struct ova_mf_entry *b = ova_mf_find(&mf, "disk 1.vmdk");
	CHECK(b && b->alg == OVA_SHA256 && b->digest[0] == 0xb9, "VirtualBox spaced form");
	CHECK(ova_mf_find(&mf, "x(1).iso") != NULL, "parentheses inside a name");
	ova_mf_free(&mf);
	const char *bad[] = {"MD5(a)= 00112233445566778899aabbccddeeff\n", "SHA1(a)= 123\n",
	                     "SHA1(a)= zz3caaa216ad928f82f727bb06d8e6e6fbd94df0\n", "garbage\n",
	                     "SHA1(a)= 264caaa216ad928f82f727bb06d8e6e6fbd94df0\n"
	                     "SHA1(a)= 264caaa216ad928f82f727bb06d8e6e6fbd94df0\n"};
	for (size_t i = 0; i < VDK_ARRAY_SIZE(bad); i++) {
		vdk_err_clear(&e);
		CHECK(ova_mf_parse(bad[i], strlen(bad[i]), "m.mf", &mf, &e) < 0 &&
		          e.cls == VDK_E_INPUT,
		      "bad manifest %zu refused: %s", i, e.msg);
	}
	char line[256];
	uint8_t d[32] = {0xab};
	size_t n = ova_mf_line(line, sizeof(line), OVA_SHA256, "v.ovf", d);
	CHECK(n > 0 && !strncmp(line, "SHA256(v.ovf)= ab00", 19) && line[n - 1] == '\n',
	      "strict writer syntax: %s", line);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	uint8_t *b = malloc(1 << 20);
	*len = b ? fread(b, 1, 1 << 20, f) : 0;
	fclose(f);
	return b;
}

static int parse_str(const char *xml, struct ova_ovf *o, struct vdk_err *e)
{
	vdk_err_clear(e);
	return ova_ovf_parse((const uint8_t *)xml, strlen(xml), "t.ovf", o, e);
}

static void test_ovf_real(void)
{
	struct ova_ovf o;
	struct vdk_err e = {0};
	size_t len;
	uint8_t *b = slurp(SHARED "/input.ovf", &len);
	if (!b) {
		SKIP("shared testdata not found (%s)", SHARED);
		return;
	}
	CHECK(ova_ovf_parse(b, len, "input.ovf", &o, &e) == 0, "COT input.ovf parses: %s", e.msg);
	CHECK(!strcmp(o.version, "1.x") && o.name && !strcmp(o.name, "test"), "version and name");
	CHECK_EQ_U64(o.nfiles, 3, "three files");
	CHECK(o.ndisks == 1 && o.disks[0].capacity == 1ull << 30, "capacity 1 x 2^30");
	CHECK(o.ndisks == 1 && o.disks[0].controller && !strcmp(o.disks[0].controller, "scsi"),
	      "disk on the SCSI controller");
	CHECK_EQ_U64(o.cpus, 4, "default configuration's CPUs");
	CHECK_EQ_U64(o.memory, 4096ull << 20, "default configuration's memory");
	CHECK_EQ_U64(o.nnics, 3, "three NICs in the default configuration");
	ova_ovf_free(&o);
	free(b);

	b = slurp(SHARED "/virt-v2v/test-i-ova-chunked-gap.ovf", &len);
	if (b && ova_ovf_parse(b, len, "chunked.ovf", &o, &e) == 0) {
		CHECK(o.nfiles == 1 && o.files[0].chunk == 10240, "chunkSize");
		CHECK(o.ndisks == 1 && o.disks[0].capacity == 50ull << 30 &&
		          o.disks[0].populated == 18975752192ull,
		      "capacity and populatedSize");
		ova_ovf_free(&o);
	} else {
		CHECK(0, "chunked descriptor parses: %s", e.msg);
	}
	free(b);
	b = slurp(SHARED "/virt-v2v/test-i-ova-gz.ovf", &len);
	if (b && ova_ovf_parse(b, len, "gz.ovf", &o, &e) == 0) {
		CHECK(o.nfiles == 1 && o.files[0].gzip, "compression=gzip");
		ova_ovf_free(&o);
	} else {
		CHECK(0, "gz descriptor parses: %s", e.msg);
	}
	free(b);
}

static void test_ovf_hostile(void)
{
	struct ova_ovf o;
	struct vdk_err e = {0};
	const char *xxe =
	    "<?xml version=\"1.0\"?>\n<!DOCTYPE e [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n"
	    "<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\"><VirtualSystem>"
	    "<Name>&x;</Name></VirtualSystem></Envelope>";
	CHECK(parse_str(xxe, &o, &e) < 0 && strstr(e.msg, "DOCTYPE"), "XXE refused: %s", e.msg);
	const char *lol =
	    "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\">"
	    "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">"
	    "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><Envelope>&c;</Envelope>";
	CHECK(parse_str(lol, &o, &e) < 0 && e.cls == VDK_E_INPUT, "billion laughs refused: %s",
	      e.msg);
	const char *utf16 = "<\0?\0x\0m\0l\0";
	vdk_err_clear(&e);
	CHECK(ova_ovf_parse((const uint8_t *)utf16, 10, "t.ovf", &o, &e) < 0, "NUL bytes refused");
	CHECK(parse_str("<Envelope><x></Envelope>", &o, &e) < 0 && strstr(e.msg, "well-formed"),
	      "malformed XML: %s", e.msg);
	CHECK(parse_str("<Envelope xmlns=\"urn:x\"/>", &o, &e) < 0, "unknown namespace refused");
	const char *trav =
	    "<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" "
	    "xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\"><References>"
	    "<File ovf:href=\"../../etc/passwd\" ovf:id=\"f\"/></References></Envelope>";
	CHECK(parse_str(trav, &o, &e) < 0 && strstr(e.msg, "relative"), "href ../ refused: %s",
	      e.msg);
	const char *ovfl = "<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" "
	                   "xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\"><DiskSection>"
	                   "<Disk ovf:diskId=\"d\" ovf:capacity=\"17179869184\" "
	                   "ovf:capacityAllocationUnits=\"byte * 2^40\"/></DiskSection></Envelope>";
	CHECK(parse_str(ovfl, &o, &e) < 0 && strstr(e.msg, "overflow"), "capacity overflow: %s",
	      e.msg);
	uint64_t m;
	CHECK(ova_ovf_units("byte * 2^30", &m) && m == 1ull << 30, "byte * 2^30");
	CHECK(ova_ovf_units("byte * 10^9", &m) && m == 1000000000ull, "byte * 10^9");
	CHECK(ova_ovf_units("MegaBytes", &m) && m == 1ull << 20, "MegaBytes");
	CHECK(!ova_ovf_units("byte * 2^65", &m) && !ova_ovf_units("furlong", &m), "bad units");
}

static void test_ovf_versions(void)
{
	struct ova_ovf o;
	struct vdk_err e = {0};
	const char *v09 =
	    "<Envelope xmlns=\"http://www.vmware.com/schema/ovf/1/envelope\" "
	    "xmlns:ovf=\"http://www.vmware.com/schema/ovf/1/envelope\" "
	    "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
	    "xmlns:rasd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
	    "CIM_ResourceAllocationSettingData\">"
	    "<References><File ovf:href=\"d.vmdk\" ovf:id=\"f1\" ovf:size=\"10\"/></References>"
	    "<Section xsi:type=\"ovf:DiskSection_Type\"><Disk ovf:diskId=\"d1\" ovf:fileRef=\"f1\" "
	    "ovf:capacity=\"1073741824\"/></Section>"
	    "<Content ovf:id=\"vm09\" xsi:type=\"ovf:VirtualSystem_Type\">"
	    "<Section xsi:type=\"ovf:VirtualHardwareSection_Type\"><Item><rasd:ResourceType>3"
	    "</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item></Section>"
	    "</Content></Envelope>";
	CHECK(parse_str(v09, &o, &e) == 0, "OVF 0.9 parses: %s", e.msg);
	CHECK(o.version && !strcmp(o.version, "0.9") && o.ndisks == 1 &&
	          o.disks[0].capacity == 1ull << 30 && o.cpus == 2 && o.name &&
	          !strcmp(o.name, "vm09"),
	      "OVF 0.9 sections by xsi:type");
	ova_ovf_free(&o);
	const char *vbox =
	    "<Envelope ovf:version=\"2.0\" xmlns=\"http://schemas.dmtf.org/ovf/envelope/2\" "
	    "xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/2\" "
	    "xmlns:sasd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
	    "CIM_StorageAllocationSettingData.xsd\" "
	    "xmlns:rasd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
	    "CIM_ResourceAllocationSettingData\" "
	    "xmlns:vbox=\"http://www.virtualbox.org/ovf/machine\">"
	    "<References><File ovf:id=\"file1\" ovf:href=\"vm-disk001.vmdk\"/></References>"
	    "<DiskSection><Disk ovf:capacity=\"10737418240\" ovf:diskId=\"vmdisk1\" "
	    "ovf:fileRef=\"file1\" ovf:format=\"http://www.vmware.com/interfaces/specifications/"
	    "vmdk.html#streamOptimized\"/></DiskSection>"
	    "<VirtualSystem ovf:id=\"vbox\"><VirtualHardwareSection>"
	    "<Item><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:InstanceID>2"
	    "</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType>"
	    "<rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>"
	    "<Item><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>AHCI"
	    "</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType></Item>"
	    "<StorageItem><sasd:HostResource>/disk/vmdisk1</sasd:HostResource>"
	    "<sasd:InstanceID>9</sasd:InstanceID><sasd:Parent>5</sasd:Parent>"
	    "<sasd:ResourceType>17</sasd:ResourceType></StorageItem>"
	    "</VirtualHardwareSection></VirtualSystem></Envelope>";
	CHECK(parse_str(vbox, &o, &e) == 0, "VirtualBox OVF 2.0 parses: %s", e.msg);
	CHECK(o.version && !strcmp(o.version, "2.x") && o.producer &&
	          !strcmp(o.producer, "virtualbox"),
	      "version 2 and producer");
	CHECK_EQ_U64(o.memory, 2048ull << 20, "memory in MegaBytes");
	CHECK(o.ndisks == 1 && o.disks[0].controller && !strcmp(o.disks[0].controller, "sata"),
	      "StorageItem disk on the AHCI controller");
	ova_ovf_free(&o);
}

static void test_ovf_writer(void)
{
	struct ova_pack_disk d[2] = {
	    {.href = "vm-disk1.vmdk", .file_size = 12345, .capacity = 1ull << 30, .populated = 99},
	    {.href = "vm-disk2.vmdk", .file_size = 678, .capacity = 5ull << 20, .populated = 0},
	};
	uint8_t *buf;
	size_t len;
	struct vdk_err e = {0};
	struct ova_ovf o;
	struct ova_vm vm;
	CHECK(ova_vm_generic(2, &vm, &e) == 0, "generic hardware for two disks");
	vm.id = "vm";
	CHECK(ova_ovf_write(&vm, d, 2, &buf, &len, &e) == 0, "OVF writer");
	ova_vm_free(&vm);
	CHECK(ova_ovf_parse(buf, len, "w.ovf", &o, &e) == 0, "written OVF parses: %s", e.msg);
	CHECK(o.ndisks == 2 && o.disks[0].capacity == 1ull << 30 &&
	          o.disks[1].capacity == 5ull << 20,
	      "capacities round trip");
	CHECK(o.ndisks == 2 && o.disks[0].populated == 99 && o.disks[0].has_populated,
	      "populatedSize round trip");
	CHECK(o.nfiles == 2 && o.files[0].size == 12345 &&
	          !strcmp(o.files[1].href, "vm-disk2.vmdk"),
	      "file sizes and hrefs");
	CHECK(o.ndisks == 2 && o.disks[1].controller && !strcmp(o.disks[1].controller, "scsi") &&
	          o.disks[1].address == 1,
	      "disks on a SCSI controller");
	CHECK(strstr((char *)buf, "envelope/1") != NULL, "OVF 1.0 namespace");
	ova_ovf_free(&o);
	free(buf);
}

int main(void)
{
	test_tar_basic();
	test_tar_gnu_pax();
	test_tar_hostile();
	test_member_sink();
	test_manifest();
	test_ovf_real();
	test_ovf_hostile();
	test_ovf_versions();
	test_ovf_writer();
	TEST_EXIT();
}
