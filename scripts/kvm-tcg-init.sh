#!/bin/busybox sh
# /init of scripts/kvm-tcg.sh's inner system (packed by kvm-tcg-setup.sh).
# Loads the virtio, 9p and kvm modules, chroots into the host's root (9p tag
# "hostroot"), runs the job the host left in the 9p share "job" with stdout on
# ttyS1 and stderr on ttyS2, writes "exit N" (or "fail WHY") to job/status and
# powers off.  ttyS0 is the console: kernel messages and ours, for diagnosis.
/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "kvm-tcg-init: [$(cut -d' ' -f1 /proc/uptime)] $*"; }

# A reason in job/status lets the host tell "the command failed" from "the
# inner system did"; the kernel log's tail usually says why.
fail() {
    say "FAIL: $*"
    dmesg | tail -n 20
    [ -d /job/. ] && echo "fail $*" >/job/status
    sync
    poweroff -f
    exit 1 # if even poweroff failed: the kernel panics, QEMU exits (-no-reboot)
}

say "loading modules"
# Keep going after a failure, so that the 9p modules (loaded before kvm's)
# can still carry the reason to the host.
err=""
while read -r m; do
    out=$(insmod "/lib/modules/$m.ko" 2>&1) || { err="insmod $m: $out"; break; }
done </etc/modules

# The job share first: without it nothing can be reported except on ttyS0.
mount -t 9p -o trans=virtio,version=9p2000.L job /job || fail "cannot mount the job share${err:+ ($err)}"
[ -z "$err" ] || fail "$err"
# msize: the most 6.1's virtio transport takes (its default is 128 KiB), so
# that reading binaries and libraries takes fewer round trips (not measured).
# cache=loose: the kernel keeps dentries, attributes and file pages instead of
# asking the host each time; measured 1.7x faster than cache=mmap and 2.2x
# faster than none on the test suites (docs/kvm-tcg.md).  Writes still go
# straight to the host; what it gives up is noticing files changed on the
# host behind the inner system's back while the job runs.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /mnt ||
    fail "cannot mount the host's root over 9p"

[ -c /dev/kvm ] ||
    fail "no /dev/kvm after loading kvm_amd: $(dmesg | grep -i -E 'kvm|svm' | tail -n 3 | tr '\n' ' ')"

# Inside the chroot: fresh proc/sys/dev (the host's, seen over 9p, describe
# another kernel), and RAM-backed /tmp and /dev/shm: on 9p, truncating an open
# unlinked file (pytest's output capture) and connecting to a unix socket
# fail, and tests write their scratch files under /tmp whatever TMPDIR says.
mount -t proc proc /mnt/proc
mount -t sysfs sysfs /mnt/sys
mount -t devtmpfs devtmpfs /mnt/dev
mkdir -p /mnt/dev/pts /mnt/dev/shm
mount -t devpts devpts /mnt/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /mnt/dev/shm
mount -t tmpfs -o mode=1777 tmpfs /mnt/tmp || fail "cannot mount a tmpfs on /tmp"
# A caller working under /tmp gets that directory back at its own path.
if [ -f /job/cwd ]; then
    cwd=$(cat /job/cwd)
    mkdir -p "/mnt$cwd" &&
        mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose cwd "/mnt$cwd" ||
        fail "cannot mount the working directory $cwd"
fi
ln -sf /proc/self/fd /mnt/dev/fd
ln -sf /proc/self/fd/0 /mnt/dev/stdin
ln -sf /proc/self/fd/1 /mnt/dev/stdout
ln -sf /proc/self/fd/2 /mnt/dev/stderr

# The command writes into pipes, as it would on a CI host, not into a tty
# (which would turn on colours and line buffering); cat copies each pipe to
# its serial port, set raw so that the bytes arrive unchanged (no \n -> \r\n).
stty -F /dev/ttyS1 raw -echo
stty -F /dev/ttyS2 raw -echo
mkfifo /out /err
cat /out >/dev/ttyS1 &
outcat=$!
cat /err >/dev/ttyS2 &
errcat=$!

job=$(cat /job/job.sh) || fail "no job.sh in the job share"
say "running the job"
chroot /mnt /bin/sh -c "$job" </dev/null >/out 2>/err
rc=$?
# A daemon the command left behind may hold the pipes open: give the copies
# a few seconds to drain, not forever.  Closing a serial port waits until its
# last byte is out, so nothing is lost to the power-off.
(sleep 5 && kill $outcat $errcat) 2>/dev/null &
wait $outcat $errcat
say "job exited with status $rc"
echo "exit $rc" >/job/status
sync
poweroff -f
