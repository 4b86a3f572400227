/*
 * qcow2_amend_options()'s lazy refcounts change (see amend.h).
 */
#include "qcow2/amend.h"

int qcow2_amend_lazy(uint32_t version, uint64_t compat_features, bool on,
                     qcow2_amend_pwrite_fn pwrite, void *opaque, int *errnum)
{
    uint64_t v =
        on ? compat_features | QCOW2_AMEND_COMPAT_LAZY : compat_features & ~QCOW2_AMEND_COMPAT_LAZY;
    uint8_t be[8];
    int r, i;

    *errnum = 0;
    if (((compat_features & QCOW2_AMEND_COMPAT_LAZY) != 0) == on)
        return 0;
    /* A version 2 header has no such field: only "on" can get here. */
    if (version < 3)
        return -QCOW2_AMEND_ERR_LAZY_V2;
    for (i = 0; i < 8; i++)
        be[i] = (uint8_t)(v >> (56 - 8 * i));
    r = pwrite(opaque, QCOW2_AMEND_COMPAT_OFFSET, be, sizeof(be));
    if (r < 0) {
        *errnum = -r;
        return -QCOW2_AMEND_ERR_UPDATE_HEADER;
    }
    return 0;
}
