/*
 * cmd/size.c against qemu-img 7.2: every expected value below was printed
 * by the oracle ("virtual size:" of raw/qcow2 images of that size, and the
 * "size=" that "qemu-img create -f raw F SIZE" reports or its error).
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <stdint.h>

#include "size.h"

struct size_case {
    uint64_t val;
    const char *str;
};

static const struct size_case to_str_cases[] = {
    {0, "0 B"},
    {512, "512 B"},
    {1024, "1 KiB"},
    {1536, "1.5 KiB"},
    {10240, "10 KiB"},
    {102400, "100 KiB"},
    {200704, "196 KiB"},
    {511488, "500 KiB"},
    {1023488, "1e+03 KiB"}, /* 999.5 KiB: %0.3g rounds up to 1e+03 */
    {1024000, "0.977 MiB"},
    {1047552, "0.999 MiB"},
    {1048064, "1 MiB"},
    {1048576, "1 MiB"},
    {2297856, "2.19 MiB"},
    {10485760, "10 MiB"},
    {104857600, "100 MiB"},
    {999999488, "954 MiB"},
    {1073741824, "1 GiB"},
    {123456789504, "115 GiB"},
    {1099511627776, "1 TiB"},
    {1125899906842624, "1 PiB"},
    {1151795604700004352, "0.999 EiB"},
    {1152921504606846976, "1 EiB"},
    {1180591620717411328, "1.02 EiB"},
};

Test(cmd_size, size_to_str_matches_qemu)
{
    char buf[SIZE_STR_MAX];
    size_t i;

    for (i = 0; i < sizeof(to_str_cases) / sizeof(to_str_cases[0]); i++)
        cr_expect_str_eq(size_to_str(to_str_cases[i].val, buf), to_str_cases[i].str,
                         "size_to_str(%llu)", (unsigned long long)to_str_cases[i].val);
}

Test(cmd_size, size_to_str_extremes)
{
    char buf[SIZE_STR_MAX];

    cr_expect_str_eq(size_to_str(UINT64_MAX, buf), "16 EiB");
    cr_expect_str_eq(size_to_str(1, buf), "1 B");
    cr_expect_str_eq(size_to_str(999, buf), "999 B");
    cr_expect_str_eq(size_to_str(1000, buf), "0.977 KiB");
}

struct parse_case {
    const char *in;
    int ret;
    uint64_t val;
};

static const struct parse_case parse_cases[] = {
    {"1.5k", 0, 1536},    {"0x10", 0, 16},
    {"1.k", 0, 1024},     {"1b", 0, 1},
    {" 12", 0, 12},       {"0.5M", 0, 524288},
    {"0.0000001k", 0, 0}, {"1K", 0, 1024},
    {"16E", -ERANGE, 0},  {"99999999999999999999", -ERANGE, 0},
    {"1e3", -EINVAL, 0},  {"-1", -EINVAL, 0},
    {"1.5", -EINVAL, 0}, /* a fraction needs a unit above bytes */
    {"12 ", -EINVAL, 0},  {"0x", -EINVAL, 0},
    {"1.5x", -EINVAL, 0}, {"", -EINVAL, 0},
};

Test(cmd_size, parse_matches_qemu)
{
    size_t i;

    for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        uint64_t v = 0;
        int r = size_parse(parse_cases[i].in, NULL, &v);

        cr_expect_eq(r, parse_cases[i].ret, "size_parse(\"%s\") = %d", parse_cases[i].in, r);
        if (r == 0)
            cr_expect_eq(v, parse_cases[i].val, "size_parse(\"%s\") -> %llu", parse_cases[i].in,
                         (unsigned long long)v);
    }
}

Test(cmd_size, parse_with_end)
{
    const char *end;
    uint64_t v;

    cr_assert_eq(size_parse("64k,rest", &end, &v), 0);
    cr_expect_eq(v, 65536);
    cr_expect_str_eq(end, ",rest");
}

Test(cmd_size, hex_suffix_warns, .init = cr_redirect_stderr)
{
    uint64_t v;

    cr_assert_eq(size_parse("0x10k", NULL, &v), 0);
    cr_expect_eq(v, 16384);
    fflush(stderr);
    cr_assert_stderr_eq_str(
        "qemu-img: warning: Using a multiplier suffix on hex numbers is deprecated: 0x10k\n");
}

Test(cmd_size, cvtnum_messages, .init = cr_redirect_stderr)
{
    cr_expect_eq(size_cvtnum("image size", "1e3", 0, INT64_MAX), -EINVAL);
    cr_expect_eq(size_cvtnum("image size", "8E", 0, INT64_MAX), -ERANGE);
    cr_expect_eq(size_cvtnum("image size", "1M", 0, INT64_MAX), 1048576);
    fflush(stderr);
    cr_assert_stderr_eq_str(
        "qemu-img: Invalid image size specified. You may use k, M, G, T, P or E suffixes for\n"
        "qemu-img: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n"
        "qemu-img: Invalid image size specified. Must be between 0 and 9223372036854775807.\n");
}
