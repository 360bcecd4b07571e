# The two entry points on a fresh Debian 12 machine: `make demo` and `make test`.
# Both install what is missing (apt-get), build nosa and the fixture distro, then do their job.

CARGO ?= cargo
NOSA := target/release/nosa

.PHONY: demo test deps-demo deps-test build fixture-distro lint bench

demo: deps-demo build fixture-distro
	$(NOSA) fetch
	$(NOSA) graph build
	$(NOSA) graph build
	$(NOSA) graph plan ostree qemu
	@echo
	@echo "demo: fetch pinned the fixture repo, resolved and downloaded its packages; the second"
	@echo "graph build ran nothing (all cached); the plan lists every node of the OS build."
	@echo "Try editing examples/overlay.d/15nestos/etc/test/test.txt, then"
	@echo "'$(NOSA) graph build overlay:15nestos' and '$(NOSA) graph why overlay:15nestos'."

test: deps-test fixture-distro
	$(CARGO) nextest run --workspace --no-fail-fast --cargo-profile dev
	$(CARGO) test --workspace --doc

deps-demo:
	scripts/install-deps.sh demo

deps-test:
	scripts/install-deps.sh test

build:
	$(CARGO) build --release --bin nosa

fixture-distro:
	$(CARGO) xtask fixture-distro

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	$(CARGO) bench --bench noop
	$(CARGO) bench --bench hash
	$(CARGO) bench --bench unpack
