/*
 * Opening an image the way qemu-img's img_open() does for the commands
 * that need more than info's metadata-only open (check, resize, create's
 * backing file): the image itself, described by the guest, then its
 * backing chain and external data file, all under the path policy
 * (cmd/policy.c), with qemu-img's messages for every failure and QEMU's
 * image locks (cmd/lock.c) held until open_chain_close().
 */
#ifndef CMD_OPEN_H
#define CMD_OPEN_H

#include <stdbool.h>
#include <sys/stat.h>

#include "info.h"
#include "instar/abi.h"
#include "policy.h"

struct img_spec;

#define OPEN_RDWR        (1u << 0) /* the top image read-write (check -r, resize) */
#define OPEN_NO_BACKING  (1u << 1) /* qemu's BDRV_O_NO_BACKING: no chain (data file opened) */
#define OPEN_FORCE_SHARE (1u << 2) /* -U: share every permission (locks still taken) */
#define OPEN_RESIZE      (1u << 3) /* qemu's BDRV_O_RESIZE: also the resize permission */
#define OPEN_METADATA    (1u << 4) /* qemu's BDRV_O_NO_IO (info): no consistent read, no data file */
/*
 * qemu's BDRV_O_CHECK: a qcow2 format error of the top image is not fatal
 * (its info then has format "qcow2" and no backing file or data file);
 * the caller's check planner reopens it with check semantics.
 */
#define OPEN_CHECK (1u << 5)
/*
 * The top image's name is a host path as it stands (file.filename of a
 * json: or --image-opts argument): no protocol prefix is interpreted.
 */
#define OPEN_LITERAL (1u << 6)
/* vpc's force_size_calc for the top image (spec->vpc_size_calc): chs, current_size. */
#define OPEN_VPC_SIZE_CHS     (1u << 7)
#define OPEN_VPC_SIZE_CURRENT (1u << 8)
/*
 * The top image comes with a secret (encrypt.key-secret): the open of a
 * qcow AES image with I/O does not fail for want of one (the secret is
 * looked up once the chain is open, open_chain_spec()).
 */
#define OPEN_HAS_KEY (1u << 9)

/*
 * open_vhdx_preface - print the line vhdx_open() reports before it fails
 * with guest error code (region overlap, BAT entry past the end), if any.
 */
void open_vhdx_preface(int32_t code, const uint64_t args[4]);

/*
 * open_vpc_json_filename - bdrv_refresh_filename(): a vpc image opened
 * with force_size_calc (calc: 1 chs, 2 current_size) is named by its
 * options, "json:{...}", in ii->filename (a name with bytes other than
 * printable ASCII keeps its plain form).  Returns 0, or -1 out of memory.
 */
struct image_info;
int open_vpc_json_filename(struct image_info *ii, unsigned calc);
/*
 * open_luks_json_filename - the same for a luks volume opened with
 * key-secret=secret (--image-opts driver=luks,key-secret=...).
 */
int open_luks_json_filename(struct image_info *ii, const char *secret);
/*
 * open_encrypt_json_filename - the same for a qcow or qcow2 image (its
 * ii->format) opened with encrypt.key-secret=secret, whether encrypted
 * or not: qemu's options dict puts "encrypt.key-secret" first.
 */
int open_encrypt_json_filename(struct image_info *ii, const char *secret);

struct open_image {
    char *name;              /* as qemu-img names it in messages */
    int fd;                  /* open on the policy-approved host path */
    struct stat st;          /* at open time */
    struct image_info *info; /* as info describes it: format, sizes, backing */
    int data_fd;             /* its external data file, or -1 */
    char *data_name;         /* the data file's name as stored in the image */
    /*
     * vmdk: the extent files its descriptor names (info->extent_files),
     * next of them open (arrays of as many as the descriptor names)
     */
    int *ext_fd;
    struct stat *ext_st;
    unsigned next;
};

struct open_chain {
    struct open_image img[POLICY_CHAIN_MAX + 1]; /* [0] the image, then backing files */
    unsigned n;
    int data_fd; /* img[0]'s external data file (same descriptor), or -1 */
    char *data_name;
    bool direct;            /* qemu would open every file with O_DIRECT (spec->direct) */
    unsigned vpc_size_calc; /* the top image's force_size_calc (spec->vpc_size_calc) */
    bool prl_truncate;      /* the top image's prealloc-mode=truncate (spec->prl_truncate) */
    const char *key;        /* img[0]'s LUKS passphrase (its encrypt.key-secret), or NULL */
    char *key_id;           /* that key-secret's id (malloc'd), or NULL */
    /* img[1]'s passphrase (the spec's backing.encrypt.key-secret), or NULL */
    const char *backing_key;
    /*
     * img[0] raw with its offset/size options (spec->raw_offset/raw_size,
     * checked against the file as raw_apply_options() does): the bytes of
     * the file it is; all zero for the whole file.
     */
    struct instar_window window;
};

/*
 * open_chain - open filename (format fmt, or probed when fmt is NULL):
 * the image, then unless OPEN_NO_BACKING its external data file (named
 * in the image, opened relative to the current directory as qemu does)
 * and each backing file read-only in the format its parent names (or
 * probed), each with its own data file.  Every file is locked as QEMU
 * locks it (read-only with I/O, or read-write for the top image with
 * OPEN_RDWR; OPEN_FORCE_SHARE shares everything).
 * Every failure is reported as qemu-img reports it: "Could not open 'X':
 * <msg>", with "Could not open backing file: " once per level of the
 * chain before a backing file's own message.
 * Returns 0 (release with open_chain_close), or -1 after reporting with
 * nothing left open.
 */
int open_chain(struct open_chain *oc, const char *filename, const char *fmt, unsigned flags);

/*
 * open_chain_msg - open_chain without printing: for callers that word
 * the failure themselves (create's "FILE: <msg>").
 * @msg: on failure a malloc'd message (NULL on OOM; caller frees): with
 *       -1 the text open_chain prints after "Could not open 'FILENAME': ",
 *       with -2 a whole message (a loop in the backing chain)
 * Returns 0, -1 or -2; nothing is left open on failure.
 */
int open_chain_msg(struct open_chain *oc, const char *filename, const char *fmt, unsigned flags,
                   char **msg);

/*
 * open_raw_window - raw's offset and size options (spec->raw_offset,
 * spec->raw_size) on an opened top image ii whose file has len bytes:
 * raw_read_options() and raw_apply_options() against the file's length
 * (file metadata, not image bytes), with qemu's messages; the window into
 * *w, the virtual size it leaves into ii (bdrv_getlength(): rounded up to
 * whole sectors), and ii->filename the json:{...} name qemu gives the node
 * (its strong options first, in QDict order: offset, driver, size, file).
 * An image that is not raw refuses the options as qemu does.  Without
 * the options, nothing changes.  Returns 0, or -1 after reporting.
 */
int open_raw_window(struct image_info *ii, uint64_t len, const struct img_spec *spec,
                    struct instar_window *w);

/*
 * open_chain_spec - open_chain for an image argument read by spec_parse()
 * (cmd/spec.h): a plain filename as open_chain does; a json: or
 * --image-opts one at its file.filename (literally), in its driver, with
 * its force-share, and failures quoted with the argument as typed.
 * Returns 0 (release with open_chain_close), or -1 after reporting.
 */
int open_chain_spec(struct open_chain *oc, const struct img_spec *spec, unsigned flags);

/*
 * open_chain_arg - qemu-img's img_open() for an image argument: refuses
 * --image-opts with a format ("--image-opts and --format are mutually
 * exclusive"), reads arg with spec_parse() (a plain filename, json:{...},
 * or with image_opts an --image-opts string) and opens it with
 * open_chain_spec().  force_share is -U.
 * Returns 0 (release with open_chain_close), or -1 after reporting.
 */
int open_chain_arg(struct open_chain *oc, const char *arg, bool image_opts, const char *fmt,
                   bool force_share, unsigned flags);

/* Close every descriptor (dropping the locks) and free oc's contents. */
void open_chain_close(struct open_chain *oc);

/*
 * open_image - open and describe one image file: policy (host path,
 * "Unknown driver"), policy_open (the type, and for depth > 0 the
 * allowlist, before the file is opened; read-write with OPEN_RDWR), the
 * chain's loop and length check, the guest's description (-f raw is
 * answered on the host), and QEMU's locks for flags.
 * @img: filled on success (release with open_image_release)
 * @name: the name as qemu-img prints it; @fmt: NULL to probe
 * @depth: 0 for the image named on the command line
 * @pc: the chain so far (loop detection)
 * @msg: on failure a malloc'd message (NULL on OOM): with -1, the text
 *       after "Could not open 'NAME': "; with -2, a whole message
 * Returns 0, -1 or -2.  Guest warnings are printed as they arrive.
 */
int open_image(struct open_image *img, const char *name, const char *fmt, unsigned depth,
               unsigned flags, struct policy_chain *pc, char **msg);

/* Close img's descriptors and free what it owns (info included). */
void open_image_release(struct open_image *img);

/*
 * resize_chain_grow - grow oc's top image (qcow2, qed or raw, open
 * read-write; another format is refused) to new_size bytes as
 * bdrv_co_truncate() does without preallocation (cmd/resize.c; a longer
 * backing file is zeroed over).  Returns 0, or -1 after reporting.
 */
int resize_chain_grow(struct open_chain *oc, int64_t new_size);

/*
 * open_run_planner - run a mutating planner (resize, snapshot, amend) and
 * parse its result header.  On a sandbox failure, fault injection or an
 * invalid result, reports "WHAT 'NAME': ..." and returns -1; else 0, with
 * out and hdr filled in (the caller releases out).
 */
struct vmm_config;
struct vmm_dev;
struct vmm_outcome;
struct instar_result_hdr;
int open_run_planner(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
                     const struct vmm_dev *devs, unsigned ndevs, struct vmm_outcome *out,
                     struct instar_result_hdr *hdr, const char *what, const char *name);

#endif /* CMD_OPEN_H */
