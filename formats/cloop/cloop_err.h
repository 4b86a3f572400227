/*
 * Open-time errors of formats/cloop: codes 5220..5239.
 *
 * Each message is what qemu-img 7.2 prints after "Could not open 'FILE': ",
 * copied verbatim from block/cloop.c (cloop_open).
 */
#ifndef CLOOP_ERR_H
#define CLOOP_ERR_H

#define CLOOP_ERRORS(X)                                                                            \
    X(CLOOP_ERR_BLOCK_SIZE_ALIGN, 5220, "block_size {0} must be a multiple of 512")                \
    X(CLOOP_ERR_BLOCK_SIZE_ZERO, 5221, "block_size cannot be zero")                                \
    X(CLOOP_ERR_BLOCK_SIZE_LARGE, 5222, "block_size {0} must be 64 MB or less")                    \
    X(CLOOP_ERR_N_BLOCKS, 5223, "n_blocks {0} must be 536870911 or less")                          \
    X(CLOOP_ERR_TOO_MANY_OFFSETS, 5224,                                                            \
      "image requires too many offsets, try increasing block size")                                \
    X(CLOOP_ERR_NOT_MONOTONIC, 5225,                                                               \
      "offsets not monotonically increasing at index {0}, image file is corrupt")                  \
    X(CLOOP_ERR_BLOCK_LARGE, 5226,                                                                 \
      "invalid compressed block size at index {0}, image file is corrupt")                         \
    X(CLOOP_ERR_READ_ONLY, 5227, "Image is read-only")

enum cloop_err {
#define CLOOP_ERR_ENUM(name, code, msg) name = code,
    CLOOP_ERRORS(CLOOP_ERR_ENUM)
#undef CLOOP_ERR_ENUM
};

#endif /* CLOOP_ERR_H */
