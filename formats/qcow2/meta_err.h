/*
 * Refcount, L1/L2 and LUKS header errors: 1500..1999.
 *
 * Each message is what qemu-img 7.2 prints after "Could not open 'FILE': ".
 * The LUKS ones come from crypto/block-luks.c (no-I/O open path) and from
 * qcow2's header read callback.  QEMU prints a few uint32_t header fields
 * with "%d"; values of 2^31 and above then come out negative.  The
 * templates have no signed slot, so those messages have a twin code whose
 * template carries the minus sign and whose argument is 2^32 - value.
 */
#ifndef QCOW2_META_ERR_H
#define QCOW2_META_ERR_H

#define QCOW2_META_ERRORS(X)                                                                       \
    X(QCOW2_ERR_LUKS_NOT_LUKS, 1500, "Volume is not in LUKS format")                               \
    X(QCOW2_ERR_LUKS_OUTSIDE_EXT, 1501, "Request for data outside of extension header")            \
    X(QCOW2_ERR_LUKS_VERSION, 1502, "LUKS version {0} is not supported")                           \
    X(QCOW2_ERR_LUKS_CIPHER_NAME_NUL, 1503, "LUKS header cipher name is not NUL terminated")       \
    X(QCOW2_ERR_LUKS_CIPHER_MODE_NUL, 1504, "LUKS header cipher mode is not NUL terminated")       \
    X(QCOW2_ERR_LUKS_HASH_SPEC_NUL, 1505, "LUKS header hash spec is not NUL terminated")           \
    X(QCOW2_ERR_LUKS_PAYLOAD_OVERLAP, 1506, "LUKS payload is overlapping with the header")         \
    X(QCOW2_ERR_LUKS_MK_ITERS_ZERO, 1507, "LUKS key iteration count is zero")                      \
    X(QCOW2_ERR_LUKS_SLOT_STRIPES, 1508, "Keyslot {0} is corrupted (stripes {1} != 4000)")         \
    X(QCOW2_ERR_LUKS_SLOT_STRIPES_NEG, 1509, "Keyslot {0} is corrupted (stripes -{1} != 4000)")    \
    X(QCOW2_ERR_LUKS_SLOT_STATE, 1510, "Keyslot {0} state (active/disable) is corrupted")          \
    X(QCOW2_ERR_LUKS_SLOT_ITERS_ZERO, 1511, "Keyslot {0} iteration count is zero")                 \
    X(QCOW2_ERR_LUKS_SLOT_HDR_OVERLAP, 1512, "Keyslot {0} is overlapping with the LUKS header")    \
    X(QCOW2_ERR_LUKS_SLOT_PAYLOAD_OVERLAP, 1513,                                                   \
      "Keyslot {0} is overlapping with the encrypted payload")                                     \
    X(QCOW2_ERR_LUKS_SLOTS_OVERLAP, 1514, "Keyslots {0} and {1} are overlapping in the header")    \
    X(QCOW2_ERR_LUKS_MODE_FORMAT, 1515, "Unexpected cipher mode string format '{s}'")              \
    X(QCOW2_ERR_LUKS_HASH_ALG, 1516, "Hash algorithm '{s}' not supported")                         \
    X(QCOW2_ERR_LUKS_CIPHER_MODE, 1517, "Cipher mode '{s}' not supported")                         \
    X(QCOW2_ERR_LUKS_CIPHER_ALG, 1518, "Algorithm '{s}' with key size {0} bytes not supported")    \
    X(QCOW2_ERR_LUKS_CIPHER_ALG_NEG, 1519,                                                         \
      "Algorithm '{s}' with key size -{0} bytes not supported")                                    \
    X(QCOW2_ERR_LUKS_IVGEN, 1520, "IV generator '{s}' not supported")                              \
    X(QCOW2_ERR_LUKS_IVGEN_HASH_MISSING, 1521, "Missing IV generator hash specification")          \
    X(QCOW2_ERR_LUKS_ESSIV_AES, 1522, "No AES cipher with key size {0} available")                 \
    X(QCOW2_ERR_LUKS_ESSIV_SERPENT, 1523, "No Serpent cipher with key size {0} available")         \
    X(QCOW2_ERR_LUKS_ESSIV_TWOFISH, 1524, "No Twofish cipher with key size {0} available")         \
    X(QCOW2_ERR_LUKS_ESSIV_CIPHER, 1525, "Cipher {s} not supported with essiv")

#endif
