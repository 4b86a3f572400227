#!/bin/sh
# Prepare what scripts/kvm-tcg.sh needs to boot its inner system, from Debian 12
# packages only.  Idempotent; root (or sudo) only when apt-get must install.
#
#   qemu-system-x86   TCG emulation of an SVM-capable CPU (-cpu max)
#   busybox-static    the initramfs userland: one static binary, no libraries
#   xz-utils          to unpack the kernel image (busybox's unxz lacks the
#                     x86 BCJ filter the kernel's XZ payload uses)
#   linux-image-*     Debian's kernel (the one linux-image-amd64 depends on),
#                     fetched with apt-get download, never installed: the
#                     host's own kernel is not ours to touch
#
# Everything lands in .cache/kvm-tcg/: the kernel's .deb, vmlinux, and
# initrd.gz (busybox, the modules below in load order, and
# scripts/kvm-tcg-init.sh as /init).
set -eu
cd "$(dirname "$0")/.."
cache=.cache/kvm-tcg

# virtio_pci carries the 9p transport; 9p mounts the host's root; kvm_amd makes
# /dev/kvm on the emulated AMD CPU.  Their dependencies come from modules.dep.
MODULES="virtio_pci 9pnet_virtio 9p kvm_amd"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}

missing=""
for p in qemu-system-x86 busybox-static xz-utils; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
# Without package lists (a fresh container) apt-cache knows no kernel.
kpkg=$(kernel_package)
if [ -n "$missing" ] || [ -z "$kpkg" ]; then
    $SUDO apt-get update -qq
    kpkg=$(kernel_package)
fi
if [ -n "$missing" ]; then
    echo "kvm-tcg-setup: installing$missing"
    # No recommends: they add a GUI, OVMF and more we never use.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        $missing >/dev/null
fi
[ -n "$kpkg" ] || { echo "kvm-tcg-setup: apt-cache knows no linux-image-amd64" >&2; exit 1; }
kver=${kpkg#linux-image-}
mkdir -p "$cache"

# Keep the .deb (70 MB), not its 400 MB unpacked tree: the initramfs is
# rebuilt from it only when an input changed.
deb=$(ls "$cache"/"$kpkg"_*.deb 2>/dev/null | head -n 1)
if [ -z "$deb" ]; then
    echo "kvm-tcg-setup: fetching $kpkg"
    rm -f "$cache"/*.deb
    # As root, apt's download sandbox user (_apt) cannot write here; download
    # as ourselves rather than loosen the directory.
    (cd "$cache" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" "$kpkg")
    deb=$(ls "$cache"/"$kpkg"_*.deb)
fi
if [ -f "$cache/initrd.gz" ] && [ -f "$cache/vmlinux" ] &&
    [ "$cache/initrd.gz" -nt "$deb" ] && [ "$cache/initrd.gz" -nt scripts/kvm-tcg-init.sh ] &&
    [ "$cache/initrd.gz" -nt scripts/kvm-tcg-setup.sh ] && [ "$cache/initrd.gz" -nt /bin/busybox ]; then
    echo "kvm-tcg-setup: up to date: $(cat "$cache/kernel-version") in $cache"
    exit 0
fi

tree="$cache/tree.tmp"
root="$cache/initramfs.tmp"
rm -rf "$tree" "$root"
trap 'rm -rf "$tree" "$root"' EXIT
dpkg-deb -x "$deb" "$tree"
moddir="$tree/lib/modules/$kver"
# The package ships no modules.dep (its postinst runs depmod); busybox's
# depmod writes one without installing kmod.
busybox depmod -b "$tree" "$kver"

mkdir -p "$root/bin" "$root/lib/modules" "$root/etc" "$root/proc" "$root/sys" "$root/dev" \
    "$root/mnt" "$root/job"
cp /bin/busybox "$root/bin/busybox"
cp scripts/kvm-tcg-init.sh "$root/init"
chmod 0755 "$root/init"

# Every wanted module and, before it, everything it depends on (depth first
# over modules.dep, whose names may spell '-' where modprobe says '_').
awk -v want="$MODULES" '
    function name(p) { sub(/.*\//, "", p); sub(/\.ko$/, "", p); gsub(/-/, "_", p); return p }
    function visit(n,    d, i, k) {
        if (n in seen) return
        seen[n] = 1
        k = split(deps[n], d, " ")
        for (i = 1; i <= k; i++) visit(name(d[i]))
        print path[n]
    }
    { k = $1; sub(/:$/, "", k); n = name(k); path[n] = k; $1 = ""; deps[n] = $0 }
    END {
        k = split(want, w, " ")
        for (i = 1; i <= k; i++) {
            if (!(w[i] in path)) { print "kvm-tcg-setup: no module " w[i] > "/dev/stderr"; exit 1 }
            visit(w[i])
        }
    }' "$moddir/modules.dep" >"$root/etc/modules.paths"
while read -r p; do
    cp "$moddir/$p" "$root/lib/modules/"
    basename "$p" .ko >>"$root/etc/modules"
done <"$root/etc/modules.paths"
rm "$root/etc/modules.paths"

mods=$(tr '\n' ' ' <"$root/etc/modules")
(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null) | gzip -1 >"$cache/initrd.gz.tmp"

# QEMU boots the kernel as an uncompressed ELF through PVH (its pvh.bin
# option ROM) rather than as the bzImage: under TCG, the bzImage's own XZ
# unpacking made `kvm-tcg.sh -- true` take 7-9.5 s instead of 3.6.  The header
# (Documentation/x86/boot.rst) places the payload: setup_sects at 0x1f1,
# payload_offset and payload_length at 0x248; the payload's last 4 bytes are
# the uncompressed size, not XZ.
bz="$tree/boot/vmlinuz-$kver"
set -- $(od -An -tu1 -j 497 -N 1 "$bz") $(od -An -tu4 -j 584 -N 8 "$bz")
tail -c +$((($1 + 1) * 512 + $2 + 1)) "$bz" | head -c $(($3 - 4)) | xz -dc >"$cache/vmlinux.tmp" ||
    { echo "kvm-tcg-setup: cannot unpack $bz (not XZ?)" >&2; exit 1; }
mv "$cache/vmlinux.tmp" "$cache/vmlinux"
rm -f "$cache/vmlinuz"
echo "$kver" >"$cache/kernel-version"
mv "$cache/initrd.gz.tmp" "$cache/initrd.gz"
echo "kvm-tcg-setup: ready: kernel $kver, modules: $mods"
