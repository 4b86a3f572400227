#!/bin/sh
# instar's main job on a small image it creates: qemu-img makes a qcow2,
# qemu-io writes data into it, instar inspects and checks it from inside its
# sandbox, then creates, grows and checks an image of its own.
set -eu
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

qemu-img create -q -f qcow2 "$dir/demo.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 32M 256k' "$dir/demo.qcow2" >/dev/null
qemu-img snapshot -c first "$dir/demo.qcow2"

echo "== which sandbox runs the guest here (INSTAR_SANDBOX=auto: KVM if usable, else a confined process)"
(cd "$dir" && INSTAR_DEBUG=1 "$OLDPWD/build/instar" info demo.qcow2 2>&1 >/dev/null | grep 'sandbox: .* backend')
echo "== instar info demo.qcow2"
(cd "$dir" && "$OLDPWD/build/instar" info demo.qcow2)
echo "== instar info --output=json demo.qcow2"
(cd "$dir" && "$OLDPWD/build/instar" info --output=json demo.qcow2)
echo "== identical to qemu-img info?"
(cd "$dir" && qemu-img info demo.qcow2 >q.txt && ln -sf "$OLDPWD/build/instar" qemu-img &&
    ./qemu-img info demo.qcow2 >i.txt && cmp q.txt i.txt && echo "yes: byte-for-byte")

echo "== instar check demo.qcow2"
(cd "$dir" && "$OLDPWD/build/instar" check demo.qcow2)
echo "== instar create -f qcow2 new.qcow2 1G, then resize +1G, then check"
(cd "$dir" && "$OLDPWD/build/instar" create -f qcow2 new.qcow2 1G &&
    "$OLDPWD/build/instar" resize new.qcow2 +1G && "$OLDPWD/build/instar" check new.qcow2)

echo "== instar map demo.qcow2"
(cd "$dir" && "$OLDPWD/build/instar" map demo.qcow2)
echo "== instar convert -O raw demo.qcow2 demo.raw, and the same with qemu-img"
(cd "$dir" && "$OLDPWD/build/instar" convert -p -O raw demo.qcow2 demo.raw &&
    qemu-img convert -O raw demo.qcow2 qemu.raw)
echo "== identical to qemu-img's output? (qemu-img compare, then byte for byte)"
(cd "$dir" && qemu-img compare demo.raw qemu.raw && cmp demo.raw qemu.raw && echo "yes: byte-for-byte")
echo "== instar compare demo.qcow2 demo.raw"
(cd "$dir" && "$OLDPWD/build/instar" compare demo.qcow2 demo.raw)
