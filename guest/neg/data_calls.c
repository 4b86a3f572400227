/*
 * The data-path hypercalls (COPY, COPYV, ZERO, SEEK, CMP, SCAN, PROGRESS) with
 * arguments the host must refuse, and a few it must serve.  Device 0 is
 * read-only (4 KiB), device 1 writable (4 KiB, write limit 8 KiB).
 * boot->args.raw[0] picks the group; each group reports up to 8 codes.
 */
#include "neg.h"

static uint32_t runs[16];
static struct instar_seek_ext exts[4];

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    static struct instar_hc_progress bad_progress = {.mode = INSTAR_PROGRESS_ADD, .num = 1};
    uint64_t what, a, b;
    uint32_t st, n;
    bool differ;
    int64_t v[8];

    idt_install();
    memcpy(&what, boot->args.raw, sizeof(what));
    switch (what) {
    case 1:                                                                  /* COPY and ZERO */
        v[0] = hc_copy(0, 0, 0, 0, 512, 0, 0, 0, 0, NULL);                   /* to read-only */
        v[1] = hc_copy(0, 0, 1, 0, INSTAR_COPY_MAX + 512, 0, 0, 0, 0, NULL); /* too big */
        v[2] = hc_copy(0, 3584, 1, 0, 1024, 0, 0, 0, 0, NULL);               /* past the source */
        v[3] = hc_copy(0, 0, 1, 7680, 1024, 0, 0, 0, 0, NULL);               /* past the limit */
        v[4] = hc_copy(0, 0, 1, 0, 512, INSTAR_COPY_SPARSE, 8, 3, 0, NULL);  /* alignment 3 */
        v[5] = hc_copy(0, 0, 1, 4096, 1024, 0, 0, 0, 0, NULL);               /* served */
        v[6] = hc_zero(0, 0, 512, 0);                                        /* read-only */
        v[7] = hc_zero(1, 8000, 1024, 0);                                    /* past the limit */
        neg_report(v, 8);
    case 2:                                              /* SEEK, CMP, SCAN */
        v[0] = hc_seek(0, 4096, &a, &b, &st);            /* at the end */
        v[1] = hc_seek(9, 0, &a, &b, &st);               /* no device */
        v[2] = hc_cmp(0, 0, 1, 0, 0, &differ, &a);       /* empty */
        v[3] = hc_cmp(0, 0, 1, 3584, 1024, &differ, &a); /* past the end */
        v[4] = hc_scan(0, 0, 4096, 8, 8, 0, (uint32_t *)(uintptr_t)guest_main, 16, &a); /* text */
        v[5] = hc_scan(0, 0, 1000, 8, 8, 0, runs, 16, &a); /* not sectors */
        v[6] = hc_cmp(0, 0, 1, 0, 4096, &differ, &a);      /* served */
        v[7] = (int64_t)(a << 1 | (differ ? 1 : 0));
        neg_report(v, 8);
    case 3: /* ZERO's discard mode */
        v[0] = hc_zero(1, 0, 4096, INSTAR_ZERO_ALLOCATE | INSTAR_ZERO_DISCARD); /* both modes */
        v[1] = hc_zero(0, 0, 512, INSTAR_ZERO_DISCARD);                         /* read-only */
        v[2] = hc_zero(1, 0, 512, 1u << 7);                                     /* unknown flag */
        v[3] = hc_zero(1, 7680, 1024, INSTAR_ZERO_DISCARD);                     /* past the limit */
        v[4] = hc_zero(1, 0, 8192, INSTAR_ZERO_DISCARD); /* served, never grows the file */
        neg_report(v, 5);
    case 4: /* SEEK with several answers: device 1 grown to data then a hole */
        v[0] = hc_seek_ext(0, 0, &a, &b, &st, (struct instar_seek_ext *)(uintptr_t)guest_main, 4,
                           &n); /* answers into text */
        v[1] = hc_seek_ext(0, 0, &a, &b, &st, exts, INSTAR_SEEK_EXT_MAX + 1, &n); /* too many */
        v[2] = hc_truncate(1, 8192, INSTAR_TRUNC_OFF);
        v[3] = hc_seek_ext(1, 0, &a, &b, &st, exts, 4, &n); /* served */
        v[4] = (int64_t)n;
        v[5] = (int64_t)(a << 32 | b);
        v[6] = (int64_t)exts[0].offset;
        v[7] = (int64_t)exts[0].status;
        neg_report(v, 8);
    case 5: { /* COPYV: the count, the vector's place, each request checked in order */
        static struct instar_hc_copy vec[3] = {
            {.src = 0, .dst = 1, .src_off = 0, .dst_off = 4096, .len = 512},   /* served */
            {.src = 0, .dst = 1, .src_off = 512, .dst_off = 4608, .len = 512}, /* served */
            {.src = 0, .dst = 1, .src_off = 0, .dst_off = 7680, .len = 1024}}; /* past the limit */
        int64_t w = 0;

        v[0] = hc_copyv(vec, 0, &st, NULL);                    /* none */
        v[1] = hc_copyv(vec, INSTAR_COPYV_MAX + 1, &st, NULL); /* too many */
        v[2] = hc_copyv(vec, 3, &st, &w);                      /* the third fails */
        v[3] = (int64_t)st;
        v[4] = w;
        v[5] = hc_copyv(vec + 1, 1, &st, &w); /* served */
        v[6] = (int64_t)st;
        neg_report(v, 7);
    }
    case 6: /* COPYV of a vector that runs out of guest RAM */
        v[0] =
            hc_copyv((const struct instar_hc_copy *)(uintptr_t)(boot->mem_size - 64), 2, &st, NULL);
        neg_report(v, 1);
    case 7:                                                                /* ZERO's data mode */
        v[0] = hc_zero(1, 0, 512, INSTAR_ZERO_DATA | INSTAR_ZERO_DISCARD); /* two modes */
        v[1] = hc_zero(1, 7680, 1024, INSTAR_ZERO_DATA);                   /* past the limit */
        v[2] = hc_zero(1, 4096, 1024, INSTAR_ZERO_DATA);                   /* served, grows it */
        neg_report(v, 3);
    default: /* progress that cannot be */
        neg_hc(INSTAR_HC_PIO_BASE + INSTAR_HC_PROGRESS, (uint32_t)(uintptr_t)&bad_progress);
        hc_exit(3);
    }
}
