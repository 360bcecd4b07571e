#!/usr/bin/env bash
# `make fuzz`: builds the cargo-fuzz targets (fuzz/), seeds each corpus from the fixtures and
# the example, runs each target for RUNS executions (default 1,000,000) and prints a table of
# executions and crashes per target. A crash leaves its input in fuzz/artifacts/<target>/ and
# makes the script exit 1 (turn it into a regression test). Needs the nightly toolchain that
# cargo-fuzz builds with, and cargo-fuzz (installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-1000000}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
  exit 2
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
[ -f fixtures/out/repo/x86_64/repodata/repomd.xml ] || make fixture-distro
(cd fuzz && cargo +nightly fuzz build -s none)

corpus=fuzz/corpus
seed_into() { local t=$1; shift; mkdir -p "$corpus/$t"; for f in "$@"; do [ -f "$f" ] && cp "$f" "$corpus/$t/"; done; return 0; }
repo=fixtures/out/repo/x86_64
seed_into treefile examples/manifest.yaml examples/manifests/*.yaml config/tests/fixtures/valid/*/manifest*.yaml
seed_into image_yaml examples/image.yaml examples/image-base.yaml config/tests/fixtures/valid/*/image*.yaml
seed_into repo_file examples/*.repo config/tests/fixtures/valid/*/*.repo
seed_into repomd "$repo/repodata/repomd.xml"
mkdir -p "$corpus/primary"
# (head closes the pipe early: gzip's SIGPIPE is expected.)
{ gzip -dc "$repo"/repodata/*-primary.xml.gz || true; } | head -c 60000 > "$corpus/primary/fixture-primary.xml"
mkdir -p "$corpus/rpm_header"
for f in $(ls -S -r "$repo"/Packages/*.rpm | head -5 || true); do cp "$f" "$corpus/rpm_header/"; done
seed_into build_file nestos.build.toml
# The store's state files, from a small build made here.
mkdir -p "$corpus/store_state"
w=$(mktemp -d)
printf '[[step]]\nname = "s"\ninputs = ["in"]\nrun = "cp in out"\noutputs = ["out"]\n' > "$w/nestos.build.toml"
echo x > "$w/in"
cargo build --bin nosa --bin nosa-core -q
(cd "$w" && "$OLDPWD/target/debug/nosa" graph build >/dev/null 2>&1)
for f in $(find "$w/cache/store/state" "$w/cache/store/trees" "$w/cache/store/ac" -type f | head -8 || true); do
  cp "$f" "$corpus/store_state/$(basename "$f")"
done
rm -rf "$w"

status=0
printf '%-12s %12s %8s %s\n' target executions crashes "seconds"
for t in treefile image_yaml repo_file repomd primary rpm_header build_file store_state; do
  log=$(mktemp)
  start=$(date +%s)
  max_len=65536
  set +e
  (cd fuzz && cargo +nightly fuzz run -s none "$t" "corpus/$t" -- \
      -runs="$runs" -max_len="$max_len" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1) >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  crashes=0
  if [ "$rc" -ne 0 ]; then crashes=1; status=1; tail -30 "$log" >&2; fi
  printf '%-12s %12s %8s %s\n' "$t" "${execs:-0}" "$crashes" "$(( $(date +%s) - start ))"
  rm -f "$log"
done
exit "$status"
