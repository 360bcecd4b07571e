# The two entry points on a fresh Debian 12 machine: `make demo` and `make test`.
# Both install what is missing (apt-get), build nosa and the fixture distro, then do their job.

CARGO ?= cargo
NOSA := target/release/nosa

.PHONY: demo test deps-demo deps-test build fixture-distro ostree-ext-check lint bench fuzz

demo: deps-demo build
	target/release/xtask fixture-distro
	$(NOSA) fetch
	$(NOSA) build qemu
	$(NOSA) build qemu
	$(NOSA) graph build
	$(NOSA) kola-run
	@echo
	@echo "demo: fetch pinned the fixture repo, resolved (libsolv) and downloaded its packages;"
	@echo "the first build composed, committed (builds/latest/x86_64/) and made the qemu image;"
	@echo "the second found the tree unchanged: no new build id, nothing ran;"
	@echo "graph build built the default targets (the OS and the demo steps): all cached;"
	@echo "kola-run booted the image under QEMU and ran its tests (tmp/kola/reports/report.txt);"
	@echo "run it again: the results are cached until the image or a test changes."
	@echo "Try: echo hi >> examples/overlay.d/15nestos/etc/test/test.txt; $(NOSA) build-fast;"
	@echo "     $(NOSA) graph why ostree-commit:x86_64"

test: deps-test fixture-distro ostree-ext-check
	$(CARGO) nextest run --workspace --no-fail-fast --cargo-profile dev
	$(CARGO) test --workspace --doc

deps-demo:
	scripts/install-deps.sh demo

deps-test:
	scripts/install-deps.sh test

# nosa and xtask in one release build: their dependencies are compiled once.
build:
	$(CARGO) build --release -p nosa -p xtask

fixture-distro:
	$(CARGO) xtask fixture-distro

# The test tool that imports OCI archives with ostree-ext itself (its own Cargo workspace:
# ostree-ext pins the ostree crate 0.19). The tests build it too; this builds it once, first.
ostree-ext-check:
	$(CARGO) build --manifest-path tools/ostree-ext-check/Cargo.toml

# The parsers of untrusted input under cargo-fuzz (fuzz/, nightly): RUNS executions each
# (1,000,000 by default), then a table of executions and crashes per target (docs/security.md).
fuzz: deps-test
	scripts/fuzz.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	$(CARGO) bench --bench noop
	$(CARGO) bench --bench hash
	$(CARGO) bench --bench unpack
	$(CARGO) bench --bench commit
	$(CARGO) bench --bench images
	$(CARGO) bench --bench incremental
