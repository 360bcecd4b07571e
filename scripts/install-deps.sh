#!/usr/bin/env bash
# Installs the Debian packages nosa's build, demo and tests need, when missing. Idempotent, no
# prompts (CI runs it with no stdin). Usage: scripts/install-deps.sh [demo|test]
set -euo pipefail

# Packages the project needs, one group per purpose.
build_pkgs=(pkg-config libsolv-dev libsolvext-dev clang libclang-dev)
fixture_pkgs=(rpm createrepo-c kmod cpio dnf git)
test_pkgs=(bubblewrap)
bench_pkgs=(ninja-build b3sum)

want=("${build_pkgs[@]}" "${fixture_pkgs[@]}")
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

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)" ]; then
  $SUDO apt-get update -q
fi
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
