/*
 * bench-vmm: what one sandbox run and one hypercall cost, per backend.
 *
 * Usage: build/bench-vmm [-n RUNS] [-c CALLS] [process|kvm ...]
 *
 * Boots guest/neg/ping.c RUNS times with no hypercall (the per-run start
 * cost: guest RAM, spawn or VM creation, boot, teardown) and RUNS times
 * with CALLS empty hypercalls; the per-hypercall cost is the difference
 * of the medians divided by CALLS.  Prints one line per backend, or a
 * JSON object with --json.  Backends that cannot run here are reported
 * as unavailable.  Built with the unit tests (it links their ping guest).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm.h"

extern const uint8_t neg_ping[], neg_ping_end[];

static double now_us(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Median wall time in microseconds of runs boots making calls hypercalls; < 0 on failure. */
static double median_run(enum vmm_backend b, uint64_t calls, int runs)
{
    struct vmm_dev dev = {.fd = -1, .size = 0, .flags = INSTAR_DEV_READ};
    struct vmm_config cfg = {.mem_size = 64 << 20, .backend = b};
    double *t = calloc((size_t)runs, sizeof(*t)), med;
    struct vmm_outcome out;

    if (!t)
        return -1;
    for (int i = 0; i < runs; i++) {
        double t0 = now_us();

        if (vmm_run_image(neg_ping, (size_t)(neg_ping_end - neg_ping), &cfg, INSTAR_OP_NONE, &calls,
                          sizeof(calls), &dev, 1, &out) != 0) {
            fprintf(stderr, "bench-vmm: %s: %s\n", vmm_backend_name(b), out.detail);
            free(t);
            return -1;
        }
        t[i] = now_us() - t0;
        vmm_outcome_release(&out);
    }
    qsort(t, (size_t)runs, sizeof(*t), cmp_double);
    med = t[runs / 2];
    free(t);
    return med;
}

int main(int argc, char **argv)
{
    int runs = 30, json = 0, nb = 0;
    uint64_t calls = 1000;
    enum vmm_backend bs[2];

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc)
            calls = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "kvm") && nb < 2)
            bs[nb++] = VMM_BACKEND_KVM;
        else if (!strcmp(argv[i], "process") && nb < 2)
            bs[nb++] = VMM_BACKEND_PROCESS;
        else {
            fprintf(stderr, "usage: bench-vmm [-n RUNS] [-c CALLS] [--json] [process|kvm ...]\n");
            return 2;
        }
    }
    if (runs < 1 || calls < 1)
        return 2;
    if (!nb) {
        bs[nb++] = VMM_BACKEND_PROCESS;
        bs[nb++] = VMM_BACKEND_KVM;
    }
    if (json)
        printf("{");
    for (int i = 0; i < nb; i++) {
        const char *name = vmm_backend_name(bs[i]);
        double start = -1, busy = -1;

        if (bs[i] != VMM_BACKEND_KVM || vmm_kvm_usable()) {
            start = median_run(bs[i], 0, runs);
            busy = start < 0 ? -1 : median_run(bs[i], calls, runs);
        }
        if (json) {
            if (start < 0 || busy < 0)
                printf("%s\"%s\": null", i ? ", " : "", name);
            else
                printf("%s\"%s\": {\"start_us\": %.1f, \"hypercall_us\": %.2f}", i ? ", " : "",
                       name, start, (busy - start) / (double)calls);
        } else if (start < 0 || busy < 0) {
            printf("%-8s unavailable here\n", name);
        } else {
            printf("%-8s start %8.1f us   hypercall %6.2f us   (medians of %d runs, %llu calls)\n",
                   name, start, (busy - start) / (double)calls, runs, (unsigned long long)calls);
        }
    }
    if (json)
        printf("}\n");
    return 0;
}
