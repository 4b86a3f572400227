/*
 * A tiny QObject look-alike: dicts, lists, strings, integers and booleans,
 * built once and rendered two ways exactly as qemu-img 7.2 renders its
 * QAPI results:
 *  - qobj_to_json(): qobject_to_json_pretty(obj, true) (qobject/qjson.c,
 *    qobject/json-writer.c);
 *  - qobj_dump_human(): dump_qobject() of block/qapi.c, used for the
 *    "Format specific information:" section.
 *
 * Dict key order.  A QDict is a 512-bucket hash table (tdb_hash % 512)
 * whose buckets are lists with head insertion; iteration walks buckets in
 * order.  So keys come out by bucket, and within a bucket the most recently
 * inserted first.  qobj keeps entries in insertion order (the QAPI struct
 * field order) and reproduces that iteration order when rendering.
 *
 * Errors are sticky: a failed allocation marks the container (and, when it
 * is put into another, that one too); check qobj_failed() on the root
 * before rendering.  Every put/append takes ownership of the value, also
 * on failure; a NULL value marks the container failed.
 */
#ifndef CMD_QOBJ_H
#define CMD_QOBJ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct qobj;

struct qobj *qobj_dict_new(void);
struct qobj *qobj_list_new(void);
/* A copy of s (NUL-terminated). */
struct qobj *qobj_str_new(const char *s);
/* A copy of s[0..len), cut at the first NUL as a C string would be. */
struct qobj *qobj_str_newn(const char *s, size_t len);
struct qobj *qobj_int_new(int64_t v);
struct qobj *qobj_uint_new(uint64_t v);
struct qobj *qobj_bool_new(bool v);

/* Put key -> v (replacing an existing key in place, as qdict_put_obj). */
void qobj_dict_put(struct qobj *dict, const char *key, struct qobj *v);
void qobj_dict_put_str(struct qobj *dict, const char *key, const char *s);
void qobj_dict_put_int(struct qobj *dict, const char *key, int64_t v);
void qobj_dict_put_bool(struct qobj *dict, const char *key, bool v);
void qobj_list_append(struct qobj *list, struct qobj *v);

/* Lookup by key in a dict; NULL if absent or not a dict. */
struct qobj *qobj_dict_get(const struct qobj *dict, const char *key);

/* True if building the tree under obj failed (or obj is NULL). */
bool qobj_failed(const struct qobj *obj);

void qobj_free(struct qobj *obj);

/* A deep copy (NULL on OOM or if obj is NULL). */
struct qobj *qobj_clone(const struct qobj *obj);

/* QEMU's tdb_hash() of a dict key (exported for the unit tests). */
unsigned qobj_tdb_hash(const char *key);

/*
 * qobj_to_json - write obj as qobject_to_json_pretty(obj, true) does,
 * without a trailing newline.
 * Returns 0, or -1 if the stream failed.
 */
int qobj_to_json(FILE *f, const struct qobj *obj);

/*
 * qobj_dump_human - dump_qobject(indent, obj) of block/qapi.c: dict keys
 * with '-' shown as ' ', nested containers indented by 4 spaces per level,
 * list items as "[N]:".
 * Returns 0, or -1 if the stream failed.
 */
int qobj_dump_human(FILE *f, int indent, const struct qobj *obj);

#endif /* CMD_QOBJ_H */
