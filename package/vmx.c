/* The .vmx parser (see vmx.h for the rules). Lines become a table of
 * (lower-case key, unescaped value) sorted by key, so each lookup is a
 * binary search; devices are found by one pass over the keys. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"
#include "vmx.h"

/* Device numbering VMware uses: scsi0-3 (units 0-15, 7 is the HBA),
 * sata0-3 (0-29), nvme0-3 (0-63 on recent hardware), ide0-1 (0-1). */
#define VMX_MAX_CTRL 4
#define VMX_MAX_UNIT 64
#define VMX_MAX_NICS 64
#define VMX_MAX_DEVS (4 * VMX_MAX_CTRL * VMX_MAX_UNIT)

struct vmx_kv {
	char *key, *val;
	uint64_t order; /* offset of its line: the first of duplicates wins */
};

struct vmx_tab {
	struct vmx_kv *v;
	size_t n;
	const char *name;
};

static const char *const vmx_bus_names[] = {"scsi", "nvme", "sata", "ide"};

const char *vmx_bus_name(enum vmx_bus b)
{
	return (unsigned)b < VDK_ARRAY_SIZE(vmx_bus_names) ? vmx_bus_names[b] : "?";
}

bool vmx_is_vmx_path(const char *path)
{
	size_t n = path ? strlen(path) : 0;
	return n > 4 && !strcasecmp(path + n - 4, ".vmx");
}

/* Well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static bool vmx_utf8_ok(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i], len = c < 0x80         ? 1
		                         : (c >> 5) == 6  ? 2
		                         : (c >> 4) == 14 ? 3
		                         : (c >> 3) == 30 ? 4
		                                          : 0;
		if (!len || i + len > n)
			return false;
		unsigned cp = len == 1 ? c : c & (0x7f >> len);
		for (unsigned k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
		if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static int vmx_hex(int c)
{
	return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

/* Value with VMware's "|XX" escapes decoded ("|22" is a quote); NULL on
 * a NUL byte or no memory. */
static char *vmx_unescape(const char *s, size_t n, bool *nul)
{
	char *out = malloc(n + 1);
	size_t j = 0;
	*nul = false;
	for (size_t i = 0; out && i < n; i++) {
		int hi = i + 2 < n && s[i] == '|' ? vmx_hex((unsigned char)s[i + 1]) : -1;
		int lo = hi >= 0 ? vmx_hex((unsigned char)s[i + 2]) : -1;
		if (hi >= 0 && lo >= 0) {
			out[j++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[j++] = s[i];
		}
		if (j && !out[j - 1])
			*nul = true;
	}
	if (out)
		out[j] = 0;
	if (out && *nul) {
		free(out);
		out = NULL;
	}
	return out;
}

static bool vmx_key_ok(const char *k, size_t n)
{
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k[i] <= ' ' || (unsigned char)k[i] >= 0x7f || k[i] == '"')
			return false;
	return true;
}

static void vmx_trim(const char **s, const char **end)
{
	while (*s < *end && (**s == ' ' || **s == '\t'))
		(*s)++;
	while (*end > *s && ((*end)[-1] == ' ' || (*end)[-1] == '\t' || (*end)[-1] == '\r'))
		(*end)--;
}

/* One line into the table: 1 added, 0 skipped (blank, comment, not
 * key = value), negative on error. */
static int vmx_line(struct vmx_tab *t, const char *s, const char *end, uint64_t off,
                    struct vdk_err *e)
{
	vmx_trim(&s, &end);
	if (s == end || *s == '#')
		return 0;
	const char *eq = memchr(s, '=', (size_t)(end - s));
	if (!eq)
		return 0;
	const char *ks = s, *ke = eq, *vs = eq + 1, *ve = end;
	vmx_trim(&ks, &ke);
	vmx_trim(&vs, &ve);
	if (!vmx_key_ok(ks, (size_t)(ke - ks)))
		return 0;
	if (ve > vs && *vs == '"') {
		/* Quoted: the closing quote ends the line (escapes hide inner ones). */
		if (ve - vs < 2 || ve[-1] != '"')
			return 0;
		vs++;
		ve--;
	}
	bool nul;
	struct vmx_kv *kv = &t->v[t->n];
	kv->key = strndup(ks, (size_t)(ke - ks));
	kv->val = vmx_unescape(vs, (size_t)(ve - vs), &nul);
	kv->order = off;
	if (!kv->key || !kv->val) {
		free(kv->key);
		free(kv->val);
		if (nul)
			return vdk_bad(e, t->name, "vmx", off, "value of %.*s holds a NUL byte",
			               (int)(ke - ks), ks);
		return vdk_ioerr(e, ENOMEM, t->name, "out of memory");
	}
	for (char *c = kv->key; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	t->n++;
	return 1;
}

static int vmx_kv_cmp(const void *a, const void *b)
{
	const struct vmx_kv *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : (x->order < y->order ? -1 : x->order > y->order);
}

static void vmx_tab_free(struct vmx_tab *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].key);
		free(t->v[i].val);
	}
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

/* Sort and drop later duplicates (virt-v2v: "duplicate key ignored"). */
static void vmx_tab_dedup(struct vmx_tab *t)
{
	qsort(t->v, t->n, sizeof(*t->v), vmx_kv_cmp);
	size_t j = 0;
	for (size_t i = 0; i < t->n; i++) {
		if (j && !strcmp(t->v[j - 1].key, t->v[i].key)) {
			free(t->v[i].key);
			free(t->v[i].val);
			continue;
		}
		t->v[j++] = t->v[i];
	}
	t->n = j;
}

/* Latin-1 to UTF-8; the C1 range (Windows-1252's curly quotes and
 * such) becomes '?'. */
static char *vmx_latin1(const char *v)
{
	size_t n = strlen(v);
	char *out = malloc(2 * n + 1), *o = out;
	for (const unsigned char *c = (const unsigned char *)v; out && *c; c++) {
		if (*c < 0x80) {
			*o++ = (char)*c;
		} else if (*c < 0xa0) {
			*o++ = '?';
		} else {
			*o++ = (char)(0xc0 | (*c >> 6));
			*o++ = (char)(0x80 | (*c & 0x3f));
		}
	}
	if (out)
		*o = 0;
	return out;
}

/* Values are UTF-8 unless .encoding names a Latin-1 code page (old
 * Workstation on Windows wrote "windows-1252"); those are converted, and
 * any other encoding is refused when a value needs it. */
static int vmx_tab_encoding(struct vmx_tab *t, const char *enc, struct vdk_err *e)
{
	bool latin1 = enc && (!strcasecmp(enc, "windows-1252") || !strcasecmp(enc, "iso-8859-1") ||
	                      !strcasecmp(enc, "latin1"));
	bool utf8 = !enc || !strcasecmp(enc, "utf-8") || !strcasecmp(enc, "utf8");
	for (size_t i = 0; i < t->n; i++) {
		struct vmx_kv *kv = &t->v[i];
		bool ascii = true;
		for (const char *c = kv->val; *c; c++)
			ascii &= (unsigned char)*c < 0x80;
		if (ascii || (utf8 && vmx_utf8_ok((const unsigned char *)kv->val, strlen(kv->val))))
			continue;
		if (!latin1)
			return vdk_bad(e, t->name, "vmx", kv->order, "value of %s is not %s",
			               kv->key, utf8 ? "UTF-8" : "in a supported encoding");
		char *v = vmx_latin1(kv->val);
		if (!v)
			return vdk_ioerr(e, ENOMEM, t->name, "out of memory");
		free(kv->val);
		kv->val = v;
	}
	return 0;
}

static int vmx_tab_build(struct vmx_tab *t, const uint8_t *buf, size_t len, size_t *skipped,
                         struct vdk_err *e)
{
	size_t lines = 1;
	for (size_t i = 0; i < len; i++)
		lines += buf[i] == '\n';
	t->v = calloc(lines, sizeof(*t->v));
	if (!t->v)
		return vdk_ioerr(e, ENOMEM, t->name, "out of memory");
	const char *p = (const char *)buf, *end = p + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if (memchr(p, 0, (size_t)(le - p)))
			return vdk_bad(e, t->name, "vmx", (uint64_t)(p - (const char *)buf),
			               "NUL byte in a line: not a .vmx");
		int r = vmx_line(t, p, le, (uint64_t)(p - (const char *)buf), e);
		if (r < 0)
			return r;
		if (r == 0 && le > p && *p != '#' && *p != '\r')
			(*skipped)++;
		p = nl ? nl + 1 : end;
	}
	vmx_tab_dedup(t);
	return 0;
}

static const char *vmx_get(const struct vmx_tab *t, const char *key)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcasecmp(t->v[mid].key, key);
		if (!c)
			return t->v[mid].val;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static const char *vmx_getf(const struct vmx_tab *t, const char *ns, const char *key)
{
	char k[96];
	snprintf(k, sizeof(k), "%s.%s", ns, key);
	return vmx_get(t, k);
}

/* VMware writes TRUE/FALSE in any case; absent is true (virt-v2v keeps a
 * device whose present key is missing). */
static bool vmx_present(const struct vmx_tab *t, const char *ns)
{
	const char *v = vmx_getf(t, ns, "present");
	return !v ||
	       !(strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0);
}

static bool vmx_true(const char *v)
{
	return v && (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes"));
}

/* Decimal in [0, max]; false when absent or malformed. */
static bool vmx_num(const char *v, uint64_t max, uint64_t *out)
{
	if (!v || !*v)
		return false;
	uint64_t n = 0;
	for (const char *c = v; *c; c++) {
		if (!isdigit((unsigned char)*c) || vdk_mul_overflow(n, 10, &n) ||
		    vdk_add_overflow(n, (uint64_t)(*c - '0'), &n))
			return false;
	}
	if (n > max)
		return false;
	*out = n;
	return true;
}

static char *vmx_lower_dup(const char *v)
{
	char *s = v ? strdup(v) : NULL;
	for (char *c = s; c && *c; c++)
		*c = (char)tolower((unsigned char)*c);
	return s;
}

/* "scsi0:1" style prefix of key: bus, controller and unit. */
static bool vmx_dev_ns(const char *key, enum vmx_bus *bus, unsigned *c, unsigned *u)
{
	for (unsigned b = 0; b < VDK_ARRAY_SIZE(vmx_bus_names); b++) {
		size_t n = strlen(vmx_bus_names[b]);
		if (strncmp(key, vmx_bus_names[b], n))
			continue;
		const char *p = key + n;
		char *end;
		if (!isdigit((unsigned char)*p))
			return false;
		unsigned long cc = strtoul(p, &end, 10);
		if (*end != ':' || !isdigit((unsigned char)end[1]) || end - p > 2)
			return false;
		p = end + 1;
		unsigned long uu = strtoul(p, &end, 10);
		if (*end != '.' || end - p > 2 || cc >= VMX_MAX_CTRL || uu >= VMX_MAX_UNIT)
			return false;
		*bus = (enum vmx_bus)b;
		*c = (unsigned)cc;
		*u = (unsigned)uu;
		return true;
	}
	return false;
}

/* "ethernet3." / "scsi2." prefixes: the index, or -1. */
static int vmx_ns_index(const char *key, const char *prefix, unsigned max)
{
	size_t n = strlen(prefix);
	if (strncmp(key, prefix, n) || !isdigit((unsigned char)key[n]))
		return -1;
	char *end;
	unsigned long i = strtoul(key + n, &end, 10);
	return *end == '.' && end - (key + n) <= 2 && i < max ? (int)i : -1;
}

static bool vmx_cdrom_type(const char *dt)
{
	return dt && (!strcmp(dt, "cdrom-image") || !strcmp(dt, "cdrom-raw") ||
	              !strcmp(dt, "atapi-cdrom"));
}

static bool vmx_ends_vmdk(const char *f)
{
	size_t n = f ? strlen(f) : 0;
	return n > 5 && !strcasecmp(f + n - 5, ".vmdk");
}

/* Which deviceTypes are hard disks on each bus (virt-v2v's lists; an IDE
 * entry without a deviceType counts when it names a .vmdk). */
static bool vmx_disk_type(enum vmx_bus b, const char *dt, const char *file)
{
	if (!file)
		return false;
	if (!dt)
		return b != VMX_IDE || vmx_ends_vmdk(file);
	if (!strcmp(dt, "disk"))
		return true;
	if (b == VMX_SCSI)
		return !strcmp(dt, "plaindisk") || !strcmp(dt, "rawdisk") ||
		       !strcmp(dt, "scsi-harddisk");
	return b == VMX_IDE && !strcmp(dt, "ata-harddisk");
}

struct vmx_seen {
	bool dev[4][VMX_MAX_CTRL][VMX_MAX_UNIT];
	bool ctrl[4][VMX_MAX_CTRL];
	bool nic[VMX_MAX_NICS];
};

static void vmx_scan(const struct vmx_tab *t, struct vmx_seen *s)
{
	for (size_t i = 0; i < t->n; i++) {
		const char *k = t->v[i].key;
		enum vmx_bus b;
		unsigned c, u;
		int x;
		if (vmx_dev_ns(k, &b, &c, &u)) {
			s->dev[b][c][u] = true;
			s->ctrl[b][c] = true;
		} else if ((x = vmx_ns_index(k, "ethernet", VMX_MAX_NICS)) >= 0) {
			s->nic[x] = true;
		}
		for (unsigned bb = 0; bb < 4; bb++)
			if ((x = vmx_ns_index(k, vmx_bus_names[bb], VMX_MAX_CTRL)) >= 0)
				s->ctrl[bb][x] = true;
	}
}

/* VMware picks the SCSI HBA by guest when virtualDev is absent (libvirt
 * notes as much): BusLogic for the 32-bit Windows of its day, LSI Logic
 * otherwise. */
static const char *vmx_default_scsi(const char *guest)
{
	static const char *const old[] = {"winnt",          "win2000pro", "win2000serv",
	                                  "win2000advserv", "winxphome",  "winxppro",
	                                  "winnetweb"};
	for (size_t i = 0; guest && i < VDK_ARRAY_SIZE(old); i++)
		if (!strcmp(guest, old[i]))
			return "buslogic";
	return "lsilogic";
}

static int vmx_add_ctrl(const struct vmx_tab *t, struct vmx_vm *vm, enum vmx_bus b, unsigned c)
{
	static const char *const fixed[] = {NULL, "nvme", "ahci", "ide"};
	char ns[16];
	snprintf(ns, sizeof(ns), "%s%u", vmx_bus_names[b], c);
	struct vmx_ctrl *x = &vm->ctrls[vm->nctrls];
	const char *dev = b == VMX_SCSI ? vmx_getf(t, ns, "virtualdev") : NULL;
	x->bus = b;
	x->index = c;
	x->present = vmx_present(t, ns);
	x->model = vmx_lower_dup(dev             ? dev
	                         : b == VMX_SCSI ? vmx_default_scsi(vm->guest_os)
	                                         : fixed[b]);
	if (!x->model)
		return -ENOMEM;
	vm->nctrls++;
	return 0;
}

static int vmx_add_dev(const struct vmx_tab *t, struct vmx_vm *vm, enum vmx_bus b, unsigned c,
                       unsigned u)
{
	char ns[24], cns[16];
	snprintf(ns, sizeof(ns), "%s%u:%u", vmx_bus_names[b], c, u);
	snprintf(cns, sizeof(cns), "%s%u", vmx_bus_names[b], c);
	const char *file = vmx_getf(t, ns, "filename");
	char *dt = vmx_lower_dup(vmx_getf(t, ns, "devicetype"));
	if (vmx_getf(t, ns, "devicetype") && !dt)
		return -ENOMEM;
	bool cd = vmx_cdrom_type(dt);
	if (!cd && !vmx_disk_type(b, dt, file)) {
		free(dt);
		return 0; /* a floppy, a passthrough device, a leftover key */
	}
	struct vmx_dev *d = cd ? &vm->cdroms[vm->ncdroms] : &vm->disks[vm->ndisks];
	d->bus = b;
	d->ctrl = c;
	d->unit = u;
	d->device_type = dt;
	d->cdrom = cd;
	d->present = vmx_present(t, ns) && vmx_present(t, cns);
	d->file = file ? strdup(file) : NULL;
	if (file && !d->file) {
		free(dt);
		return -ENOMEM;
	}
	if (cd)
		vm->ncdroms++;
	else
		vm->ndisks++;
	return 0;
}

static int vmx_add_nic(const struct vmx_tab *t, struct vmx_vm *vm, unsigned i)
{
	char ns[16];
	snprintf(ns, sizeof(ns), "ethernet%u", i);
	struct vmx_nic *n = &vm->nics[vm->nnics];
	const char *model = vmx_getf(t, ns, "virtualdev");
	const char *net = vmx_getf(t, ns, "networkname");
	const char *at = vmx_getf(t, ns, "addresstype");
	/* A static MAC sits in "address"; generated and vCenter-assigned
	 * ("vpx") ones in "generatedAddress". */
	const char *mac = at && !strcasecmp(at, "static") ? vmx_getf(t, ns, "address")
	                                                  : vmx_getf(t, ns, "generatedaddress");
	if (!mac)
		mac = vmx_getf(t, ns, "address");
	/* Without virtualDev VMware gives 64-bit guests an E1000 and older
	 * ones the PCnet32 (vlance); no guestOS reads as "other-64". */
	size_t gl = vm->guest_os ? strlen(vm->guest_os) : 0;
	bool g64 = !vm->guest_os || (gl > 3 && !strcmp(vm->guest_os + gl - 3, "-64"));
	n->index = i;
	n->model = vmx_lower_dup(model ? model : g64 ? "e1000" : "vlance");
	n->network = strdup(net ? net : ns);
	n->mac = mac ? vmx_lower_dup(mac) : NULL;
	n->address_type = at ? vmx_lower_dup(at) : NULL;
	const char *ct = vmx_getf(t, ns, "connectiontype");
	n->connection_type = ct ? vmx_lower_dup(ct) : NULL;
	n->present = vmx_present(t, ns);
	vm->nnics++;
	if (!n->model || !n->network || (mac && !n->mac) || (at && !n->address_type) ||
	    (ct && !n->connection_type))
		return -ENOMEM;
	return 0;
}

static int vmx_devices(const struct vmx_tab *t, struct vmx_vm *vm)
{
	struct vmx_seen *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	vmx_scan(t, s);
	size_t nd = 0, nc = 0, nn = 0;
	for (unsigned b = 0; b < 4; b++)
		for (unsigned c = 0; c < VMX_MAX_CTRL; c++) {
			nc += s->ctrl[b][c];
			for (unsigned u = 0; u < VMX_MAX_UNIT; u++)
				nd += s->dev[b][c][u];
		}
	for (unsigned i = 0; i < VMX_MAX_NICS; i++)
		nn += s->nic[i];
	vm->ctrls = calloc(nc + 1, sizeof(*vm->ctrls));
	vm->disks = calloc(nd + 1, sizeof(*vm->disks));
	vm->cdroms = calloc(nd + 1, sizeof(*vm->cdroms));
	vm->nics = calloc(nn + 1, sizeof(*vm->nics));
	int r = vm->ctrls && vm->disks && vm->cdroms && vm->nics ? 0 : -ENOMEM;
	for (unsigned b = 0; r == 0 && b < 4; b++)
		for (unsigned c = 0; r == 0 && c < VMX_MAX_CTRL; c++) {
			if (s->ctrl[b][c])
				r = vmx_add_ctrl(t, vm, (enum vmx_bus)b, c);
			for (unsigned u = 0; r == 0 && u < VMX_MAX_UNIT; u++)
				if (s->dev[b][c][u])
					r = vmx_add_dev(t, vm, (enum vmx_bus)b, c, u);
		}
	for (unsigned i = 0; r == 0 && i < VMX_MAX_NICS; i++)
		if (s->nic[i])
			r = vmx_add_nic(t, vm, i);
	free(s);
	return r;
}

static int vmx_scalars(const struct vmx_tab *t, struct vmx_vm *vm, struct vdk_err *e)
{
	uint64_t v;
	const char *s = vmx_get(t, "displayname");
	if (s && !(vm->name = strdup(s)))
		return vdk_ioerr(e, ENOMEM, t->name, "out of memory");
	s = vmx_get(t, "guestos");
	if (s && !(vm->guest_os = vmx_lower_dup(s)))
		return vdk_ioerr(e, ENOMEM, t->name, "out of memory");
	/* memSize is MiB; VMware's default is really 32 MiB. 64 TiB is past
	 * any host vSphere runs on. */
	vm->mem_mib = 32;
	s = vmx_get(t, "memsize");
	if (s && !vmx_num(s, 64ull << 20, &vm->mem_mib))
		return vdk_bad(e, t->name, "vmx", VDK_NO_OFFSET, "bad memSize \"%s\"", s);
	vm->cpus = 1;
	s = vmx_get(t, "numvcpus");
	if (s && (!vmx_num(s, 4096, &v) || v == 0))
		return vdk_bad(e, t->name, "vmx", VDK_NO_OFFSET, "bad numvcpus \"%s\"", s);
	if (s)
		vm->cpus = (unsigned)v;
	s = vmx_get(t, "cpuid.corespersocket");
	if (s && (!vmx_num(s, 4096, &v) || v == 0))
		return vdk_bad(e, t->name, "vmx", VDK_NO_OFFSET, "bad cpuid.coresPerSocket \"%s\"",
		               s);
	vm->cores_per_socket = s ? (unsigned)v : 0;
	s = vmx_get(t, "virtualhw.version");
	if (s && !vmx_num(s, 255, &v))
		return vdk_bad(e, t->name, "vmx", VDK_NO_OFFSET, "bad virtualHW.version \"%s\"", s);
	vm->hw_version = s ? (unsigned)v : 0;
	s = vmx_get(t, "firmware");
	vm->efi = s && !strcasecmp(s, "efi");
	vm->secure_boot = vmx_true(vmx_get(t, "uefi.secureboot.enabled"));
	return 0;
}

/* Files people hand over by mistake (virt-v2v sees VMDKs given as .vmx). */
static bool vmx_looks_vmdk(const uint8_t *buf, size_t len)
{
	static const char desc[] = "# Disk DescriptorFile";
	return (len >= 4 && (!memcmp(buf, "KDMV", 4) || !memcmp(buf, "VMDK", 4))) ||
	       (len >= sizeof(desc) - 1 && !memcmp(buf, desc, sizeof(desc) - 1));
}

int vmx_parse(const uint8_t *buf, size_t len, const char *name, struct vmx_vm *vm,
              struct vdk_err *e)
{
	memset(vm, 0, sizeof(*vm));
	if (len > VMX_MAX)
		return vdk_bad(e, name, "vmx", VDK_NO_OFFSET,
		               "%zu bytes: larger than any .vmx (at most %u)", len, VMX_MAX);
	if (vmx_looks_vmdk(buf, len))
		return vdk_bad(e, name, "vmx", 0, "this is a VMDK disk, not a .vmx");
	struct vmx_tab t = {.name = name};
	int r = vmx_tab_build(&t, buf, len, &vm->skipped_lines, e);
	if (r == 0 && t.n == 0)
		r = vdk_bad(e, name, "vmx", 0, "no key = \"value\" lines: not a .vmx");
	if (r == 0)
		r = vmx_tab_encoding(&t, vmx_get(&t, ".encoding"), e);
	if (r == 0)
		r = vmx_scalars(&t, vm, e);
	if (r == 0 && vmx_devices(&t, vm) < 0)
		r = vdk_ioerr(e, ENOMEM, name, "out of memory");
	vmx_tab_free(&t);
	if (r < 0)
		vmx_free(vm);
	return r;
}

static void vmx_dev_free(struct vmx_dev *d, size_t n)
{
	for (size_t i = 0; d && i < n; i++) {
		free(d[i].device_type);
		free(d[i].file);
	}
	free(d);
}

void vmx_free(struct vmx_vm *vm)
{
	free(vm->name);
	free(vm->guest_os);
	for (size_t i = 0; vm->ctrls && i < vm->nctrls; i++)
		free(vm->ctrls[i].model);
	free(vm->ctrls);
	vmx_dev_free(vm->disks, vm->ndisks);
	vmx_dev_free(vm->cdroms, vm->ncdroms);
	for (size_t i = 0; vm->nics && i < vm->nnics; i++) {
		struct vmx_nic *n = &vm->nics[i];
		free(n->model);
		free(n->network);
		free(n->mac);
		free(n->address_type);
		free(n->connection_type);
	}
	free(vm->nics);
	memset(vm, 0, sizeof(*vm));
}

const struct vmx_ctrl *vmx_ctrl_of(const struct vmx_vm *vm, const struct vmx_dev *d)
{
	for (size_t i = 0; i < vm->nctrls; i++)
		if (vm->ctrls[i].bus == d->bus && vm->ctrls[i].index == d->ctrl)
			return &vm->ctrls[i];
	return NULL;
}
