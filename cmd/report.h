/*
 * The one reporting module of cmd/: every diagnostic the host prints goes
 * through here, so that the program-name prefix, the usage trailer, the
 * warning prefix and quiet mode behave like qemu-img's error_report().
 *
 * Format strings passed to the printf-like functions are always literals of
 * cmd/; anything that came out of an image or the guest is an argument,
 * never a format.
 */
#ifndef CMD_REPORT_H
#define CMD_REPORT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The hard-coded usage trailer (independent of argv[0], as in qemu-img). */
#define REPORT_USAGE_TRAILER "Try 'qemu-img --help' for more information\n"

/*
 * report_init - remember basename(argv0) as the message prefix.
 * @argv0: argv[0]; the pointer must stay valid (it is not copied)
 */
void report_init(const char *argv0);

/* The prefix in use ("qemu-img" until report_init is called). */
const char *report_progname(void);

/* "<prog>: <msg>\n" on stderr, like error_report(). */
void report_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void report_verror(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/*
 * report_guest_warning - print warning code (INSTAR_WARN_*, from a result
 * header) count times, as qemu-img does while opening.  0 prints nothing;
 * an unknown code is ignored.  INSTAR_WARN_DMG_CHUNKS: count holds the
 * warnings in order and arg the unknown chunk type (the header's
 * err_args[2]); each is printed once per process.
 */
void report_guest_warning(unsigned code, unsigned count, uint64_t arg);

/* "<prog>: warning: <msg>\n" on stderr, like warn_report(). */
void report_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * report_usage - qemu-img's error_exit(): the error line, then
 * REPORT_USAGE_TRAILER.  Returns 1, the exit code to hand back.
 */
int report_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Quiet mode (-q): qprintf() prints nothing while set. */
void report_set_quiet(bool quiet);
int report_qprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * report_code_template - the message template of an error code from
 * include/instar/errors.h or formats/qcow2/qcow2_err.h.
 * Returns the template, or NULL for an unknown code.
 */
const char *report_code_template(int32_t code);

/*
 * report_code_render - fill the template of code: {0}..{3} become args[i]
 * in decimal, {x0}..{x3} in lower-case hex, {#x0}..{#x3} as "%#x", {s} the bytes str[0..slen)
 * (up to the first NUL); any other brace is copied.  Unknown codes give
 * "Unknown error <code> from the sandbox".
 * @args: four arguments (may be NULL: all zero)
 * @str, @slen: the string argument (may be NULL/0)
 * Returns a malloc'd NUL-terminated string (caller frees), NULL on OOM.
 */
char *report_code_render(int32_t code, const uint64_t args[4], const char *str, size_t slen);

/*
 * report_code_render_to - as report_code_render, appending to an open
 * stream instead.  Returns 0, or -1 if the stream failed.
 */
int report_code_render_to(FILE *f, int32_t code, const uint64_t args[4], const char *str,
                          size_t slen);

#endif /* CMD_REPORT_H */
