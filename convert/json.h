/* A small JSON tree for `--output=json` and `info`: modules build it, tools
 * render it. Allocation failure is sticky on the root: rendering returns
 * NULL, so callers need not check every call. */
#ifndef VDK_JSON_H
#define VDK_JSON_H

#include <stdbool.h>
#include <stdint.h>

struct vdk_json;

struct vdk_json *vdk_json_new_obj(void);
struct vdk_json *vdk_json_new_arr(void);
/* Object members (keys keep insertion order; setting a key twice appends). */
void vdk_json_set_str(struct vdk_json *obj, const char *key, const char *val);
void vdk_json_set_u64(struct vdk_json *obj, const char *key, uint64_t val);
void vdk_json_set_i64(struct vdk_json *obj, const char *key, int64_t val);
void vdk_json_set_bool(struct vdk_json *obj, const char *key, bool val);
struct vdk_json *vdk_json_set_obj(struct vdk_json *obj, const char *key);
struct vdk_json *vdk_json_set_arr(struct vdk_json *obj, const char *key);
/* Array elements. */
struct vdk_json *vdk_json_push_obj(struct vdk_json *arr);
void vdk_json_push_str(struct vdk_json *arr, const char *val);
void vdk_json_push_u64(struct vdk_json *arr, uint64_t val);

/* Rendering: pretty JSON (4-space indent, like qemu-img) or the
 * "key: value" text form of qemu-img info. Caller frees. NULL on ENOMEM. */
char *vdk_json_render(const struct vdk_json *j, bool pretty);
char *vdk_json_render_text(const struct vdk_json *j, int indent);
/* Lookup for tests and tools: member of an object, or NULL. */
const struct vdk_json *vdk_json_get(const struct vdk_json *obj, const char *key);
bool vdk_json_get_u64(const struct vdk_json *obj, const char *key, uint64_t *out);
const char *vdk_json_get_str(const struct vdk_json *obj, const char *key);
/* Iteration over an array's or object's members. */
const struct vdk_json *vdk_json_first(const struct vdk_json *j);
const struct vdk_json *vdk_json_next(const struct vdk_json *j);
/* Move member key of from (same tree) to the front of to, keeping its key;
 * qemu-img puts "snapshots" first at the top level. */
void vdk_json_move_first(struct vdk_json *from, const char *key, struct vdk_json *to);
void vdk_json_free(struct vdk_json *j);

#endif
