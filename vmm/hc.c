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
#include <sys/stat.h>
#include <unistd.h>

#include "instar/sparse.h"
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
 * pread/pwrite that also work on a descriptor opened with O_DIRECT (convert
 * -t none): an unaligned transfer, which O_DIRECT refuses with EINVAL, is
 * done once without O_DIRECT (the kernel keeps the two coherent), so the
 * guest need not know how the host opened its device.
 */
static ssize_t io_retry_buffered(int fd, void *buf, size_t len, off_t off, bool write)
{
    int fl = fcntl(fd, F_GETFL);
    ssize_t n;

    if (fl < 0 || !(fl & O_DIRECT) || fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0) {
        errno = EINVAL;
        return -1;
    }
    n = write ? pwrite(fd, buf, len, off) : pread(fd, buf, len, off);
    fcntl(fd, F_SETFL, fl);
    return n;
}

static ssize_t dev_pread(int fd, void *buf, size_t len, off_t off)
{
    ssize_t n = pread(fd, buf, len, off);

    if (n < 0 && errno == EINVAL)
        n = io_retry_buffered(fd, buf, len, off, false);
    return n;
}

static ssize_t dev_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n = pwrite(fd, buf, len, off);

    if (n < 0 && errno == EINVAL)
        n = io_retry_buffered(fd, (void *)buf, len, off, true);
    return n;
}

/* The code of a host write that failed with errno set: ENOSPC apart, so qemu-img's message can
 * follow. */
static int64_t write_err(int err)
{
    return err == ENOSPC ? INSTAR_HC_ENOSPC : INSTAR_HC_EIO;
}

/*
 * Move up to len bytes between the device and guest RAM through a bounce
 * buffer (mem.h says why not a mapping).  Returns the bytes moved (short
 * only at the end of the file), or -1 if the device I/O failed.
 */
static int64_t blk_copy(struct vmm *v, struct vmm_devstate *d, const struct instar_hc_blk *a,
                        bool write)
{
    static uint8_t bounce[1 << 20] __attribute__((aligned(4096)));
    uint64_t done = 0;

    while (done < a->len) {
        size_t chunk = a->len - done < sizeof(bounce) ? (size_t)(a->len - done) : sizeof(bounce);
        size_t got = 0;

        if (write && vmm_mem_read(&v->mem, a->data + done, bounce, chunk) < 0)
            return -1;
        while (got < chunk) {
            off_t off = (off_t)(a->offset + done + got);
            ssize_t n = write ? dev_pwrite(d->fd, bounce + got, chunk - got, off)
                              : dev_pread(d->fd, bounce + got, chunk - got, off);

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
        hc_ret(v, gpa, offsetof(struct instar_hc_blk, ret),
               write ? write_err(errno) : INSTAR_HC_EIO);
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
    else if (!d->no_flush && fdatasync_retry(d->fd) < 0)
        ret = write_err(errno);
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
        ssize_t w = dev_pwrite(fd, zeros, n, (off_t)from);

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
            ret = write_err(e);
    } else if (ftruncate_retry(d->fd, (off_t)a.size) < 0) {
        ret = write_err(errno);
    } else if (a.mode == INSTAR_TRUNC_FULL && a.size > d->size &&
               write_zeros(d->fd, d->size, a.size) < 0) {
        ret = write_err(errno);
    }
    /* file-posix grows an empty file's first block (within the new size, so the limit holds). */
    if (ret == INSTAR_HC_OK && d->size == 0 && a.size > 0 && a.mode != INSTAR_TRUNC_FULL)
        vmm_allocate_first_block(d->fd, a.size);
    if (ret == INSTAR_HC_OK)
        d->size = a.size;
    hc_ret(v, gpa, offsetof(struct instar_hc_truncate, ret), ret);
}

/* Write len bytes of buf at off, whole. */
static int pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
    while (len) {
        ssize_t w = dev_pwrite(fd, buf, len, (off_t)off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Read len bytes at off; what lies past the end of the file reads as zeros. */
static int pread_zero(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    while (len) {
        ssize_t r = dev_pread(fd, buf, len, (off_t)off);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0) {
            memset(buf, 0, len);
            return 0;
        }
        buf += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/*
 * Make [off, off + len) of fd read as zeros: punch a hole (qemu's
 * write_zeroes with MAY_UNMAP on a file), else zero the range, else write
 * zeros.  Grows the file if the range ends past it.
 */
static int zero_range(int fd, uint64_t off, uint64_t len, uint64_t size)
{
    uint64_t end = off + len, in = end < size ? end : size;

    if (off < in &&
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)(in - off)) &&
        fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)(in - off)) &&
        write_zeros(fd, off, in))
        return -1;
    if (end > size && ftruncate_retry(fd, (off_t)end) < 0)
        return -1;
    return 0;
}

/*
 * file-posix's write_zeroes without MAY_UNMAP (handle_aiocb_write_zeroes):
 * FALLOC_FL_ZERO_RANGE; where the file system has none, a punched hole
 * allocated again (fallocate mode 0); past the end of the file, mode 0
 * alone; else written zeros, which is what qemu's copy-on-write writes
 * when the zeroing fails with ENOTSUP.  Which one runs decides where the
 * file has holes afterwards (SEEK_HOLE), so the order is qemu's.
 */
static int zero_allocate(int fd, uint64_t off, uint64_t len, uint64_t size)
{
    if (fallocate(fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != EINVAL)
        return -1;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0) {
        if (fallocate(fd, 0, (off_t)off, (off_t)len) == 0)
            return 0;
        if (errno != EOPNOTSUPP)
            return -1;
    } else if (errno != EOPNOTSUPP && errno != EINVAL) {
        return -1;
    }
    if (off >= size && fallocate(fd, 0, (off_t)off, (off_t)len) == 0)
        return 0;
    return write_zeros(fd, off, off + len);
}

/*
 * file-posix's discard (handle_aiocb_discard): punch a hole, keeping the
 * size; a file system without hole punching leaves the data, which qemu
 * takes as success too.  A range that starts inside the file is punched
 * whole, as qemu punches it: past the end it frees the last partial
 * block (a freed snapshot table at the end of the file), and KEEP_SIZE
 * never grows the file.
 */
static int discard_range(int fd, uint64_t off, uint64_t len, uint64_t size)
{
    if (off >= size || len == 0 ||
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    return errno == EOPNOTSUPP || errno == ENOSYS ? 0 : -1;
}

static int zero_op(int fd, uint32_t flags, uint64_t off, uint64_t len, uint64_t size)
{
    if (flags & INSTAR_ZERO_DATA)
        return write_zeros(fd, off, off + len);
    if (flags & INSTAR_ZERO_DISCARD)
        return discard_range(fd, off, len, size);
    if (flags & INSTAR_ZERO_ALLOCATE)
        return zero_allocate(fd, off, len, size);
    return zero_range(fd, off, len, size);
}

static void hc_zero(struct vmm *v, uint32_t gpa)
{
    struct instar_hc_zero a;
    struct vmm_devstate *d;
    uint64_t end;
    int64_t ret = INSTAR_HC_OK;

    if (!hc_arg(v, gpa, &a, sizeof(a), "zero"))
        return;
    d = hc_dev(v, a.handle);
    if (!d || (a.flags & ~(INSTAR_ZERO_ALLOCATE | INSTAR_ZERO_DISCARD | INSTAR_ZERO_DATA)) ||
        (a.flags & (a.flags - 1)))
        ret = INSTAR_HC_EINVAL; /* an unknown flag, or more than one */
    else if (!(d->flags & INSTAR_DEV_WRITE))
        ret = INSTAR_HC_EPERM;
    else if (a.len > INSTAR_ZERO_MAX)
        ret = INSTAR_HC_ETOOBIG;
    else if (__builtin_add_overflow(a.offset, a.len, &end) || end > d->write_limit ||
             end > (uint64_t)INT64_MAX)
        ret = INSTAR_HC_ERANGE;
    if (ret != INSTAR_HC_OK) {
        hc_ret(v, gpa, offsetof(struct instar_hc_zero, ret), ret);
        return;
    }
    if (!fault_allow(v))
        return;
    v->out->nwrites++;
    if (a.len && zero_op(d->fd, a.flags, a.offset, a.len, d->size) < 0)
        ret = write_err(errno);
    else if (end > d->size && !(a.flags & INSTAR_ZERO_DISCARD))
        d->size = end;
    hc_ret(v, gpa, offsetof(struct instar_hc_zero, ret), ret);
}

/*
 * SCAN's buffer: the bytes of the range it scanned last, which the COPY
 * that usually follows (convert to qcow2: scan, allocate, copy the
 * allocated runs) then writes without reading them again.
 */
static uint8_t scan_buf[INSTAR_COPY_SPARSE_MAX] __attribute__((aligned(4096)));

/* The kept bytes of [off, off + len) of device dev, or NULL. */
static const uint8_t *scan_kept_range(const struct vmm *v, uint32_t dev, uint64_t off, uint64_t len)
{
    if (!v->scan_kept || dev != v->scan_dev || off < v->scan_off ||
        off - v->scan_off > v->scan_len || len > v->scan_len - (off - v->scan_off))
        return NULL;
    return scan_buf + (off - v->scan_off);
}

/*
 * Plain copy, read then write through a host buffer.  (copy_file_range
 * was measured at 1.5 ms per MiB on ext4 here, several times slower than
 * this: it copies in the kernel but extends the file page by page.)
 */
static int copy_plain(int in, uint64_t in_off, int out, uint64_t out_off, uint64_t len)
{
    static uint8_t buf[1 << 20] __attribute__((aligned(4096)));

    while (len) {
        size_t chunk = len < sizeof(buf) ? (size_t)len : sizeof(buf);

        if (pread_zero(in, buf, chunk, in_off) < 0 || pwrite_all(out, buf, chunk, out_off) < 0)
            return -1;
        in_off += chunk;
        out_off += chunk;
        len -= chunk;
    }
    return 0;
}

/*
 * convert_co_write()'s BLK_DATA case over bytes the host reads itself:
 * runs is_allocated_sectors_min() finds allocated are written, the others
 * left alone (SPARSE: the destination reads as zeros there already) or
 * zeroed (PUNCH).
 */
static int copy_sparse(struct vmm_devstate *s, const struct instar_hc_copy *a,
                       struct vmm_devstate *d, int64_t *written)
{
    static uint8_t buf[INSTAR_COPY_SPARSE_MAX] __attribute__((aligned(4096)));
    int n = (int)(a->len / SPARSE_SECTOR), done = 0;
    int64_t sector = (int64_t)a->sector;

    if (pread_zero(s->fd, buf, (size_t)a->len, a->src_off) < 0)
        return -1;
    while (done < n) {
        int run;
        uint64_t off = a->dst_off + (uint64_t)done * SPARSE_SECTOR;
        size_t bytes;

        if (sparse_allocated_min(buf + (size_t)done * SPARSE_SECTOR, n - done, &run,
                                 (int)a->sparse_sectors, sector, (int)a->alignment)) {
            bytes = (size_t)run * SPARSE_SECTOR;
            if (pwrite_all(d->fd, buf + (size_t)done * SPARSE_SECTOR, bytes, off) < 0)
                return -1;
            *written += (int64_t)bytes;
        } else if (a->flags & INSTAR_COPY_PUNCH) {
            if (zero_range(d->fd, off, (uint64_t)run * SPARSE_SECTOR, d->size) < 0)
                return -1;
        }
        done += run;
        sector += run;
    }
    return 0;
}

/*
 * One copy request a (the host's copy), checked and done: returns
 * INSTAR_HC_OK or INSTAR_HC_E* with *written the bytes written, or 1
 * when fault injection ended the run (no answer then).
 */
static int64_t copy_one(struct vmm *v, const struct instar_hc_copy *a, int64_t *written)
{
    struct vmm_devstate *s, *d;
    uint64_t send, dend;
    int64_t ret = INSTAR_HC_OK;
    const uint8_t *kept;
    bool sparse;

    *written = 0;
    s = hc_dev(v, a->src);
    d = hc_dev(v, a->dst);
    sparse = a->flags & (INSTAR_COPY_SPARSE | INSTAR_COPY_PUNCH);
    if (!s || !d || (a->flags & ~(INSTAR_COPY_SPARSE | INSTAR_COPY_PUNCH)) ||
        (sparse && (a->sparse_sectors == 0 || a->alignment == 0 || a->alignment > (1u << 20) ||
                    (a->alignment & (a->alignment - 1)) || a->len % SPARSE_SECTOR ||
                    a->sector > (uint64_t)INT64_MAX / 2)))
        return INSTAR_HC_EINVAL;
    if (!(s->flags & INSTAR_DEV_READ) || !(d->flags & INSTAR_DEV_WRITE))
        return INSTAR_HC_EPERM;
    if (a->len > (sparse ? INSTAR_COPY_SPARSE_MAX : INSTAR_COPY_MAX))
        return INSTAR_HC_ETOOBIG;
    if (__builtin_add_overflow(a->src_off, a->len, &send) || send > s->size ||
        __builtin_add_overflow(a->dst_off, a->len, &dend) || dend > d->write_limit ||
        dend > (uint64_t)INT64_MAX)
        return INSTAR_HC_ERANGE;
    if (!fault_allow(v))
        return 1;
    v->out->nwrites++;
    if (sparse) {
        if (copy_sparse(s, a, d, written) < 0)
            ret = write_err(errno);
    } else if ((kept = scan_kept_range(v, a->src, a->src_off, a->len)) != NULL) {
        if (pwrite_all(d->fd, kept, (size_t)a->len, a->dst_off) < 0)
            ret = write_err(errno);
        else
            *written = (int64_t)a->len;
    } else if (copy_plain(s->fd, a->src_off, d->fd, a->dst_off, a->len) < 0) {
        ret = write_err(errno);
    } else {
        *written = (int64_t)a->len;
    }
    if (ret == INSTAR_HC_OK && *written > 0 && dend > d->size) {
        struct stat st;

        if (fstat(d->fd, &st) == 0 && (uint64_t)st.st_size > d->size)
            d->size = (uint64_t)st.st_size;
    }
    return ret;
}

static void hc_copy(struct vmm *v, uint32_t gpa)
{
    struct instar_hc_copy a;
    int64_t ret, written;

    if (!hc_arg(v, gpa, &a, sizeof(a), "copy"))
        return;
    ret = copy_one(v, &a, &written);
    if (ret == 1)
        return;
    if (vmm_mem_write(&v->mem, (uint64_t)gpa + offsetof(struct instar_hc_copy, written), &written,
                      sizeof(written)) < 0) {
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest asked for an answer where it cannot be written");
        return;
    }
    hc_ret(v, gpa, offsetof(struct instar_hc_copy, ret), ret);
}

/* INSTAR_HC_COPYV: the vector read once into the host's copy, then each request as hc_copy. */
static void hc_copyv(struct vmm *v, uint32_t gpa)
{
    static struct instar_hc_copy vec[INSTAR_COPYV_MAX];
    struct instar_hc_copyv a;
    int64_t ret = INSTAR_HC_OK, total = 0, written;
    uint32_t i = 0;

    if (!hc_arg(v, gpa, &a, sizeof(a), "copyv"))
        return;
    if (a.n == 0 || a.n > INSTAR_COPYV_MAX) {
        ret = INSTAR_HC_EINVAL;
    } else if (vmm_mem_read(&v->mem, a.vec, vec, (size_t)a.n * sizeof(vec[0])) < 0) {
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest passed a copy vector outside its memory");
        return;
    } else {
        for (; i < a.n; i++) {
            ret = copy_one(v, &vec[i], &written);
            if (ret == 1)
                return;
            total += written;
            if (ret != INSTAR_HC_OK)
                break;
        }
    }
    a.done = i;
    a.written = total;
    a.ret = ret;
    if (vmm_mem_write(&v->mem, (uint64_t)gpa + offsetof(struct instar_hc_copyv, done), &a.done,
                      offsetof(struct instar_hc_copyv, ret) -
                          offsetof(struct instar_hc_copyv, done)) < 0) {
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest asked for an answer where it cannot be written");
        return;
    }
    hc_ret(v, gpa, offsetof(struct instar_hc_copyv, ret), ret);
}

/* find_allocation()'s two lseeks at off (< the file's size): e->data, e->hole, e->status. */
static void seek_one(int fd, uint64_t off, struct instar_seek_ext *e)
{
    off_t data, hole;

    *e = (struct instar_seek_ext){.offset = off, .status = INSTAR_SEEK_OK};
    data = lseek(fd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        e->status = errno == ENXIO ? INSTAR_SEEK_NXIO : INSTAR_SEEK_UNKNOWN;
        return;
    }
    e->data = (uint64_t)data;
    if ((uint64_t)data != off) {
        e->hole = off;
        return;
    }
    hole = lseek(fd, (off_t)off, SEEK_HOLE);
    if (hole < 0)
        e->status = INSTAR_SEEK_UNKNOWN;
    else
        e->hole = (uint64_t)hole;
}

/*
 * Where the region e describes ends (the next answer's offset), or 0
 * when no answer follows it: after NXIO or UNKNOWN, or a reply that does
 * not move forward.
 */
static uint64_t seek_next(const struct instar_seek_ext *e)
{
    uint64_t next;

    if (e->status != INSTAR_SEEK_OK)
        return 0;
    next = e->data == e->offset ? e->hole : e->data;
    return next > e->offset ? next : 0;
}

/* find_allocation()'s two lseeks, for the guest's file-level block status. */
static void hc_seek(struct vmm *v, uint32_t gpa)
{
    static struct instar_seek_ext exts[INSTAR_SEEK_EXT_MAX];
    struct instar_hc_seek a;
    struct instar_seek_ext e;
    struct vmm_devstate *d;
    int64_t ret = INSTAR_HC_OK;
    uint64_t next;
    uint32_t n = 0;

    if (!hc_arg(v, gpa, &a, sizeof(a), "seek"))
        return;
    d = hc_dev(v, a.handle);
    if (!d || a.max_exts > INSTAR_SEEK_EXT_MAX ||
        (a.max_exts &&
         !vmm_mem_check_write(&v->mem, a.exts, (uint64_t)a.max_exts * sizeof(exts[0]))))
        ret = INSTAR_HC_EINVAL;
    else if (!(d->flags & INSTAR_DEV_READ))
        ret = INSTAR_HC_EPERM;
    else if (a.offset >= d->size || a.offset > (uint64_t)INT64_MAX)
        ret = INSTAR_HC_ERANGE;
    if (ret != INSTAR_HC_OK) {
        hc_ret(v, gpa, offsetof(struct instar_hc_seek, ret), ret);
        return;
    }
    seek_one(d->fd, a.offset, &e);
    a.data = e.data;
    a.hole = e.hole;
    a.status = e.status;
    for (next = seek_next(&e); next && next < d->size && n < a.max_exts; next = seek_next(&e)) {
        seek_one(d->fd, next, &e);
        exts[n++] = e;
    }
    if (n && vmm_mem_write(&v->mem, a.exts, exts, (uint64_t)n * sizeof(exts[0])) < 0) {
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest asked for an answer where it cannot be written");
        return;
    }
    a.nexts = n;
    a.ret = INSTAR_HC_OK;
    if (vmm_mem_write(&v->mem, (uint64_t)gpa + offsetof(struct instar_hc_seek, data), &a.data,
                      sizeof(a) - offsetof(struct instar_hc_seek, data)) < 0)
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest asked for an answer where it cannot be written");
}

/* compare_buffers() over two device ranges the host reads itself. */
static void hc_cmp(struct vmm *v, uint32_t gpa)
{
    static uint8_t ba[1 << 20], bb[1 << 20];
    struct instar_hc_cmp a;
    struct vmm_devstate *da, *db;
    uint64_t ea, eb, done = 0;
    int64_t ret = INSTAR_HC_OK;
    int res = -1;

    if (!hc_arg(v, gpa, &a, sizeof(a), "cmp"))
        return;
    da = hc_dev(v, a.a);
    db = hc_dev(v, a.b);
    if (!da || !db)
        ret = INSTAR_HC_EINVAL;
    else if (!(da->flags & INSTAR_DEV_READ) || !(db->flags & INSTAR_DEV_READ))
        ret = INSTAR_HC_EPERM;
    else if (a.len == 0 || a.len > INSTAR_CMP_MAX)
        ret = INSTAR_HC_ETOOBIG;
    else if (__builtin_add_overflow(a.a_off, a.len, &ea) || ea > da->size ||
             __builtin_add_overflow(a.b_off, a.len, &eb) || eb > db->size)
        ret = INSTAR_HC_ERANGE;
    if (ret != INSTAR_HC_OK) {
        hc_ret(v, gpa, offsetof(struct instar_hc_cmp, ret), ret);
        return;
    }
    while (done < a.len) {
        size_t chunk = a.len - done < sizeof(ba) ? (size_t)(a.len - done) : sizeof(ba), i;
        bool stop = false;

        if (pread_zero(da->fd, ba, chunk, a.a_off + done) < 0 ||
            pread_zero(db->fd, bb, chunk, a.b_off + done) < 0) {
            ret = INSTAR_HC_EIO;
            break;
        }
        for (i = 0; i < chunk; i += SPARSE_SECTOR) {
            size_t n = chunk - i < SPARSE_SECTOR ? chunk - i : SPARSE_SECTOR;
            int d = memcmp(ba + i, bb + i, n) != 0;

            if (res < 0)
                res = d;
            if (d != res) {
                stop = true;
                break;
            }
        }
        done += i < chunk ? i : chunk;
        if (stop)
            break;
    }
    a.differ = res > 0;
    a.same_len = done;
    a.ret = ret;
    if (vmm_mem_write(&v->mem, (uint64_t)gpa + offsetof(struct instar_hc_cmp, differ), &a.differ,
                      sizeof(a) - offsetof(struct instar_hc_cmp, differ)) < 0)
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest asked for an answer where it cannot be written");
}

static void hc_scan(struct vmm *v, uint32_t gpa)
{
    static uint32_t runs[INSTAR_COPY_SPARSE_MAX / SPARSE_SECTOR];
    uint8_t *buf = scan_buf;
    struct instar_hc_scan a;
    struct vmm_devstate *d;
    uint64_t end, nruns = 0;
    int64_t ret = INSTAR_HC_OK;

    if (!hc_arg(v, gpa, &a, sizeof(a), "scan"))
        return;
    d = hc_dev(v, a.dev);
    if (!d || a.min_sparse == 0 || a.alignment == 0 || a.alignment > (1u << 20) ||
        (a.alignment & (a.alignment - 1)) || a.len == 0 || a.len % SPARSE_SECTOR ||
        a.sector > (uint64_t)INT64_MAX / 2 || a.max_runs == 0 ||
        !vmm_mem_check_write(&v->mem, a.runs, (uint64_t)a.max_runs * sizeof(uint32_t)))
        ret = INSTAR_HC_EINVAL;
    else if (!(d->flags & INSTAR_DEV_READ))
        ret = INSTAR_HC_EPERM;
    else if (a.len > INSTAR_COPY_SPARSE_MAX)
        ret = INSTAR_HC_ETOOBIG;
    else if (__builtin_add_overflow(a.off, a.len, &end) || end > d->size)
        ret = INSTAR_HC_ERANGE;
    v->scan_kept = false;
    if (ret == INSTAR_HC_OK && pread_zero(d->fd, buf, (size_t)a.len, a.off) < 0)
        ret = INSTAR_HC_EIO;
    /* Nothing this run does changes a device it cannot write. */
    if (ret == INSTAR_HC_OK && !(d->flags & INSTAR_DEV_WRITE)) {
        v->scan_kept = true;
        v->scan_dev = a.dev;
        v->scan_off = a.off;
        v->scan_len = a.len;
    }
    if (ret == INSTAR_HC_OK) {
        int n = (int)(a.len / SPARSE_SECTOR), done = 0, run;
        int64_t sector = (int64_t)a.sector;

        while (done < n) {
            int alloc = sparse_allocated_min(buf + (size_t)done * SPARSE_SECTOR, n - done, &run,
                                             (int)a.min_sparse, sector, (int)a.alignment);

            if (nruns == a.max_runs) {
                ret = INSTAR_HC_ETOOBIG;
                break;
            }
            runs[nruns++] = ((uint32_t)run << 1) | (alloc ? 1u : 0u);
            done += run;
            sector += run;
        }
    }
    if (ret == INSTAR_HC_OK &&
        vmm_mem_write(&v->mem, a.runs, runs, (size_t)nruns * sizeof(uint32_t)) < 0) {
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest asked for an answer where it cannot be written");
        return;
    }
    a.nruns = nruns;
    a.ret = ret;
    if (vmm_mem_write(&v->mem, (uint64_t)gpa + offsetof(struct instar_hc_scan, nruns), &a.nruns,
                      sizeof(a) - offsetof(struct instar_hc_scan, nruns)) < 0)
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest asked for an answer where it cannot be written");
}

static void hc_progress(struct vmm *v, uint32_t gpa)
{
    struct instar_hc_progress a;

    if (!hc_arg(v, gpa, &a, sizeof(a), "progress"))
        return;
    /* RECIP: 100 / den per step, den the number of steps (rebase). */
    if (a.mode > INSTAR_PROGRESS_RECIP || a.den == 0 ||
        (a.mode == INSTAR_PROGRESS_RECIP ? a.num > 100 || a.den > INT64_MAX : a.num > a.den)) {
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest reported impossible progress");
        return;
    }
    if (v->progress)
        v->progress(v->progress_opaque, a.mode, a.num, a.den);
}

/*
 * The guest's CPU time, for the PBKDF2 benchmark of a LUKS create or
 * amend: qemu times it with its thread's CPU time (getrusage
 * RUSAGE_THREAD), so a busy machine does not lower the counts.  That is
 * this thread's time (the vCPU's, with KVM) plus the tender's; the host's
 * own share of it is what serving the guest's calls costs.
 */
static void hc_clock(struct vmm *v, uint32_t gpa)
{
    struct instar_hc_clock a;
    struct timespec t, c = {0, 0};
    clockid_t cid;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    if (v->child_pid > 0 && clock_getcpuclockid(v->child_pid, &cid) == 0)
        clock_gettime(cid, &c);
    a.ns = (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec +
           (uint64_t)c.tv_sec * 1000000000ULL + (uint64_t)c.tv_nsec;
    if (__builtin_mul_overflow(a.ns, v->clock_scale, &a.ns))
        a.ns = UINT64_MAX;
    if (vmm_mem_write(&v->mem, gpa, &a, sizeof(a)) < 0)
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest asked for an answer where it cannot be written");
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

static void hc_dispatch(struct vmm *v, unsigned nr, uint32_t gpa);

void vmm_hc_dispatch(struct vmm *v, unsigned nr, uint32_t gpa)
{
    struct timespec t0, t1;

    if (!v->debug || nr >= INSTAR_HC_MAX) {
        hc_dispatch(v, nr, gpa);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    hc_dispatch(v, nr, gpa);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    v->hc_count[nr]++;
    v->hc_ns[nr] += (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
}

static void hc_dispatch(struct vmm *v, unsigned nr, uint32_t gpa)
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
    case INSTAR_HC_COPY:
        hc_copy(v, gpa);
        break;
    case INSTAR_HC_ZERO:
        hc_zero(v, gpa);
        break;
    case INSTAR_HC_SEEK:
        hc_seek(v, gpa);
        break;
    case INSTAR_HC_PROGRESS:
        hc_progress(v, gpa);
        break;
    case INSTAR_HC_CMP:
        hc_cmp(v, gpa);
        break;
    case INSTAR_HC_SCAN:
        hc_scan(v, gpa);
        break;
    case INSTAR_HC_CLOCK:
        hc_clock(v, gpa);
        break;
    case INSTAR_HC_COPYV:
        hc_copyv(v, gpa);
        break;
    default:
        vmm_fail(v, VMM_GUEST_PROTOCOL, "guest made unknown hypercall %u", nr);
        break;
    }
}
