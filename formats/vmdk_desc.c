/* VMDK text descriptor: parser and writer.
 *
 * The grammar (VMware "Virtual Disk Format 5.0", section "The Descriptor
 * File") is line based: comments start with '#', `key = "value"` pairs,
 * and extent lines `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`. Real producers
 * vary: CRLF line ends, unquoted values (createType=monolithicSparse),
 * `parentCID=ffffffff ` with a trailing space, "#DDB" or "# The Disk Data
 * Base" headings, ddb keys in any order. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "util.h"
#include "vmdk.h"

static const char *const vmdk_kind_names[] = {
    [VMDK_EK_FLAT] = "FLAT",
    [VMDK_EK_SPARSE] = "SPARSE",
    [VMDK_EK_ZERO] = "ZERO",
    [VMDK_EK_VMFS] = "VMFS",
    [VMDK_EK_VMFSSPARSE] = "VMFSSPARSE",
    [VMDK_EK_SESPARSE] = "SESPARSE",
    [VMDK_EK_VMFSRDM] = "VMFSRDM",
    [VMDK_EK_VMFSRAW] = "VMFSRAW",
};

const char *vmdk_ext_kind_name(enum vmdk_ext_kind k)
{
	if ((size_t)k < VDK_ARRAY_SIZE(vmdk_kind_names))
		return vmdk_kind_names[k];
	return "?";
}

static const char *const vmdk_access_names[] = {"RW", "RDONLY", "NOACCESS"};

struct vmdk_line {
	const char *p; /* trimmed line, not NUL-terminated */
	size_t n;
	unsigned no;
	uint64_t off; /* byte offset of the line in the descriptor */
};

struct vmdk_pctx {
	const char *file;
	uint64_t base;
	struct vdk_err *e;
	struct vmdk_desc *d;
};

static int vmdk_pbad(struct vmdk_pctx *c, const struct vmdk_line *l, const char *what)
{
	return vdk_bad(c->e, c->file, "vmdk", c->base + l->off, "descriptor line %u: %s", l->no,
	               what);
}

static char *vmdk_strndup(const char *p, size_t n)
{
	char *s = malloc(n + 1);
	if (s) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

static void vmdk_trim(const char **p, size_t *n)
{
	while (*n && isspace((unsigned char)**p)) {
		(*p)++;
		(*n)--;
	}
	while (*n && isspace((unsigned char)(*p)[*n - 1]))
		(*n)--;
}

/* A decimal number that fits in uint64 (no sign, no suffix). */
static bool vmdk_parse_u64(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	if (!n || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		if (vdk_mul_overflow(v, 10, &v) || vdk_add_overflow(v, (uint64_t)(p[i] - '0'), &v))
			return false;
	}
	*out = v;
	return true;
}

/* A CID: up to 8 hex digits. */
static bool vmdk_parse_cid(const char *p, size_t n, uint32_t *out)
{
	uint32_t v = 0;
	if (!n || n > 8)
		return false;
	for (size_t i = 0; i < n; i++) {
		int c = tolower((unsigned char)p[i]);
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return false;
		v = v << 4 | (uint32_t)d;
	}
	*out = v;
	return true;
}

/* Next whitespace-separated token of l starting at *i. */
static bool vmdk_token(const struct vmdk_line *l, size_t *i, const char **tok, size_t *n)
{
	while (*i < l->n && isspace((unsigned char)l->p[*i]))
		(*i)++;
	if (*i >= l->n)
		return false;
	*tok = l->p + *i;
	while (*i < l->n && !isspace((unsigned char)l->p[*i]))
		(*i)++;
	*n = (size_t)(l->p + *i - *tok);
	return true;
}

static int vmdk_parse_kind(const char *t, size_t n, enum vmdk_ext_kind *k)
{
	for (size_t i = 0; i < VDK_ARRAY_SIZE(vmdk_kind_names); i++) {
		if (strlen(vmdk_kind_names[i]) == n && !strncasecmp(t, vmdk_kind_names[i], n)) {
			*k = (enum vmdk_ext_kind)i;
			return 0;
		}
	}
	return -1;
}

/* The file name: "quoted" (may hold spaces) or a bare token. */
static int vmdk_parse_fname(struct vmdk_pctx *c, const struct vmdk_line *l, size_t *i, char **out)
{
	while (*i < l->n && isspace((unsigned char)l->p[*i]))
		(*i)++;
	if (*i >= l->n)
		return vmdk_pbad(c, l, "extent line without a file name");
	const char *s = l->p + *i;
	size_t n;
	if (*s == '"') {
		const char *q = memchr(s + 1, '"', l->n - *i - 1);
		if (!q)
			return vmdk_pbad(c, l, "unterminated file name");
		n = (size_t)(q - s - 1);
		s++;
		*i += n + 2;
	} else {
		const char *t;
		vmdk_token(l, i, &t, &n);
	}
	if (!n || n > VMDK_MAX_NAME)
		return vmdk_pbad(c, l, "empty or too long file name");
	if (memchr(s, 0, n))
		return vmdk_pbad(c, l, "NUL in file name");
	*out = vmdk_strndup(s, n);
	return *out ? 0 : -ENOMEM;
}

static int vmdk_ext_push(struct vmdk_desc *d, struct vmdk_desc_extent *x)
{
	if (d->n_ext >= VMDK_MAX_EXTENTS)
		return -E2BIG;
	if ((d->n_ext & (d->n_ext - 1)) == 0) {
		size_t cap = d->n_ext ? d->n_ext * 2 : 4;
		void *p = realloc(d->ext, cap * sizeof(*d->ext));
		if (!p)
			return -ENOMEM;
		d->ext = p;
	}
	d->ext[d->n_ext++] = *x;
	return 0;
}

static int vmdk_parse_extent(struct vmdk_pctx *c, const struct vmdk_line *l, enum vmdk_access acc,
                             size_t i)
{
	struct vmdk_desc_extent x = {.access = acc, .line = l->no};
	const char *t;
	size_t n;
	if (!vmdk_token(l, &i, &t, &n) || !vmdk_parse_u64(t, n, &x.sectors))
		return vmdk_pbad(c, l, "extent size is not a number");
	if (x.sectors == 0 || x.sectors > VMDK_MAX_SECTORS)
		return vmdk_pbad(c, l, "extent size out of range");
	if (!vmdk_token(l, &i, &t, &n) || vmdk_parse_kind(t, n, &x.kind) < 0)
		return vmdk_pbad(c, l, "unknown extent type");
	if (x.kind != VMDK_EK_ZERO) {
		int r = vmdk_parse_fname(c, l, &i, &x.file);
		if (r < 0)
			return r;
		if (vmdk_token(l, &i, &t, &n) && !vmdk_parse_u64(t, n, &x.offset)) {
			free(x.file);
			return vmdk_pbad(c, l, "extent offset is not a number");
		}
		if (x.offset > VMDK_MAX_SECTORS) {
			free(x.file);
			return vmdk_pbad(c, l, "extent offset out of range");
		}
	}
	int r = vmdk_ext_push(c->d, &x);
	if (r == -E2BIG) {
		free(x.file);
		return vmdk_pbad(c, l, "too many extents");
	}
	if (r < 0)
		free(x.file);
	return r;
}

int vmdk_desc_set(struct vmdk_desc *d, const char *key, const char *val)
{
	char *v = strdup(val);
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < d->n_kv; i++) {
		if (!strcasecmp(d->kv[i].key, key)) {
			free(d->kv[i].val);
			d->kv[i].val = v;
			return 0;
		}
	}
	char *k = strdup(key);
	void *p = realloc(d->kv, (d->n_kv + 1) * sizeof(*d->kv));
	if (!k || !p) {
		free(k);
		free(v);
		if (p)
			d->kv = p;
		return -ENOMEM;
	}
	d->kv = p;
	d->kv[d->n_kv].key = k;
	d->kv[d->n_kv].val = v;
	d->n_kv++;
	return 0;
}

const char *vmdk_desc_get(const struct vmdk_desc *d, const char *key)
{
	for (size_t i = 0; i < d->n_kv; i++)
		if (!strcasecmp(d->kv[i].key, key))
			return d->kv[i].val;
	return NULL;
}

static int vmdk_set_str(char **dst, const char *v, size_t n)
{
	char *s = vmdk_strndup(v, n);
	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

/* key = value; the value loses one pair of surrounding quotes. */
static int vmdk_parse_kv(struct vmdk_pctx *c, const struct vmdk_line *l, const char *eq)
{
	const char *k = l->p, *v = eq + 1;
	size_t kn = (size_t)(eq - l->p), vn = l->n - kn - 1;
	vmdk_trim(&k, &kn);
	vmdk_trim(&v, &vn);
	if (vn >= 2 && v[0] == '"' && v[vn - 1] == '"') {
		v++;
		vn -= 2;
		vmdk_trim(&v, &vn); /* "ffffffff " inside quotes too */
	}
	if (!kn)
		return vmdk_pbad(c, l, "empty key");
	if (memchr(v, 0, vn) || memchr(k, 0, kn))
		return vmdk_pbad(c, l, "NUL byte");
	struct vmdk_desc *d = c->d;
	if (kn == 3 && !strncasecmp(k, "CID", 3)) {
		if (!vmdk_parse_cid(v, vn, &d->cid))
			return vmdk_pbad(c, l, "CID is not hexadecimal");
		d->has_cid = true;
		return 0;
	}
	if (kn == 9 && !strncasecmp(k, "parentCID", 9)) {
		if (!vmdk_parse_cid(v, vn, &d->parent_cid))
			return vmdk_pbad(c, l, "parentCID is not hexadecimal");
		d->has_parent_cid = true;
		return 0;
	}
	if (kn == 7 && !strncasecmp(k, "version", 7)) {
		uint64_t ver;
		if (!vmdk_parse_u64(v, vn, &ver) || ver < 1 || ver > 3)
			return vmdk_pbad(c, l, "unsupported descriptor version");
		d->version = (unsigned)ver;
		return 0;
	}
	if (kn == 10 && !strncasecmp(k, "createType", 10))
		return vmdk_set_str(&d->create_type, v, vn);
	if (kn == 18 && !strncasecmp(k, "parentFileNameHint", 18)) {
		if (!vn || vn > VMDK_MAX_NAME)
			return vmdk_pbad(c, l, "bad parentFileNameHint");
		return vmdk_set_str(&d->parent_hint, v, vn);
	}
	char *ks = vmdk_strndup(k, kn), *vs = vmdk_strndup(v, vn);
	int r = ks && vs ? vmdk_desc_set(d, ks, vs) : -ENOMEM;
	free(ks);
	free(vs);
	return r;
}

static int vmdk_parse_line(struct vmdk_pctx *c, const struct vmdk_line *l)
{
	static const enum vmdk_access accs[] = {VMDK_ACC_RW, VMDK_ACC_RDONLY, VMDK_ACC_NOACCESS};
	if (!l->n || l->p[0] == '#')
		return 0;
	const char *eq = memchr(l->p, '=', l->n);
	const char *t;
	size_t n, i = 0;
	vmdk_token(l, &i, &t, &n);
	for (size_t a = 0; a < VDK_ARRAY_SIZE(accs); a++) {
		const char *name = vmdk_access_names[accs[a]];
		if (n == strlen(name) && !strncmp(t, name, n))
			return vmdk_parse_extent(c, l, accs[a], i);
	}
	if (eq)
		return vmdk_parse_kv(c, l, eq);
	return vmdk_pbad(c, l, "neither a key = value pair nor an extent");
}

/* Embedded descriptors are padded with NULs to whole sectors; text after a
 * NUL would be silently dropped, so it is refused — except the remnant qemu
 * leaves: it rewrites the CID without zero padding (CID=e271c1), so a
 * shorter descriptor ends early and up to 7 bytes of the old one's last
 * line ("\"\n", "ic\"\n") stay right after the NUL. Returns the offset of
 * the first byte refused, or len when the rest is padding or that remnant. */
static size_t vmdk_desc_after_nul(const char *text, size_t at, size_t len)
{
	size_t i = at + 1, run = 0;
	while (i < len && text[i] && text[i] != '=' && run < 8) {
		if (text[i] == '\n' && i + 1 < len && text[i + 1])
			break;
		i++;
		run++;
	}
	if (run == 8)
		return at + 1;
	for (; i < len; i++)
		if (text[i])
			return i;
	return len;
}

int vmdk_desc_parse(const char *text, size_t len, const char *file, uint64_t base_off,
                    struct vmdk_desc *d, struct vdk_err *e)
{
	struct vmdk_pctx c = {.file = file, .base = base_off, .e = e, .d = d};
	memset(d, 0, sizeof(*d));
	if (len > VMDK_DESC_MAX)
		return vdk_bad(e, file, "vmdk", base_off, "descriptor larger than %u bytes",
		               VMDK_DESC_MAX);
	const char *nul = memchr(text, 0, len);
	if (nul) {
		size_t at = (size_t)(nul - text);
		size_t bad = vmdk_desc_after_nul(text, at, len);
		if (bad != len)
			return vdk_bad(e, file, "vmdk", base_off + at,
			               "descriptor has a NUL byte followed by more text "
			               "(at descriptor offset %zu)",
			               bad);
		len = at;
	}
	size_t pos = 0;
	unsigned no = 0;
	int r = 0;
	while (pos < len && r == 0) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		struct vmdk_line l = {.p = text + pos, .n = end - pos, .no = ++no, .off = pos};
		vmdk_trim(&l.p, &l.n);
		r = vmdk_parse_line(&c, &l);
		pos = end + 1;
	}
	if (r == -ENOMEM)
		r = vdk_err_set(e, VDK_E_IO, ENOMEM, file, "vmdk", VDK_NO_OFFSET, "out of memory");
	if (r < 0)
		vmdk_desc_free(d);
	return r;
}

void vmdk_desc_free(struct vmdk_desc *d)
{
	for (size_t i = 0; i < d->n_ext; i++)
		free(d->ext[i].file);
	for (size_t i = 0; i < d->n_kv; i++) {
		free(d->kv[i].key);
		free(d->kv[i].val);
	}
	free(d->ext);
	free(d->kv);
	free(d->create_type);
	free(d->parent_hint);
	memset(d, 0, sizeof(*d));
}

int vmdk_desc_add_extent(struct vmdk_desc *d, enum vmdk_access acc, enum vmdk_ext_kind kind,
                         uint64_t sectors, const char *file, uint64_t offset)
{
	struct vmdk_desc_extent x = {
	    .access = acc, .kind = kind, .sectors = sectors, .offset = offset};
	if (file && !(x.file = strdup(file)))
		return -ENOMEM;
	int r = vmdk_ext_push(d, &x);
	if (r < 0)
		free(x.file);
	return r;
}

/* Growing text buffer for rendering. */
struct vmdk_sb {
	char *p;
	size_t n, cap;
	bool oom;
};

__attribute__((format(printf, 2, 3))) static void vmdk_sb_printf(struct vmdk_sb *b, const char *fmt,
                                                                 ...)
{
	for (;;) {
		if (b->oom)
			return;
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if (b->p && (size_t)n < b->cap - b->n) {
			b->n += (size_t)n;
			return;
		}
		size_t cap = (b->cap ? b->cap * 2 : 1024) + (size_t)n;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

int vmdk_desc_render(const struct vmdk_desc *d, char **out, size_t *len)
{
	struct vmdk_sb b = {0};
	vmdk_sb_printf(&b, "# Disk DescriptorFile\nversion=%u\n", d->version ? d->version : 1);
	vmdk_sb_printf(&b, "CID=%08" PRIx32 "\nparentCID=%08" PRIx32 "\n", d->cid,
	               d->has_parent_cid ? d->parent_cid : UINT32_MAX);
	vmdk_sb_printf(&b, "createType=\"%s\"\n", d->create_type ? d->create_type : "");
	if (d->parent_hint)
		vmdk_sb_printf(&b, "parentFileNameHint=\"%s\"\n", d->parent_hint);
	vmdk_sb_printf(&b, "\n# Extent description\n");
	for (size_t i = 0; i < d->n_ext; i++) {
		const struct vmdk_desc_extent *x = &d->ext[i];
		vmdk_sb_printf(&b, "%s %" PRIu64 " %s", vmdk_access_names[x->access], x->sectors,
		               vmdk_ext_kind_name(x->kind));
		if (x->file)
			vmdk_sb_printf(&b, " \"%s\"", x->file);
		if (x->kind == VMDK_EK_FLAT)
			vmdk_sb_printf(&b, " %" PRIu64, x->offset);
		vmdk_sb_printf(&b, "\n");
	}
	vmdk_sb_printf(&b, "\n# The Disk Data Base\n#DDB\n\n");
	for (size_t i = 0; i < d->n_kv; i++)
		vmdk_sb_printf(&b, "%s = \"%s\"\n", d->kv[i].key, d->kv[i].val);
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	*out = b.p;
	*len = b.n;
	return 0;
}
