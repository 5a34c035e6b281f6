/* OVF descriptors (DSP0243) with libxml2: read from a size-capped buffer
 * with the network off, no entity substitution and no DTD; a DOCTYPE is
 * refused outright (XXE, billion laughs). Versions: 0.9 (VMware's
 * namespace, Content/Section with xsi:type), 1.x and 2.x (VirtualBox
 * writes 2.0 with StorageItem/EthernetPortItem). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "ova_private.h"
#include "util.h"

static const char *ovf_fmt = "ovf";

#define OVF_NS_09     "http://www.vmware.com/schema/ovf/1/envelope"
#define OVF_NS_1      "http://schemas.dmtf.org/ovf/envelope/1"
#define OVF_NS_2      "http://schemas.dmtf.org/ovf/envelope/2"
#define OVF_MAX_ITEMS 4096

struct ovf_ctx {
	struct ova_ovf *o;
	const char *name;
	struct vdk_err *e;
	const char *config; /* the default DeploymentOption, or NULL */
};

/* An allocation that fails while the tree is walked must not read as an
 * absent attribute ("File without href"): it is noted here and the whole
 * parse fails as out of memory. One parse runs per thread at a time. */
static _Thread_local bool ovf_oom;

static char *ovf_dup(const char *s)
{
	char *d = strdup(s);
	ovf_oom |= !d;
	return d;
}

static char *ovf_ndup(const char *s, size_t n)
{
	char *d = strndup(s, n);
	ovf_oom |= !d;
	return d;
}

/* Tree helpers: elements by local name, any namespace. -------------- */

static bool ovf_is(const xmlNode *n, const char *local)
{
	return n && n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, local);
}

static char *ovf_attr(const xmlNode *n, const char *local)
{
	for (const xmlAttr *a = n->properties; a; a = a->next) {
		if (strcmp((const char *)a->name, local))
			continue;
		xmlChar *v = xmlNodeGetContent((const xmlNode *)a);
		char *s = v ? ovf_dup((const char *)v) : NULL;
		xmlFree(v);
		return s;
	}
	return NULL;
}

/* OVF 0.9 spells sections as <Section xsi:type="ovf:X_Type">. */
static bool ovf_is_section(const xmlNode *n, const char *local)
{
	if (ovf_is(n, local))
		return true;
	if (!ovf_is(n, "Section") && !ovf_is(n, "Content"))
		return false;
	char *t = ovf_attr(n, "type");
	bool ok = false;
	if (t) {
		const char *c = strchr(t, ':');
		c = c ? c + 1 : t;
		size_t l = strlen(local);
		ok = !strncmp(c, local, l) && !strcmp(c + l, "_Type");
	}
	free(t);
	return ok;
}

static xmlNode *ovf_child(const xmlNode *n, const char *local)
{
	for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
		if (ovf_is_section(c, local))
			return c;
	return NULL;
}

static char *ovf_text(const xmlNode *n, const char *local)
{
	xmlNode *c = ovf_child(n, local);
	if (!c)
		return NULL;
	xmlChar *v = xmlNodeGetContent(c);
	if (!v)
		return NULL;
	const char *s = (const char *)v;
	while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')
		s++;
	size_t len = strlen(s);
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\n' || s[len - 1] == '\t' ||
	               s[len - 1] == '\r'))
		len--;
	char *out = ovf_ndup(s, len);
	xmlFree(v);
	return out;
}

static bool ovf_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (!s || !*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (vdk_mul_overflow(v, 10, &v) || vdk_add_overflow(v, (uint64_t)(*s - '0'), &v))
			return false;
	}
	*out = v;
	return true;
}

/* "byte", "byte * 2^30", "byte * 10^9", "byte * 1024", and the names some
 * producers write ("MegaBytes", "MB", "GB"). */
bool ova_ovf_units(const char *s, uint64_t *mult)
{
	static const struct {
		const char *n;
		unsigned shift;
	} names[] = {{"KB", 10},        {"MB", 20},        {"GB", 30},        {"TB", 40},
	             {"KiloBytes", 10}, {"MegaBytes", 20}, {"GigaBytes", 30}, {"TeraBytes", 40},
	             {"KiB", 10},       {"MiB", 20},       {"GiB", 30},       {"TiB", 40}};
	if (!s || !*s) {
		*mult = 1;
		return true;
	}
	while (*s == ' ')
		s++;
	for (size_t i = 0; i < VDK_ARRAY_SIZE(names); i++)
		if (!strcasecmp(s, names[i].n)) {
			*mult = 1ull << names[i].shift;
			return true;
		}
	if (strncasecmp(s, "byte", 4))
		return false;
	s += 4;
	if (*s == 's' || *s == 'S')
		s++;
	while (*s == ' ')
		s++;
	if (!*s) {
		*mult = 1;
		return true;
	}
	if (*s++ != '*')
		return false;
	while (*s == ' ')
		s++;
	char *end;
	errno = 0;
	unsigned long long base = strtoull(s, &end, 10);
	if (errno || end == s || base == 0)
		return false;
	uint64_t m = base;
	if (*end == '^') {
		s = end + 1;
		unsigned long long ex = strtoull(s, &end, 10);
		if (errno || end == s || ex > 64)
			return false;
		m = 1;
		for (unsigned long long i = 0; i < ex; i++)
			if (vdk_mul_overflow(m, base, &m))
				return false;
	}
	while (*end == ' ')
		end++;
	if (*end)
		return false;
	*mult = m;
	return true;
}

/* References ------------------------------------------------------- */

static int ovf_file(struct ovf_ctx *c, const xmlNode *n, struct ova_file *f)
{
	char *sz = ovf_attr(n, "size"), *comp = ovf_attr(n, "compression"),
	     *chunk = ovf_attr(n, "chunkSize");
	int r = 0;
	f->href = ovf_attr(n, "href");
	f->id = ovf_attr(n, "id");
	if (!f->href || !f->id)
		r = vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET,
		            "References/File without href or id");
	else if (!ova_name_ok(f->href))
		r = vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET,
		            "file href \"%.200s\" is not a plain relative name", f->href);
	else if (sz && !(f->has_size = ovf_u64(sz, &f->size)))
		r = vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET, "bad size for file %.200s",
		            f->href);
	else if (comp && strcmp(comp, "gzip") && strcmp(comp, "identity"))
		r = vdk_unsup(c->e, c->name, ovf_fmt, VDK_NO_OFFSET,
		              "compression \"%.50s\" of %.200s is not supported", comp, f->href);
	else if (chunk && (!ovf_u64(chunk, &f->chunk) || f->chunk == 0))
		r = vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET, "bad chunkSize for %.200s",
		            f->href);
	f->gzip = comp && !strcmp(comp, "gzip");
	free(sz);
	free(comp);
	free(chunk);
	return r;
}

static int ovf_references(struct ovf_ctx *c, const xmlNode *env)
{
	const xmlNode *refs = ovf_child(env, "References");
	struct ova_ovf *o = c->o;
	for (const xmlNode *n = refs ? refs->children : NULL; n; n = n->next) {
		if (!ovf_is(n, "File"))
			continue;
		if (o->nfiles >= OVF_MAX_ITEMS)
			return vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET, "too many files");
		struct ova_file *v = realloc(o->files, (o->nfiles + 1) * sizeof(*v));
		if (!v)
			return vdk_ioerr(c->e, ENOMEM, c->name, "out of memory");
		o->files = v;
		memset(&v[o->nfiles], 0, sizeof(*v));
		int r = ovf_file(c, n, &v[o->nfiles++]);
		if (r < 0)
			return r;
		for (size_t i = 0; i + 1 < o->nfiles; i++)
			if (!strcmp(v[i].id, v[o->nfiles - 1].id) ||
			    !strcmp(v[i].href, v[o->nfiles - 1].href))
				return vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET,
				               "file %.200s is referenced twice", v[i].href);
	}
	return 0;
}

/* DiskSection ------------------------------------------------------ */

static int ovf_disk(struct ovf_ctx *c, const xmlNode *n, struct ova_disk *d)
{
	char *cap = ovf_attr(n, "capacity"), *units = ovf_attr(n, "capacityAllocationUnits"),
	     *pop = ovf_attr(n, "populatedSize");
	uint64_t v, m;
	int r = 0;
	d->id = ovf_attr(n, "diskId");
	d->file_ref = ovf_attr(n, "fileRef");
	d->format = ovf_attr(n, "format");
	d->file = -1;
	d->address = -1;
	if (!d->id)
		r = vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET, "Disk without diskId");
	else if (!ovf_u64(cap, &v))
		r = vdk_unsup(c->e, c->name, ovf_fmt, VDK_NO_OFFSET,
		              "disk %.100s: capacity \"%.50s\" is not a number", d->id,
		              cap ? cap : "");
	else if (!ova_ovf_units(units, &m))
		r = vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET,
		            "disk %.100s: bad capacityAllocationUnits \"%.50s\"", d->id, units);
	else if (vdk_mul_overflow(v, m, &d->capacity))
		r = vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET,
		            "disk %.100s: capacity overflows", d->id);
	else if (pop && !(d->has_populated = ovf_u64(pop, &d->populated)))
		r = vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET, "disk %.100s: bad populatedSize",
		            d->id);
	for (size_t i = 0; r == 0 && d->file_ref && i < c->o->nfiles; i++)
		if (!strcmp(c->o->files[i].id, d->file_ref))
			d->file = (int)i;
	if (r == 0 && d->file_ref && d->file < 0)
		r = vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET,
		            "disk %.100s refers to unknown file %.100s", d->id, d->file_ref);
	free(cap);
	free(units);
	free(pop);
	return r;
}

static int ovf_disks(struct ovf_ctx *c, const xmlNode *env)
{
	const xmlNode *ds = ovf_child(env, "DiskSection");
	struct ova_ovf *o = c->o;
	for (const xmlNode *n = ds ? ds->children : NULL; n; n = n->next) {
		if (!ovf_is(n, "Disk"))
			continue;
		if (o->ndisks >= OVF_MAX_ITEMS)
			return vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET, "too many disks");
		struct ova_disk *v = realloc(o->disks, (o->ndisks + 1) * sizeof(*v));
		if (!v)
			return vdk_ioerr(c->e, ENOMEM, c->name, "out of memory");
		o->disks = v;
		memset(&v[o->ndisks], 0, sizeof(*v));
		int r = ovf_disk(c, n, &v[o->ndisks++]);
		if (r < 0)
			return r;
	}
	return 0;
}

/* VirtualHardwareSection -------------------------------------------- */

static bool ovf_item_selected(struct ovf_ctx *c, const xmlNode *it, bool configured_pass)
{
	char *cfg = ovf_attr(it, "configuration");
	bool sel = false;
	if (!cfg)
		sel = !configured_pass;
	else if (configured_pass && c->config) {
		size_t l = strlen(c->config);
		for (const char *p = cfg; (p = strstr(p, c->config)); p += l)
			if ((p == cfg || p[-1] == ' ') && (p[l] == 0 || p[l] == ' '))
				sel = true;
	}
	free(cfg);
	return sel;
}

static const char *ovf_ctrl_type(int rt, const char *sub)
{
	switch (rt) {
	case 5:
		return "ide";
	case 6:
		return "scsi";
	case 20:
		if (sub && (strcasestr(sub, "nvme")))
			return "nvme";
		return "sata";
	default:
		return NULL;
	}
}

static int ovf_push_str3(void **arr, size_t *n, size_t sz, char *a, char *b, char *cc)
{
	char **v = realloc(*arr, (*n + 1) * sz);
	if (!v) {
		free(a);
		free(b);
		free(cc);
		return -ENOMEM;
	}
	*arr = v;
	char **slot = (char **)((uint8_t *)v + *n * sz);
	slot[0] = a;
	slot[1] = b;
	slot[2] = cc;
	(*n)++;
	return 0;
}

static void ovf_disk_item(struct ovf_ctx *c, const xmlNode *it)
{
	char *hr = ovf_text(it, "HostResource"), *parent = ovf_text(it, "Parent"),
	     *addr = ovf_text(it, "AddressOnParent");
	const char *id = hr ? strstr(hr, "/disk/") : NULL;
	for (size_t i = 0; id && i < c->o->ndisks; i++) {
		struct ova_disk *d = &c->o->disks[i];
		if (strcmp(d->id, id + 6))
			continue;
		uint64_t a;
		if (addr && ovf_u64(addr, &a) && a < INT64_MAX)
			d->address = (int64_t)a;
		for (size_t k = 0; parent && k < c->o->nctrls; k++) {
			if (!c->o->ctrls[k].id || strcmp(c->o->ctrls[k].id, parent))
				continue;
			free(d->controller);
			free(d->ctrl_subtype);
			d->controller = c->o->ctrls[k].type ? ovf_dup(c->o->ctrls[k].type) : NULL;
			d->ctrl_subtype =
			    c->o->ctrls[k].subtype ? ovf_dup(c->o->ctrls[k].subtype) : NULL;
		}
	}
	free(hr);
	free(parent);
	free(addr);
}

static int ovf_item(struct ovf_ctx *c, const xmlNode *it, bool disks_pass)
{
	char *rts = ovf_text(it, "ResourceType");
	uint64_t rt = 0, q;
	bool ok = ovf_u64(rts, &rt);
	free(rts);
	if (!ok)
		return 0;
	if (disks_pass) {
		if (rt == 17)
			ovf_disk_item(c, it);
		return 0;
	}
	struct ova_ovf *o = c->o;
	char *vq = ovf_text(it, "VirtualQuantity");
	if (rt == 3 && ovf_u64(vq, &q)) {
		o->cpus = q;
	} else if (rt == 4 && ovf_u64(vq, &q)) {
		char *u = ovf_text(it, "AllocationUnits");
		uint64_t m;
		if (!u || !ova_ovf_units(u, &m))
			m = 1ull << 20; /* DSP0243 default for memory is MB */
		if (vdk_mul_overflow(q, m, &o->memory))
			o->memory = 0;
		free(u);
	} else if (rt == 10) {
		if (o->nnics < OVF_MAX_ITEMS &&
		    ovf_push_str3((void **)&o->nics, &o->nnics, sizeof(struct ova_nic),
		                  ovf_text(it, "ElementName"), ovf_text(it, "ResourceSubType"),
		                  ovf_text(it, "Connection")) < 0)
			goto nomem;
	} else if (rt == 5 || rt == 6 || rt == 20) {
		char *sub = ovf_text(it, "ResourceSubType");
		const char *type = ovf_ctrl_type((int)rt, sub);
		if (o->nctrls < OVF_MAX_ITEMS &&
		    ovf_push_str3((void **)&o->ctrls, &o->nctrls, sizeof(struct ova_ctrl),
		                  ovf_text(it, "InstanceID"), ovf_dup(type), sub) < 0)
			goto nomem;
	}
	free(vq);
	return 0;
nomem:
	free(vq);
	return vdk_ioerr(c->e, ENOMEM, c->name, "out of memory");
}

static bool ovf_is_item(const xmlNode *n)
{
	return ovf_is(n, "Item") || ovf_is(n, "StorageItem") || ovf_is(n, "EthernetPortItem");
}

static int ovf_hardware(struct ovf_ctx *c, const xmlNode *vs)
{
	const xmlNode *hw = ovf_child(vs, "VirtualHardwareSection");
	if (!hw)
		return 0;
	/* Unconfigured items, then the default configuration's, which win;
	 * disks last so their controllers are known. */
	for (int pass = 0; pass < 3; pass++) {
		for (const xmlNode *n = hw->children; n; n = n->next) {
			if (!ovf_is_item(n) || !ovf_item_selected(c, n, pass == 1))
				continue;
			int r = ovf_item(c, n, false);
			if (r < 0)
				return r;
		}
		if (pass == 1)
			break;
	}
	for (const xmlNode *n = hw->children; n; n = n->next)
		if (ovf_is_item(n) &&
		    (ovf_item_selected(c, n, false) || ovf_item_selected(c, n, true)))
			ovf_item(c, n, true);
	for (const xmlNode *n = hw->children; n; n = n->next) {
		if (!ovf_is(n, "Config"))
			continue;
		char *k = ovf_attr(n, "key"), *v = ovf_attr(n, "value");
		if (k && v && !strcmp(k, "firmware")) {
			free(c->o->firmware);
			c->o->firmware = v;
			v = NULL;
		}
		free(k);
		free(v);
	}
	return 0;
}

/* Envelope ---------------------------------------------------------- */

static void ovf_default_config(struct ovf_ctx *c, const xmlNode *env, char **out)
{
	const xmlNode *dep = ovf_child(env, "DeploymentOptionSection");
	*out = NULL;
	for (const xmlNode *n = dep ? dep->children : NULL; n; n = n->next) {
		if (!ovf_is(n, "Configuration"))
			continue;
		char *def = ovf_attr(n, "default");
		bool is_def = def && !strcmp(def, "true");
		free(def);
		if (is_def || !*out) {
			free(*out);
			*out = ovf_attr(n, "id");
		}
		if (is_def)
			break;
	}
	c->config = *out;
}

static const xmlNode *ovf_virtual_system(const xmlNode *env)
{
	const xmlNode *vs = ovf_child(env, "VirtualSystem");
	if (vs)
		return vs;
	const xmlNode *coll = ovf_child(env, "VirtualSystemCollection");
	return coll ? ovf_child(coll, "VirtualSystem") : NULL;
}

static int ovf_system(struct ovf_ctx *c, const xmlNode *env)
{
	const xmlNode *vs = ovf_virtual_system(env);
	struct ova_ovf *o = c->o;
	if (!vs)
		return 0;
	o->name = ovf_text(vs, "Name");
	if (!o->name)
		o->name = ovf_attr(vs, "id");
	const xmlNode *os = ovf_child(vs, "OperatingSystemSection");
	if (os) {
		o->os = ovf_attr(os, "osType");
		if (!o->os)
			o->os = ovf_text(os, "Description");
	}
	int r = ovf_hardware(c, vs);
	if (r == 0 && !o->firmware)
		o->firmware = ovf_dup("bios");
	return r;
}

static int ovf_envelope(struct ovf_ctx *c, xmlDoc *doc)
{
	const xmlNode *env = xmlDocGetRootElement(doc);
	if (!env || !ovf_is(env, "Envelope") || !env->ns || !env->ns->href)
		return vdk_bad(c->e, c->name, ovf_fmt, VDK_NO_OFFSET, "not an OVF Envelope");
	const char *ns = (const char *)env->ns->href;
	c->o->version = !strcmp(ns, OVF_NS_1)    ? "1.x"
	                : !strcmp(ns, OVF_NS_2)  ? "2.x"
	                : !strcmp(ns, OVF_NS_09) ? "0.9"
	                                         : NULL;
	if (!c->o->version)
		return vdk_unsup(c->e, c->name, ovf_fmt, VDK_NO_OFFSET,
		                 "unknown OVF namespace %.200s", ns);
	const char *producer = NULL;
	for (const xmlNs *n = env->nsDef; n; n = n->next) {
		if (n->href && strstr((const char *)n->href, "virtualbox"))
			producer = "virtualbox";
		else if (n->href && strstr((const char *)n->href, "vmware.com") && !producer)
			producer = "vmware";
	}
	c->o->producer = producer ? ovf_dup(producer) : NULL;
	char *cfg;
	ovf_default_config(c, env, &cfg);
	int r = ovf_references(c, env);
	if (r == 0)
		r = ovf_disks(c, env);
	if (r == 0)
		r = ovf_system(c, env);
	free(cfg);
	c->config = NULL;
	return r;
}

/* Parsing with the DTD refused ---------------------------------------- */

static void ovf_sax_dtd(void *ctx, const xmlChar *name, const xmlChar *eid, const xmlChar *sid)
{
	(void)name;
	(void)eid;
	(void)sid;
	xmlParserCtxtPtr p = ctx;
	p->_private = (void *)1;
	xmlStopParser(p);
}

static void ovf_sax_entity(void *ctx, const xmlChar *name, int type, const xmlChar *pid,
                           const xmlChar *sid, xmlChar *content)
{
	(void)name;
	(void)type;
	(void)pid;
	(void)sid;
	(void)content;
	ovf_sax_dtd(ctx, NULL, NULL, NULL);
}

static void ovf_silent(void *ctx, const char *msg, ...)
{
	(void)ctx;
	(void)msg;
}

static bool ovf_has(const uint8_t *buf, size_t len, const char *needle)
{
	return memmem(buf, len, needle, strlen(needle)) != NULL;
}

int ova_ovf_parse(const uint8_t *buf, size_t len, const char *name, struct ova_ovf *o,
                  struct vdk_err *e)
{
	memset(o, 0, sizeof(*o));
	if (len > OVA_OVF_MAX || len > INT32_MAX)
		return vdk_bad(e, name, ovf_fmt, VDK_NO_OFFSET,
		               "descriptor of %zu bytes is too large", len);
	/* Bytes, before any parser sees them: a DTD (internal subset, entity
	 * declarations) is refused, and so is UTF-16/32 where it could hide. */
	if (ovf_has(buf, len, "<!DOCTYPE") || ovf_has(buf, len, "<!ENTITY"))
		return vdk_bad(e, name, ovf_fmt, VDK_NO_OFFSET,
		               "descriptor has a DOCTYPE or entity declarations: refused");
	if (memchr(buf, 0, len))
		return vdk_unsup(e, name, ovf_fmt, VDK_NO_OFFSET,
		                 "descriptor is not UTF-8 (NUL bytes)");
	xmlParserCtxtPtr p = xmlNewParserCtxt();
	if (!p)
		return vdk_nomem(e, name, ovf_fmt, "an XML parser");
	p->sax->internalSubset = ovf_sax_dtd;
	p->sax->externalSubset = ovf_sax_dtd;
	p->sax->entityDecl = ovf_sax_entity;
	p->sax->error = ovf_silent;
	p->sax->warning = ovf_silent;
	p->sax->serror = NULL;
	p->_private = NULL;
	xmlDoc *doc = xmlCtxtReadMemory(p, (const char *)buf, (int)len, NULL, NULL,
	                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
	                                    XML_PARSE_NOCDATA);
	bool dtd = p->_private != NULL || (doc && (doc->intSubset || doc->extSubset));
	int r = 0;
	if (dtd)
		r = vdk_bad(e, name, ovf_fmt, VDK_NO_OFFSET, "descriptor has a DOCTYPE: refused");
	else if (!doc || !p->wellFormed) {
		const xmlError *x = xmlCtxtGetLastError(p);
		r = vdk_bad(e, name, ovf_fmt, VDK_NO_OFFSET, "not well-formed XML%s%.200s",
		            x && x->message ? ": " : "", x && x->message ? x->message : "");
		size_t l = strlen(e->msg);
		if (l && e->msg[l - 1] == '\n')
			e->msg[l - 1] = 0;
	} else {
		struct ovf_ctx c = {.o = o, .name = name, .e = e};
		ovf_oom = false;
		r = ovf_envelope(&c, doc);
		if (ovf_oom) {
			vdk_err_clear(e);
			r = vdk_nomem(e, name, ovf_fmt, "the descriptor's contents");
		}
	}
	xmlFreeDoc(doc);
	xmlFreeParserCtxt(p);
	if (r < 0)
		ova_ovf_free(o);
	return r;
}

void ova_ovf_free(struct ova_ovf *o)
{
	for (size_t i = 0; i < o->nfiles; i++) {
		free(o->files[i].id);
		free(o->files[i].href);
	}
	for (size_t i = 0; i < o->ndisks; i++) {
		free(o->disks[i].id);
		free(o->disks[i].file_ref);
		free(o->disks[i].format);
		free(o->disks[i].controller);
		free(o->disks[i].ctrl_subtype);
	}
	for (size_t i = 0; i < o->nnics; i++) {
		free(o->nics[i].name);
		free(o->nics[i].type);
		free(o->nics[i].network);
	}
	for (size_t i = 0; i < o->nctrls; i++) {
		free(o->ctrls[i].id);
		free(o->ctrls[i].type);
		free(o->ctrls[i].subtype);
	}
	free(o->files);
	free(o->disks);
	free(o->nics);
	free(o->ctrls);
	free(o->name);
	free(o->os);
	free(o->firmware);
	free(o->producer);
	memset(o, 0, sizeof(*o));
}

static void ovf_json_str(struct vdk_json *j, const char *k, const char *v)
{
	if (v)
		vdk_json_set_str(j, k, v);
}

void ova_ovf_json(const struct ova_ovf *o, struct vdk_json *j)
{
	ovf_json_str(j, "ovf-version", o->version);
	ovf_json_str(j, "producer", o->producer);
	ovf_json_str(j, "name", o->name);
	ovf_json_str(j, "os", o->os);
	ovf_json_str(j, "firmware", o->firmware);
	vdk_json_set_u64(j, "cpus", o->cpus);
	vdk_json_set_u64(j, "memory", o->memory);
	struct vdk_json *a = vdk_json_set_arr(j, "files");
	for (size_t i = 0; i < o->nfiles; i++) {
		struct vdk_json *f = vdk_json_push_obj(a);
		const struct ova_file *x = &o->files[i];
		vdk_json_set_str(f, "id", x->id);
		vdk_json_set_str(f, "href", x->href);
		if (x->has_size)
			vdk_json_set_u64(f, "size", x->size);
		if (x->gzip)
			vdk_json_set_str(f, "compression", "gzip");
		if (x->chunk)
			vdk_json_set_u64(f, "chunk-size", x->chunk);
	}
	a = vdk_json_set_arr(j, "disks");
	for (size_t i = 0; i < o->ndisks; i++) {
		struct vdk_json *d = vdk_json_push_obj(a);
		const struct ova_disk *x = &o->disks[i];
		vdk_json_set_str(d, "id", x->id);
		if (x->file >= 0)
			vdk_json_set_str(d, "file", o->files[x->file].href);
		vdk_json_set_u64(d, "capacity", x->capacity);
		if (x->has_populated)
			vdk_json_set_u64(d, "populated-size", x->populated);
		ovf_json_str(d, "format", x->format);
		ovf_json_str(d, "controller", x->controller);
		ovf_json_str(d, "controller-model", x->ctrl_subtype);
		if (x->address >= 0)
			vdk_json_set_u64(d, "address", (uint64_t)x->address);
	}
	a = vdk_json_set_arr(j, "nics");
	for (size_t i = 0; i < o->nnics; i++) {
		struct vdk_json *n = vdk_json_push_obj(a);
		ovf_json_str(n, "name", o->nics[i].name);
		ovf_json_str(n, "model", o->nics[i].type);
		ovf_json_str(n, "network", o->nics[i].network);
	}
	a = vdk_json_set_arr(j, "controllers");
	for (size_t i = 0; i < o->nctrls; i++) {
		struct vdk_json *n = vdk_json_push_obj(a);
		ovf_json_str(n, "id", o->ctrls[i].id);
		ovf_json_str(n, "type", o->ctrls[i].type);
		ovf_json_str(n, "model", o->ctrls[i].subtype);
	}
}
