#!/bin/sh
# nestos.basic: nosa's built-in checks of a booted image, run as root over ssh. What one image
# must show is beside this script, written by the kola rule: expect.env (shell assignments:
# DEPLOY, COMMIT, BUILD_VERSION, FIRMWARE, SECTOR_SIZE, ROOTFS, IGNITION_FILE,
# IGNITION_FILE_CONTENT, IGNITION_UNIT), expected-kargs and expected-files (one per line) and
# expected-os-release. Prints one PASS or FAIL line per check (values in single quotes);
# exits 0 when all pass.
cd "$(dirname "$0")" || exit 2
. ./expect.env
fails=0
pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }
has_karg() { for t in $(cat /proc/cmdline); do [ "$t" = "$1" ] && return 0; done; return 1; }

state=$(systemctl is-system-running --wait 2>&1)
if [ "$state" = running ]; then
    pass "systemctl is-system-running: running"
else
    fail "systemctl is-system-running: '$state'"
fi
failed=$(systemctl --failed --no-legend --plain 2>&1)
if [ -z "$failed" ]; then
    pass "no failed units"
else
    fail "failed units: $(echo "$failed" | tr '\n' ' ')"
fi
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
if [ ! -e /boot/ignition.firstboot ] && mountpoint -q /boot; then
    pass "the first-boot flag file is gone from /boot once Ignition ran"
else
    fail "/boot/ignition.firstboot is still there (or /boot is not mounted)"
fi
if [ "$(cat "$IGNITION_FILE" 2>/dev/null)" = "$IGNITION_FILE_CONTENT" ]; then
    pass "Ignition wrote '$IGNITION_FILE'"
else
    fail "'$IGNITION_FILE' is not what Ignition was to write"
fi
if [ "$(systemctl is-enabled "$IGNITION_UNIT" 2>&1)" = enabled ] \
    && [ "$(systemctl is-active "$IGNITION_UNIT" 2>&1)" = active ]; then
    pass "Ignition's unit '$IGNITION_UNIT' is enabled and ran"
else
    fail "'$IGNITION_UNIT': $(systemctl is-enabled "$IGNITION_UNIT" 2>&1), $(systemctl is-active "$IGNITION_UNIT" 2>&1)"
fi
if id nest >/dev/null 2>&1; then pass "user nest"; else fail "no user nest"; fi
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
osv=$(. /usr/lib/os-release && echo "$OSTREE_VERSION")
osversion=$(. /usr/lib/os-release && echo "$VERSION")
if [ "$osv" = "$BUILD_VERSION" ] && [ "${osversion#*"$BUILD_VERSION"}" != "$osversion" ]; then
    pass "os-release VERSION is the build's version '$BUILD_VERSION'"
else
    fail "os-release VERSION '$osversion' (OSTREE_VERSION '$osv') is not the build's '$BUILD_VERSION'"
fi
if [ "$FIRMWARE" = uefi ]; then
    if [ -d /sys/firmware/efi ]; then pass "booted with UEFI"; else fail "not booted with UEFI"; fi
else
    if [ ! -d /sys/firmware/efi ]; then pass "booted with BIOS"; else fail "booted with UEFI, expected BIOS"; fi
fi
# / is the deployment, bound from the root file system: `findmnt` names the device as
# `/dev/vda4[/ostree/deploy/...]`.
dev=$(findmnt -n -o SOURCE --target /)
dev=${dev%%\[*}
bs=$(cat "/sys/class/block/${dev##*/}/../queue/logical_block_size" 2>/dev/null)
if [ "$bs" = "$SECTOR_SIZE" ]; then
    pass "root disk has $SECTOR_SIZE-byte logical blocks"
else
    fail "root disk $dev has logical block size '$bs', expected $SECTOR_SIZE"
fi
fstype=$(findmnt -n -o FSTYPE --target /)
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
