/*
 * A capped allocator for harnesses whose library takes realloc/free
 * callbacks: blocks carry their size in front, so the cap counts live
 * bytes, and a hostile header cannot make the harness allocate without
 * bound.  The harness keeps the live-byte counter in its own state.
 */
#ifndef FUZZ_ALLOC_H
#define FUZZ_ALLOC_H

#include <stdlib.h>

#define FUZZ_MEM_CAP (64u << 20)

/* realloc() within FUZZ_MEM_CAP live bytes; NULL (p untouched) past it. */
static inline void *fuzz_realloc(size_t *live, void *p, size_t size)
{
    size_t old = p ? ((size_t *)p)[-1] : 0;
    size_t *q;

    if (size > FUZZ_MEM_CAP || *live - old + size > FUZZ_MEM_CAP)
        return NULL;
    q = realloc(p ? (size_t *)p - 1 : NULL, size + sizeof(size_t));
    if (!q)
        return NULL;
    q[0] = size;
    *live = *live - old + size;
    return q + 1;
}

static inline void fuzz_free(size_t *live, void *p)
{
    if (!p)
        return;
    *live -= ((size_t *)p)[-1];
    free((size_t *)p - 1);
}

#endif /* FUZZ_ALLOC_H */
