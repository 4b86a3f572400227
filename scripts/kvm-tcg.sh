#!/bin/sh
# Run a command where /dev/kvm works, on a machine where it does not: boot a
# small Debian kernel under qemu-system-x86_64 with TCG (software emulation of
# an AMD CPU with SVM, so kvm_amd loads), share the host's root filesystem in
# over virtio-9p, chroot into it and run the command there, with the caller's
# working directory and environment.  Slow (TCG), but it is real KVM.
# Prepare once with scripts/kvm-tcg-setup.sh; docs/kvm-tcg.md says why it is
# built this way.
#
#   scripts/kvm-tcg.sh [--mem MB] [--timeout S] [--verbose] -- CMD [ARG...]
#   scripts/kvm-tcg.sh [--mem MB] [--timeout S] [--verbose] --check
#
#   --mem MB      inner RAM (default 2048); /tmp inside is a tmpfs in it
#   --timeout S   stop the inner system after S seconds (default 1800)
#   --verbose     kernel and init messages on stderr as they come
#   --check       only prove that /dev/kvm works inside (KVM_CREATE_VM)
#   KVM_TCG_KEEP=1 in the environment keeps the job directory (console.log)
#
# Exit status: CMD's own; 124 if --timeout fired; 125 if the inner system
# could not run CMD (no setup, boot failure, no /dev/kvm inside), with the
# reason and the console's last lines on stderr.  CMD's stdout and stderr
# arrive on ours, its stdin is /dev/null, its /tmp is the inner system's own.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cache="$top/.cache/kvm-tcg"

mem=2048
timeout=1800
verbose=0
check=0

usage() {
    sed -n 's/^#   //p' "$0"
}
die() { # status message
    echo "kvm-tcg: $2" >&2
    exit "$1"
}

while [ $# -gt 0 ]; do
    case $1 in
    --mem | --timeout) [ $# -ge 2 ] || die 125 "$1 needs a value" ;;
    esac
    case $1 in
    --mem) mem=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --verbose | -v) verbose=1; shift ;;
    --check) check=1; shift ;;
    --help | -h) usage; exit 0 ;;
    --) shift; break ;;
    *) usage >&2; exit 125 ;;
    esac
done
if [ "$check" = 1 ]; then
    # Create a VM, not just find a device node: proof that the KVM API answers.
    set -- sh -c 'ls -l /dev/kvm && exec /usr/bin/python3 -c "
import fcntl, os
kvm = os.open(\"/dev/kvm\", os.O_RDWR)
api = fcntl.ioctl(kvm, 0xAE00, 0)  # KVM_GET_API_VERSION
vm = fcntl.ioctl(kvm, 0xAE01, 0)  # KVM_CREATE_VM
print(\"kvm-tcg: /dev/kvm works: API version\", api, \"and KVM_CREATE_VM gave fd\", vm)
"'
fi
[ $# -gt 0 ] || { usage >&2; exit 125; }

[ -f "$cache/vmlinux" ] && [ -f "$cache/initrd.gz" ] ||
    die 125 "no inner system in $cache: run scripts/kvm-tcg-setup.sh first"
[ "$top/scripts/kvm-tcg-init.sh" -nt "$cache/initrd.gz" ] &&
    die 125 "$cache/initrd.gz is older than scripts/kvm-tcg-init.sh: rerun scripts/kvm-tcg-setup.sh"
# Inside, /tmp and /dev/shm are the inner system's own tmpfs.  A working
# directory under /tmp (a CI checkout, say) is shared in on its own and
# mounted at the same path inside; one under /dev/shm is refused.
cwdshare=""
case $PWD in
/tmp | /dev/shm | /dev/shm/*) die 125 "cannot run in $PWD: it is not shared with the inner system" ;;
/tmp/*) cwdshare=$PWD ;;
esac
case $PWD in
*,* | *[[:space:]]*) [ -z "$cwdshare" ] || die 125 "a comma or a space in $PWD would break QEMU's options" ;;
esac

# QEMU's option syntax reserves the comma (a literal one is written twice).
case "$cache${TMPDIR:-}" in
*,*) die 125 "a comma in $cache or \$TMPDIR would break QEMU's options" ;;
esac

# The job directory is a 9p export of its own, so it can live in the host's
# /tmp although the inner /tmp hides that.
job=$(mktemp -d "${TMPDIR:-/tmp}/kvm-tcg.XXXXXX")
# KVM_TCG_KEEP=1 keeps it (job.sh, console.log, status) for a post-mortem.
if [ -n "${KVM_TCG_KEEP:-}" ]; then
    echo "kvm-tcg: keeping $job" >&2
else
    trap 'rm -rf "$job"' EXIT
fi
# Ctrl-C reaches QEMU too (same process group); exit through the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM

quote() { # arg -> arg in single quotes, for sh
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}
{
    export -p
    echo "export TMPDIR=/tmp"
    echo "cd $(quote "$PWD") || exit 125"
    printf 'exec'
    for a in "$@"; do printf ' %s' "$(quote "$a")"; done
    echo
} >"$job/job.sh"
if [ -n "$cwdshare" ]; then
    printf '%s\n' "$cwdshare" >"$job/cwd"
fi

# QEMU writes the serial ports into FIFOs and cat copies them to our stdout
# and stderr: cat shares our file offsets, so CMD's output lands where the
# caller's next write expects it, whatever our stdout is (a reopen through
# /proc/self/fd would not, and fails for sockets).  Opening a FIFO blocks
# until its other end is open too, hence the order: read-write (never
# blocks), cat's read end, then write-only in place of read-write, so that
# cat is the only reader: if it dies (| head), QEMU's writes fail instead of
# filling the FIFO and stalling the guest.  When we close our write end
# after QEMU, cat sees EOF.  (<&5: an explicit stdin, or sh gives a
# background command /dev/null.)
mkfifo "$job/stdout" "$job/stderr"
exec 3<>"$job/stdout" 4<>"$job/stderr"
{ cat <&5 5<&- 3>&- 4>&- & } 5<"$job/stdout"
outcat=$!
{ cat <&5 >&2 5<&- 3>&- 4>&- & } 5<"$job/stderr"
errcat=$!
exec 3>"$job/stdout" 4>"$job/stderr"
if [ "$verbose" = 1 ]; then
    console="$job/stderr"
    quiet=""
else
    console="$job/console.log"
    quiet="quiet"
fi

# One vCPU, run by one TCG thread: with two vCPUs under multi-threaded TCG the
# inner kernel livelocked (one vCPU looping in exc_int3) while patching its
# text as KVM VMs came and went; with one it never did, and two vCPUs were
# no faster on a 2-core host.  thread=single keeps that true if -smp grows.
# -nodefaults: no VGA, NIC or default serial; the three serial ports below
# are the console, CMD's stdout and CMD's stderr.
# --foreground: Ctrl-C reaches QEMU; -k: SIGKILL if SIGTERM is not enough.
start=$(date +%s)
rc=0
timeout --foreground -k 10 "$timeout" qemu-system-x86_64 \
    -nodefaults -no-user-config -display none -no-reboot \
    -machine pc -accel tcg,thread=single -cpu max -smp 1 -m "$mem" \
    -kernel "$cache/vmlinux" -initrd "$cache/initrd.gz" \
    -append "console=ttyS0 $quiet panic=-1" \
    -chardev file,id=console,path="$console" -serial chardev:console \
    -chardev file,id=out,path="$job/stdout" -serial chardev:out \
    -chardev file,id=err,path="$job/stderr" -serial chardev:err \
    -fsdev local,id=hostroot,path=/,security_model=none,multidevs=remap \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -fsdev local,id=job,path="$job",security_model=none \
    -device virtio-9p-pci,fsdev=job,mount_tag=job \
    ${cwdshare:+-fsdev local,id=cwd,path=$cwdshare,security_model=none,multidevs=remap} \
    ${cwdshare:+-device virtio-9p-pci,fsdev=cwd,mount_tag=cwd} \
    </dev/null 3>&- 4>&- || rc=$?
exec 3>&- 4>&-
wait $outcat $errcat
elapsed=$(($(date +%s) - start))

console_tail() {
    [ "$verbose" = 0 ] || return 0
    if [ -s "$job/console.log" ]; then
        echo "kvm-tcg: last console lines:"
        tail -n 30 "$job/console.log"
    else
        echo "kvm-tcg: the console is empty: the kernel died before it started its console (too little --mem?)"
    fi >&2
}
# timeout(1) says 124 when it sent SIGTERM, 137 when it had to SIGKILL.
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    console_tail
    die 124 "timed out after $timeout s (--timeout)"
fi
status=$(cat "$job/status" 2>/dev/null) || status=""
case $status in
"exit "*)
    [ "$verbose" = 0 ] || echo "kvm-tcg: done in $elapsed s" >&2
    exit "${status#exit }"
    ;;
"fail "*)
    console_tail
    die 125 "the inner system failed: ${status#fail }"
    ;;
*)
    [ "$rc" = 0 ] || die 125 "qemu-system-x86_64 failed (exit status $rc)"
    console_tail
    # A panic (out of memory, init died) says why in one line; quote it.
    why=$(grep -m 1 -o 'Kernel panic.*' "$job/console.log" 2>/dev/null) || why="no kernel panic seen"
    die 125 "the inner system stopped without a status ($why)"
    ;;
esac
