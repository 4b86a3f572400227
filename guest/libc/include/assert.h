/*
 * Guest libc subset: <assert.h>.  A failed assert() ends the run with
 * INSTAR_HC_PANIC, as GUEST_ASSERT does (guest/guest.h); with NDEBUG it
 * compiles to nothing.  Like the real header, it may be included again
 * after NDEBUG changes.  For programmer invariants only, never for data.
 */
#undef assert
#ifdef NDEBUG
#define assert(expr) ((void)0)
#else
__attribute__((noreturn)) void hc_panic(const char *expr, const char *file, unsigned line);
#define assert(expr) ((expr) ? (void)0 : hc_panic(#expr, __FILE__, __LINE__))
#endif

#ifndef static_assert
#define static_assert _Static_assert
#endif
