/* The checked guest-memory accessor: every edge of [gpa, gpa + len). */
#include <criterion/criterion.h>
#include <stdint.h>

#include "mem.h"

static uint8_t ram[8192];
static const struct vmm_mem m = {ram, sizeof(ram), -1};

Test(vmm_mem, inside)
{
    cr_assert_eq(vmm_mem_ptr(&m, 0, 1), ram);
    cr_assert_eq(vmm_mem_ptr(&m, 100, 200), ram + 100);
    cr_assert_eq(vmm_mem_ptr(&m, 0, sizeof(ram)), ram);
}

Test(vmm_mem, end_of_ram)
{
    cr_assert_eq(vmm_mem_ptr(&m, sizeof(ram) - 1, 1), ram + sizeof(ram) - 1);
    cr_assert_null(vmm_mem_ptr(&m, sizeof(ram) - 1, 2));
    cr_assert_null(vmm_mem_ptr(&m, sizeof(ram), 1));
    cr_assert_null(vmm_mem_ptr(&m, 0, sizeof(ram) + 1));
}

Test(vmm_mem, length_zero)
{
    cr_assert_eq(vmm_mem_ptr(&m, 0, 0), ram);
    cr_assert_eq(vmm_mem_ptr(&m, sizeof(ram), 0), ram + sizeof(ram));
    cr_assert_null(vmm_mem_ptr(&m, sizeof(ram) + 1, 0));
}

Test(vmm_mem, wraparound)
{
    cr_assert_null(vmm_mem_ptr(&m, UINT64_MAX, 1));
    cr_assert_null(vmm_mem_ptr(&m, 16, UINT64_MAX));
    cr_assert_null(vmm_mem_ptr(&m, UINT64_MAX - 15, 32));
    cr_assert_null(vmm_mem_ptr(&m, 1, UINT64_MAX));
}

Test(vmm_mem, strdup_bounded)
{
    char out[16];

    memset(ram, 'A', sizeof(ram)); /* no NUL anywhere */
    cr_assert_eq(vmm_mem_strdup(&m, sizeof(ram) - 3, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "AAA"); /* stops at the end of RAM */
    cr_assert_eq(vmm_mem_strdup(&m, 0, out, sizeof(out)), 0);
    cr_assert_eq(strlen(out), sizeof(out) - 1);
    cr_assert_eq(vmm_mem_strdup(&m, sizeof(ram), out, sizeof(out)), -1);
    ram[0] = '\x01';
    ram[1] = 0;
    cr_assert_eq(vmm_mem_strdup(&m, 0, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "?");
}
