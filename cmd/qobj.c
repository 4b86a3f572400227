/*
 * qobj: the ordered tree behind both info renderers.  See qobj.h for the
 * QDict iteration order this reproduces.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qobj.h"

#define QOBJ_BUCKETS 512 /* QDICT_BUCKET_MAX */

enum qobj_type {
    QOBJ_DICT,
    QOBJ_LIST,
    QOBJ_STR,
    QOBJ_INT,
    QOBJ_UINT,
    QOBJ_BOOL,
};

struct qobj_entry {
    char *key;
    struct qobj *value;
    unsigned bucket;
};

struct qobj {
    enum qobj_type type;
    bool failed;
    union {
        struct {
            struct qobj_entry *ents; /* insertion order */
            size_t n, cap;
        } dict;
        struct {
            struct qobj **items;
            size_t n, cap;
        } list;
        char *str;
        int64_t i;
        uint64_t u;
        bool b;
    } u;
};

unsigned qobj_tdb_hash(const char *name)
{
    unsigned value;
    unsigned i;

    /* qobject/qdict.c tdb_hash(): seeded by the length, bytes shifted by i*5 % 24. */
    for (value = 0x238F13AFu * (unsigned)strlen(name), i = 0; name[i]; i++)
        value = value + ((unsigned)(unsigned char)name[i] << (i * 5 % 24));
    return 1103515243u * value + 12345u;
}

static struct qobj *qobj_new(enum qobj_type type)
{
    struct qobj *o = calloc(1, sizeof(*o));

    if (o)
        o->type = type;
    return o;
}

struct qobj *qobj_dict_new(void)
{
    return qobj_new(QOBJ_DICT);
}

struct qobj *qobj_list_new(void)
{
    return qobj_new(QOBJ_LIST);
}

struct qobj *qobj_str_newn(const char *s, size_t len)
{
    const char *nul = memchr(s, '\0', len);
    struct qobj *o;

    if (nul)
        len = (size_t)(nul - s);
    o = qobj_new(QOBJ_STR);
    if (!o)
        return NULL;
    o->u.str = malloc(len + 1);
    if (!o->u.str) {
        free(o);
        return NULL;
    }
    memcpy(o->u.str, s, len);
    o->u.str[len] = '\0';
    return o;
}

struct qobj *qobj_str_new(const char *s)
{
    return qobj_str_newn(s, strlen(s));
}

struct qobj *qobj_int_new(int64_t v)
{
    struct qobj *o = qobj_new(QOBJ_INT);

    if (o)
        o->u.i = v;
    return o;
}

struct qobj *qobj_uint_new(uint64_t v)
{
    struct qobj *o = qobj_new(QOBJ_UINT);

    if (o)
        o->u.u = v;
    return o;
}

struct qobj *qobj_bool_new(bool v)
{
    struct qobj *o = qobj_new(QOBJ_BOOL);

    if (o)
        o->u.b = v;
    return o;
}

void qobj_free(struct qobj *o)
{
    size_t i;

    if (!o)
        return;
    switch (o->type) {
    case QOBJ_DICT:
        for (i = 0; i < o->u.dict.n; i++) {
            free(o->u.dict.ents[i].key);
            qobj_free(o->u.dict.ents[i].value);
        }
        free(o->u.dict.ents);
        break;
    case QOBJ_LIST:
        for (i = 0; i < o->u.list.n; i++)
            qobj_free(o->u.list.items[i]);
        free(o->u.list.items);
        break;
    case QOBJ_STR:
        free(o->u.str);
        break;
    default:
        break;
    }
    free(o);
}

struct qobj *qobj_clone(const struct qobj *o)
{
    struct qobj *c = NULL;
    size_t i;

    if (!o)
        return NULL;
    switch (o->type) {
    case QOBJ_DICT:
        c = qobj_dict_new();
        for (i = 0; c && i < o->u.dict.n; i++)
            qobj_dict_put(c, o->u.dict.ents[i].key, qobj_clone(o->u.dict.ents[i].value));
        break;
    case QOBJ_LIST:
        c = qobj_list_new();
        for (i = 0; c && i < o->u.list.n; i++)
            qobj_list_append(c, qobj_clone(o->u.list.items[i]));
        break;
    case QOBJ_STR:
        return qobj_str_new(o->u.str);
    case QOBJ_INT:
        return qobj_int_new(o->u.i);
    case QOBJ_UINT:
        return qobj_uint_new(o->u.u);
    case QOBJ_BOOL:
        return qobj_bool_new(o->u.b);
    }
    if (c && o->failed)
        c->failed = true;
    return c;
}

bool qobj_failed(const struct qobj *o)
{
    return !o || o->failed;
}

/* Grow an array of elem-sized items so that one more fits. */
static bool grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    size_t ncap;
    void *p;

    if (n < *cap)
        return true;
    ncap = *cap ? *cap * 2 : 8;
    if (ncap > SIZE_MAX / elem)
        return false;
    p = realloc(*arr, ncap * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

void qobj_dict_put(struct qobj *d, const char *key, struct qobj *v)
{
    struct qobj_entry *e;
    size_t i;

    if (!d || d->type != QOBJ_DICT) {
        qobj_free(v);
        if (d)
            d->failed = true;
        return;
    }
    if (!v || v->failed)
        d->failed = true;
    if (!v)
        return;
    for (i = 0; i < d->u.dict.n; i++) {
        if (!strcmp(d->u.dict.ents[i].key, key)) {
            qobj_free(d->u.dict.ents[i].value);
            d->u.dict.ents[i].value = v;
            return;
        }
    }
    if (!grow((void **)&d->u.dict.ents, &d->u.dict.cap, d->u.dict.n, sizeof(*e)))
        goto fail;
    e = &d->u.dict.ents[d->u.dict.n];
    e->key = strdup(key);
    if (!e->key)
        goto fail;
    e->value = v;
    e->bucket = qobj_tdb_hash(key) % QOBJ_BUCKETS;
    d->u.dict.n++;
    return;
fail:
    d->failed = true;
    qobj_free(v);
}

void qobj_dict_put_str(struct qobj *d, const char *key, const char *s)
{
    qobj_dict_put(d, key, qobj_str_new(s));
}

void qobj_dict_put_int(struct qobj *d, const char *key, int64_t v)
{
    qobj_dict_put(d, key, qobj_int_new(v));
}

void qobj_dict_put_bool(struct qobj *d, const char *key, bool v)
{
    qobj_dict_put(d, key, qobj_bool_new(v));
}

void qobj_list_append(struct qobj *l, struct qobj *v)
{
    if (!l || l->type != QOBJ_LIST) {
        qobj_free(v);
        if (l)
            l->failed = true;
        return;
    }
    if (!v || v->failed)
        l->failed = true;
    if (!v)
        return;
    if (!grow((void **)&l->u.list.items, &l->u.list.cap, l->u.list.n, sizeof(v))) {
        l->failed = true;
        qobj_free(v);
        return;
    }
    l->u.list.items[l->u.list.n++] = v;
}

struct qobj *qobj_dict_get(const struct qobj *d, const char *key)
{
    size_t i;

    if (!d || d->type != QOBJ_DICT)
        return NULL;
    for (i = 0; i < d->u.dict.n; i++)
        if (!strcmp(d->u.dict.ents[i].key, key))
            return d->u.dict.ents[i].value;
    return NULL;
}

/* --- Iteration in QDict order --- */

static const struct qobj_entry *order_base;

/* Bucket ascending; within a bucket, the later insertion first. */
static int order_cmp(const void *a, const void *b)
{
    size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
    unsigned ba = order_base[ia].bucket, bb = order_base[ib].bucket;

    if (ba != bb)
        return ba < bb ? -1 : 1;
    return ia > ib ? -1 : (ia < ib ? 1 : 0);
}

/*
 * The indices of d's entries in QDict iteration order; malloc'd (caller
 * frees), NULL on OOM.  An empty dict gives a non-NULL 1-element buffer.
 */
static size_t *dict_order(const struct qobj *d)
{
    size_t n = d->u.dict.n, i;
    size_t *idx = malloc((n ? n : 1) * sizeof(*idx));

    if (!idx)
        return NULL;
    for (i = 0; i < n; i++)
        idx[i] = i;
    order_base = d->u.dict.ents;
    qsort(idx, n, sizeof(*idx), order_cmp);
    return idx;
}

/* --- JSON, after qobject/json-writer.c in pretty mode --- */

struct jw {
    FILE *f;
    unsigned depth;
    bool need_comma;
    bool started; /* anything written yet */
    bool oom;
};

static void jw_newline(struct jw *w)
{
    fprintf(w->f, "\n%*s", (int)(w->depth * 4), "");
}

/*
 * One code point of QEMU's modified UTF-8 (util/unicode.c,
 * mod_utf8_codepoint with n = 6) starting at s; *end is set past it.
 * Returns the code point or -1 for an invalid sequence.
 */
static long utf8_codepoint(const unsigned char *s, const unsigned char **end)
{
    static const long min_cp[5] = {0x80, 0x800, 0x10000, 0x200000, 0x4000000};
    const unsigned char *p = s;
    unsigned byte = *p++, mask, len, i;
    long cp;

    if (byte < 0x80) {
        cp = byte;
    } else if (byte >= 0xFE || (byte & 0x40) == 0) {
        cp = -1; /* 0xFE/0xFF, or a stray continuation byte */
    } else {
        len = 0;
        for (mask = 0x80; byte & mask; mask >>= 1)
            len++;
        cp = byte & (mask - 1);
        for (i = 1; i < len; i++) {
            byte = i < 6 ? *p : 0;
            if ((byte & 0xC0) != 0x80) {
                cp = -1; /* truncated sequence; the offending byte is not consumed */
                goto out;
            }
            p++;
            cp = (cp << 6) | (byte & 0x3F);
        }
        if (cp > 0x10FFFF || (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            cp = -1; /* out of range, noncharacter or surrogate */
        else if (cp < min_cp[len - 2] && !(cp == 0 && len == 2))
            cp = -1; /* overlong, except \xC0\x80 */
    }
out:
    *end = p;
    return cp;
}

static void jw_quoted(struct jw *w, const char *str)
{
    const unsigned char *p = (const unsigned char *)str, *end;
    long cp;

    fputc('"', w->f);
    for (; *p; p = end) {
        cp = utf8_codepoint(p, &end);
        switch (cp) {
        case '"':
            fputs("\\\"", w->f);
            break;
        case '\\':
            fputs("\\\\", w->f);
            break;
        case '\b':
            fputs("\\b", w->f);
            break;
        case '\f':
            fputs("\\f", w->f);
            break;
        case '\n':
            fputs("\\n", w->f);
            break;
        case '\r':
            fputs("\\r", w->f);
            break;
        case '\t':
            fputs("\\t", w->f);
            break;
        default:
            if (cp < 0)
                cp = 0xFFFD;
            if (cp > 0xFFFF)
                fprintf(w->f, "\\u%04lX\\u%04lX", 0xD800 + ((cp - 0x10000) >> 10),
                        0xDC00 + ((cp - 0x10000) & 0x3FF));
            else if (cp < 0x20 || cp >= 0x7F)
                fprintf(w->f, "\\u%04lX", cp);
            else
                fputc((int)cp, w->f);
        }
    }
    fputc('"', w->f);
}

static void jw_comma_name(struct jw *w, const char *name)
{
    if (w->need_comma) {
        fputc(',', w->f);
        jw_newline(w);
    } else {
        if (w->started)
            jw_newline(w);
        w->need_comma = true;
    }
    w->started = true;
    if (name) {
        jw_quoted(w, name);
        fputs(": ", w->f);
    }
}

static void jw_value(struct jw *w, const char *name, const struct qobj *o)
{
    size_t i, *idx;

    switch (o->type) {
    case QOBJ_INT:
        jw_comma_name(w, name);
        fprintf(w->f, "%" PRId64, o->u.i);
        break;
    case QOBJ_UINT:
        jw_comma_name(w, name);
        fprintf(w->f, "%" PRIu64, o->u.u);
        break;
    case QOBJ_BOOL:
        jw_comma_name(w, name);
        fputs(o->u.b ? "true" : "false", w->f);
        break;
    case QOBJ_STR:
        jw_comma_name(w, name);
        jw_quoted(w, o->u.str);
        break;
    case QOBJ_DICT:
        idx = dict_order(o);
        if (!idx) {
            w->oom = true;
            return;
        }
        jw_comma_name(w, name);
        fputc('{', w->f);
        w->depth++;
        w->need_comma = false;
        for (i = 0; i < o->u.dict.n; i++)
            jw_value(w, o->u.dict.ents[idx[i]].key, o->u.dict.ents[idx[i]].value);
        free(idx);
        w->depth--;
        w->need_comma = true;
        jw_newline(w);
        fputc('}', w->f);
        break;
    case QOBJ_LIST:
        jw_comma_name(w, name);
        fputc('[', w->f);
        w->depth++;
        w->need_comma = false;
        for (i = 0; i < o->u.list.n; i++)
            jw_value(w, NULL, o->u.list.items[i]);
        w->depth--;
        w->need_comma = true;
        jw_newline(w);
        fputc(']', w->f);
        break;
    }
}

int qobj_to_json(FILE *f, const struct qobj *obj)
{
    struct jw w = {.f = f};

    if (qobj_failed(obj))
        return -1;
    jw_value(&w, NULL, obj);
    return (w.oom || ferror(f)) ? -1 : 0;
}

/* --- Human dump, after dump_qobject/dump_qdict/dump_qlist (block/qapi.c) --- */

static bool is_composite(const struct qobj *o)
{
    return o->type == QOBJ_DICT || o->type == QOBJ_LIST;
}

static int dump_obj(FILE *f, int indent, const struct qobj *o);

static int dump_dict(FILE *f, int indent, const struct qobj *d)
{
    size_t i, *idx = dict_order(d);
    const char *k;

    if (!idx)
        return -1;
    for (i = 0; i < d->u.dict.n; i++) {
        const struct qobj_entry *e = &d->u.dict.ents[idx[i]];
        bool comp = is_composite(e->value);

        fprintf(f, "%*s", indent * 4, "");
        for (k = e->key; *k; k++)
            fputc(*k == '-' ? ' ' : *k, f); /* dashes shown as spaces */
        fprintf(f, ":%c", comp ? '\n' : ' ');
        if (dump_obj(f, indent + 1, e->value) < 0) {
            free(idx);
            return -1;
        }
        if (!comp)
            fputc('\n', f);
    }
    free(idx);
    return 0;
}

static int dump_list(FILE *f, int indent, const struct qobj *l)
{
    size_t i;

    for (i = 0; i < l->u.list.n; i++) {
        const struct qobj *v = l->u.list.items[i];
        bool comp = is_composite(v);

        fprintf(f, "%*s[%d]:%c", indent * 4, "", (int)i, comp ? '\n' : ' ');
        if (dump_obj(f, indent + 1, v) < 0)
            return -1;
        if (!comp)
            fputc('\n', f);
    }
    return 0;
}

static int dump_obj(FILE *f, int indent, const struct qobj *o)
{
    switch (o->type) {
    case QOBJ_INT:
        fprintf(f, "%" PRId64, o->u.i);
        break;
    case QOBJ_UINT:
        fprintf(f, "%" PRIu64, o->u.u);
        break;
    case QOBJ_STR:
        fputs(o->u.str, f);
        break;
    case QOBJ_BOOL:
        fputs(o->u.b ? "true" : "false", f);
        break;
    case QOBJ_DICT:
        return dump_dict(f, indent, o);
    case QOBJ_LIST:
        return dump_list(f, indent, o);
    }
    return 0;
}

int qobj_dump_human(FILE *f, int indent, const struct qobj *obj)
{
    if (qobj_failed(obj))
        return -1;
    if (dump_obj(f, indent, obj) < 0)
        return -1;
    return ferror(f) ? -1 : 0;
}
