/*
 * qemu-img's progress display (util/qemu-progress.c): with -p, lines
 * "    (P/100%)\r" on stdout as the work crosses min_skip steps; without
 * it, SIGUSR1 prints the current figure on stderr at the next update.
 */
#ifndef CMD_PROGRESS_H
#define CMD_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

void progress_init(bool enabled, float min_skip);
void progress_print(float delta, int max);
void progress_end(void);

/* A vmm_progress_fn: the guest's INSTAR_HC_PROGRESS, as qemu computes it. */
void progress_from_guest(void *opaque, uint32_t mode, uint64_t num, uint64_t den);

#endif /* CMD_PROGRESS_H */
