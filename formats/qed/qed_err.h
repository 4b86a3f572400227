/*
 * Open-time errors of formats/qed: codes 5800..5899 (qcow2 owns 1000..3099,
 * vpc 5000..5099).
 *
 * Each message is what qemu-img 7.2 prints after "Could not open 'FILE': ",
 * copied verbatim from block/qed.c (bdrv_qed_do_open).
 */
#ifndef QED_ERR_H
#define QED_ERR_H

#define QED_ERRORS(X)                                                                              \
    X(QED_ERR_READ_HEADER, 5800, "Failed to read QED header")                                      \
    X(QED_ERR_MAGIC, 5801, "Image not in QED format")                                              \
    X(QED_ERR_FEATURES, 5802, "Unsupported QED features: {x0}")                                    \
    X(QED_ERR_CLUSTER_SIZE, 5803, "QED cluster size is invalid")                                   \
    X(QED_ERR_TABLE_SIZE, 5804, "QED table size is invalid")                                       \
    X(QED_ERR_IMAGE_SIZE, 5805, "QED image size is invalid")                                       \
    X(QED_ERR_TABLE_OFFSET, 5806, "QED table offset is invalid")                                   \
    X(QED_ERR_HEADER_SIZE, 5807, "QED header size is too large")                                   \
    X(QED_ERR_BACKING_OFFSET, 5808, "QED backing filename offset is invalid")                      \
    X(QED_ERR_BACKING_READ, 5809, "Failed to read backing filename")                               \
    X(QED_ERR_L1_READ, 5810, "Failed to read L1 table")                                            \
    X(QED_ERR_CORRUPTED, 5811, "Image corrupted")                                                  \
    X(QED_ERR_UPDATE_HEADER, 5812, "Failed to update header")

enum qed_err {
#define QED_ERR_ENUM(name, code, msg) name = code,
    QED_ERRORS(QED_ERR_ENUM)
#undef QED_ERR_ENUM
};

#endif /* QED_ERR_H */
