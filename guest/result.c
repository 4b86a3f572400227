/*
 * Building the result blob (include/instar/result.h) and handing it over.
 */
#include "guest.h"
#include "instar/ovf.h"

static uint16_t warn_code, warn_count;

void result_warn(uint16_t code, uint16_t count)
{
    warn_code = code;
    warn_count = count;
}

int rbuf_init(struct rbuf *rb, size_t fixed_size)
{
    rb->cap = fixed_size < 4096 ? 4096 : fixed_size * 2;
    rb->buf = calloc(1, rb->cap);
    rb->len = fixed_size;
    rb->oom = 0;
    if (!rb->buf) {
        rb->oom = 1;
        return -INSTAR_ERR_NOMEM;
    }
    return 0;
}

/* Make room for n more bytes; returns the offset where they start, or 0. */
static uint32_t rbuf_grow(struct rbuf *rb, size_t n)
{
    uint64_t need;
    size_t off = rb->len;

    if (rb->oom || ovf_add_u64(rb->len, n, &need) || need > INSTAR_RESULT_MAX) {
        rb->oom = 1;
        return 0;
    }
    if (need > rb->cap) {
        size_t cap = rb->cap;
        uint8_t *nb;

        while (cap < need)
            cap *= 2;
        nb = realloc(rb->buf, cap);
        if (!nb) {
            rb->oom = 1;
            return 0;
        }
        rb->buf = nb;
        rb->cap = cap;
    }
    memset(rb->buf + off, 0, n);
    rb->len = need;
    return (uint32_t)off;
}

struct instar_str rbuf_str(struct rbuf *rb, const void *s, size_t len)
{
    struct instar_str r = {0, 0};
    uint32_t off;

    if (len > INSTAR_STR_MAX) {
        rb->oom = 1;
        return r;
    }
    off = rbuf_grow(rb, len ? len : 1); /* an empty string still has a place */
    if (!off)
        return r;
    memcpy(rb->buf + off, s, len);
    r.off = off;
    r.len = (uint32_t)len;
    return r;
}

uint32_t rbuf_array(struct rbuf *rb, size_t elem_size, size_t n)
{
    uint64_t bytes;

    if (ovf_mul_u64(elem_size, n, &bytes)) {
        rb->oom = 1;
        return 0;
    }
    /* Keep arrays 8-byte aligned for the host's typed access. */
    if (rb->len & 7)
        rbuf_grow(rb, 8 - (rb->len & 7));
    return rbuf_grow(rb, bytes ? bytes : 8);
}

void rbuf_send(struct rbuf *rb, uint32_t op, int32_t error)
{
    struct instar_result_hdr *h;

    if (rb->oom)
        result_error(op, INSTAR_ERR_NOMEM, NULL, NULL, 0);
    h = (struct instar_result_hdr *)rb->buf;
    h->magic = INSTAR_RESULT_MAGIC;
    h->abi_version = INSTAR_ABI_VERSION;
    h->op = op;
    h->error = error;
    h->size = (uint32_t)rb->len;
    h->warn_code = warn_code;
    h->warn_count = warn_count;
    greport_flush();
    if (hc_result(rb->buf, rb->len) < 0)
        hc_exit(-1);
    hc_exit(0);
}

void result_error(uint32_t op, int32_t code, const uint64_t args[4], const void *s, size_t slen)
{
    /* A static blob: an error result must not depend on the heap. */
    static uint8_t blob[sizeof(struct instar_result_hdr) + 1024];
    struct instar_result_hdr *h = (struct instar_result_hdr *)blob;

    memset(blob, 0, sizeof(blob));
    h->magic = INSTAR_RESULT_MAGIC;
    h->abi_version = INSTAR_ABI_VERSION;
    h->op = op;
    h->error = code;
    if (args)
        memcpy(h->err_args, args, sizeof(h->err_args));
    h->size = sizeof(*h);
    h->warn_code = warn_code;
    h->warn_count = warn_count;
    if (s && slen) {
        if (slen > sizeof(blob) - sizeof(*h))
            slen = sizeof(blob) - sizeof(*h);
        memcpy(blob + sizeof(*h), s, slen);
        h->err_str.off = sizeof(*h);
        h->err_str.len = (uint32_t)slen;
        h->size += (uint32_t)slen;
    }
    greport_flush();
    if (hc_result(blob, h->size) < 0)
        hc_exit(-1);
    hc_exit(0);
}
