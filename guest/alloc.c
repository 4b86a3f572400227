/*
 * The guest allocator: power-of-two size classes carved from one bump
 * region [_end, mem_size), with a free list per class.
 *
 * A guest run is short and plans one operation, so simplicity wins over
 * packing: at most 2x internal waste, no coalescing.  Exhaustion returns
 * NULL; planners turn that into INSTAR_ERR_NOMEM, never a fault.
 */
#include "guest.h"
#include "instar/ovf.h"

#define ALLOC_MIN_SHIFT 5  /* 32-byte smallest block (16 header + 16) */
#define ALLOC_MAX_SHIFT 40 /* bigger than any guest RAM */
#define ALLOC_ALIGN     16

struct block_hdr {
    uint32_t shift; /* size class: block is 1 << shift bytes */
    uint32_t magic;
    uint64_t pad;
};

#define BLOCK_MAGIC 0xa110cb1c

extern char _end[];
static uintptr_t heap_cur, heap_end;
static void *free_lists[ALLOC_MAX_SHIFT + 1];

void alloc_init(void);
void alloc_init(void)
{
    heap_cur = ((uintptr_t)_end + 4095) & ~(uintptr_t)4095;
    heap_end = boot->mem_size;
    if (heap_end < heap_cur)
        heap_end = heap_cur;
}

void *malloc(size_t size)
{
    uint64_t need;
    unsigned shift = ALLOC_MIN_SHIFT;
    struct block_hdr *b;

    if (ovf_add_u64(size, sizeof(struct block_hdr), &need))
        return NULL;
    while (shift < ALLOC_MAX_SHIFT && (1ULL << shift) < need)
        shift++;
    if ((1ULL << shift) < need)
        return NULL;

    if (free_lists[shift]) {
        b = free_lists[shift];
        free_lists[shift] = *(void **)(b + 1);
    } else {
        uint64_t sz = 1ULL << shift;
        /* Blocks of a page or more start page-aligned: big tables like it. */
        uintptr_t start = heap_cur;

        if (sz >= 4096)
            start = (start + 4095) & ~(uintptr_t)4095;
        if (!ovf_range_ok(start, sz, heap_end))
            return NULL;
        b = (struct block_hdr *)start;
        heap_cur = start + sz;
    }
    b->shift = shift;
    b->magic = BLOCK_MAGIC;
    return b + 1;
}

void free(void *p)
{
    struct block_hdr *b;

    if (!p)
        return;
    b = (struct block_hdr *)p - 1;
    GUEST_ASSERT(b->magic == BLOCK_MAGIC && b->shift <= ALLOC_MAX_SHIFT);
    b->magic = 0;
    *(void **)p = free_lists[b->shift];
    free_lists[b->shift] = b;
}

void *calloc(size_t n, size_t size)
{
    uint64_t total;
    void *p;

    if (ovf_mul_u64(n, size, &total))
        return NULL;
    p = malloc(total);
    if (p)
        memset(p, 0, total);
    return p;
}

void *realloc(void *p, size_t size)
{
    struct block_hdr *b;
    uint64_t have;
    void *q;

    if (!p)
        return malloc(size);
    b = (struct block_hdr *)p - 1;
    GUEST_ASSERT(b->magic == BLOCK_MAGIC);
    have = (1ULL << b->shift) - sizeof(*b);
    if (size <= have)
        return p;
    q = malloc(size);
    if (!q)
        return NULL;
    memcpy(q, p, have);
    free(p);
    return q;
}
