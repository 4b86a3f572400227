/*
 * Open-time errors of formats/vpc: codes 5000..5099 (qcow2 owns 1000..3099).
 *
 * Each message is what qemu-img 7.2 prints after "Could not open 'FILE': ",
 * copied verbatim from block/vpc.c (vpc_open, vpc_parse_options).  QEMU
 * prints max_table_entries, a uint32_t read into an int, with "%d": the
 * twin VPC_ERR_MTE_TOO_LARGE_NEG carries the minus sign and 2^32 - value.
 */
#ifndef VPC_ERR_H
#define VPC_ERR_H

#define VPC_ERRORS(X)                                                                              \
    X(VPC_ERR_TOO_SMALL, 5000, "File too small for a VHD header")                                  \
    X(VPC_ERR_INVALID, 5001, "invalid VPC image")                                                  \
    X(VPC_ERR_CHECKSUM, 5002, "Incorrect header checksum")                                         \
    X(VPC_ERR_TOO_LARGE, 5003, "Could not open '{s}': File too large")                             \
    X(VPC_ERR_DYN_READ, 5004, "Error reading dynamic VHD header")                                  \
    X(VPC_ERR_MAGIC, 5005, "Invalid header magic")                                                 \
    X(VPC_ERR_BLOCK_SIZE, 5006, "Invalid block size {0}")                                          \
    X(VPC_ERR_TOO_MANY_BLOCKS, 5007, "Too many blocks")                                            \
    X(VPC_ERR_TABLE_TOO_SMALL, 5008, "Page table too small")                                       \
    X(VPC_ERR_MTE_TOO_LARGE, 5009, "Max Table Entries too large ({0})")                            \
    X(VPC_ERR_MTE_TOO_LARGE_NEG, 5010, "Max Table Entries too large (-{0})")                       \
    X(VPC_ERR_BAT_NOMEM, 5011, "Unable to allocate memory for page table")                         \
    X(VPC_ERR_BAT_READ, 5012, "Error reading pagetable")                                           \
    X(VPC_ERR_TRUNCATED, 5013,                                                                     \
      "block-vpc: free_data_block_offset points after the end of file. The image has been "        \
      "truncated.")                                                                                \
    X(VPC_ERR_SIZE_CALC, 5014, "Invalid size calculation mode: '{s}'")

enum vpc_err {
#define VPC_ERR_ENUM(name, code, msg) name = code,
    VPC_ERRORS(VPC_ERR_ENUM)
#undef VPC_ERR_ENUM
};

#endif /* VPC_ERR_H */
