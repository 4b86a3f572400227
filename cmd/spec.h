/*
 * How the operator names an image on the command line, as qemu-img 7.2
 * reads it: a filename (protocol prefixes like "file:" are left to
 * cmd/policy.c), a "json:{...}" filename, or an --image-opts string
 * ("driver=qcow2,file.filename=x.qcow2").  Both structured forms become
 * one flat set of options (qdict_flatten: nested objects as "file.x"),
 * interpreted for what instar opens: a format driver (qcow2, raw, or the
 * protocol driver file) over a local file.
 *
 * This parses what the operator typed, trusted as qemu-img trusts it;
 * names found inside images never come here (cmd/policy.c decides them).
 * Every subcommand that opens an image calls spec_parse() on its FILENAME
 * argument and hands the result to open_chain_spec() (cmd/open.h).
 */
#ifndef CMD_SPEC_H
#define CMD_SPEC_H

#include <stdbool.h>

struct img_spec {
    const char *display;    /* the argument as typed: qemu-img's "Could not open '%s'" */
    char *path;             /* the file to open; NULL: a plain filename (open display) */
    char *fmt;              /* the format driver, or NULL to probe */
    bool force_share;       /* force-share=on among the options */
    bool direct;            /* the file opened with O_DIRECT: cache.direct=on (file.cache.direct) */
    unsigned vpc_size_calc; /* vpc's force_size_calc: 0 auto, 1 chs, 2 current_size */
    bool prl_truncate;      /* parallels' prealloc-mode=truncate (else falloc) */
    char *key_secret; /* encrypt.key-secret: the id of the secret unlocking the image, or NULL */
    /*
     * data-file.filename (qcow2, or a probed format): the external data
     * file opened instead of the name in the image, or NULL.
     */
    char *data_file;
    /*
     * backing.* options (qemu's "backing" child of the format node): the
     * backing file's file.filename, driver and key secret id
     * (encrypt.key-secret, or key-secret for luks), each NULL when not
     * given.  open_chain_spec() takes them only where they name the
     * backing file the image names; backing_opts is set when any is given.
     */
    char *backing_path;
    char *backing_fmt;
    char *backing_key_secret;
    bool backing_key_luks; /* backing.key-secret (luks's name), not backing.encrypt.key-secret */
    bool backing_opts;
    /*
     * raw's offset and size options as typed (NULL: not given), read by
     * open_chain_spec() once the format is known (raw_read_options());
     * *_num: a JSON number (or null, "null": named, not read) rather than a
     * string (qemu's json: name keeps the type).
     */
    char *raw_offset;
    char *raw_size;
    bool raw_offset_num;
    bool raw_size_num;
};

/*
 * spec_parse - read one image argument.
 * @s: filled on success (release with spec_release)
 * @arg: the FILENAME argument (kept by pointer as s->display)
 * @image_opts: arg is an --image-opts string
 * @fmt: the -f argument or NULL (with image_opts qemu-img refuses it before
 *       calling here; with a json: filename it names the format)
 * @force_share: -U was given (a force-share=off option then conflicts)
 * On failure prints qemu-img's message (most as "Could not open 'ARG': ...")
 * and returns -1; otherwise 0.  A plain filename gives path == NULL and
 * fmt == the -f argument: the caller opens it as before.
 */
int spec_parse(struct img_spec *s, const char *arg, bool image_opts, const char *fmt,
               bool force_share);

void spec_release(struct img_spec *s);

/*
 * spec_refuse_backing - for the callers that open no backing chain
 * through open_chain_spec() (info's own open, a convert target): any
 * backing.* option is refused.  Returns 0, or -1 after reporting.
 */
int spec_refuse_backing(const struct img_spec *s);

/*
 * util/unicode.c mod_utf8_codepoint(): the code point of the sequence at s
 * (which ends at a byte that is no continuation byte: a NUL, a closing
 * quote), *len its bytes; -1 for an invalid, overlong (but C0 80),
 * surrogate, noncharacter or out-of-range sequence.  qemu's JSON parser
 * reads strings with it, and its writer escapes names with it.
 */
int spec_utf8_codepoint(const unsigned char *s, size_t *len);

#endif /* CMD_SPEC_H */
