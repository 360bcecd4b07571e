#!/bin/sh
# nestos.basic: nosa's built-in checks of a booted image. What one image must show is beside
# this script, written by the kola rule: expect.env (shell assignments: DEPLOY, COMMIT,
# FIRMWARE, SECTOR_SIZE, ROOTFS), expected-kargs and expected-files (one per line) and
# expected-os-release. Prints one PASS or FAIL line per check (values in single quotes);
# exits 0 when all pass.
cd "$(dirname "$0")" || exit 2
. ./expect.env
fails=0
pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }
has_karg() { for t in $(cat /proc/cmdline); do [ "$t" = "$1" ] && return 0; done; return 1; }

if [ "$(stat -c %d:%i /)" = "$(stat -c %d:%i "$DEPLOY" 2>/dev/null)" ]; then
    pass "booted commit $COMMIT"
else
    fail "booted commit $COMMIT: / is not '$DEPLOY'"
fi
while IFS= read -r k; do
    [ -n "$k" ] || continue
    if has_karg "$k"; then pass "karg '$k'"; else fail "karg '$k' not in $(cat /proc/cmdline)"; fi
done < expected-kargs
if has_karg ignition.firstboot; then
    pass "first-boot flag ignition.firstboot"
else
    fail "no ignition.firstboot on the first boot"
fi
if cmp -s /usr/lib/os-release expected-os-release; then
    pass "os-release is the committed one"
else
    fail "os-release differs from the commit's"
    cat /usr/lib/os-release
fi
if cmp -s /etc/os-release /usr/lib/os-release; then
    pass "/etc/os-release"
else
    fail "/etc/os-release differs from /usr/lib/os-release"
fi
if [ "$FIRMWARE" = uefi ]; then
    if [ -d /sys/firmware/efi ]; then pass "booted with UEFI"; else fail "not booted with UEFI"; fi
else
    if [ ! -d /sys/firmware/efi ]; then pass "booted with BIOS"; else fail "booted with UEFI, expected BIOS"; fi
fi
dev=$(awk '$2 == "/sysroot" { print $1 }' /proc/mounts)
bs=$(cat "/sys/class/block/${dev##*/}/../queue/logical_block_size" 2>/dev/null)
if [ "$bs" = "$SECTOR_SIZE" ]; then
    pass "root disk has $SECTOR_SIZE-byte logical blocks"
else
    fail "root disk $dev has logical block size '$bs', expected $SECTOR_SIZE"
fi
fstype=$(awk '$2 == "/sysroot" { print $3 }' /proc/mounts)
if [ "$fstype" = "$ROOTFS" ]; then
    pass "root filesystem is '$ROOTFS'"
else
    fail "root filesystem is '$fstype', expected '$ROOTFS'"
fi
while IFS= read -r f; do
    [ -n "$f" ] || continue
    if [ -e "$f" ]; then pass "file '$f'"; else fail "file '$f' is missing"; fi
done < expected-files
echo "$fails failed"
[ "$fails" = 0 ]
