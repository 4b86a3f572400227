/*
 * See object.h.  After qom/object_interfaces.c (user_creatable_parse_str,
 * user_creatable_add_type), util/keyval.c (keyval_parse) and
 * crypto/secret.c, crypto/secret_common.c (the secret object).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "object.h"
#include "report.h"

#define OBJECT_PROPS_MAX 64
#define SECRET_FILE_MAX  (64u << 20)

/* QEMU 7.2's ObjectType enum (qapi/qom.json), as Debian builds it. */
static const char *const object_types[] = {
    "authz-list",
    "authz-listfile",
    "authz-pam",
    "authz-simple",
    "can-bus",
    "can-host-socketcan",
    "colo-compare",
    "cryptodev-backend",
    "cryptodev-backend-builtin",
    "cryptodev-backend-lkcf",
    "cryptodev-vhost-user",
    "dbus-vmstate",
    "filter-buffer",
    "filter-dump",
    "filter-mirror",
    "filter-redirector",
    "filter-replay",
    "filter-rewriter",
    "input-barrier",
    "input-linux",
    "iothread",
    "main-loop",
    "memory-backend-epc",
    "memory-backend-file",
    "memory-backend-memfd",
    "memory-backend-ram",
    "pef-guest",
    "pr-manager-helper",
    "qtest",
    "rng-builtin",
    "rng-egd",
    "rng-random",
    "secret",
    "secret_keyring",
    "sev-guest",
    "thread-context",
    "s390-pv-guest",
    "throttle-group",
    "tls-creds-anon",
    "tls-creds-psk",
    "tls-creds-x509",
    "tls-cipher-suites",
    "x-remote-object",
    "x-vfio-user-server",
};

/* Types of that enum that qemu-img does not link (object_class_by_name fails). */
static const char *const absent_types[] = {
    "can-bus",
    "cryptodev-backend",
    "cryptodev-backend-builtin",
    "cryptodev-backend-lkcf",
    "iothread",
    "pef-guest",
    "rng-builtin",
    "rng-random",
    "s390-pv-guest",
};

/* One key=value of a definition (keyval: a later duplicate replaces the value). */
struct prop {
    char *key;
    char *val;
};

struct secret {
    char *id;
    char *data; /* the loaded bytes, NUL-terminated */
    size_t len;
};

static struct secret *secrets;
static size_t nsecrets;
/* Ids of every object created, for QEMU's duplicate check. */
static char **ids;
static size_t nids;

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, list[i]))
            return true;
    return false;
}

static bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

bool object_id_wellformed(const char *id)
{
    if (!is_alpha((unsigned char)id[0]))
        return false;
    for (size_t i = 1; id[i]; i++)
        if (!is_alpha((unsigned char)id[i]) && !is_digit((unsigned char)id[i]) &&
            !strchr("-._", id[i]))
            return false;
    return true;
}

void object_report_bad_id(void)
{
    report_error("Parameter 'id' expects an identifier");
    fputs("Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n",
          stderr);
}

/* parse_qapi_name() of a whole key fragment: letters, digits, '-', '_', starting with a letter. */
static size_t qapi_name_len(const char *s)
{
    size_t i;

    if (!is_alpha((unsigned char)s[0]))
        return 0;
    for (i = 1; is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) || s[i] == '-' ||
                s[i] == '_';
         i++)
        ;
    return i;
}

static void props_free(struct prop *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].key);
        free(p[i].val);
    }
}

static const char *prop_get(const struct prop *p, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(p[i].key, key))
            return p[i].val;
    return NULL;
}

/*
 * keyval_parse(def, "qom-type") for flat keys (a dotted key is kept as
 * written; no instar object has nested properties).  *help is set for a
 * "help" or "?" element.  Returns 0, or -1 after reporting.
 */
static int keyval(const char *def, struct prop *p, size_t *n, bool *help)
{
    const char *s = def;
    bool first = true;

    *n = 0;
    *help = false;
    while (*s) {
        size_t len = strcspn(s, "=,"), klen;
        char *key, *val, *v;
        const char *k = s;

        if (len && s[len] != '=') {
            if ((len == 4 && !strncmp(s, "help", 4)) || (len == 1 && s[0] == '?')) {
                *help = true;
                s += len;
                if (*s == ',')
                    s++;
                continue;
            }
            if (first) {
                key = strdup("qom-type");
                val = strndup(s, len);
                s += len;
                if (*s == ',')
                    s++;
                goto put;
            }
        }
        /* Dotted fragments, each a QAPI name. */
        for (klen = 0;;) {
            size_t f = qapi_name_len(k + klen);

            if (!f || (klen + f < len && k[klen + f] != '.')) {
                report_error("Invalid parameter '%.*s'", (int)len, k);
                return -1;
            }
            klen += f;
            if (klen >= len)
                break;
            klen++;
        }
        if (s[len] != '=') {
            report_error("Expected '=' after parameter '%.*s'", (int)len, k);
            return -1;
        }
        key = strndup(k, len);
        s += len + 1;
        val = v = malloc(strlen(s) + 1);
        if (!val) {
            free(key);
            goto nomem;
        }
        for (;;) {
            if (!*s)
                break;
            if (*s == ',') {
                s++;
                if (*s != ',')
                    break;
            }
            *v++ = *s++;
        }
        *v = '\0';
    put:
        if (!key || !val) {
            free(key);
            free(val);
            goto nomem;
        }
        first = false;
        for (size_t i = 0; i < *n; i++) {
            if (!strcmp(p[i].key, key)) {
                free(p[i].val);
                p[i].val = val;
                free(key);
                key = NULL;
                break;
            }
        }
        if (!key)
            continue;
        if (*n == OBJECT_PROPS_MAX) {
            free(key);
            free(val);
            report_error("Too many parameters in --object");
            return -1;
        }
        p[*n].key = key;
        p[(*n)++].val = val;
    }
    return 0;
nomem:
    report_error("%s", strerror(ENOMEM));
    return -1;
}

/* g_file_get_contents() of a secret's file, with glib's messages. */
static int read_file(const char *path, char **data, size_t *len)
{
    struct stat st;
    size_t cap = 4096, n = 0;
    char *buf;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        report_error("Unable to read %s: Failed to open file \u201c%s\u201d: %s", path, path,
                     strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size < SECRET_FILE_MAX)
        cap = (size_t)st.st_size + 1;
    buf = malloc(cap);
    for (;;) {
        ssize_t r;

        if (!buf) {
            close(fd);
            report_error("%s", strerror(ENOMEM));
            return -1;
        }
        if (n + 1 == cap) {
            char *nb = cap >= SECRET_FILE_MAX ? NULL : realloc(buf, cap * 2);

            if (!nb)
                free(buf);
            buf = nb;
            cap *= 2;
            continue;
        }
        r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            report_error("Unable to read %s: Failed to read from file \u201c%s\u201d: %s", path,
                         path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

static int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* qbase64_decode(): checked characters, then g_base64_decode (whole quads). */
static int b64_decode(char *data, size_t *len)
{
    static const char valid[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n";
    size_t in = 0, out = 0, q = 0, pad = 0;
    unsigned acc = 0;

    if (memchr(data, '\0', *len)) {
        report_error("Base64 data contains embedded NUL characters");
        return -1;
    }
    if (strspn(data, valid) != *len) {
        report_error("Base64 data contains invalid characters");
        return -1;
    }
    for (; in < *len; in++) {
        int v = b64_value((unsigned char)data[in]);

        if (data[in] == '\n')
            continue;
        if (v < 0) {
            v = 0;
            pad++;
        }
        acc = acc << 6 | (unsigned)v;
        if (++q == 4) {
            size_t keep = pad > 2 ? 0 : 3 - pad;

            for (size_t i = 0; i < keep; i++)
                data[out++] = (char)(acc >> (16 - 8 * i));
            q = 0;
            pad = 0;
            acc = 0;
        }
    }
    data[out] = '\0';
    *len = out;
    return 0;
}

static int secret_add(const char *id, const struct prop *p, size_t n)
{
    static const char *const keys[] = {"qom-type", "id", "loaded", "format",
                                       "keyid",    "iv", "data",   "file"};
    const char *format = prop_get(p, n, "format"), *data = prop_get(p, n, "data");
    const char *file = prop_get(p, n, "file"), *keyid = prop_get(p, n, "keyid");
    const char *loaded = prop_get(p, n, "loaded");
    struct secret sec = {0}, *ns;

    /* The visitor: members in QAPI order, then the unexpected ones. */
    if (loaded && strcmp(loaded, "on") && strcmp(loaded, "off")) {
        report_error("Parameter 'loaded' expects 'on' or 'off'");
        return -1;
    }
    if (format && strcmp(format, "raw") && strcmp(format, "base64")) {
        report_error("Parameter 'format' does not accept value '%s'", format);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!in_list(p[i].key, keys, sizeof(keys) / sizeof(keys[0]))) {
            report_error("Parameter '%s' is unexpected", p[i].key);
            return -1;
        }
    }
    if (!object_id_wellformed(id)) {
        object_report_bad_id();
        return -1;
    }
    /* object_set_properties_from_qdict(), then the child's name, then complete(). */
    if (loaded) {
        report_error("Property 'secret.loaded' is not writable");
        return -1;
    }
    for (size_t i = 0; i < nids; i++) {
        if (!strcmp(ids[i], id)) {
            report_error("attempt to add duplicate property '%s' to object (type 'container')", id);
            return -1;
        }
    }
    if (file && data) {
        report_error("'file' and 'data' are mutually exclusive");
        return -1;
    }
    if (file) {
        if (read_file(file, &sec.data, &sec.len) < 0)
            return -1;
    } else if (data) {
        sec.data = strdup(data);
        sec.len = strlen(data);
    } else {
        report_error("Either 'file' or 'data' must be provided");
        return -1;
    }
    if (!sec.data)
        goto nomem;
    if (keyid) {
        bool known = false;

        for (size_t i = 0; i < nsecrets; i++)
            known |= !strcmp(secrets[i].id, keyid);
        if (!known)
            report_error("No secret with id '%s'", keyid);
        else
            report_error("Secrets encrypted with another secret (keyid) are not supported by "
                         "instar");
        free(sec.data);
        return -1;
    }
    if (format && !strcmp(format, "base64") && b64_decode(sec.data, &sec.len) < 0) {
        free(sec.data);
        return -1;
    }
    sec.id = strdup(id);
    ns = realloc(secrets, (nsecrets + 1) * sizeof(*secrets));
    if (!sec.id || !ns) {
        free(sec.id);
        free(sec.data);
        if (ns)
            secrets = ns;
        goto nomem;
    }
    secrets = ns;
    secrets[nsecrets++] = sec;
    return 0;
nomem:
    report_error("%s", strerror(ENOMEM));
    return -1;
}

/* The types `--object help` lists: those qemu-img links that a user can create. */
static const char *const creatable_types[] = {
    "authz-list",     "authz-list-file", "authz-simple",   "main-loop",      "pr-manager-helper",
    "secret",         "secret_keyring",  "thread-context", "throttle-group", "tls-cipher-suites",
    "tls-creds-anon", "tls-creds-psk",   "tls-creds-x509",
};

/*
 * The properties `--object TYPE,help` prints for each type of
 * creatable_types (object_property_help() of each class property, sorted):
 * qemu-img 7.2's own output.
 */
static const struct {
    const char *type;
    const char *props;
} type_props[] = {
    {"authz-list", "policy=<QAuthZListPolicy>\n"
                   "rules=<QAuthZListRule>\n"},
    {"authz-list-file", "filename=<string>\n"
                        "refresh=<bool>\n"},
    {"authz-simple", "identity=<string>\n"},
    {"main-loop", "aio-max-batch=<int>\n"
                  "thread-pool-max=<int>\n"
                  "thread-pool-min=<int>\n"},
    {"pr-manager-helper", "path=<string>\n"},
    {"secret", "data=<string>\n"
               "file=<string>\n"
               "format=<QCryptoSecretFormat>\n"
               "iv=<string>\n"
               "keyid=<string>\n"},
    {"secret_keyring", "format=<QCryptoSecretFormat>\n"
                       "iv=<string>\n"
                       "keyid=<string>\n"
                       "serial=<int32_t>\n"},
    {"thread-context", "cpu-affinity=<int>\n"
                       "node-affinity=<int>\n"},
    {"throttle-group", "limits=<ThrottleLimits>\n"
                       "x-bps-read-max-length=<int>\n"
                       "x-bps-read-max=<int>\n"
                       "x-bps-read=<int>\n"
                       "x-bps-total-max-length=<int>\n"
                       "x-bps-total-max=<int>\n"
                       "x-bps-total=<int>\n"
                       "x-bps-write-max-length=<int>\n"
                       "x-bps-write-max=<int>\n"
                       "x-bps-write=<int>\n"
                       "x-iops-read-max-length=<int>\n"
                       "x-iops-read-max=<int>\n"
                       "x-iops-read=<int>\n"
                       "x-iops-size=<int>\n"
                       "x-iops-total-max-length=<int>\n"
                       "x-iops-total-max=<int>\n"
                       "x-iops-total=<int>\n"
                       "x-iops-write-max-length=<int>\n"
                       "x-iops-write-max=<int>\n"
                       "x-iops-write=<int>\n"},
    {"tls-cipher-suites", "dir=<string>\n"
                          "endpoint=<QCryptoTLSCredsEndpoint>\n"
                          "priority=<string>\n"
                          "verify-peer=<bool>\n"},
    {"tls-creds-anon", "dir=<string>\n"
                       "endpoint=<QCryptoTLSCredsEndpoint>\n"
                       "priority=<string>\n"
                       "verify-peer=<bool>\n"},
    {"tls-creds-psk", "dir=<string>\n"
                      "endpoint=<QCryptoTLSCredsEndpoint>\n"
                      "priority=<string>\n"
                      "username=<string>\n"
                      "verify-peer=<bool>\n"},
    {"tls-creds-x509", "dir=<string>\n"
                       "endpoint=<QCryptoTLSCredsEndpoint>\n"
                       "passwordid=<string>\n"
                       "priority=<string>\n"
                       "sanity-check=<bool>\n"
                       "verify-peer=<bool>\n"},
};

/*
 * user_creatable_print_help_from_qdict(): a type's properties, or the
 * list of types.  Returns 1 (printed: qemu-img exits 0).
 */
static int print_help(const char *type)
{
    for (size_t i = 0; type && i < sizeof(type_props) / sizeof(type_props[0]); i++) {
        const char *p = type_props[i].props;

        if (strcmp(type, type_props[i].type))
            continue;
        printf("%s options:\n", type);
        while (*p) {
            const char *nl = strchr(p, '\n');

            printf("  %.*s\n", (int)(nl - p), p);
            p = nl + 1;
        }
        return 1;
    }
    printf("List of user creatable objects:\n");
    for (size_t i = 0; i < sizeof(creatable_types) / sizeof(creatable_types[0]); i++)
        printf("  %s\n", creatable_types[i]);
    return 1;
}

int object_add(const char *def)
{
    struct prop p[OBJECT_PROPS_MAX];
    const char *type, *id;
    size_t n = 0;
    char **nids_;
    bool help;
    int r, ret = -1;

    /* The JSON form is passed to the QAPI visitor as is: not checked here. */
    if (def[0] == '{')
        return 0;
    r = keyval(def, p, &n, &help);
    if (r < 0)
        goto out;
    type = prop_get(p, n, "qom-type");
    if (help) {
        ret = print_help(type);
        goto out;
    }
    id = prop_get(p, n, "id");
    if (!type) {
        report_error("Parameter 'qom-type' is missing");
        goto out;
    }
    if (!in_list(type, object_types, sizeof(object_types) / sizeof(object_types[0]))) {
        report_error("Parameter 'qom-type' does not accept value '%s'", type);
        goto out;
    }
    if (!id) {
        report_error("Parameter 'id' is missing");
        goto out;
    }
    if (!strcmp(type, "secret")) {
        if (secret_add(id, p, n) < 0)
            goto out;
    } else {
        /* Other types: their properties are not checked (docs/differences.md). */
        if (in_list(type, absent_types, sizeof(absent_types) / sizeof(absent_types[0]))) {
            report_error("invalid object type: %s", type);
            goto out;
        }
        if (!object_id_wellformed(id)) {
            object_report_bad_id();
            goto out;
        }
        for (size_t i = 0; i < nids; i++) {
            if (!strcmp(ids[i], id)) {
                report_error("attempt to add duplicate property '%s' to object (type "
                             "'container')",
                             id);
                goto out;
            }
        }
    }
    nids_ = realloc(ids, (nids + 1) * sizeof(*ids));
    if (!nids_ || !(nids_[nids] = strdup(id))) {
        if (nids_)
            ids = nids_;
        report_error("%s", strerror(ENOMEM));
        goto out;
    }
    ids = nids_;
    nids++;
    ret = 0;
out:
    props_free(p, n);
    return ret;
}

/* g_utf8_validate() with a length: well-formed UTF-8 without NUL bytes. */
static bool utf8_ok(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned c = s[i], need;
        uint32_t cp;

        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= need)
            return false;
        for (unsigned k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        /* Overlong forms, surrogates, beyond U+10FFFF. */
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += need + 1;
    }
    return true;
}

const char *object_secret_utf8(const char *id)
{
    for (size_t i = 0; i < nsecrets; i++) {
        if (strcmp(secrets[i].id, id))
            continue;
        if (!utf8_ok((const unsigned char *)secrets[i].data, secrets[i].len)) {
            report_error("Data from secret %s is not valid UTF-8", id);
            return NULL;
        }
        return secrets[i].data;
    }
    report_error("No secret with id '%s'", id);
    return NULL;
}

const char *object_secret_lookup(const char *id, const char **fmt)
{
    for (size_t i = 0; i < nsecrets; i++) {
        if (strcmp(secrets[i].id, id))
            continue;
        if (!utf8_ok((const unsigned char *)secrets[i].data, secrets[i].len)) {
            *fmt = "Data from secret %s is not valid UTF-8";
            return NULL;
        }
        return secrets[i].data;
    }
    *fmt = "No secret with id '%s'";
    return NULL;
}

bool object_secret_exists(const char *id)
{
    for (size_t i = 0; i < nsecrets; i++)
        if (!strcmp(secrets[i].id, id))
            return true;
    return false;
}

void object_release_all(void)
{
    for (size_t i = 0; i < nsecrets; i++) {
        free(secrets[i].id);
        free(secrets[i].data);
    }
    free(secrets);
    secrets = NULL;
    nsecrets = 0;
    for (size_t i = 0; i < nids; i++)
        free(ids[i]);
    free(ids);
    ids = NULL;
    nids = 0;
}
