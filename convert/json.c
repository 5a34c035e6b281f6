#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

enum json_kind { J_OBJ, J_ARR, J_STR, J_U64, J_I64, J_BOOL };

struct vdk_json {
	enum json_kind kind;
	char *key; /* member name inside an object */
	char *str;
	uint64_t u;
	int64_t i;
	bool b;
	bool oom; /* sticky on the root */
	struct vdk_json *first, *last, *next, *root;
};

static struct vdk_json *json_new(enum json_kind k)
{
	struct vdk_json *j = calloc(1, sizeof(*j));
	if (j) {
		j->kind = k;
		j->root = j;
	}
	return j;
}

struct vdk_json *vdk_json_new_obj(void)
{
	return json_new(J_OBJ);
}
struct vdk_json *vdk_json_new_arr(void)
{
	return json_new(J_ARR);
}

/* Append a child of kind k to parent; NULL (and root marked) on ENOMEM. */
static struct vdk_json *json_add(struct vdk_json *parent, const char *key, enum json_kind k)
{
	if (!parent || parent->root->oom)
		return NULL;
	struct vdk_json *c = json_new(k);
	if (c && key && !(c->key = strdup(key))) {
		free(c);
		c = NULL;
	}
	if (!c) {
		parent->root->oom = true;
		return NULL;
	}
	c->root = parent->root;
	if (parent->last)
		parent->last->next = c;
	else
		parent->first = c;
	parent->last = c;
	return c;
}

void vdk_json_set_str(struct vdk_json *obj, const char *key, const char *val)
{
	struct vdk_json *c = json_add(obj, key, J_STR);
	if (c && !(c->str = strdup(val ? val : "")))
		obj->root->oom = true;
}
void vdk_json_set_u64(struct vdk_json *obj, const char *key, uint64_t val)
{
	struct vdk_json *c = json_add(obj, key, J_U64);
	if (c)
		c->u = val;
}
void vdk_json_set_i64(struct vdk_json *obj, const char *key, int64_t val)
{
	struct vdk_json *c = json_add(obj, key, J_I64);
	if (c)
		c->i = val;
}
void vdk_json_set_bool(struct vdk_json *obj, const char *key, bool val)
{
	struct vdk_json *c = json_add(obj, key, J_BOOL);
	if (c)
		c->b = val;
}
struct vdk_json *vdk_json_set_obj(struct vdk_json *obj, const char *key)
{
	return json_add(obj, key, J_OBJ);
}
struct vdk_json *vdk_json_set_arr(struct vdk_json *obj, const char *key)
{
	return json_add(obj, key, J_ARR);
}
struct vdk_json *vdk_json_push_obj(struct vdk_json *arr)
{
	return json_add(arr, NULL, J_OBJ);
}
void vdk_json_push_str(struct vdk_json *arr, const char *val)
{
	vdk_json_set_str(arr, NULL, val);
}
void vdk_json_push_u64(struct vdk_json *arr, uint64_t val)
{
	vdk_json_set_u64(arr, NULL, val);
}

const struct vdk_json *vdk_json_get(const struct vdk_json *obj, const char *key)
{
	for (const struct vdk_json *c = obj ? obj->first : NULL; c; c = c->next)
		if (c->key && !strcmp(c->key, key))
			return c;
	return NULL;
}
bool vdk_json_get_u64(const struct vdk_json *obj, const char *key, uint64_t *out)
{
	const struct vdk_json *c = vdk_json_get(obj, key);
	if (!c || c->kind != J_U64)
		return false;
	*out = c->u;
	return true;
}
const char *vdk_json_get_str(const struct vdk_json *obj, const char *key)
{
	const struct vdk_json *c = vdk_json_get(obj, key);
	return c && c->kind == J_STR ? c->str : NULL;
}

const struct vdk_json *vdk_json_first(const struct vdk_json *j)
{
	return j ? j->first : NULL;
}
const struct vdk_json *vdk_json_next(const struct vdk_json *j)
{
	return j ? j->next : NULL;
}

void vdk_json_move_first(struct vdk_json *from, const char *key, struct vdk_json *to)
{
	struct vdk_json *prev = NULL, *c = from ? from->first : NULL;
	while (c && !(c->key && !strcmp(c->key, key))) {
		prev = c;
		c = c->next;
	}
	if (!c || !to || c->root != to->root)
		return;
	if (prev)
		prev->next = c->next;
	else
		from->first = c->next;
	if (from->last == c)
		from->last = prev;
	c->next = to->first;
	to->first = c;
	if (!to->last)
		to->last = c;
}

void vdk_json_free(struct vdk_json *j)
{
	while (j) {
		struct vdk_json *next = j->next;
		vdk_json_free(j->first);
		free(j->key);
		free(j->str);
		free(j);
		j = next;
	}
}

/* Rendering into a growable string. */
struct jbuf {
	char *s;
	size_t len, cap;
	bool oom;
};

static void jb_put(struct jbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *ns = realloc(b->s, cap);
		if (!ns) {
			b->oom = true;
			return;
		}
		b->s = ns;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void jb_fmt(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jb_fmt(struct jbuf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		jb_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void jb_indent(struct jbuf *b, int n)
{
	for (int i = 0; i < n; i++)
		jb_put(b, " ", 1);
}

static void json_str(struct jbuf *b, const char *s)
{
	jb_put(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			jb_fmt(b, "\\%c", *p);
		else if (*p == '\n')
			jb_put(b, "\\n", 2);
		else if (*p < 0x20 || *p == 0x7f)
			jb_fmt(b, "\\u%04x", *p);
		else
			jb_put(b, (const char *)p, 1);
	}
	jb_put(b, "\"", 1);
}

static void json_render(struct jbuf *b, const struct vdk_json *j, bool pretty, int depth)
{
	switch (j->kind) {
	case J_STR:
		json_str(b, j->str);
		return;
	case J_U64:
		jb_fmt(b, "%" PRIu64, j->u);
		return;
	case J_I64:
		jb_fmt(b, "%" PRId64, j->i);
		return;
	case J_BOOL:
		jb_put(b, j->b ? "true" : "false", j->b ? 4 : 5);
		return;
	case J_OBJ:
	case J_ARR:
		break;
	}
	bool obj = j->kind == J_OBJ;
	jb_put(b, obj ? "{" : "[", 1);
	for (const struct vdk_json *c = j->first; c; c = c->next) {
		if (pretty) {
			jb_put(b, "\n", 1);
			jb_indent(b, 4 * (depth + 1));
		}
		if (obj) {
			json_str(b, c->key ? c->key : "");
			jb_put(b, ": ", 2);
		}
		json_render(b, c, pretty, depth + 1);
		if (c->next)
			jb_put(b, pretty ? "," : ", ", pretty ? 1 : 2);
	}
	if (pretty && j->first) {
		jb_put(b, "\n", 1);
		jb_indent(b, 4 * depth);
	}
	jb_put(b, obj ? "}" : "]", 1);
}

/* qemu-img's human form: "key: value", nested blocks indented, array
 * elements as "[n]:", dashes in keys shown as spaces. */
static void json_text(struct jbuf *b, const struct vdk_json *j, int indent)
{
	int idx = 0;
	for (const struct vdk_json *c = j->first; c; c = c->next, idx++) {
		jb_indent(b, indent);
		if (c->key) {
			for (const char *k = c->key; *k; k++)
				jb_put(b, *k == '-' ? " " : k, 1);
		} else {
			jb_fmt(b, "[%d]", idx);
		}
		jb_put(b, ":", 1);
		if (c->kind == J_OBJ || c->kind == J_ARR) {
			jb_put(b, "\n", 1);
			json_text(b, c, indent + 4);
			continue;
		}
		jb_put(b, " ", 1);
		if (c->kind == J_STR)
			jb_put(b, c->str, strlen(c->str));
		else
			json_render(b, c, false, 0);
		jb_put(b, "\n", 1);
	}
}

static char *json_to_string(const struct vdk_json *j, bool pretty, int text_indent)
{
	if (!j || j->root->oom)
		return NULL;
	struct jbuf b = {0};
	jb_put(&b, "", 0);
	if (text_indent >= 0)
		json_text(&b, j, text_indent);
	else
		json_render(&b, j, pretty, 0);
	if (b.oom) {
		free(b.s);
		return NULL;
	}
	return b.s;
}

char *vdk_json_render(const struct vdk_json *j, bool pretty)
{
	return json_to_string(j, pretty, -1);
}
char *vdk_json_render_text(const struct vdk_json *j, int indent)
{
	return json_to_string(j, false, indent < 0 ? 0 : indent);
}
