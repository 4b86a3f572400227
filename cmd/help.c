/*
 * qemu-img 7.2's --help and --version texts, copied byte for byte from the
 * Debian 12 build (qemu-utils 1:7.2+dfsg-7+deb12u18+b3): scripts parse them.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "opts.h"
#include "report.h"

/* QEMU_IMG_VERSION: "qemu-img version " QEMU_FULL_VERSION "\n" QEMU_COPYRIGHT "\n". */
const char cmd_version_text[] =
    "qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"
    "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n";

/* The rest of help(), including the "Supported formats:" line of that build. */
static const char help_body[] =
    "usage: qemu-img [standard options] command [command options]\n"
    "QEMU disk image utility\n"
    "\n"
    "    '-h', '--help'       display this help and exit\n"
    "    '-V', '--version'    output version information and exit\n"
    "    '-T', '--trace'      [[enable=]<pattern>][,events=<file>][,file=<file>]\n"
    "                         specify tracing options\n"
    "\n"
    "Command syntax:\n"
    "  amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] -o "
    "options filename\n"
    "  bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] "
    "[--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] "
    "[-w] [-U] filename\n"
    "  bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... [-b "
    "source_file [-F source_fmt]] [-g granularity] [--object objectdef] [--image-opts | -f fmt] "
    "filename bitmap\n"
    "  check [--object objectdef] [--image-opts] [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] "
    "[-T src_cache] [-U] filename\n"
    "  commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base] [-r "
    "rate_limit] [-d] [-p] filename\n"
    "  compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] "
    "[-U] filename1 filename2\n"
    "  convert [--object objectdef] [--image-opts] [--target-image-opts] [--target-is-zero] "
    "[--bitmaps] [-U] [-C] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] "
    "[-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param] [-S sparse_size] [-r "
    "rate_limit] [-m num_coroutines] [-W] [--salvage] filename [filename2 [...]] output_filename\n"
    "  create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o "
    "options] filename [size]\n"
    "  dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] "
    "[skip=blocks] if=input of=output\n"
    "  info [--object objectdef] [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain] [-U] "
    "filename\n"
    "  map [--object objectdef] [--image-opts] [-f fmt] [--start-offset=offset] [--max-length=len] "
    "[--output=ofmt] [-U] filename\n"
    "  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [--object objectdef] "
    "[--image-opts] [-f fmt] [-l snapshot_param] filename]\n"
    "  snapshot [--object objectdef] [--image-opts] [-U] [-q] [-l | -a snapshot | -c snapshot | -d "
    "snapshot] filename\n"
    "  rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] [-T src_cache] "
    "[-p] [-u] -b backing_file [-F backing_fmt] filename\n"
    "  resize [--object objectdef] [--image-opts] [-f fmt] [--preallocation=prealloc] [-q] "
    "[--shrink] filename [+ | -]size\n"
    "\n"
    "Command parameters:\n"
    "  'filename' is a disk image filename\n"
    "  'objectdef' is a QEMU user creatable object definition. See the qemu(1)\n"
    "    manual page for a description of the object properties. The most common\n"
    "    object type is a 'secret', which is used to supply passwords and/or\n"
    "    encryption keys.\n"
    "  'fmt' is the disk image format. It is guessed automatically in most cases\n"
    "  'cache' is the cache mode used to write the output disk image, the valid\n"
    "    options are: 'none', 'writeback' (default, except for convert), 'writethrough',\n"
    "    'directsync' and 'unsafe' (default for convert)\n"
    "  'src_cache' is the cache mode used to read input disk images, the valid\n"
    "    options are the same as for the 'cache' option\n"
    "  'size' is the disk image size in bytes. Optional suffixes\n"
    "    'k' or 'K' (kilobyte, 1024), 'M' (megabyte, 1024k), 'G' (gigabyte, 1024M),\n"
    "    'T' (terabyte, 1024G), 'P' (petabyte, 1024T) and 'E' (exabyte, 1024P)  are\n"
    "    supported. 'b' is ignored.\n"
    "  'output_filename' is the destination disk image filename\n"
    "  'output_fmt' is the destination format\n"
    "  'options' is a comma separated list of format specific options in a\n"
    "    name=value format. Use -o help for an overview of the options supported by\n"
    "    the used format\n"
    "  'snapshot_param' is param used for internal snapshot, format\n"
    "    is 'snapshot.id=[ID],snapshot.name=[NAME]', or\n"
    "    '[ID_OR_NAME]'\n"
    "  '-c' indicates that target image must be compressed (qcow format only)\n"
    "  '-u' allows unsafe backing chains. For rebasing, it is assumed that old and\n"
    "       new backing file match exactly. The image doesn't need a working\n"
    "       backing file before rebasing in this case (useful for renaming the\n"
    "       backing file). For image creation, allow creating without attempting\n"
    "       to open the backing file.\n"
    "  '-h' with or without a command shows this help and lists the supported formats\n"
    "  '-p' show progress of command (only certain commands)\n"
    "  '-q' use Quiet mode - do not print any output (except errors)\n"
    "  '-S' indicates the consecutive number of bytes (defaults to 4k) that must\n"
    "       contain only zeros for qemu-img to create a sparse image during\n"
    "       conversion. If the number of bytes is 0, the source will not be scanned for\n"
    "       unallocated or zero sectors, and the destination image will always be\n"
    "       fully allocated\n"
    "  '--output' takes the format in which the output must be done (human or json)\n"
    "  '-n' skips the target volume creation (useful if the volume is created\n"
    "       prior to running qemu-img)\n"
    "\n"
    "Parameters to bitmap subcommand:\n"
    "  'bitmap' is the name of the bitmap to manipulate, through one or more\n"
    "       actions from '--add', '--remove', '--clear', '--enable', '--disable',\n"
    "       or '--merge source'\n"
    "  '-g granularity' sets the granularity for '--add' actions\n"
    "  '-b source' and '-F src_fmt' tell '--merge' actions to find the source\n"
    "       bitmaps from an alternative file\n"
    "\n"
    "Parameters to check subcommand:\n"
    "  '-r' tries to repair any inconsistencies that are found during the check.\n"
    "       '-r leaks' repairs only cluster leaks, whereas '-r all' fixes all\n"
    "       kinds of errors, with a higher risk of choosing the wrong fix or\n"
    "       hiding corruption that has already occurred.\n"
    "\n"
    "Parameters to convert subcommand:\n"
    "  '--bitmaps' copies all top-level persistent bitmaps to destination\n"
    "  '-m' specifies how many coroutines work in parallel during the convert\n"
    "       process (defaults to 8)\n"
    "  '-W' allow to write to the target out of order rather than sequential\n"
    "\n"
    "Parameters to snapshot subcommand:\n"
    "  'snapshot' is the name of the snapshot to create, apply or delete\n"
    "  '-a' applies a snapshot (revert disk to saved state)\n"
    "  '-c' creates a snapshot\n"
    "  '-d' deletes a snapshot\n"
    "  '-l' lists all snapshots in the given image\n"
    "\n"
    "Parameters to compare subcommand:\n"
    "  '-f' first image format\n"
    "  '-F' second image format\n"
    "  '-s' run in Strict mode - fail on different image size or sector allocation\n"
    "\n"
    "Parameters to dd subcommand:\n"
    "  'bs=BYTES' read and write up to BYTES bytes at a time (default: 512)\n"
    "  'count=N' copy only N input blocks\n"
    "  'if=FILE' read from FILE\n"
    "  'of=FILE' write to FILE\n"
    "  'skip=N' skip N bs-sized blocks at the start of input\n"
    "\n"
    "Supported formats: blkdebug blklogwrites blkverify bochs cloop compress copy-before-write "
    "copy-on-read dmg file ftp ftps gluster host_cdrom host_device http https iscsi iser luks nbd "
    "nfs null-aio null-co nvme parallels preallocate qcow qcow2 qed quorum raw rbd replication "
    "snapshot-access ssh throttle vdi vhdx vmdk vpc vvfat\n"
    "\n"
    "See <https://qemu.org/contribute/report-a-bug> for how to report bugs.\n"
    "More information on the QEMU project at <https://qemu.org>.\n";

void cmd_print_help(void)
{
    fputs(cmd_version_text, stdout);
    fputs(help_body, stdout);
}

/* Drivers are the words of the "Supported formats:" line: one list to keep. */
bool cmd_driver_known(const char *name)
{
    static const char tag[] = "\nSupported formats:";
    const char *p = strstr(help_body, tag);
    size_t n = strlen(name);

    if (!p || !n)
        return false;
    p += sizeof(tag) - 1;
    while (*p == ' ') {
        const char *w = p + 1, *e = w + strcspn(w, " \n");

        if ((size_t)(e - w) == n && !memcmp(w, name, n))
            return true;
        p = e;
    }
    return false;
}

bool cmd_driver_creates(const char *name)
{
    /* The drivers of qemu-img --help's list that have no create_opts. */
    static const char *const none[] = {
        "blkdebug",
        "blklogwrites",
        "blkverify",
        "bochs",
        "cloop",
        "compress",
        "copy-before-write",
        "copy-on-read",
        "dmg",
        "ftp",
        "ftps",
        "http",
        "https",
        "null-aio",
        "null-co",
        "preallocate",
        "quorum",
        "replication",
        "snapshot-access",
        "throttle",
        "vvfat",
    };

    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        if (!strcmp(name, none[i]))
            return false;
    return true;
}

int cmd_getopt(int argc, char **argv, const char *optstring, const struct option *longopts,
               int *exit_code)
{
    int c = getopt_long(argc, argv, optstring, longopts, NULL);

    switch (c) {
    case ':':
        *exit_code = report_usage("missing argument for option '%s'", argv[optind - 1]);
        return CMD_GETOPT_DONE;
    case '?':
        *exit_code = report_usage("unrecognized option '%s'", argv[optind - 1]);
        return CMD_GETOPT_DONE;
    case 'h':
        cmd_print_help();
        *exit_code = 0;
        return CMD_GETOPT_DONE;
    }
    return c;
}

int cmd_add_options(char **options, const char *arg)
{
    char *n;

    if (!opts_valid_list(arg)) {
        report_error("Invalid option list: %s", arg);
        return -1;
    }
    if (!*options)
        n = strdup(arg);
    else if (asprintf(&n, "%s,%s", *options, arg) < 0)
        n = NULL;
    if (!n) {
        report_error("%s", strerror(ENOMEM));
        return -1;
    }
    free(*options);
    *options = n;
    return 0;
}

int cmd_output_json(const char *output, bool *json)
{
    *json = output && !strcmp(output, "json");
    if (output && !*json && strcmp(output, "human")) {
        report_error("--output must be used with human or json as argument.");
        return -1;
    }
    return 0;
}
