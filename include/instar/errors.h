/*
 * Error codes a guest planner may return in a result header, with the
 * message qemu-img 7.2 prints for each.  Codes below 1000 are generic
 * (guest runtime, probing, I/O); formats/qcow2/qcow2_err.h owns 1000..1999,
 * formats/vpc/vpc_err.h 5000..5099.
 *
 * Message templates are filled by the host (cmd/report.c), never by printf:
 * {0}..{3} print err_args[i] in decimal, {x0}..{x3} in lower-case hex ({#x0} as "%#x")
 * without a prefix, {s} prints err_str.  Nothing else is special.
 *
 * Each message is the text after "qemu-img: Could not open 'FILE': ", the
 * way qemu-img prefixes a failed open, but for INSTAR_ERR_LUKS_AMEND_*
 * (18..25), which amend prints after "qemu-img: " alone.
 */
#ifndef INSTAR_ERRORS_H
#define INSTAR_ERRORS_H

#define INSTAR_ERRORS(X)                                                                           \
    X(INSTAR_ERR_IO, 1, "Could not read image: Input/output error")                                \
    X(INSTAR_ERR_NOMEM, 2, "Cannot allocate memory")                                               \
    X(INSTAR_ERR_UNKNOWN_FMT, 3, "Unknown driver '{s}'")                                           \
    X(INSTAR_ERR_UNSUPPORTED_FMT, 4, "Image format '{s}' is not supported by instar")              \
    X(INSTAR_ERR_BAD_ARGS, 5, "Invalid arguments from the host")                                   \
    X(INSTAR_ERR_SHORT_READ, 6, "Could not read image: unexpected end of file")                    \
    X(INSTAR_ERR_ENCRYPTED_DATA, 7, "Parameter 'encrypt.key-secret' is required for cipher")       \
    X(INSTAR_ERR_REPAIR_DIRTY, 8, "Could not repair dirty image: Input/output error")              \
    X(INSTAR_ERR_LUKS_PASSWORD, 9, "Invalid password, cannot unlock any keyslot")                  \
    X(INSTAR_ERR_LUKS_UNSUPPORTED, 10, "Unsupported cipher mode xts")                              \
    X(INSTAR_ERR_LUKS_WORK, 11,                                                                    \
      "LUKS key slot {0} asks for {1} PBKDF2 blocks, more than instar's limit of 268435456")       \
    X(INSTAR_ERR_ENCRYPTED_WRITE, 12, "instar writes encrypted images only as convert's target")   \
    X(INSTAR_ERR_LUKS_KEY_SECRET, 13, "Parameter 'key-secret' is required for cipher")             \
    X(INSTAR_ERR_LUKS_SIZE, 14, "Could not refresh total sector count: Input/output error")        \
    X(INSTAR_ERR_LUKS_CREATE, 15, "Unable to get accurate CPU usage")                              \
    X(INSTAR_ERR_LUKS_SCALE, 16,                                                                   \
      "PBKDF iterations {0} too large to scale: Numerical result out of range")                    \
    X(INSTAR_ERR_LUKS_LARGE, 17,                                                                   \
      "PBKDF iterations {0} larger than 4294967295: Numerical result out of range")                \
    X(INSTAR_ERR_LUKS_AMEND_FULL, 18, "Can't add a keyslot - all keyslots are in use")             \
    X(INSTAR_ERR_LUKS_AMEND_ACTIVE, 19,                                                            \
      "Refusing to overwrite active keyslot {0} - please erase it first")                          \
    X(INSTAR_ERR_LUKS_AMEND_NOT_OLD, 20,                                                           \
      "Given keyslot {0} doesn't contain the given old password for erase operation")              \
    X(INSTAR_ERR_LUKS_AMEND_ERASED, 21, "Given keyslot {0} is already erased (inactive) ")         \
    X(INSTAR_ERR_LUKS_AMEND_ONLY, 22,                                                              \
      "Attempt to erase the only active keyslot {0} which will erase all the data in the image "   \
      "irreversibly - refusing operation")                                                         \
    X(INSTAR_ERR_LUKS_AMEND_NO_MATCH, 23,                                                          \
      "No keyslots match given (old) password for erase operation")                                \
    X(INSTAR_ERR_LUKS_AMEND_ALL, 24,                                                               \
      "All the active keyslots match the (old) password that was given and erasing them will "     \
      "erase all the data in the image irreversibly - refusing operation")                         \
    X(INSTAR_ERR_LUKS_AMEND_OUTSIDE, 25, "Request for data outside of extension header")

/*
 * Warnings a planner may attach to a result (warn_code); the host prints
 * "qemu-img: warning: " + text, then the tail (which has no newline).
 */
#define INSTAR_WARNINGS(X)                                                                         \
    X(INSTAR_WARN_BITMAPS_V2, 1,                                                                   \
      "This qcow2 v2 image contains bitmaps, but they may have been modified by a program "        \
      "without persistent bitmap support; so now they must all be considered inconsistent",        \
      "Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix.")            \
    X(INSTAR_WARN_BITMAPS_V3, 2,                                                                   \
      "a program lacking bitmap support modified this file, so all bitmaps are now considered "    \
      "inconsistent",                                                                              \
      "Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix.")            \
    X(INSTAR_WARN_DMG_CHUNKS, 3, "", "")                                                           \
    X(INSTAR_WARN_PARALLELS_EXT_RW, 9, "Format Extension ignored in RW mode", "")

enum instar_warn {
    INSTAR_WARN_NONE = 0,
#define INSTAR_WARN_ENUM(name, code, text, tail) name = code,
    INSTAR_WARNINGS(INSTAR_WARN_ENUM)
#undef INSTAR_WARN_ENUM
};

enum instar_err {
    INSTAR_ERR_NONE = 0,
#define INSTAR_ERR_ENUM(name, code, msg) name = code,
    INSTAR_ERRORS(INSTAR_ERR_ENUM)
#undef INSTAR_ERR_ENUM
};

#endif /* INSTAR_ERRORS_H */
