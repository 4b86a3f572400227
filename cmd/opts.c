/*
 * QemuOpts parsing for "-o" (see opts.h), after util/qemu-option.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"
#include "size.h"

bool opts_valid_list(const char *s)
{
    size_t len = strlen(s), i;

    if (!s[0] || s[0] == ',') {
        return false;
    }
    for (i = len; i > 0 && s[i - 1] == ','; i--) {
    }
    return (len - i) % 2 == 0;
}

/* get_opt_value(): up to the next single comma, ",," giving ','. */
static const char *get_value(const char *p, char **value)
{
    size_t cap = 0;
    char *v = NULL;

    for (;;) {
        const char *c = strchr(p, ',');
        const char *end = c ? c : p + strlen(p);
        size_t len = (size_t)(end - p);
        if (*end && end[1] == ',') {
            len++;
        }
        v = realloc(v, cap + len + 1);
        if (!v) {
            abort();
        }
        memcpy(v + cap, p, len);
        cap += len;
        v[cap] = 0;
        if (!*end || end[1] != ',') {
            *value = v;
            return end;
        }
        p = end + 2;
    }
}

/* get_opt_name_value() without a firstname; *help set for "help" or "?". */
static const char *get_name_value(const char *params, char **name, char **value, bool *help)
{
    size_t len = strcspn(params, "=,");
    const char *p;

    *help = false;
    if (params[len] != '=') {
        *name = strndup(params, len);
        if (!*name) {
            abort();
        }
        p = params + len;
        if (!strncmp(*name, "no", 2)) {
            memmove(*name, *name + 2, strlen(*name + 2) + 1);
            *value = strdup("off");
        } else {
            *value = strdup("on");
            *help = !strcmp(*name, "help") || !strcmp(*name, "?");
        }
        if (!*value) {
            abort();
        }
    } else {
        *name = strndup(params, len);
        if (!*name) {
            abort();
        }
        p = get_value(params + len + 1, value);
    }
    if (*p == ',') {
        p++;
    }
    return p;
}

const char *opts_next(const char *p, const char *implied, char **name, char **value)
{
    bool help;

    if (implied && p[strcspn(p, "=,")] != '=') {
        *name = strdup(implied);
        if (!*name) {
            abort();
        }
        p = get_value(p, value);
        return *p == ',' ? p + 1 : p;
    }
    return get_name_value(p, name, value, &help);
}

bool opts_has_help(const char *params)
{
    for (const char *p = params; *p;) {
        char *n, *v;
        bool help;
        p = get_name_value(p, &n, &v, &help);
        free(n);
        free(v);
        if (help) {
            return true;
        }
    }
    return false;
}

void opts_append(struct opt_list *l, const struct opt_desc *descs)
{
    for (; descs->name; descs++) {
        bool dup = false;
        for (unsigned i = 0; i < l->ndescs; i++) {
            dup |= !strcmp(l->descs[i]->name, descs->name);
        }
        if (!dup && l->ndescs < sizeof(l->descs) / sizeof(l->descs[0])) {
            l->descs[l->ndescs++] = descs;
        }
    }
}

static const struct opt_desc *find_desc(const struct opt_list *l, const char *name)
{
    for (unsigned i = 0; i < l->ndescs; i++) {
        if (!strcmp(l->descs[i]->name, name)) {
            return l->descs[i];
        }
    }
    return NULL;
}

/* qemu_strtou64(value, NULL, 0): the whole string, any base prefix, '-' wraps. */
static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!*s) {
        return -EINVAL;
    }
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno == ERANGE) {
        return -ERANGE;
    }
    if (end == s || *end) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static void push(struct opt_list *l, char *name, char *str, const struct opt_desc *d, uint64_t v)
{
    l->vals = realloc(l->vals, (l->nvals + 1) * sizeof(*l->vals));
    if (!l->vals) {
        abort();
    }
    l->vals[l->nvals++] = (struct opt_val){name, str, d, v};
}

int opts_parse(struct opt_list *l, const char *params, char *msg, char *hint, unsigned msglen)
{
    hint[0] = 0;
    for (const char *p = params; *p;) {
        char *n, *v;
        bool help;
        const struct opt_desc *d;
        uint64_t val = 0;
        int err;

        p = get_name_value(p, &n, &v, &help);
        if (!strcmp(n, "id")) {
            free(n);
            free(v);
            continue;
        }
        d = find_desc(l, n);
        if (!d) {
            snprintf(msg, msglen, "Invalid parameter '%s'", n);
            goto bad;
        }
        switch (d->type) {
        case OPT_STRING:
            break;
        case OPT_BOOL:
            if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "y")) {
                val = 1;
            } else if (strcmp(v, "off") && strcmp(v, "no") && strcmp(v, "false") &&
                       strcmp(v, "n")) {
                snprintf(msg, msglen, "Parameter '%s' expects 'on' or 'off'", n);
                goto bad;
            }
            break;
        case OPT_NUMBER:
            err = parse_u64(v, &val);
            if (err == -ERANGE) {
                snprintf(msg, msglen, "Value '%s' is too large for parameter '%s'", v, n);
                goto bad;
            }
            if (err) {
                snprintf(msg, msglen, "Parameter '%s' expects a number", n);
                goto bad;
            }
            break;
        case OPT_SIZE:
            err = size_parse(v, NULL, &val);
            if (err == -ERANGE) {
                snprintf(msg, msglen, "Value '%s' is out of range for parameter '%s'", v, n);
                goto bad;
            }
            if (err) {
                snprintf(msg, msglen, "Parameter '%s' expects a non-negative number below 2^64", n);
                snprintf(hint, msglen,
                         "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, "
                         "peta-\nand exabytes, respectively.\n");
                goto bad;
            }
            break;
        }
        push(l, n, v, d, val);
        continue;
    bad:
        free(n);
        free(v);
        return -1;
    }
    return 0;
}

void opts_set(struct opt_list *l, const char *name, const char *str, uint64_t value)
{
    char *n = strdup(name), *s = strdup(str);

    if (!n || !s) {
        abort();
    }
    push(l, n, s, find_desc(l, name), value);
}

const struct opt_val *opts_find(const struct opt_list *l, const char *name)
{
    for (unsigned i = l->nvals; i-- > 0;) {
        if (!strcmp(l->vals[i].name, name)) {
            return &l->vals[i];
        }
    }
    return NULL;
}

static void escaped(const char *s)
{
    for (; *s; s++) {
        if (*s == ',') {
            putchar(',');
        }
        putchar(*s);
    }
}

void opts_print(const struct opt_list *l)
{
    const char *sep = "";

    for (unsigned i = 0; i < l->ndescs; i++) {
        const struct opt_desc *d = l->descs[i];
        const struct opt_val *o = opts_find(l, d->name);
        const char *value = o ? o->str : d->def;

        if (!value) {
            continue;
        }
        if (d->type == OPT_STRING) {
            printf("%s%s=", sep, d->name);
            escaped(value);
        } else if ((d->type == OPT_SIZE || d->type == OPT_NUMBER) && o) {
            printf("%s%s=%" PRId64, sep, d->name, (int64_t)o->value);
        } else {
            printf("%s%s=%s", sep, d->name, value);
        }
        sep = " ";
    }
}

static const char *type_str(enum opt_type t)
{
    switch (t) {
    case OPT_STRING:
        return "str";
    case OPT_BOOL:
        return "bool (on/off)";
    case OPT_NUMBER:
        return "num";
    case OPT_SIZE:
        return "size";
    }
    return "";
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void opts_print_help(const struct opt_list *l)
{
    char *lines[64];
    unsigned n = 0;

    for (unsigned i = 0; i < l->ndescs; i++) {
        const struct opt_desc *d = l->descs[i];
        char head[128];
        int len = snprintf(head, sizeof(head), "  %s=<%s>", d->name, type_str(d->type));
        char *line;
        if (len < 24) {
            len = 24;
        }
        if (asprintf(&line, "%-*s - %s", len, head, d->help) < 0) {
            abort();
        }
        lines[n++] = line;
    }
    qsort(lines, n, sizeof(lines[0]), cmp_str);
    for (unsigned i = 0; i < n; i++) {
        printf("%s\n", lines[i]);
        free(lines[i]);
    }
}

void opts_free(struct opt_list *l)
{
    for (unsigned i = 0; i < l->nvals; i++) {
        free(l->vals[i].name);
        free(l->vals[i].str);
    }
    free(l->vals);
    l->vals = NULL;
    l->nvals = 0;
}

/* bdrv_parse_cache_mode(): 0, or -1 for an unknown mode; *direct for O_DIRECT. */
int cmd_cache_mode(const char *mode, bool *direct, bool *flush)
{
    static const struct {
        const char *name;
        bool direct, flush;
    } modes[] = {
        {"none", true, true},       {"off", true, true},      {"directsync", true, true},
        {"writeback", false, true}, {"unsafe", false, false}, {"writethrough", false, true},
    };
    size_t i;

    for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (!strcmp(mode, modes[i].name)) {
            *direct = modes[i].direct;
            *flush = modes[i].flush;
            return 0;
        }
    return -1;
}
