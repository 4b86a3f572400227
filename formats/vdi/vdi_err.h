/*
 * Errors of formats/vdi: codes 6000..6099 (vpc owns 5000..5099, each
 * later format its own hundred; parallels has 5600..5699).
 *
 * The open messages are what qemu-img 7.2 prints after "Could not open
 * 'FILE': ", the check lines what vdi_co_check() prints, both copied
 * verbatim from block/vdi.c.  {08x0} is "%08x" (the bad signature).
 */
#ifndef VDI_ERR_H
#define VDI_ERR_H

#define VDI_ERRORS(X)                                                                              \
    X(VDI_ERR_SIZE_MAX, 6000,                                                                      \
      "Unsupported VDI image size (size is 0x{x0}, max supported is 0x{x1})")                      \
    X(VDI_ERR_SIGNATURE, 6001, "Image not in VDI format (bad signature {08x0})")                   \
    X(VDI_ERR_VERSION, 6002, "unsupported VDI image (version {0}.{1})")                            \
    X(VDI_ERR_BMAP_ALIGN, 6003, "unsupported VDI image (unaligned block map offset 0x{x0})")       \
    X(VDI_ERR_DATA_ALIGN, 6004, "unsupported VDI image (unaligned data offset 0x{x0})")            \
    X(VDI_ERR_SECTOR_SIZE, 6005, "unsupported VDI image (sector size {0} is not 512)")             \
    X(VDI_ERR_BLOCK_SIZE, 6006, "unsupported VDI image (block size {0} is not 1048576)")           \
    X(VDI_ERR_DISK_SIZE, 6007,                                                                     \
      "unsupported VDI image (disk size {0}, image bitmap has room for {1})")                      \
    X(VDI_ERR_LINK_UUID, 6008, "unsupported VDI image (non-NULL link UUID)")                       \
    X(VDI_ERR_PARENT_UUID, 6009, "unsupported VDI image (non-NULL parent UUID)")                   \
    X(VDI_ERR_TOO_MANY_BLOCKS, 6010, "unsupported VDI image (too many blocks {0}, max is {1})")    \
    X(VDI_ERR_NOMEM, 6011, "Could not allocate the block map")                                     \
    X(VDI_MSG_ALSO_USED, 6020, "ERROR: block index {0} also used by {1}")                          \
    X(VDI_MSG_TOO_LARGE, 6021, "ERROR: block index {0} too large, is {1}")                         \
    X(VDI_MSG_MISMATCH, 6022, "ERROR: allocated blocks mismatch, is {0}, should be {1}")

enum vdi_err {
#define VDI_ERR_ENUM(name, code, msg) name = code,
    VDI_ERRORS(VDI_ERR_ENUM)
#undef VDI_ERR_ENUM
};

#endif /* VDI_ERR_H */
