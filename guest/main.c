/*
 * Guest entry: check the boot info, install the IDT, pick nettle's code
 * for the host's CPU features, run the planner the host asked for.
 * Planners end the run themselves (rbuf_send/result_error).
 */
#include "guest.h"
#include "nettle_cpu.h"

void idt_install(void);
void alloc_init(void);

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    idt_install();
    if (boot->magic != INSTAR_BOOT_MAGIC || boot->abi_version != INSTAR_ABI_VERSION)
        hc_exit(-1);
    alloc_init();
    gnettle_cpu_select(boot->cpu_features);

    switch (boot->op) {
    case INSTAR_OP_INFO:
        plan_info();
    case INSTAR_OP_CHECK:
        plan_check();
    case INSTAR_OP_CREATE:
        plan_create();
    case INSTAR_OP_RESIZE:
        plan_resize();
    case INSTAR_OP_MAP:
        plan_map();
    case INSTAR_OP_CONVERT:
        plan_convert();
    case INSTAR_OP_COMPARE:
        plan_compare();
    case INSTAR_OP_DD:
        plan_dd();
    case INSTAR_OP_BENCH:
        plan_bench();
    case INSTAR_OP_REBASE:
        plan_rebase();
    case INSTAR_OP_COMMIT:
        plan_commit();
    case INSTAR_OP_SNAPSHOT:
        plan_snapshot();
    case INSTAR_OP_AMEND:
        plan_amend();
    case INSTAR_OP_BITMAP:
        plan_bitmap();
    default:
        result_error(boot->op, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    }
}
