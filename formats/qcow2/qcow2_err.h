/*
 * Error codes returned by formats/qcow2, each mapped to the exact message
 * qemu-img 7.2 prints (the text after "Could not open 'FILE': ").
 * Templates follow include/instar/errors.h: {0}..{3}, {x0}..{x3}, {s}.
 *
 * Two lists, so that the header/open-time code and the table/crypto code
 * can grow independently: header_err.h (1000..1499), meta_err.h
 * (1500..1999).  Functions return 0 or the negated code.
 */
#ifndef QCOW2_ERR_H
#define QCOW2_ERR_H

#include "header_err.h"
#include "meta_err.h"
#include "data_err.h"

enum qcow2_err {
    QCOW2_OK = 0,
#define QCOW2_ERR_ENUM(name, code, msg) name = code,
    QCOW2_HEADER_ERRORS(QCOW2_ERR_ENUM)
    QCOW2_META_ERRORS(QCOW2_ERR_ENUM) QCOW2_DATA_ERRORS(QCOW2_ERR_ENUM)
#undef QCOW2_ERR_ENUM
};

#define QCOW2_ERRORS(X) QCOW2_HEADER_ERRORS(X) QCOW2_META_ERRORS(X) QCOW2_DATA_ERRORS(X)

#endif /* QCOW2_ERR_H */
