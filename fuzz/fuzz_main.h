/*
 * The two entry points every harness shares, included at its end after it
 * defines MAX_INPUT and `static int run(const uint8_t *data, size_t len)`
 * (0 when the input was handled, non-zero for a harness failure).
 *
 * FUZZ_STANDALONE: a plain driver replaying files (or stdin) through run(),
 * for the CI smoke and for ASan replays of a queue; exit status is the OR
 * of the runs, 2 when a file cannot be read.
 * Otherwise: AFL++ persistent mode over the shared test-case buffer.
 */
#ifndef FUZZ_MAIN_H
#define FUZZ_MAIN_H

#ifdef FUZZ_STANDALONE
#include <stdio.h>
#include <stdlib.h>

static int run_file(FILE *f)
{
    uint8_t *buf = malloc(MAX_INPUT);
    size_t n;
    int ret;

    if (!buf)
        return 2;
    n = fread(buf, 1, MAX_INPUT, f);
    ret = run(buf, n);
    free(buf);
    return ret;
}

int main(int argc, char **argv)
{
    int i, status = 0;

    if (argc < 2)
        return run_file(stdin);
    for (i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");

        if (!f) {
            perror(argv[i]);
            return 2;
        }
        status |= run_file(f);
        fclose(f);
    }
    return status;
}
#else
#include <unistd.h> /* read(), used by the AFL++ macros */

__AFL_FUZZ_INIT();

int main(void)
{
    __AFL_INIT();
    unsigned char *buf = __AFL_FUZZ_TESTCASE_BUF;

    while (__AFL_LOOP(10000)) {
        size_t len = __AFL_FUZZ_TESTCASE_LEN;
        run(buf, len > MAX_INPUT ? MAX_INPUT : len);
    }
    return 0;
}
#endif

#endif /* FUZZ_MAIN_H */
