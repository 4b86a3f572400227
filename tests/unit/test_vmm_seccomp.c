/*
 * The host's own confinement (vmm/seccomp.c): once vmm_confine_host() has
 * run, a forbidden system call kills the process, and everything instar
 * still needs works, both backends included.  Each case confines a forked
 * child (never the criterion worker) and reads its fate from waitpid.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm.h"

extern const uint8_t neg_ok[], neg_ok_end[];

/* Run fn in a confined child; return its wait status. */
static int confined(void (*fn)(void))
{
    int status;
    pid_t pid = fork();

    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (vmm_confine_host() != 0)
            _exit(90);
        fn();
        _exit(0);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static void expect_killed(void (*fn)(void), const char *what)
{
    int st = confined(fn);

    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "%s: want death by SIGSYS, got %s %d",
              what, WIFSIGNALED(st) ? "signal" : "exit status",
              WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

static void do_execve(void)
{
    char *const argv[] = {"true", NULL}, *const envp[] = {NULL};

    syscall(SYS_execve, "/bin/true", argv, envp);
}

static void do_execveat_other(void)
{
    char *const argv[] = {"true", NULL}, *const envp[] = {NULL};
    int fd = open("/bin/true", O_RDONLY | O_CLOEXEC);

    syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
}

static void do_socket(void)
{
    syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
}

static void do_ptrace(void)
{
    syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
}

static void do_exec_mapping(void)
{
    syscall(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1,
            0);
}

static void do_mprotect_exec(void)
{
    static char page[4096] __attribute__((aligned(4096)));

    syscall(SYS_mprotect, page, sizeof(page), PROT_READ | PROT_EXEC);
}

Test(vmm_seccomp, execve_kills_the_host)
{
    expect_killed(do_execve, "execve");
}

Test(vmm_seccomp, execveat_of_anything_but_the_tender_kills_the_host)
{
    expect_killed(do_execveat_other, "execveat(/bin/true)");
}

Test(vmm_seccomp, socket_kills_the_host)
{
    expect_killed(do_socket, "socket");
}

Test(vmm_seccomp, ptrace_kills_the_host)
{
    expect_killed(do_ptrace, "ptrace");
}

Test(vmm_seccomp, new_executable_memory_kills_the_host)
{
    expect_killed(do_exec_mapping, "mmap(PROT_EXEC)");
    expect_killed(do_mprotect_exec, "mprotect(PROT_EXEC)");
}

/* What a command does once confined: files, output, and a guest run. */
static enum vmm_backend work_backend;

static void do_work(void)
{
    char path[] = "/tmp/instar-seccomp-XXXXXX";
    static const uint8_t data[16] = "QFI\xfb-confined--";
    struct vmm_dev dev = {.size = sizeof(data), .flags = INSTAR_DEV_READ};
    struct vmm_config cfg = {.mem_size = 16 << 20, .backend = work_backend};
    struct vmm_outcome out;
    struct statfs sfs;
    int fd = mkstemp(path); /* before confinement: openat with O_CREAT is still allowed after */

    if (fd < 0 || write(fd, data, sizeof(data)) != (ssize_t)sizeof(data))
        _exit(91);
    close(fd);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    unlink(path);
    if (fd < 0)
        _exit(92);
    dev.fd = fd;
    /* glibc's posix_fallocate() falls back to fstatfs() where fallocate is unsupported (NFSv3,
     * ext3). */
    if (fstatfs(fd, &sfs) != 0)
        _exit(96);
    if (vmm_run_image(neg_ok, (size_t)(neg_ok_end - neg_ok), &cfg, INSTAR_OP_NONE, NULL, 0, &dev, 1,
                      &out) != 0)
        _exit(93);
    if (out.result_len != sizeof(data) || memcmp(out.result, data, sizeof(data)))
        _exit(94);
    vmm_outcome_release(&out);
    /* A second run: children are spawned after confinement too. */
    if (vmm_run_image(neg_ok, (size_t)(neg_ok_end - neg_ok), &cfg, INSTAR_OP_NONE, NULL, 0, &dev, 1,
                      &out) != 0)
        _exit(95);
    vmm_outcome_release(&out);
    printf("confined and working\n");
    fflush(stdout);
}

static void expect_works(enum vmm_backend b)
{
    int st;

    work_backend = b;
    st = confined(do_work);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "confined %s run: %s %d", vmm_backend_name(b),
              WIFSIGNALED(st) ? "signal" : "exit status",
              WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

Test(vmm_seccomp, process_backend_runs_confined)
{
    expect_works(VMM_BACKEND_PROCESS);
}

Test(vmm_seccomp, kvm_backend_runs_confined)
{
    if (!vmm_kvm_usable()) {
        cr_assert_null(getenv("INSTAR_REQUIRE_KVM"),
                       "INSTAR_REQUIRE_KVM is set but no KVM VM can be created here");
        cr_skip_test("KVM backend: no KVM VM can be created here");
    }
    expect_works(VMM_BACKEND_KVM);
}
