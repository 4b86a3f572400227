/*
 * The subcommands of the multicall binary (cmd/main.c dispatches), and the
 * texts they share.
 *
 * A handler gets argv with argv[0] = the subcommand name, parses its own
 * options with getopt_long from optind = 0 (a full reset), and returns the
 * process exit code.  Handlers print; main() checks stdout at exit.
 */
#ifndef CMD_CMDS_H
#define CMD_CMDS_H

#include <stdbool.h>
#include <stdint.h>

/* One table line per qemu-img subcommand; handler NULL = not built yet. */
struct cmd_struct {
    const char *name;
    int (*handler)(int argc, char **argv);
    const char *synopsis; /* qemu-img-cmds.h arg_string */
};

/* The sorted table and its length (cmd/main.c). */
extern const struct cmd_struct cmd_table[];
extern const unsigned cmd_table_len;

/* Find a subcommand by exact name; NULL if unknown. */
const struct cmd_struct *cmd_lookup(const char *name);

/* qemu-img's "--version" text (two lines, each ending in '\n'). */
extern const char cmd_version_text[];

/* Print qemu-img's full --help text on stdout (cmd/help.c). */
void cmd_print_help(void);

/*
 * True if QEMU 7.2 (this build) has a block driver called name, i.e. "-f
 * name" does not fail with "Unknown driver".
 */
bool cmd_driver_known(const char *name);

/*
 * cmd_driver_creates - false for a driver qemu-img knows that cannot
 * create images (no create_opts: bochs, dmg, null-co, ...), whose create
 * and convert fail with "Format driver 'X' does not support image creation".
 */
bool cmd_driver_creates(const char *name);

/*
 * cmd_getopt - getopt_long() as every subcommand reads its options: a
 * missing argument or an unknown option is qemu-img's usage error, -h
 * prints the help.  Returns the next option, -1 at the end, or
 * CMD_GETOPT_DONE with *exit_code what the command exits with.
 */
#define CMD_GETOPT_DONE (-2)
struct option;
int cmd_getopt(int argc, char **argv, const char *optstring, const struct option *longopts,
               int *exit_code);

/*
 * cmd_add_options - one -o argument added to *options (qemu-img's
 * accumulate_options, after is_valid_option_list).  Returns 0, or -1
 * after reporting.
 */
int cmd_add_options(char **options, const char *arg);

/*
 * cmd_output_json - qemu-img's --output=human|json: *json set from output
 * (NULL: human).  Any other value is reported with qemu-img's message.
 * Returns 0, or -1 after reporting.
 */
int cmd_output_json(const char *output, bool *json);

/*
 * create_for_convert - bdrv_create() as img_convert() calls it: the -o
 * options (may be NULL) and size, then -B and -F (backing, backing_fmt:
 * may be NULL) as add_old_style_options() sets them, errors worded
 * "FILE: error while converting FMT: ...".  Returns 0 or -1 after
 * reporting.
 */
int create_for_convert(const char *filename, const char *fmt, const char *options, uint64_t size,
                       const char *backing, const char *backing_fmt);

/*
 * create_convert_backing - img_convert()'s parse of the -o options of fmt
 * with -B and -F added (add_old_style_options): the backing file and
 * format the target gets (*out_backing, *out_backing_fmt: NULL or
 * malloc'd, the caller frees).  A format instar does not create gives
 * NULLs.  Returns 0, or -1 after reporting (the options' parse error,
 * "Backing file [format] not supported for file format").
 */
int create_convert_backing(const char *fmt, const char *options, const char *backing,
                           const char *backing_fmt, char **out_backing, char **out_backing_fmt);

/*
 * create_option_help - print_block_option_help(): the create options of
 * fmt (with the file protocol's when filename is not NULL).  Returns the
 * exit code.
 */
int create_option_help(const char *filename, const char *fmt);

/*
 * create_for_dd - bdrv_create() as img_dd() calls it: no options, errors
 * worded "FILE: error while creating output image: ...".  Returns 0 or -1
 * after reporting.
 */
int create_for_dd(const char *filename, const char *fmt, uint64_t size);

/*
 * create_opts_for - the create options qemu-img parses -o against for
 * format fmt (qemu_opts_append of the driver's and the file protocol's
 * create_opts) appended to l: qcow2, raw and file.  Returns false (l
 * untouched) for other formats, whose options instar does not know.
 */
struct opt_list;
bool create_opts_for(struct opt_list *l, const char *fmt);
/* create_format_opts_for - the format's own create options (drv->create_opts) alone. */
bool create_format_opts_for(struct opt_list *l, const char *fmt);

/*
 * Handlers.  Exit codes: 0 success, 1 failure (usage or operation), unless
 * documented above the handler.
 */
int cmd_bench(int argc, char **argv);
int cmd_bitmap(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_measure(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_dd(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_rebase(int argc, char **argv);
int cmd_resize(int argc, char **argv);

/* The message of a resize code (formats/qcow2/resize.h) and how it is printed; NULL if unknown. */
const char *resize_msg(int code, int *kind);
int cmd_snapshot(int argc, char **argv);
int cmd_amend(int argc, char **argv);

#endif /* CMD_CMDS_H */
