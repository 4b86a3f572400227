/*
 * Errors of formats/vhdx: codes 5500..5599 (vpc owns 5000..5099).
 *
 * 5500..5549 are open failures, the text after "Could not open 'FILE': "
 * that qemu-img 7.2 prints (block/vhdx.c and block/vhdx-log.c set no
 * message for most of them, so bdrv_open_driver() words the errno with
 * the file name: {s} is the file name).  Codes marked "preface" are
 * printed after a line of their own that the host renders from the error
 * arguments (vhdx_open() calls error_report() before it fails).
 *
 * 5550..5599 are check lines (error_report() in vhdx_check_bat_entries()
 * and vhdx_region_check()), streamed as struct instar_report_rec.
 */
#ifndef VHDX_ERR_H
#define VHDX_ERR_H

#define VHDX_ERRORS(X)                                                                             \
    X(VHDX_ERR_EINVAL, 5500, "Could not open '{s}': Invalid argument")                             \
    X(VHDX_ERR_ENOTSUP, 5501, "Could not open '{s}': Operation not supported")                     \
    X(VHDX_ERR_NO_HEADER, 5502, "No valid VHDX header found")                                      \
    X(VHDX_ERR_EIO, 5503, "Could not open '{s}': Input/output error")                              \
    X(VHDX_ERR_ENOMEM, 5504, "Could not open '{s}': Cannot allocate memory")                       \
    /* preface: "VHDX region A-B overlaps with region C-D" (args 0..3) */                          \
    X(VHDX_ERR_OVERLAP, 5505, "Could not open '{s}': Invalid argument")                            \
    /* preface: "VHDX BAT entry N offset overflow." (arg 0) */                                     \
    X(VHDX_ERR_BAT_OVERFLOW, 5506, "Could not open '{s}': Invalid argument")                       \
    /* preface: "VHDX BAT entry N start offset O points after end of file (S)..." */               \
    X(VHDX_ERR_BAT_START, 5507, "Could not open '{s}': Invalid argument")                          \
    /* preface: "VHDX BAT entry N end offset O points after end of file (S)..." */                 \
    X(VHDX_ERR_BAT_END, 5508, "Could not open '{s}': Invalid argument")                            \
    X(VHDX_ERR_LOG_READONLY, 5509,                                                                 \
      "VHDX image file '{s}' opened read-only, but contains a log that needs to be replayed\n"     \
      "To replay the log, run:\n"                                                                  \
      "qemu-img check -r all '{s}'")                                                               \
    /* instar's own: the BAT entry count does not fit qemu's 32 bits (docs/differences.md) */      \
    X(VHDX_ERR_SIZE_OVERFLOW, 5510, "Could not open '{s}': Invalid argument")                      \
    X(VHDX_MSG_BAT_OVERFLOW, 5550, "VHDX BAT entry {0} offset overflow.")                          \
    X(VHDX_MSG_BAT_START, 5551,                                                                    \
      "VHDX BAT entry {0} start offset {1} points after end of file ({2}). Image has probably "    \
      "been truncated.")                                                                           \
    X(VHDX_MSG_BAT_END, 5552,                                                                      \
      "VHDX BAT entry {0} end offset {1} points after end of file ({2}). Image has probably been " \
      "truncated.")                                                                                \
    X(VHDX_MSG_OVERLAP, 5553, "VHDX region {0}-{1} overlaps with region {2}-{3}")

enum vhdx_err {
#define VHDX_ERR_ENUM(name, code, msg) name = code,
    VHDX_ERRORS(VHDX_ERR_ENUM)
#undef VHDX_ERR_ENUM
};

/* vhdx_err_names_file - the open error's template has the file name as {s}. */
static inline int vhdx_err_names_file(int code)
{
    return code >= VHDX_ERR_EINVAL && code <= VHDX_ERR_SIZE_OVERFLOW && code != VHDX_ERR_NO_HEADER;
}

/* The check lines' range (cmd/result.c accepts it in a report batch). */
#define VHDX_MSG_MIN 5550
#define VHDX_MSG_MAX 5599

#endif /* VHDX_ERR_H */
