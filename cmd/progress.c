/*
 * See progress.h.  The figures are floats, as in qemu, so that the
 * printed values round the same way.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "instar/abi.h"
#include "progress.h"

static struct {
    float current, last_print, min_skip;
    bool simple;
} st;

static volatile sig_atomic_t print_pending;

static void sigusr_print(int sig)
{
    (void)sig;
    print_pending = 1;
}

void progress_init(bool enabled, float min_skip)
{
    memset(&st, 0, sizeof(st));
    st.min_skip = min_skip;
    st.simple = enabled;
    if (!enabled) {
        struct sigaction action;

        memset(&action, 0, sizeof(action));
        sigfillset(&action.sa_mask);
        action.sa_handler = sigusr_print;
        sigaction(SIGUSR1, &action, NULL);
    }
}

static void do_print(void)
{
    if (st.simple) {
        printf("    (%3.2f/100%%)\r", st.current);
        fflush(stdout);
    } else if (print_pending) {
        fprintf(stderr, "    (%3.2f/100%%)\n", st.current);
        print_pending = 0;
    }
}

void progress_print(float delta, int max)
{
    float current;

    if (max == 0)
        current = delta;
    else
        current = st.current + delta / 100 * max;
    if (current > 100)
        current = 100;
    st.current = current;
    if (current > st.last_print + st.min_skip || current < st.last_print - st.min_skip ||
        current == 100 || current == 0) {
        st.last_print = st.current;
        do_print();
    }
}

void progress_end(void)
{
    if (st.simple)
        printf("\n");
}

void progress_from_guest(void *opaque, uint32_t mode, uint64_t num, uint64_t den)
{
    (void)opaque;
    if (mode == INSTAR_PROGRESS_ABS)
        progress_print((float)(100.0 * (double)num / (double)den), 0);
    else if (mode == INSTAR_PROGRESS_RECIP)
        progress_print((float)num / (float)(int64_t)den, 100);
    else
        progress_print(((float)num / (float)den) * 100, 100);
}
