/*
 * Hypercall handlers.  Each copies its argument struct out of guest RAM
 * through the checked accessor (mem.h: by copy, never by pointer), validates
 * every field of the copy whatever the guest checked, does the work, and
 * writes OUT fields back through the accessor.
 * A malformed call ends the run with VMM_GUEST_PROTOCOL; it never touches
 * host memory outside guest RAM and never exits the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm_int.h"

/* Copy an argument struct in; false (and the run failed) if out of range. */
static bool hc_arg(struct vmm *v, uint32_t gpa, void *dst, size_t len, const char *what)
{
    if (vmm_mem_read(&v->mem, gpa, dst, len) < 0) {
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest passed a %s argument outside its memory (0x%x)",
                 what, gpa);
        return false;
    }
    return true;
}

static void hc_ret(struct vmm *v, uint32_t gpa, size_t off, int64_t ret)
{
    /* In range (it was read), but it may lie in the guest's text: then no answer, and no run. */
    if (vmm_mem_write(&v->mem, (uint64_t)gpa + off, &ret, sizeof(ret)) < 0)
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest asked for an answer where it cannot be written");
}

static struct vmm_devstate *hc_dev(struct vmm *v, uint32_t handle)
{
    if (handle >= v->ndevs)
        return NULL;
    return &v->devs[handle];
}

/*
 * Validate a block request.  Returns the device, or NULL with *err set to
 * the INSTAR_HC_E* code the guest gets back.
 */
static struct vmm_devstate *blk_check(struct vmm *v, const struct instar_hc_blk *a, bool write,
                                      int64_t *err)
{
    struct vmm_devstate *d = hc_dev(v, a->handle);
    uint64_t end;

    *err = INSTAR_HC_EINVAL;
    if (!d)
        return NULL;
    if (!(d->flags & (write ? INSTAR_DEV_WRITE : INSTAR_DEV_READ))) {
        *err = INSTAR_HC_EPERM;
        return NULL;
    }
    if (a->len > INSTAR_BLK_XFER_MAX) {
        *err = INSTAR_HC_ETOOBIG;
        return NULL;
    }
    /* A read fills guest RAM: never the guest's text. */
    if (!(write ? vmm_mem_check(&v->mem, a->data, a->len)
                : vmm_mem_check_write(&v->mem, a->data, a->len)))
        return NULL;
    if (__builtin_add_overflow(a->offset, a->len, &end) || end > (uint64_t)INT64_MAX ||
        end > (write ? d->write_limit : d->size)) {
        *err = INSTAR_HC_ERANGE;
        return NULL;
    }
    return d;
}

/*
 * Test-only fault injection (VMM_FAULT_ENV): false, and the run over, when
 * the write about to happen is the first one past the allowance.
 */
static bool fault_allow(struct vmm *v)
{
    if (!v->fault_on)
        return true;
    if (v->fault_left == 0) {
        vmm_fail(v, VMM_FAULT_INJECTED, "fault injection: stopped before write %llu",
                 (unsigned long long)v->out->nwrites + 1);
        return false;
    }
    v->fault_left--;
    return true;
}

/*
 * Move up to len bytes between the device and guest RAM through a bounce
 * buffer (mem.h says why not a mapping).  Returns the bytes moved (short
 * only at the end of the file), or -1 if the device I/O failed.
 */
static int64_t blk_copy(struct vmm *v, struct vmm_devstate *d, const struct instar_hc_blk *a,
                        bool write)
{
    static uint8_t bounce[64 << 10];
    uint64_t done = 0;

    while (done < a->len) {
        size_t chunk = a->len - done < sizeof(bounce) ? (size_t)(a->len - done) : sizeof(bounce);
        size_t got = 0;

        if (write && vmm_mem_read(&v->mem, a->data + done, bounce, chunk) < 0)
            return -1;
        while (got < chunk) {
            off_t off = (off_t)(a->offset + done + got);
            ssize_t n = write ? pwrite(d->fd, bounce + got, chunk - got, off)
                              : pread(d->fd, bounce + got, chunk - got, off);

            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return -1;
            if (n == 0)
                break; /* the file shrank under us: a short read */
            got += (size_t)n;
        }
        if (!write && got && vmm_mem_write(&v->mem, a->data + done, bounce, got) < 0)
            return -1;
        done += got;
        if (got < chunk)
            break;
    }
    return (int64_t)done;
}

static void hc_blkio(struct vmm *v, uint32_t gpa, bool write)
{
    struct instar_hc_blk a;
    struct vmm_devstate *d;
    int64_t ret;

    if (!hc_arg(v, gpa, &a, sizeof(a), "block"))
        return;
    d = blk_check(v, &a, write, &ret);
    if (!d) {
        hc_ret(v, gpa, offsetof(struct instar_hc_blk, ret), ret);
        return;
    }
    if (write) {
        if (!fault_allow(v))
            return;
        v->out->nwrites++;
    }
    ret = blk_copy(v, d, &a, write);
    if (ret < 0) {
        hc_ret(v, gpa, offsetof(struct instar_hc_blk, ret), INSTAR_HC_EIO);
        return;
    }
    if (write && a.offset + (uint64_t)ret > d->size)
        d->size = a.offset + (uint64_t)ret;
    hc_ret(v, gpa, offsetof(struct instar_hc_blk, ret), ret);
}

/*
 * Host work is not interrupted by the watchdog (its signal is blocked
 * outside KVM_RUN, and the process backend uses none), but a caller's
 * own signals may be: retry what EINTR can cut short.
 */
static int fdatasync_retry(int fd)
{
    int r;

    do
        r = fdatasync(fd);
    while (r < 0 && errno == EINTR);
    return r;
}

static int ftruncate_retry(int fd, off_t len)
{
    int r;

    do
        r = ftruncate(fd, len);
    while (r < 0 && errno == EINTR);
    return r;
}

static void hc_flush(struct vmm *v, uint32_t gpa)
{
    struct instar_hc_flush a;
    struct vmm_devstate *d;
    int64_t ret = INSTAR_HC_OK;

    if (!hc_arg(v, gpa, &a, sizeof(a), "flush"))
        return;
    d = hc_dev(v, a.handle);
    if (!d)
        ret = INSTAR_HC_EINVAL;
    else if (!(d->flags & INSTAR_DEV_WRITE))
        ret = INSTAR_HC_EPERM;
    else if (fdatasync_retry(d->fd) < 0)
        ret = INSTAR_HC_EIO;
    hc_ret(v, gpa, offsetof(struct instar_hc_flush, ret), ret);
}

/* Write zeros over [from, to) of fd, as qemu's PREALLOC_MODE_FULL does. */
void vmm_allocate_first_block(int fd, uint64_t new_size)
{
    static const char zeros[4096];
    size_t n = new_size < sizeof(zeros) ? 512 : sizeof(zeros);
    ssize_t w;

    do
        w = pwrite(fd, zeros, n, 0);
    while (w < 0 && errno == EINTR);
}

static int write_zeros(int fd, uint64_t from, uint64_t to)
{
    static const uint8_t zeros[65536];

    while (from < to) {
        size_t n = to - from < sizeof(zeros) ? (size_t)(to - from) : sizeof(zeros);
        ssize_t w = pwrite(fd, zeros, n, (off_t)from);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        from += (uint64_t)w;
    }
    return 0;
}

static void hc_truncate(struct vmm *v, uint32_t gpa)
{
    struct instar_hc_truncate a;
    struct vmm_devstate *d;
    int64_t ret = INSTAR_HC_OK;

    if (!hc_arg(v, gpa, &a, sizeof(a), "truncate"))
        return;
    d = hc_dev(v, a.handle);
    if (!d || a.mode > INSTAR_TRUNC_FULL)
        ret = INSTAR_HC_EINVAL;
    else if (!(d->flags & INSTAR_DEV_WRITE))
        ret = INSTAR_HC_EPERM;
    else if (a.size > d->write_limit || a.size > (uint64_t)INT64_MAX)
        ret = INSTAR_HC_ERANGE;
    else if (a.mode != INSTAR_TRUNC_OFF && a.size > d->size &&
             a.size - d->size > INSTAR_TRUNC_FILL_MAX)
        ret = INSTAR_HC_ETOOBIG;
    if (ret != INSTAR_HC_OK) {
        hc_ret(v, gpa, offsetof(struct instar_hc_truncate, ret), ret);
        return;
    }
    if (!fault_allow(v))
        return;
    v->out->nwrites++;
    if (a.mode == INSTAR_TRUNC_FALLOC && a.size > d->size) {
        int e;

        do
            e = posix_fallocate(d->fd, (off_t)d->size, (off_t)(a.size - d->size));
        while (e == EINTR);
        if (e)
            ret = INSTAR_HC_EIO;
    } else if (ftruncate_retry(d->fd, (off_t)a.size) < 0) {
        ret = INSTAR_HC_EIO;
    } else if (a.mode == INSTAR_TRUNC_FULL && a.size > d->size &&
               write_zeros(d->fd, d->size, a.size) < 0) {
        ret = INSTAR_HC_EIO;
    }
    /* file-posix grows an empty file's first block (within the new size, so the limit holds). */
    if (ret == INSTAR_HC_OK && d->size == 0 && a.size > 0 && a.mode != INSTAR_TRUNC_FULL)
        vmm_allocate_first_block(d->fd, a.size);
    if (ret == INSTAR_HC_OK)
        d->size = a.size;
    hc_ret(v, gpa, offsetof(struct instar_hc_truncate, ret), ret);
}

/*
 * Diagnostics: the caller's callback validates and prints them.  Without
 * one (an operation that expects none) the call is a protocol error.
 */
static void hc_report(struct vmm *v, uint32_t gpa)
{
    static uint8_t batch[INSTAR_REPORT_MAX];
    struct instar_hc_report a;

    if (!hc_arg(v, gpa, &a, sizeof(a), "report"))
        return;
    if (!vmm_mem_check(&v->mem, a.data, a.len) || a.len > INSTAR_REPORT_MAX) {
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest report outside its memory or too long");
        return;
    }
    if (!v->report) {
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest sent diagnostics for an operation without any");
        return;
    }
    v->report_bytes += a.len;
    if (v->report_bytes > v->report_budget) {
        vmm_fail(v, VMM_GUEST_BUDGET,
                 "the sandbox sent more than %llu MiB of diagnostics and was stopped "
                 "(INSTAR_REPORT_BUDGET_MB)",
                 (unsigned long long)(v->report_budget >> 20));
        return;
    }
    if (vmm_mem_read(&v->mem, a.data, batch, a.len) < 0) {
        vmm_fail(v, VMM_ERR_SANDBOX, "cannot read guest memory");
        return;
    }
    if (v->report(v->report_opaque, batch, (size_t)a.len) < 0) {
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest sent malformed diagnostics");
        return;
    }
    hc_ret(v, gpa, offsetof(struct instar_hc_report, ret), INSTAR_HC_OK);
}

static void hc_result(struct vmm *v, uint32_t gpa)
{
    struct instar_hc_result a;

    if (!hc_arg(v, gpa, &a, sizeof(a), "result"))
        return;
    if (v->out->result) {
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest sent a second result");
        return;
    }
    if (!vmm_mem_check(&v->mem, a.data, a.len) || a.len == 0 || a.len > INSTAR_RESULT_MAX) {
        hc_ret(v, gpa, offsetof(struct instar_hc_result, ret), INSTAR_HC_EINVAL);
        return;
    }
    v->out->result = malloc(a.len);
    if (!v->out->result) {
        vmm_fail(v, VMM_ERR_NOMEM, "out of memory for the result");
        return;
    }
    if (vmm_mem_read(&v->mem, a.data, v->out->result, a.len) < 0) {
        vmm_fail(v, VMM_ERR_SANDBOX, "cannot read guest memory");
        return;
    }
    v->out->result_len = a.len;
    hc_ret(v, gpa, offsetof(struct instar_hc_result, ret), INSTAR_HC_OK);
}

static void hc_log(struct vmm *v, uint32_t gpa)
{
    struct instar_hc_log a;
    unsigned char msg[INSTAR_LOG_MAX];

    if (!hc_arg(v, gpa, &a, sizeof(a), "log"))
        return;
    if (!vmm_mem_check(&v->mem, a.data, a.len) || a.len > INSTAR_LOG_MAX) {
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest log message outside its memory or too long");
        return;
    }
    if (!v->debug || vmm_mem_read(&v->mem, a.data, msg, a.len) < 0)
        return;
    fputs("instar guest: ", stderr);
    for (uint64_t i = 0; i < a.len; i++)
        fputc((msg[i] >= 0x20 && msg[i] < 0x7f) || msg[i] == '\n' ? msg[i] : '?', stderr);
    fputc('\n', stderr);
}

static void hc_panic(struct vmm *v, uint32_t gpa)
{
    struct instar_hc_panic a;
    char expr[128], file[128];

    if (!hc_arg(v, gpa, &a, sizeof(a), "panic"))
        return;
    if (vmm_mem_strdup(&v->mem, a.expr, expr, sizeof(expr)) < 0)
        strcpy(expr, "?");
    if (vmm_mem_strdup(&v->mem, a.file, file, sizeof(file)) < 0)
        strcpy(file, "?");
    vmm_fail(v, VMM_GUEST_PANIC, "sandbox assertion failed: %s (%s:%u)", expr, file, a.line);
}

static const char *vector_name(uint64_t vec)
{
    static const char *names[32] = {
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS",
        "#NP", "#SS", "#GP", "#PF", "?",   "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
    };

    return vec < 32 && names[vec] ? names[vec] : "?";
}

void vmm_guest_trap(struct vmm *v, const struct vmm_trap *t)
{
    vmm_fail(v, VMM_GUEST_TRAP,
             "sandbox guest fault: %s (vector %llu) at rip 0x%llx, error code 0x%llx, "
             "address 0x%llx",
             vector_name(t->vector), (unsigned long long)t->vector, (unsigned long long)t->rip,
             (unsigned long long)t->error_code, (unsigned long long)t->cr2);
}

static void hc_trap(struct vmm *v, uint32_t gpa)
{
    struct instar_hc_trap a;
    struct vmm_trap t;

    if (!hc_arg(v, gpa, &a, sizeof(a), "trap"))
        return;
    t = (struct vmm_trap){a.vector, a.error_code, a.rip, a.cr2, a.rsp};
    vmm_guest_trap(v, &t);
}

static void hc_exit(struct vmm *v, uint32_t gpa)
{
    struct instar_hc_exit a;

    if (!hc_arg(v, gpa, &a, sizeof(a), "exit"))
        return;
    if (a.status != 0) {
        vmm_fail(v, VMM_GUEST_EXIT, "the sandbox guest gave up (status %lld)", (long long)a.status);
        return;
    }
    if (!v->out->result) {
        vmm_fail(v, VMM_GUEST_NORESULT, "the sandbox guest exited without a result");
        return;
    }
    v->done = true; /* status stays VMM_OK */
}

void vmm_hc_dispatch(struct vmm *v, unsigned nr, uint32_t gpa)
{
    switch (nr) {
    case INSTAR_HC_BLKREAD:
        hc_blkio(v, gpa, false);
        break;
    case INSTAR_HC_BLKWRITE:
        hc_blkio(v, gpa, true);
        break;
    case INSTAR_HC_FLUSH:
        hc_flush(v, gpa);
        break;
    case INSTAR_HC_RESULT:
        hc_result(v, gpa);
        break;
    case INSTAR_HC_LOG:
        hc_log(v, gpa);
        break;
    case INSTAR_HC_PANIC:
        hc_panic(v, gpa);
        break;
    case INSTAR_HC_TRAP:
        hc_trap(v, gpa);
        break;
    case INSTAR_HC_EXIT:
        hc_exit(v, gpa);
        break;
    case INSTAR_HC_REPORT:
        hc_report(v, gpa);
        break;
    case INSTAR_HC_TRUNCATE:
        hc_truncate(v, gpa);
        break;
    default:
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest made unknown hypercall %u", nr);
        break;
    }
}
