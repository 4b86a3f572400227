/*
 * Reporting, after QEMU's util/error-report.c: "prog: msg" on stderr, where
 * prog is basename(argv[0]) (error_init()).
 */
#include <stdlib.h>
#include <string.h>

#include "instar/errors.h"
#include "qcow2/check_err.h"
#include "qcow2/qcow2_err.h"
#include "vhdx/vhdx_err.h"
#include "vdi/vdi_err.h"
#include "vmdk/vmdk_err.h"
#include "vpc/vpc_err.h"
#include "qed/qed_err.h"
#include "qcow/qcow_err.h"
#include "bochs/bochs_err.h"
#include "cloop/cloop_err.h"
#include "dmg/dmg_err.h"
#include "parallels/parallels_err.h"
#include "report.h"

static const char *progname = "qemu-img";
static bool quiet;

void report_init(const char *argv0)
{
    const char *slash;

    if (!argv0 || !*argv0)
        return;
    slash = strrchr(argv0, '/');
    progname = slash ? slash + 1 : argv0;
}

const char *report_progname(void)
{
    return progname;
}

void report_verror(const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void report_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report_verror(fmt, ap);
    va_end(ap);
}

void report_warning(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: warning: ", progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int report_usage(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report_verror(fmt, ap);
    va_end(ap);
    fputs(REPORT_USAGE_TRAILER, stderr);
    return 1;
}

void report_set_quiet(bool q)
{
    quiet = q;
}

int report_qprintf(const char *fmt, ...)
{
    va_list ap;
    int ret;

    if (quiet)
        return 0;
    va_start(ap, fmt);
    ret = vprintf(fmt, ap);
    va_end(ap);
    return ret;
}

/* --- Error-code templates --- */

struct code_msg {
    int32_t code;
    const char *msg;
};

static const struct code_msg code_msgs[] = {
#define REPORT_CODE_ENTRY(name, code, msg) {code, msg},
    INSTAR_ERRORS(REPORT_CODE_ENTRY) QCOW2_ERRORS(REPORT_CODE_ENTRY) VPC_ERRORS(REPORT_CODE_ENTRY)
        QED_ERRORS(REPORT_CODE_ENTRY) QCOW_ERRORS(REPORT_CODE_ENTRY) BOCHS_ERRORS(REPORT_CODE_ENTRY)
            CLOOP_ERRORS(REPORT_CODE_ENTRY) DMG_ERRORS(REPORT_CODE_ENTRY)
                PARALLELS_ERRORS(REPORT_CODE_ENTRY) PARALLELS_CHECK_MSGS(REPORT_CODE_ENTRY)
                    VHDX_ERRORS(REPORT_CODE_ENTRY) VDI_ERRORS(REPORT_CODE_ENTRY)
                        VMDK_ERRORS(REPORT_CODE_ENTRY) QCOW2_CHECK_MSGS(REPORT_CODE_ENTRY)
#undef REPORT_CODE_ENTRY
};

const char *report_code_template(int32_t code)
{
    size_t i;

    for (i = 0; i < sizeof(code_msgs) / sizeof(code_msgs[0]); i++)
        if (code_msgs[i].code == code)
            return code_msgs[i].msg;
    return NULL;
}

/*
 * Length of the slot at t ("{0}".."{3}", "{x0}".."{x3}", "{#x0}".."{#x3}",
 * "{08x0}".."{08x3}" (eight hex digits, zero-padded), "{016x0}".."{016x3}"
 * (sixteen), "{s}"), or 0 if t does not start one.  *kind is 'd', 'x', '#',
 * '8', 'X' or 's';
 * *idx the argument index.
 */
static size_t slot_len(const char *t, char *kind, unsigned *idx)
{
    if (t[0] != '{')
        return 0;
    if (t[1] >= '0' && t[1] <= '3' && t[2] == '}') {
        *kind = 'd';
        *idx = (unsigned)(t[1] - '0');
        return 3;
    }
    if (t[1] == 'x' && t[2] >= '0' && t[2] <= '3' && t[3] == '}') {
        *kind = 'x';
        *idx = (unsigned)(t[2] - '0');
        return 4;
    }
    if (t[1] == '#' && t[2] == 'x' && t[3] >= '0' && t[3] <= '3' && t[4] == '}') {
        *kind = '#';
        *idx = (unsigned)(t[3] - '0');
        return 5;
    }
    if (t[1] == '0' && t[2] == '8' && t[3] == 'x' && t[4] >= '0' && t[4] <= '3' && t[5] == '}') {
        *kind = '8';
        *idx = (unsigned)(t[4] - '0');
        return 6;
    }
    if (t[1] == '0' && t[2] == '1' && t[3] == '6' && t[4] == 'x' && t[5] >= '0' && t[5] <= '3' &&
        t[6] == '}') {
        *kind = 'X';
        *idx = (unsigned)(t[5] - '0');
        return 7;
    }
    if (t[1] == 's' && t[2] == '}') {
        *kind = 's';
        *idx = 0;
        return 3;
    }
    return 0;
}

int report_code_render_to(FILE *f, int32_t code, const uint64_t args[4], const char *str,
                          size_t slen)
{
    static const uint64_t zero[4];
    const char *t = report_code_template(code);
    const char *nul;

    if (!args)
        args = zero;
    if (!str)
        slen = 0;
    nul = slen ? memchr(str, '\0', slen) : NULL;
    if (nul)
        slen = (size_t)(nul - str);

    if (!t) {
        fprintf(f, "Unknown error %ld from the sandbox", (long)code);
        return ferror(f) ? -1 : 0;
    }
    while (*t) {
        char kind = 0;
        unsigned idx = 0;
        size_t n = slot_len(t, &kind, &idx);

        if (!n) {
            fputc(*t++, f);
            continue;
        }
        if (kind == 'd')
            fprintf(f, "%llu", (unsigned long long)args[idx]);
        else if (kind == 'x')
            fprintf(f, "%llx", (unsigned long long)args[idx]);
        else if (kind == '#')
            fprintf(f, "%#llx", (unsigned long long)args[idx]);
        else if (kind == '8')
            fprintf(f, "%08llx", (unsigned long long)args[idx]);
        else if (kind == 'X')
            fprintf(f, "%016llx", (unsigned long long)args[idx]);
        else
            fwrite(str, 1, slen, f);
        t += n;
    }
    return ferror(f) ? -1 : 0;
}

char *report_code_render(int32_t code, const uint64_t args[4], const char *str, size_t slen)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int bad;

    if (!f)
        return NULL;
    bad = report_code_render_to(f, code, args, str, slen);
    if (fclose(f) != 0)
        bad = -1;
    if (bad) {
        free(buf);
        return NULL;
    }
    return buf;
}

/*
 * dmg_read_mish_block()'s warn_report_once() calls: order holds up to three
 * kinds (1 bzip2, 2 lzfse, 3 unknown type) in the order the guest met them,
 * 2 bits each; each is printed once per process, as qemu-img does.
 */
static void report_dmg_warnings(unsigned order, uint64_t unknown_type)
{
    static bool done[4];

    for (unsigned k = 0; k < 3; k++) {
        unsigned w = (order >> (2 * k)) & 3;

        if (w == 0 || done[w])
            continue;
        done[w] = true;
        if (w == 1)
            fprintf(stderr,
                    "%s: warning: dmg-bzip2 module is missing, accessing bzip2 compressed "
                    "blocks will result in I/O errors\n",
                    report_progname());
        else if (w == 2)
            fprintf(stderr,
                    "%s: warning: dmg-lzfse module is missing, accessing lzfse compressed "
                    "blocks will result in I/O errors\n",
                    report_progname());
        else
            fprintf(stderr,
                    "%s: warning: Image contains chunks of unknown type %x, accessing them "
                    "will result in I/O errors\n",
                    report_progname(), (unsigned)(uint32_t)unknown_type);
    }
}

void report_guest_warning(unsigned code, unsigned count, uint64_t arg)
{
    static const struct {
        unsigned code;
        const char *text, *tail;
    } warnings[] = {
#define REPORT_WARN_ROW(name, c, t, tl) {c, t, tl},
        INSTAR_WARNINGS(REPORT_WARN_ROW)
#undef REPORT_WARN_ROW
    };

    if (code == INSTAR_WARN_DMG_CHUNKS) {
        report_dmg_warnings(count, arg);
        return;
    }
    for (size_t i = 0; i < sizeof(warnings) / sizeof(warnings[0]); i++) {
        if (warnings[i].code != code)
            continue;
        /* qemu-img's own text ends without a newline after the tail. */
        for (unsigned n = 0; n < count; n++)
            fprintf(stderr, "%s: warning: %s\n%s", report_progname(), warnings[i].text,
                    warnings[i].tail);
    }
}
