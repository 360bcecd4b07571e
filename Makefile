# The two entry points on a fresh Debian 12 machine: `make demo` and `make test`.
# Both install what is missing (apt-get), build nosa and the fixture distro, then do their job.

CARGO ?= cargo
NOSA := target/release/nosa

.PHONY: demo test deps-demo deps-test build fixture-distro lint bench clean-generated

demo: deps-demo build fixture-distro
	$(NOSA) graph build
	$(NOSA) graph build
	@echo
	@echo "demo: the second build above ran nothing (all cached); try editing a file under"
	@echo "examples/overlay.d and run '$(NOSA) graph build' then '$(NOSA) graph why NODE'."

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
