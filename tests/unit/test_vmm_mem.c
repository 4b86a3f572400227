/* The checked guest-memory accessor: every edge of [gpa, gpa + len). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mem.h"

#define RAM 8192
static struct vmm_mem m = {.fd = -1, .size = RAM};

static void setup(void)
{
    m.fd = memfd_create("test-guest-ram", MFD_CLOEXEC);
    cr_assert_geq(m.fd, 0);
    cr_assert_eq(ftruncate(m.fd, RAM), 0);
}

static void fill(char c, size_t n)
{
    char buf[RAM];

    memset(buf, c, n);
    cr_assert_eq(pwrite(m.fd, buf, n, 0), (ssize_t)n);
}

TestSuite(vmm_mem, .init = setup);

Test(vmm_mem, inside)
{
    cr_assert(vmm_mem_check(&m, 0, 1));
    cr_assert(vmm_mem_check(&m, 100, 200));
    cr_assert(vmm_mem_check(&m, 0, RAM));
}

Test(vmm_mem, end_of_ram)
{
    cr_assert(vmm_mem_check(&m, RAM - 1, 1));
    cr_assert_not(vmm_mem_check(&m, RAM - 1, 2));
    cr_assert_not(vmm_mem_check(&m, RAM, 1));
    cr_assert_not(vmm_mem_check(&m, 0, RAM + 1));
}

Test(vmm_mem, length_zero)
{
    cr_assert(vmm_mem_check(&m, 0, 0));
    cr_assert(vmm_mem_check(&m, RAM, 0));
    cr_assert_not(vmm_mem_check(&m, RAM + 1, 0));
}

Test(vmm_mem, wraparound)
{
    cr_assert_not(vmm_mem_check(&m, UINT64_MAX, 1));
    cr_assert_not(vmm_mem_check(&m, 16, UINT64_MAX));
    cr_assert_not(vmm_mem_check(&m, UINT64_MAX - 15, 32));
    cr_assert_not(vmm_mem_check(&m, 1, UINT64_MAX));
}

Test(vmm_mem, copies_refuse_what_the_check_refuses)
{
    char buf[32] = "abc";

    cr_assert_eq(vmm_mem_write(&m, RAM - 3, buf, 3), 0);
    cr_assert_eq(vmm_mem_read(&m, RAM - 3, buf + 8, 3), 0);
    cr_assert_arr_eq(buf + 8, "abc", 3);
    cr_assert_eq(vmm_mem_write(&m, RAM - 3, buf, 4), -1);
    cr_assert_eq(vmm_mem_read(&m, RAM - 3, buf, 4), -1);
    cr_assert_eq(vmm_mem_read(&m, UINT64_MAX - 1, buf, 4), -1);
}

Test(vmm_mem, strdup_bounded)
{
    char out[16];
    const char nonprint[2] = {'\x01', 0};

    fill('A', RAM); /* no NUL anywhere */
    cr_assert_eq(vmm_mem_strdup(&m, RAM - 3, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "AAA"); /* stops at the end of RAM */
    cr_assert_eq(vmm_mem_strdup(&m, 0, out, sizeof(out)), 0);
    cr_assert_eq(strlen(out), sizeof(out) - 1);
    cr_assert_eq(vmm_mem_strdup(&m, RAM, out, sizeof(out)), -1);
    cr_assert_eq(vmm_mem_write(&m, 0, nonprint, 2), 0);
    cr_assert_eq(vmm_mem_strdup(&m, 0, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "?");
}

Test(vmm_mem, the_guests_text_is_never_written)
{
    char buf[16] = "planted";

    m.ro_start = 4096;
    m.ro_end = 6144;
    cr_assert(vmm_mem_check_write(&m, 0, 4096));
    cr_assert(vmm_mem_check_write(&m, 6144, 16));
    cr_assert_not(vmm_mem_check_write(&m, 4090, 16));
    cr_assert_not(vmm_mem_check_write(&m, 6000, 16));
    cr_assert_not(vmm_mem_check_write(&m, 0, RAM));
    cr_assert(vmm_mem_check_write(&m, 5000, 0));
    cr_assert_eq(vmm_mem_write(&m, 5000, buf, 8), -1);
    cr_assert_eq(vmm_mem_read(&m, 5000, buf, 8), 0, "reading the text is fine");
    m.ro_start = m.ro_end = 0;
}
