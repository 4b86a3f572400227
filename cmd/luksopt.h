/*
 * The LUKS create options (-f luks's, qcow2's encrypt.*), checked and
 * turned into the guest's struct instar_create_luks as QEMU 7.2's
 * block_crypto_create_opts_init() and qcrypto_block_luks_create() do
 * before any key is derived.
 */
#ifndef CMD_LUKSOPT_H
#define CMD_LUKSOPT_H

#include <stddef.h>

#include "instar/abi.h"
#include "opts.h"

/*
 * luksopt_check - the QAPI visitor's checks (each enum's values) of the
 * options named prefix + "cipher-alg" etc. in l (prefix: "" for -f luks,
 * "encrypt." for qcow2).  Returns 0, or -1 with qemu's message in msg.
 */
int luksopt_check(const struct opt_list *l, const char *prefix, char *msg, size_t cap);

/*
 * luksopt_build - qcrypto_block_luks_create()'s steps before the header:
 * the key secret required and looked up, the cipher's LUKS name, the
 * names' lengths, ESSIV's cipher, the cipher's mode (cast5 has no XTS);
 * the master key, salts, uuid and seed from the host's random source.
 * Returns 0, or -1 with qemu's message in msg.
 */
int luksopt_build(const struct opt_list *l, const char *prefix, struct instar_create_luks *out,
                  char *msg, size_t cap);

#endif /* CMD_LUKSOPT_H */
