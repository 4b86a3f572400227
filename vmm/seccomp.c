/*
 * The host's own confinement: before the first byte of an image is read,
 * instar gives up core dumps, sets PR_SET_NO_NEW_PRIVS and installs a
 * default-kill allowlist of the system calls it still needs.  If a hostile
 * image ever did reach code execution in this process, it could not exec,
 * open a socket, ptrace, or map new executable memory.
 *
 * The allowlist itself, one line per call, is in vmm/seccomp_gen.c, which
 * compiles it with libseccomp at build time; here it is only loaded.
 *
 * Files are still opened after a guest has run (a backing chain is
 * opened as the guests name it, create makes its output after describing
 * a backing file), so openat stays allowed: there the path policy
 * (cmd/policy.c) is the control.  docs/sandbox.md says what this leaves.
 *
 * The process backend's child inherits this filter, so it also admits the
 * few calls the tender (vmm/tender/) makes before it installs its own,
 * tighter one.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "instar_seccomp_bpf.h" /* generated: host_filter[] */
#include "seccomp_slot.h"
#include "vmm_int.h"

static bool confined;

int vmm_confine_host(void)
{
    const struct rlimit no_core = {0, 0};
    struct sock_filter f[sizeof(host_filter) / sizeof(host_filter[0])];
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    unsigned slots = 0;
    int tfd;

    if (confined)
        return 0;
    /* A crash must never write guest RAM (image data) to disk. */
    if (setrlimit(RLIMIT_CORE, &no_core) < 0 || prctl(PR_SET_DUMPABLE, 0) < 0)
        return -errno;
    /*
     * Prepare now what cannot be prepared once confined: /dev/kvm and a
     * spare VM (unless the process backend was asked for), and the
     * tender's memfd, so either backend can still run.
     */
    if (vmm_backend_from_env() != VMM_BACKEND_PROCESS)
        (void)vmm_kvm_usable();
    tfd = vmm_proc_prepare();

    /* The tender's descriptor into its slot (without one, no execveat at all). */
    memcpy(f, host_filter, sizeof(f));
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (BPF_CLASS(f[i].code) == BPF_JMP && BPF_SRC(f[i].code) == BPF_K &&
            f[i].k == SECCOMP_TENDER_FD_SLOT) {
            f[i].k = tfd >= 0 ? (uint32_t)tfd : SECCOMP_TENDER_FD_SLOT;
            slots++;
        }
    }
    if (slots != 1)
        return -EINVAL;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        return -errno;
    confined = true;
    return 0;
}
