/*
 * Image arguments given as json:{...} or --image-opts (see spec.h).
 *
 * After QEMU 7.2: qemu-img.c img_open() (--image-opts through the
 * "source" QemuOptsList, implied option name "file"), block.c
 * parse_json_filename() / bdrv_fill_options() / bdrv_open_inherit()
 * (which options a driver takes, and the messages when one is missing or
 * unknown).  The messages are qemu-img's; the refusals of what instar does
 * not open (other drivers, other protocols, options that change what is
 * read) are instar's own and listed in docs/differences.md.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "opts.h"
#include "policy.h"
#include "report.h"
#include "size.h"
#include "spec.h"

/* One flattened option: "file.filename" = "x". */
struct kv {
    char *key;
    char *val;    /* NULL for JSON null */
    bool is_str;  /* a string (QemuOpts values always are) */
    bool is_bool; /* JSON true/false (val "on"/"off") */
    bool used;
};

struct kvs {
    struct kv *v;
    unsigned n;
};

static void kvs_free(struct kvs *k)
{
    for (unsigned i = 0; i < k->n; i++) {
        free(k->v[i].key);
        free(k->v[i].val);
    }
    free(k->v);
    k->v = NULL;
    k->n = 0;
}

/* Add (taking key and val); a later duplicate replaces the earlier one. */
static int kvs_put(struct kvs *k, char *key, char *val, bool is_str, bool is_bool)
{
    struct kv *n;

    for (unsigned i = 0; i < k->n; i++) {
        if (!strcmp(k->v[i].key, key)) {
            free(k->v[i].val);
            free(key);
            k->v[i].val = val;
            k->v[i].is_str = is_str;
            k->v[i].is_bool = is_bool;
            return 0;
        }
    }
    n = realloc(k->v, (k->n + 1) * sizeof(*n));
    if (!n) {
        free(key);
        free(val);
        return -1;
    }
    k->v = n;
    k->v[k->n++] = (struct kv){key, val, is_str, is_bool, false};
    return 0;
}

static struct kv *kvs_get(struct kvs *k, const char *key)
{
    for (unsigned i = 0; i < k->n; i++)
        if (!strcmp(k->v[i].key, key))
            return &k->v[i];
    return NULL;
}

/* --- JSON (qobject/json-parser.c, with QEMU's single-quoted strings) --- */

struct jp {
    const char *p;
    const char *err; /* qemu's text after "Could not parse the JSON options: " */
    char word[64];
};

static void ws(struct jp *j)
{
    while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
        j->p++;
}

/* qemu's cvt4hex(): four hex digits, or -1. */
static int hex4(const char *s)
{
    int v = 0;

    for (int i = 0; i < 4; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return -1;
        v = v * 16 +
            (isdigit((unsigned char)s[i]) ? s[i] - '0' : tolower((unsigned char)s[i]) - 'a' + 10);
    }
    return v;
}

/* util/unicode.c is_valid_codepoint(): no surrogates, noncharacters or values past U+10FFFF. */
static bool codepoint_ok(int cp)
{
    return cp >= 0 && cp <= 0x10ffff && !(cp >= 0xfdd0 && cp <= 0xfdef) &&
           (cp & 0xfffe) != 0xfffe && !(cp >= 0xd800 && cp <= 0xdfff);
}

/* mod_utf8_encode(): modified UTF-8, so U+0000 is the two bytes C0 80. */
static size_t utf8_put(char *out, int cp)
{
    if (cp > 0 && cp <= 0x7f) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp <= 0x7ff) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp <= 0xffff) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

int spec_utf8_codepoint(const unsigned char *s, size_t *len)
{
    static const int min_cp[5] = {0x80, 0x800, 0x10000, 0x200000, 0x4000000};
    unsigned b = s[0], n = 0, mask;
    int cp;

    *len = 1;
    if (b < 0x80)
        return (int)b;
    if (b >= 0xfe || !(b & 0x40))
        return -1;
    for (mask = 0x80; b & mask; mask >>= 1)
        n++;
    cp = (int)(b & (mask - 1));
    for (unsigned i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *len = i;
            return -1;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    *len = n;
    if (!codepoint_ok(cp) || (cp < min_cp[n - 2] && !(cp == 0 && n == 2)))
        return -1;
    return cp;
}

/*
 * qobject/json-parser.c parse_string(): the string token at j->p (its
 * quotes included; jlex_stray() has found it terminated), its escapes
 * decoded and its UTF-8 checked, with qemu's errors.
 */
static char *jstring(struct jp *j)
{
    const char *tok = j->p, *end;
    char q = *j->p++, *out;
    size_t n = 0;

    /* The token's end: qemu prints at most up to it. */
    for (end = j->p; *end && *end != q; end++)
        if (*end == '\\' && end[1])
            end++;
    if (!*end) {
        j->err = "JSON parse error, premature EOI";
        return NULL;
    }
    end++;
    /* A \u escape's four bytes give at most four (two escapes: six for 12). */
    out = malloc((size_t)(end - tok) + 1);
    if (!out)
        return NULL;
    while (*j->p != q) {
        const char *beg = j->p;
        char c = *j->p++;
        static const char esc[] = "\"\"''\\\\//b\bf\fn\nr\rt\t";
        const char *e;
        int cp;

        if (c != '\\') {
            size_t len;

            cp = spec_utf8_codepoint((const unsigned char *)beg, &len);
            if (cp < 0) {
                j->err = "JSON parse error, invalid UTF-8 sequence in string";
                free(out);
                return NULL;
            }
            j->p = beg + len;
            n += utf8_put(out + n, cp);
            continue;
        }
        c = *j->p++;
        e = c ? strchr(esc, c) : NULL;
        if (e && (e - esc) % 2 == 0) {
            out[n++] = e[1];
            continue;
        }
        if (c != 'u') {
            j->err = "JSON parse error, invalid escape sequence in string";
            free(out);
            return NULL;
        }
        cp = hex4(j->p);
        j->p += cp < 0 ? 0 : 4;
        if (cp >= 0xd800 && cp <= 0xdbff && j->p[0] == '\\' && j->p[1] == 'u') {
            int trail = hex4(j->p + 2);

            cp = 0x10000 + ((cp & 0x3ff) << 10);
            if (trail >= 0xdc00 && trail <= 0xdfff) {
                cp |= trail & 0x3ff;
                j->p += 6;
            } else {
                cp = -1;
            }
        }
        if (!codepoint_ok(cp)) {
            /* qemu skips four bytes whatever they are, and prints up to the token's end. */
            const char *stop = cp < 0 && j->p == beg + 2 ? beg + 6 : j->p;

            snprintf(j->word, sizeof(j->word),
                     "JSON parse error, %.*s is not a valid Unicode character",
                     (int)(stop < end ? stop - beg : end - beg), beg);
            j->err = j->word;
            free(out);
            return NULL;
        }
        n += utf8_put(out + n, cp);
    }
    j->p++;
    out[n] = '\0';
    return out;
}

static char *join(const char *prefix, const char *key)
{
    char *s = NULL;

    if (asprintf(&s, "%s%s%s", prefix, *prefix ? "." : "", key) < 0)
        return NULL;
    return s;
}

static int jvalue(struct jp *j, struct kvs *k, const char *key, int depth);

/* An object's members go in as prefix.member (qdict_flatten). */
static int jobject(struct jp *j, struct kvs *k, const char *prefix, int depth)
{
    j->p++; /* '{' */
    ws(j);
    if (*j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        char *name, *key;
        int r;

        ws(j);
        if (isalpha((unsigned char)*j->p)) {
            const char *w = j->p;

            while (isalpha((unsigned char)*j->p))
                j->p++;
            snprintf(j->word, sizeof(j->word), "JSON parse error, invalid keyword '%.*s'",
                     (int)(j->p - w), w);
            j->err = j->word;
            return -1;
        }
        if (*j->p != '"' && *j->p != '\'') {
            j->err = *j->p ? "JSON parse error, key is not a string in object"
                           : "JSON parse error, premature EOI";
            return -1;
        }
        name = jstring(j);
        if (!name)
            return -1;
        key = join(prefix, name);
        free(name);
        if (!key)
            return -1;
        ws(j);
        if (*j->p != ':') {
            j->err = *j->p ? "JSON parse error, missing : in object pair"
                           : "JSON parse error, premature EOI";
            free(key);
            return -1;
        }
        j->p++;
        r = jvalue(j, k, key, depth + 1);
        free(key);
        if (r < 0)
            return -1;
        ws(j);
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p == '}') {
            j->p++;
            return 0;
        }
        j->err = *j->p ? "JSON parse error, expected separator in dict"
                       : "JSON parse error, premature EOI";
        return -1;
    }
}

static int jvalue(struct jp *j, struct kvs *k, const char *key, int depth)
{
    const char *start;

    if (depth > 64) {
        j->err = "JSON parse error, too many nested objects";
        return -1;
    }
    ws(j);
    switch (*j->p) {
    case '\0':
        j->err = "JSON parse error, premature EOI";
        return -1;
    case '{':
        return jobject(j, k, key, depth);
    case '[': {
        /* qdict_flatten: the elements become key.0, key.1, ... */
        unsigned i = 0;

        j->p++;
        ws(j);
        if (*j->p == ']') {
            j->p++;
            return 0;
        }
        for (;; i++) {
            char idx[16], *sub;
            int r;

            snprintf(idx, sizeof(idx), "%u", i);
            sub = join(key, idx);
            r = sub ? jvalue(j, k, sub, depth + 1) : -1;
            free(sub);
            if (r < 0)
                return -1;
            ws(j);
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            if (*j->p == ']') {
                j->p++;
                return 0;
            }
            j->err = *j->p ? "JSON parse error, expected separator in list"
                           : "JSON parse error, premature EOI";
            return -1;
        }
    }
    case '"':
    case '\'': {
        char *s = jstring(j);

        if (!s)
            return -1;
        return kvs_put(k, strdup(key), s, true, false);
    }
    }
    start = j->p;
    if (*j->p == '-' || isdigit((unsigned char)*j->p)) {
        while (*j->p && strchr("+-0123456789.eE", *j->p))
            j->p++;
        return kvs_put(k, strdup(key), strndup(start, (size_t)(j->p - start)), false, false);
    }
    while (isalpha((unsigned char)*j->p))
        j->p++;
    if (j->p - start == 4 && !strncmp(start, "true", 4))
        return kvs_put(k, strdup(key), strdup("on"), false, true);
    if (j->p - start == 5 && !strncmp(start, "false", 5))
        return kvs_put(k, strdup(key), strdup("off"), false, true);
    if (j->p - start == 4 && !strncmp(start, "null", 4))
        return kvs_put(k, strdup(key), NULL, false, false);
    if (j->p == start)
        j->p++;
    snprintf(j->word, sizeof(j->word), "JSON parse error, invalid keyword '%.*s'",
             (int)(j->p - start), start);
    j->err = j->word;
    return -1;
}

/*
 * qobject/json-lexer.c: a string that holds a control character (tab
 * included), a byte 0xFE or 0xFF, or that the text ends inside, is a lexer
 * error, reported before the parser sees the value it is part of: true,
 * with qemu's message in *msg (heap), for the first such string of the
 * top-level value.  Stops without a verdict at anything else the lexer
 * refuses outside a string, which the parser below reports its own way.
 */
static bool jlex_stray(const char *p, char **msg)
{
    int depth = 0;

    for (;;) {
        unsigned char c = (unsigned char)*p;

        if (!c)
            return false;
        if (c == '"' || c == '\'') {
            const char *tok = p++;
            unsigned char d;

            for (;;) {
                d = (unsigned char)*p;
                if (d == c)
                    break;
                if (d == '\\')
                    d = (unsigned char)*++p;
                if (d < 0x20 || d >= 0xfe) {
                    int len = (int)(p - tok) + (d ? 1 : 0);

                    if (asprintf(msg, "JSON parse error, stray '%.*s'", len, tok) < 0)
                        *msg = NULL;
                    return true;
                }
                p++;
            }
            p++;
            if (depth == 0)
                return false; /* a string alone: parsed at once */
            continue;
        }
        if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']') {
            if (--depth <= 0)
                return false;
        } else if (!isalnum(c) && !strchr(" \t\n\r:,-+.", c))
            return false;
        p++;
    }
}

/*
 * parse_json_filename(): 0, or -1 with *err (heap) "Could not parse the
 * JSON options: ..." or "Invalid JSON object given".
 */
static int parse_json(const char *arg, struct kvs *k, char **err)
{
    struct jp j = {arg + 5, NULL, {0}};
    const char *e = NULL;
    char *stray = NULL;

    *err = NULL;
    ws(&j);
    if (!*j.p) {
        e = "Could not parse the JSON options: Expecting a JSON value";
    } else if (jlex_stray(j.p, &stray)) {
        if (stray && asprintf(err, "Could not parse the JSON options: %s", stray) < 0)
            *err = NULL;
        free(stray);
        return -1;
    } else if (*j.p != '{') {
        /* Any other well-formed value is not an object. */
        if (jvalue(&j, k, "x", 0) == 0) {
            ws(&j);
            if (!*j.p)
                e = "Invalid JSON object given";
        }
    } else if (jobject(&j, k, "", 0) == 0) {
        ws(&j);
        if (!*j.p)
            return 0;
        j.err = "JSON parse error, expecting value";
    }
    if (e)
        *err = strdup(e);
    else if (asprintf(err, "Could not parse the JSON options: %s",
                      j.err ? j.err : "JSON parse error, invalid syntax") < 0)
        *err = NULL;
    return -1;
}

/* --- What the options mean --- */

/* Options of the file protocol driver (file-posix.c raw_runtime_opts + block.c). */
static const char *const file_opts[] = {
    "driver",
    "filename",
    "locking",
    "aio",
    "aio-max-batch",
    "pr-manager",
    "drop-cache",
    "x-check-cache-dropped",
    "node-name",
    "read-only",
    "auto-read-only",
    "force-share",
    "cache.direct",
    "cache.no-flush",
    "discard",
    "detect-zeroes",
    NULL,
};

/* Options of a format node that do not change what instar reads or writes. */
static const char *const fmt_opts[] = {
    "driver",       "node-name",      "read-only", "auto-read-only", "force-share",
    "cache.direct", "cache.no-flush", "discard",   "detect-zeroes",  NULL,
};

/* qcow2's runtime options (qcow2_runtime_opts): caches, discard passthrough, checks. */
static const char *const qcow2_opts[] = {
    "lazy-refcounts",
    "pass-discard-request",
    "pass-discard-snapshot",
    "pass-discard-other",
    "overlap-check",
    "cache-size",
    "l2-cache-size",
    "l2-cache-entry-size",
    "refcount-cache-size",
    "cache-clean-interval",
    NULL,
};

static bool in(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (!strcmp(*list, s))
            return true;
    return false;
}

static bool is_protocol(const char *drv)
{
    char probe[160];
    const char *path;
    char *msg = NULL;
    bool r;

    /* policy_host_path() knows qemu's protocol names; "file" is one too. */
    if (!strcmp(drv, "file"))
        return true;
    snprintf(probe, sizeof(probe), "%s:x", drv);
    r = policy_host_path(probe, &path, &msg) < 0 && msg && strncmp(msg, "Unknown", 7);
    free(msg);
    return r;
}

static int fail(const struct img_spec *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(const struct img_spec *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    report_error("Could not open '%s': %s", s->display, buf);
    return -1;
}

/*
 * The protocol level under prefix ("" for driver=file at the top, "file."
 * below a format): a local file, or a refusal.
 */
static int protocol_level(struct img_spec *s, struct kvs *k, const char *prefix)
{
    size_t pl = strlen(prefix);
    struct kv *drv, *fn;
    char key[64];
    const char *d;

    snprintf(key, sizeof(key), "%sdriver", prefix);
    drv = kvs_get(k, key);
    d = drv && drv->is_str ? drv->val : "file";
    if (drv)
        drv->used = true;
    if (!cmd_driver_known(d))
        return fail(s, "Unknown driver '%s'", d);
    if (strcmp(d, "file")) {
        if (is_protocol(d))
            return fail(s, "Protocol '%s' is not supported by instar (only local files are opened)",
                        d);
        return fail(s, "Image format '%s' is not supported by instar as a protocol layer", d);
    }
    snprintf(key, sizeof(key), "%sfilename", prefix);
    fn = kvs_get(k, key);
    if (!fn || !fn->val)
        return fail(s, "The 'file' block driver requires a file name");
    fn->used = true;
    s->path = strdup(fn->val);
    for (unsigned i = 0; i < k->n; i++) {
        struct kv *o = &k->v[i];

        if (o->used || strncmp(o->key, prefix, pl))
            continue;
        if (!in(file_opts, o->key + pl))
            return fail(s, "Block protocol 'file' doesn't support the option '%s'", o->key + pl);
        o->used = true;
    }
    return s->path ? 0 : fail(s, "Cannot allocate memory");
}

/*
 * Whether the file node gets BDRV_O_NOCACHE: its own file.cache.direct,
 * else the cache.direct it inherits from the format node (a protocol
 * node given as the image has only its own).
 */
static bool direct_option(struct kvs *k)
{
    struct kv *o = kvs_get(k, "file.cache.direct");

    if (!o)
        o = kvs_get(k, "cache.direct");
    return o && o->val &&
           (!strcmp(o->val, "on") || !strcmp(o->val, "yes") || !strcmp(o->val, "true") ||
            !strcmp(o->val, "y"));
}

/*
 * Keep one backing.* option instar takes (key without "backing."):
 * 1 taken, 0 not one of them (or given twice), -1 out of memory.
 */
static int backing_option(struct img_spec *s, const char *key, const char *val)
{
    char **slot = NULL;

    if (!strcmp(key, "file.driver")) {
        if (strcmp(val, "file"))
            return 0;
        s->backing_opts = true;
        return 1;
    }
    if (!strcmp(key, "file.filename"))
        slot = &s->backing_path;
    else if (!strcmp(key, "driver"))
        slot = &s->backing_fmt;
    else if (!strcmp(key, "encrypt.key-secret") || !strcmp(key, "key-secret"))
        slot = &s->backing_key_secret;
    if (!slot || *slot)
        return 0;
    if (slot == &s->backing_key_secret)
        s->backing_key_luks = !strcmp(key, "key-secret");
    s->backing_opts = true;
    *slot = strdup(val);
    return *slot ? 1 : -1;
}

static int interpret(struct img_spec *s, struct kvs *k, const char *fmt, bool force_share)
{
    struct kv *drv = kvs_get(k, "driver"), *file = kvs_get(k, "file"), *fs;
    const char *d = fmt ? fmt : (drv && drv->is_str ? drv->val : NULL);
    bool has_file = false;

    if (drv)
        drv->used = true;
    fs = kvs_get(k, "force-share");
    if (fs && force_share && !(fs->val && !strcmp(fs->val, "on"))) {
        report_error("--force-share/-U conflicts with image options");
        return -1;
    }
    s->force_share = force_share || (fs && fs->val && !strcmp(fs->val, "on"));
    s->direct = direct_option(k);
    if (d && !cmd_driver_known(d))
        return fail(s, "Unknown driver '%s'", d);
    if (d && is_protocol(d)) {
        if (strcmp(d, "file"))
            return fail(s, "Protocol '%s' is not supported by instar (only local files are opened)",
                        d);
        s->fmt = strdup("file");
        return s->fmt ? protocol_level(s, k, "") : -1;
    }
    if (file && file->is_str)
        return fail(s, "Cannot find device='%s' nor node-name='%s'", file->val, file->val);
    for (unsigned i = 0; i < k->n; i++)
        has_file |= !strncmp(k->v[i].key, "file.", 5);
    if (!has_file) {
        if (!d)
            return fail(s, "Must specify either driver or file");
        return fail(s, "A block device must be specified for \"file\"");
    }
    if (d && strcmp(d, "qcow2") && strcmp(d, "raw") && strcmp(d, "vpc") && strcmp(d, "qed") &&
        strcmp(d, "qcow") && strcmp(d, "bochs") && strcmp(d, "cloop") && strcmp(d, "dmg") &&
        strcmp(d, "parallels") && strcmp(d, "vhdx") && strcmp(d, "vdi") && strcmp(d, "vmdk") &&
        strcmp(d, "luks"))
        return fail(s, "Image format '%s' is not supported by instar", d);
    if (d && !(s->fmt = strdup(d)))
        return -1;
    if (protocol_level(s, k, "file.") < 0)
        return -1;
    for (unsigned i = 0; i < k->n; i++) {
        struct kv *o = &k->v[i];

        if (o->used)
            continue;
        /*
         * "backing" (null: no backing file; a node name) and the other
         * backing.* options change the chain instar opens; the backing
         * file's own name, format and key secret are taken (and checked
         * against the chain, open_chain_spec()).
         */
        if (!strncmp(o->key, "backing.", 8) && o->val) {
            int taken = backing_option(s, o->key + 8, o->val);

            if (taken < 0)
                return -1;
            if (taken)
                continue;
        }
        if (!strcmp(o->key, "backing") || !strncmp(o->key, "backing.", 8))
            return fail(s, "Option 'backing' is not supported by instar");
        if (in(fmt_opts, o->key))
            continue;
        if (d && !strcmp(d, "qcow2") &&
            (in(qcow2_opts, o->key) || !strncmp(o->key, "overlap-check.", 14)))
            continue;
        /*
         * The data file's own node, as a file (qcow2 opens the child
         * "data-file"; a probed format that is not qcow2 refuses it once
         * probed, open_chain_spec()).
         */
        if ((!d || !strcmp(d, "qcow2")) && !strcmp(o->key, "data-file.filename") && o->val &&
            !s->data_file) {
            if (!(s->data_file = strdup(o->val)))
                return -1;
            continue;
        }
        if ((!d || !strcmp(d, "qcow2")) && !strcmp(o->key, "data-file.driver") && o->val &&
            !strcmp(o->val, "file"))
            continue;
        if (d && (!strcmp(d, "qcow2") || !strcmp(d, "qcow")) &&
            !strcmp(o->key, "encrypt.key-secret") && o->val && !s->key_secret) {
            if (!(s->key_secret = strdup(o->val)))
                return -1;
            continue;
        }
        if (d && !strcmp(d, "luks") && !strcmp(o->key, "key-secret") && o->val && !s->key_secret) {
            if (!(s->key_secret = strdup(o->val)))
                return -1;
            continue;
        }
        if (d && !strcmp(d, "qcow2") &&
            (!strncmp(o->key, "encrypt.", 8) || !strncmp(o->key, "data-file", 9)))
            return fail(s, "Option '%s' is not supported by instar", o->key);
        if (d && !strcmp(d, "vpc") && !strcmp(o->key, "force_size_calc")) {
            /* vpc_parse_options() */
            if (o->val && !strcmp(o->val, "chs"))
                s->vpc_size_calc = 1;
            else if (o->val && !strcmp(o->val, "current_size"))
                s->vpc_size_calc = 2;
            else
                return fail(s, "Invalid size calculation mode: '%s'", o->val ? o->val : "");
            continue;
        }
        if (d && !strcmp(d, "parallels") && !strcmp(o->key, "prealloc-mode")) {
            /* parallels_open(): how a write grows the file; falloc is the default. */
            if (o->val && !strcmp(o->val, "truncate"))
                s->prl_truncate = true;
            else if (!o->val || strcmp(o->val, "falloc"))
                return fail(s, "invalid parameter value: %s", o->val ? o->val : "");
            continue;
        }
        if (d && !strcmp(d, "parallels") && !strcmp(o->key, "prealloc-size")) {
            /*
             * How far a write grows the file past the new clusters: the close
             * cuts it at the end of the last cluster, so the step changes no
             * resulting byte or allocation (the guest grows by qemu's default).
             */
            uint64_t v;
            int err = o->val ? size_parse(o->val, NULL, &v) : -EINVAL;

            if (err == -ERANGE)
                return fail(s, "Value '%s' is out of range for parameter 'prealloc-size'", o->val);
            if (err) {
                fail(s, "Parameter 'prealloc-size' expects a non-negative number below 2^64");
                fputs("Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                      "and exabytes, respectively.\n",
                      stderr);
                return -1;
            }
            continue;
        }
        /* raw's (or a probed format's: open_chain_spec() refuses them unless it is raw). */
        if ((!d || !strcmp(d, "raw")) && (!strcmp(o->key, "offset") || !strcmp(o->key, "size"))) {
            bool off = !strcmp(o->key, "offset");
            char **dst = off ? &s->raw_offset : &s->raw_size;

            free(*dst);
            /* JSON null: no value (qemu_opts_absorb_qdict() skips it), but named as null. */
            if (!(*dst = strdup(o->val ? o->val : "null")))
                return -1;
            *(off ? &s->raw_offset_num : &s->raw_size_num) = !o->is_str && !o->is_bool;
            continue;
        }
        return fail(s, "Block format '%s' does not support the option '%s'", d ? d : "(probed)",
                    o->key);
    }
    return 0;
}

int spec_parse(struct img_spec *s, const char *arg, bool image_opts, const char *fmt,
               bool force_share)
{
    struct kvs k = {NULL, 0};
    char *err;
    int r = -1;

    memset(s, 0, sizeof(*s));
    s->display = arg;
    if (!image_opts && strncmp(arg, "json:", 5)) {
        s->force_share = force_share;
        if (fmt && !(s->fmt = strdup(fmt)))
            return -1;
        return 0;
    }
    if (image_opts) {
        const char *p = arg;

        while (*p) {
            char *n, *v;

            p = opts_next(p, p == arg ? "file" : NULL, &n, &v);
            if (kvs_put(&k, n, v, true, false) < 0)
                goto out;
        }
    } else if (parse_json(arg, &k, &err) < 0) {
        report_error("Could not open '%s': %s", arg, err ? err : strerror(ENOMEM));
        free(err);
        goto out;
    }
    r = interpret(s, &k, image_opts ? NULL : fmt, force_share);
out:
    kvs_free(&k);
    if (r < 0)
        spec_release(s);
    return r;
}

int spec_refuse_backing(const struct img_spec *s)
{
    return s->backing_opts ? fail(s, "Option 'backing' is not supported by instar") : 0;
}

void spec_release(struct img_spec *s)
{
    free(s->path);
    free(s->fmt);
    free(s->key_secret);
    free(s->data_file);
    free(s->backing_path);
    free(s->backing_fmt);
    free(s->backing_key_secret);
    free(s->raw_offset);
    free(s->raw_size);
    s->path = s->fmt = s->key_secret = s->data_file = s->raw_offset = s->raw_size = NULL;
    s->backing_path = s->backing_fmt = s->backing_key_secret = NULL;
}
