/*
 * Open-time errors of formats/dmg: codes 5240..5259.
 *
 * Each message is what qemu-img 7.2 prints after "Could not open 'FILE': ",
 * copied from block/dmg.c (dmg_open and its helpers).  Most of dmg_open's
 * failures set no message: bdrv_open_driver() then names the file
 * ("Could not open 'FILE': Invalid argument"), which the host fills in.
 * The chunk limits are reported by error_report() first (a line of their
 * own, DMG_ERR_SECTORCOUNT and DMG_ERR_LENGTH: the host prints it before
 * the open's message).
 */
#ifndef DMG_ERR_H
#define DMG_ERR_H

#define DMG_ERRORS(X)                                                                              \
    X(DMG_ERR_TOO_SMALL, 5240, "dmg file must be at least 512 bytes long")                         \
    X(DMG_ERR_NO_TRAILER, 5241, "Could not locate UDIF trailer in dmg file")                       \
    X(DMG_ERR_INVALID, 5242, "Could not open '{s}': Invalid argument")                             \
    X(DMG_ERR_SECTORCOUNT, 5243, "Could not open '{s}': Invalid argument")                         \
    X(DMG_ERR_LENGTH, 5244, "Could not open '{s}': Invalid argument")                              \
    X(DMG_ERR_NOMEM, 5245, "Could not open '{s}': Cannot allocate memory")                         \
    X(DMG_ERR_SIZE, 5246, "Could not refresh total sector count: File too large")                  \
    X(DMG_ERR_READ_ONLY, 5259, "Image is read-only")

/*
 * The codes from DMG_ERR_FIRST to DMG_ERR_LAST: dmg_open() got as far as
 * loading its modules (the host prints their notice).  DMG_ERR_READ_ONLY
 * (bdrv_apply_auto_read_only(), a read-write open) comes before that.
 */
#define DMG_ERR_FIRST 5240
#define DMG_ERR_LAST  5258

enum dmg_err {
#define DMG_ERR_ENUM(name, code, msg) name = code,
    DMG_ERRORS(DMG_ERR_ENUM)
#undef DMG_ERR_ENUM
};

#endif /* DMG_ERR_H */
