/*
 * vmm_run() with the guest image embedded in this binary (guest_blob.S).
 * Kept apart from the monitor so that tests can link the monitor with
 * guests of their own.
 */
#include "vmm.h"

extern const uint8_t instar_guest_image[];
extern const uint8_t instar_guest_image_end[];

int vmm_run(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
            const struct vmm_dev *devs, unsigned ndevs, struct vmm_outcome *out)
{
    return vmm_run_image(instar_guest_image, (size_t)(instar_guest_image_end - instar_guest_image),
                         cfg, op, args, args_len, devs, ndevs, out);
}
