/*
 * Open-time errors of formats/qcow (version 1): codes 5700..5799 (qcow2
 * owns 1000..3099, vpc 5000..5099, qed 5800..5899).
 *
 * Each message is what qemu-img 7.2 prints after "Could not open 'FILE': ",
 * copied verbatim from block/qcow.c (qcow_open) and crypto/block-qcow.c.
 */
#ifndef QCOW_ERR_H
#define QCOW_ERR_H

#define QCOW_ERRORS(X)                                                                             \
    X(QCOW_ERR_MAGIC, 5700, "Image not in qcow format")                                            \
    X(QCOW_ERR_VERSION, 5701, "qcow (v1) does not support qcow version {0}")                       \
    X(QCOW_ERR_VERSION_HINT, 5702,                                                                 \
      "qcow (v1) does not support qcow version {0}\nTry the 'qcow2' driver instead.")              \
    X(QCOW_ERR_SIZE_SMALL, 5703, "Image size is too small (must be at least 2 bytes)")             \
    X(QCOW_ERR_CLUSTER_BITS, 5704, "Cluster size must be between 512 and 64k")                     \
    X(QCOW_ERR_L2_BITS, 5705, "L2 table size must be between 512 and 64k")                         \
    X(QCOW_ERR_KEY_SECRET, 5706, "Parameter 'encrypt.key-secret' is required for cipher")          \
    X(QCOW_ERR_CRYPT_METHOD, 5707, "invalid encryption method in qcow header")                     \
    X(QCOW_ERR_TOO_LARGE, 5708, "Image too large")                                                 \
    X(QCOW_ERR_L1_NOMEM, 5709, "Could not allocate memory for L1 table")                           \
    X(QCOW_ERR_BACKING_TOO_LONG, 5710, "Backing file name too long")                               \
    X(QCOW_ERR_IO, 5711, "Could not open '{s}': Input/output error")                               \
    X(QCOW_ERR_AES_INIT, 5712, "instar could not set up the AES-128-CBC cipher of this image")

enum qcow_err {
#define QCOW_ERR_ENUM(name, code, msg) name = code,
    QCOW_ERRORS(QCOW_ERR_ENUM)
#undef QCOW_ERR_ENUM
};

#endif /* QCOW_ERR_H */
