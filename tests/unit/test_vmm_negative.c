/*
 * Negative guests (guest/neg/): each breaks the hypercall ABI and must end
 * in a structured outcome with the host process alive and its files intact.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm.h"

#define NEG(n)                                                                                     \
    extern const uint8_t neg_##n[], neg_##n##_end[];                                               \
    static const struct neg_image img_##n = {#n, neg_##n, neg_##n##_end}

struct neg_image {
    const char *name;
    const uint8_t *start, *end;
};

NEG(ok);
NEG(bad_buffer);
NEG(ro_write);
NEG(bad_arg);
NEG(unknown_call);
NEG(bad_port);
NEG(cpu_exception);
NEG(triple_fault);
NEG(spin);
NEG(assert_fail);
NEG(no_result);
NEG(halt);
NEG(writer);
NEG(report);

static char path[] = "/tmp/instar-neg-XXXXXX";
static int fd = -1;
static const uint8_t pattern[4096] = "QFI\xfb-instar-negative-guest-device";

static void setup(void)
{
    if (!vmm_available())
        cr_skip_test("KVM unavailable (/dev/kvm cannot be opened): negative guests not run");
    fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, pattern, sizeof(pattern)), (ssize_t)sizeof(pattern));
    close(fd);
    fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
}

static void teardown(void)
{
    if (fd >= 0) {
        close(fd);
        unlink(path);
        fd = -1;
    }
}

static int run(const struct neg_image *img, struct vmm_outcome *out, unsigned watchdog_ms)
{
    struct vmm_dev dev = {.fd = fd, .size = sizeof(pattern), .flags = INSTAR_DEV_READ};
    struct vmm_config cfg = {.mem_size = 16 << 20, .watchdog_ms = watchdog_ms};

    return vmm_run_image(img->start, img->end - img->start, &cfg, INSTAR_OP_NONE, NULL, 0, &dev, 1,
                         out);
}

TestSuite(vmm_negative, .init = setup, .fini = teardown, .timeout = 30);

Test(vmm_negative, ok_guest_reads_device)
{
    struct vmm_outcome out;

    cr_assert_eq(run(&img_ok, &out, 0), 0, "%s", out.detail);
    cr_assert_eq(out.status, VMM_OK);
    cr_assert_eq(out.result_len, 16);
    cr_assert_arr_eq(out.result, pattern, 16);
    vmm_outcome_release(&out);
}

Test(vmm_negative, bad_buffers_are_refused)
{
    struct vmm_outcome out;
    const int64_t *v;

    cr_assert_eq(run(&img_bad_buffer, &out, 0), 0, "%s", out.detail);
    cr_assert_eq(out.result_len, 8 * sizeof(int64_t));
    v = out.result;
    cr_expect_eq(v[0], INSTAR_HC_EINVAL, "buffer past RAM: %lld", (long long)v[0]);
    cr_expect_eq(v[1], INSTAR_HC_EINVAL, "buffer straddling RAM end: %lld", (long long)v[1]);
    cr_expect_eq(v[2], INSTAR_HC_ETOOBIG, "wrapping length: %lld", (long long)v[2]);
    cr_expect_eq(v[3], INSTAR_HC_ERANGE, "wrapping offset: %lld", (long long)v[3]);
    cr_expect_eq(v[4], INSTAR_HC_ERANGE, "read past device: %lld", (long long)v[4]);
    cr_expect_eq(v[5], INSTAR_HC_EINVAL, "bad handle: %lld", (long long)v[5]);
    vmm_outcome_release(&out);
}

Test(vmm_negative, write_to_read_only_device)
{
    struct vmm_outcome out;
    const int64_t *v;
    uint8_t now[sizeof(pattern)];
    int f;

    cr_assert_eq(run(&img_ro_write, &out, 0), 0, "%s", out.detail);
    v = out.result;
    cr_expect_eq(v[0], INSTAR_HC_EPERM);
    cr_expect_eq(v[1], INSTAR_HC_EPERM);
    vmm_outcome_release(&out);
    f = open(path, O_RDONLY);
    cr_assert_eq(read(f, now, sizeof(now)), (ssize_t)sizeof(now));
    close(f);
    cr_assert_arr_eq(now, pattern, sizeof(pattern), "device bytes changed");
}

static void expect_fault(const struct neg_image *img, enum vmm_status st, const char *needle,
                         unsigned watchdog_ms)
{
    struct vmm_outcome out;

    cr_assert_eq(run(img, &out, watchdog_ms), -1, "%s should have failed", img->name);
    cr_expect_eq(out.status, st, "%s: status %d (%s)", img->name, out.status, out.detail);
    cr_expect_not_null(strstr(out.detail, needle), "%s: detail '%s' lacks '%s'", img->name,
                       out.detail, needle);
    cr_expect_null(out.result);
    vmm_outcome_release(&out);
}

Test(vmm_negative, argument_outside_ram)
{
    expect_fault(&img_bad_arg, VMM_GUEST_PROTOCOL, "outside its memory", 0);
}

Test(vmm_negative, unknown_hypercall)
{
    expect_fault(&img_unknown_call, VMM_GUEST_PROTOCOL, "unknown hypercall 0", 0);
}

Test(vmm_negative, port_outside_abi)
{
    expect_fault(&img_bad_port, VMM_GUEST_PROTOCOL, "0x3f8", 0);
}

Test(vmm_negative, cpu_exception_reports_vector)
{
    expect_fault(&img_cpu_exception, VMM_GUEST_TRAP, "#PF (vector 14)", 0);
}

Test(vmm_negative, triple_fault)
{
    expect_fault(&img_triple_fault, VMM_GUEST_SHUTDOWN, "triple fault", 0);
}

Test(vmm_negative, infinite_loop_hits_watchdog)
{
    expect_fault(&img_spin, VMM_GUEST_WATCHDOG, "no progress for 300 ms", 300);
}

Test(vmm_negative, assertion_carries_location)
{
    expect_fault(&img_assert_fail, VMM_GUEST_PANIC, "boot->magic == 0", 0);
    expect_fault(&img_assert_fail, VMM_GUEST_PANIC, "assert_fail.c", 0);
}

Test(vmm_negative, exit_without_result)
{
    expect_fault(&img_no_result, VMM_GUEST_NORESULT, "without a result", 0);
}

Test(vmm_negative, halt_ends_the_run)
{
    /* hlt is privileged in ring 3, where planners run: a #GP, not a hang. */
    expect_fault(&img_halt, VMM_GUEST_TRAP, "#GP", 0);
}

/* --- Writes, truncation and fault injection (a writable scratch device) --- */

static int run_writable(const struct neg_image *img, int wfd, struct vmm_outcome *out)
{
    struct vmm_dev dev = {.fd = wfd,
                          .size = sizeof(pattern),
                          .write_limit = 8192,
                          .flags = INSTAR_DEV_READ | INSTAR_DEV_WRITE};
    struct vmm_config cfg = {.mem_size = 16 << 20};

    return vmm_run_image(img->start, img->end - img->start, &cfg, INSTAR_OP_NONE, NULL, 0, &dev, 1,
                         out);
}

static int writable_copy(void)
{
    int f = open(path, O_RDWR);

    cr_assert_geq(f, 0);
    return f;
}

Test(vmm_negative, truncate_and_write_on_read_only_device)
{
    struct vmm_outcome out;
    const int64_t *v;
    struct stat st;

    cr_assert_eq(run(&img_writer, &out, 0), 0, "%s", out.detail);
    v = out.result;
    for (int i = 0; i < 5; i++)
        cr_expect_eq(v[i], INSTAR_HC_EPERM, "call %d: %lld", i, (long long)v[i]);
    cr_expect_eq(out.nwrites, 0);
    vmm_outcome_release(&out);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_size, (off_t)sizeof(pattern), "a refused truncate changed the file");
}

Test(vmm_negative, truncate_is_bounded_by_the_write_limit)
{
    struct vmm_outcome out;
    const int64_t *v;
    struct stat st;
    uint8_t buf[1536];
    int f = writable_copy();

    cr_assert_eq(run_writable(&img_writer, f, &out), 0, "%s", out.detail);
    v = out.result;
    cr_expect_eq(v[0], INSTAR_HC_OK, "truncate within the limit: %lld", (long long)v[0]);
    cr_expect_eq(v[1], INSTAR_HC_ERANGE, "truncate past the limit: %lld", (long long)v[1]);
    cr_expect_eq(v[2], 512);
    cr_expect_eq(v[3], 512);
    cr_expect_eq(v[4], 512);
    cr_expect_eq(out.nwrites, 4);
    vmm_outcome_release(&out);
    cr_assert_eq(fstat(f, &st), 0);
    cr_expect_eq(st.st_size, 8192);
    cr_assert_eq(pread(f, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    cr_expect(buf[0] == 'a' && buf[511] == 'a' && buf[512] == 'b' && buf[1535] == 'c');
    close(f);
}

Test(vmm_negative, fault_injection_stops_before_the_next_write)
{
    struct vmm_outcome out;
    uint8_t buf[1024];
    int f = writable_copy();

    /* The truncate is write 1, the first block write is write 2. */
    setenv(VMM_FAULT_ENV, "2", 1);
    cr_assert_eq(run_writable(&img_writer, f, &out), -1);
    unsetenv(VMM_FAULT_ENV);
    cr_expect_eq(out.status, VMM_FAULT_INJECTED, "status %d (%s)", out.status, out.detail);
    cr_expect_not_null(strstr(out.detail, "before write 3"), "%s", out.detail);
    cr_expect_eq(out.nwrites, 2);
    cr_expect_null(out.result);
    vmm_outcome_release(&out);
    cr_assert_eq(pread(f, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    cr_expect_eq(buf[0], 'a', "write 2 was not performed");
    cr_expect_eq(buf[512], pattern[512], "write 3 was performed");
    close(f);
}

static int count_reports(void *opaque, const void *recs, size_t len)
{
    const struct instar_report_rec *r = recs;

    cr_assert_geq(len, sizeof(*r));
    cr_expect_eq(r->code, 2000);
    cr_expect_eq(r->slen, 3);
    cr_expect_arr_eq((const char *)(r + 1), "abc", 3);
    ++*(int *)opaque;
    return 0;
}

Test(vmm_negative, report_without_a_callback_is_a_protocol_error)
{
    expect_fault(&img_report, VMM_GUEST_PROTOCOL, "without any", 0);
}

Test(vmm_negative, report_longer_than_the_limit_is_a_protocol_error)
{
    struct vmm_dev dev = {.fd = fd, .size = sizeof(pattern), .flags = INSTAR_DEV_READ};
    int calls = 0;
    struct vmm_config cfg = {
        .mem_size = 16 << 20, .report = count_reports, .report_opaque = &calls};
    struct vmm_outcome out;

    cr_assert_eq(vmm_run_image(img_report.start, img_report.end - img_report.start, &cfg,
                               INSTAR_OP_NONE, NULL, 0, &dev, 1, &out),
                 -1);
    cr_expect_eq(calls, 1, "the well-formed batch reached the callback once");
    cr_expect_eq(out.status, VMM_GUEST_PROTOCOL, "status %d (%s)", out.status, out.detail);
    cr_expect_not_null(strstr(out.detail, "too long"), "%s", out.detail);
    vmm_outcome_release(&out);
}
