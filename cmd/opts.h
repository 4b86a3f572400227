/*
 * qemu's QemuOpts for "-o" option strings, as qemu-img 7.2 parses them:
 * "name=value" pairs separated by commas, ",," for a literal comma in a
 * value, a bare "name" meaning name=on ("noname": name=off), "help" and
 * "?" asking for help.  A later duplicate key wins (qemu_opt_find looks
 * from the end).
 */
#ifndef CMD_OPTS_H
#define CMD_OPTS_H

#include <stdbool.h>
#include <stdint.h>

enum opt_type {
    OPT_STRING,
    OPT_BOOL,
    OPT_NUMBER,
    OPT_SIZE,
};

/* One QemuOptDesc. */
struct opt_desc {
    const char *name;
    enum opt_type type;
    const char *help;
    const char *def; /* def_value_str, or NULL */
};

/* One parsed option (QemuOpt): str as given, value for numbers/sizes/bools. */
struct opt_val {
    char *name;
    char *str;
    const struct opt_desc *desc;
    uint64_t value;
};

struct opt_list {
    const struct opt_desc *descs[64]; /* the merged list, in order */
    unsigned ndescs;
    struct opt_val *vals;
    unsigned nvals;
};

/* opts_valid_list - qemu-img's is_valid_option_list() for one -o argument. */
bool opts_valid_list(const char *s);

/*
 * opts_next - the next "name=value" element of a QemuOpts string at p
 * (",," a literal comma; a bare "name" is name=on, "noname" name=off).
 * @implied: for the first element, the implied option name (qemu's
 *           implied_opt_name: "file" for qemu-img's --image-opts), used
 *           when that element has no '='; NULL for the others
 * @name, @value: receive malloc'd strings (caller frees)
 * Returns the position after the element and its comma.
 */
const char *opts_next(const char *p, const char *implied, char **name, char **value);

/* opts_has_help - qemu's has_help_option(): some element is "help" or "?". */
bool opts_has_help(const char *params);

/*
 * opts_append - qemu_opts_append(): add descs (terminated by a NULL name)
 * to the list, skipping names already present.
 */
void opts_append(struct opt_list *l, const struct opt_desc *descs);

/*
 * opts_parse - qemu_opts_do_parse(): parse params into l.  On failure
 * writes qemu's message (and hint, "" if none) and returns -1.
 * msg/hint: buffers of msglen bytes.
 */
int opts_parse(struct opt_list *l, const char *params, char *msg, char *hint, unsigned msglen);

/* opts_set - qemu_opt_set() of a value the caller produced (no validation). */
void opts_set(struct opt_list *l, const char *name, const char *str, uint64_t value);

/* opts_find - the last value named name, or NULL. */
const struct opt_val *opts_find(const struct opt_list *l, const char *name);

/* opts_print - qemu_opts_print(opts, " ") on stdout. */
void opts_print(const struct opt_list *l);

/* opts_print_help - qemu_opts_print_help(list, false) on stdout. */
void opts_print_help(const struct opt_list *l);

void opts_free(struct opt_list *l);

/*
 * cmd_cache_mode - bdrv_parse_cache_mode() for -t/-T: 0 with *direct
 * (O_DIRECT) and *flush (flush at the end) set, or -1 for an unknown mode.
 */
int cmd_cache_mode(const char *mode, bool *direct, bool *flush);

#endif /* CMD_OPTS_H */
