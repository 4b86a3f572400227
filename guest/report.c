/*
 * Streamed diagnostics (INSTAR_HC_REPORT): records are packed into a
 * buffer and handed to the host when it fills, and before any result, so
 * the host prints them in order and ahead of the summary.
 */
#include "guest.h"

static uint8_t rep_buf[INSTAR_REPORT_MAX] __attribute__((aligned(8)));
static size_t rep_len;

void greport_flush(void)
{
    if (rep_len && hc_report(rep_buf, rep_len) < 0)
        hc_exit(-1);
    rep_len = 0;
}

void greport(int32_t code, uint16_t flags, const uint64_t args[4], const char *s, size_t slen)
{
    struct instar_report_rec r;
    size_t need;

    if (slen > INSTAR_REPORT_MAX - sizeof(r) - 8)
        slen = INSTAR_REPORT_MAX - sizeof(r) - 8;
    need = sizeof(r) + ((slen + 7) & ~(size_t)7);
    if (rep_len + need > sizeof(rep_buf))
        greport_flush();
    memset(&r, 0, sizeof(r));
    r.code = code;
    r.slen = (uint16_t)slen;
    r.flags = flags;
    if (args)
        memcpy(r.args, args, sizeof(r.args));
    memcpy(rep_buf + rep_len, &r, sizeof(r));
    memset(rep_buf + rep_len + sizeof(r), 0, need - sizeof(r));
    if (slen)
        memcpy(rep_buf + rep_len + sizeof(r), s, slen);
    rep_len += need;
}
