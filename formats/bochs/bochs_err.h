/*
 * Open-time errors of formats/bochs: codes 5200..5219.
 *
 * Each message is what qemu-img 7.2 prints after "Could not open 'FILE': ",
 * copied verbatim from block/bochs.c (bochs_open).
 */
#ifndef BOCHS_ERR_H
#define BOCHS_ERR_H

#define BOCHS_ERRORS(X)                                                                            \
    X(BOCHS_ERR_FORMAT, 5200, "Image not in Bochs format")                                         \
    X(BOCHS_ERR_CATALOG_LARGE, 5201, "Catalog size is too large")                                  \
    X(BOCHS_ERR_CATALOG_NOMEM, 5202, "Could not allocate memory for catalog")                      \
    X(BOCHS_ERR_EXTENT_SMALL, 5203, "Extent size must be at least 512")                            \
    X(BOCHS_ERR_EXTENT_POW2, 5204, "Extent size {0} is not a power of two")                        \
    X(BOCHS_ERR_EXTENT_LARGE, 5205, "Extent size {0} is too large")                                \
    X(BOCHS_ERR_CATALOG_SMALL, 5206, "Catalog size is too small for this disk size")               \
    X(BOCHS_ERR_READ_ONLY, 5207, "Image is read-only")

enum bochs_err {
#define BOCHS_ERR_ENUM(name, code, msg) name = code,
    BOCHS_ERRORS(BOCHS_ERR_ENUM)
#undef BOCHS_ERR_ENUM
};

#endif /* BOCHS_ERR_H */
