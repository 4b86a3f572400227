/*
 * --object definitions, as qemu-img 7.2's user_creatable_process_cmdline()
 * reads them, for what instar uses them for: secrets (the passphrase a
 * LUKS header is made with).  A definition is parsed with QEMU's keyval
 * syntax (the first element without '=' is the qom-type), its type
 * checked against QEMU's ObjectType enum and the types qemu-img has, its
 * id checked; a secret is checked and loaded completely (data or file,
 * format).  Other types are accepted with their properties unchecked, and
 * JSON definitions ({...}) unchecked too.  "help" lists the types, or a
 * secret's properties (other types' help is refused).
 *
 * What the operator typed is trusted as qemu-img trusts it (a secret's
 * file is read as named); nothing from an image comes here.
 */
#ifndef CMD_OBJECT_H
#define CMD_OBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * object_add - create the object def describes.
 * Returns 0; 1 after printing the help a "help" element asked for (the
 * command then ends with exit 0, as qemu-img does); or -1 after reporting
 * qemu-img's message (the command then fails with exit 1, as qemu-img's
 * error_fatal exits).
 */
int object_add(const char *def);

/*
 * object_secret_utf8 - qcrypto_secret_lookup_as_utf8(): the loaded data of
 * secret id as a NUL-terminated string.  On failure reports qemu's message
 * ("No secret with id 'X'", "Data from secret X is not valid UTF-8") and
 * returns NULL.  The string belongs to the registry.
 */
const char *object_secret_utf8(const char *id);

/*
 * object_secret_lookup - object_secret_utf8() without printing: NULL with
 * *fmt the message template (one %s: the id).
 */
const char *object_secret_lookup(const char *id, const char **fmt);

/* object_secret_exists - whether a secret with this id was created (nothing printed). */
bool object_secret_exists(const char *id);

/* object_id_wellformed - QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'. */
bool object_id_wellformed(const char *id);

/* object_report_bad_id - QEMU's error for an ill-formed id, with its hint line. */
void object_report_bad_id(void);

/* object_release_all - free every object created. */
void object_release_all(void);

#endif /* CMD_OBJECT_H */
