# kms-replica-guard — the two commands most people need:
#   make demo   the main job end to end on the local emulator
#   make test   every test (unit, property, integration on the emulator, end to end, infra checks)
# `make help` lists the rest.

SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(abspath .)
VENV_PY := .venv/bin/python
# cargo-lambda and its zig come from the project venv: keep it first on PATH.
export PATH := $(ROOT)/.venv/bin:$(PATH)
NEXTEST := $(shell command -v cargo-nextest >/dev/null 2>&1 && echo "cargo nextest run" || echo "cargo test")

.PHONY: help setup emulator emulator-stop build fmt lint unit integration e2e test demo bench bench-sweep bench-coldstart fuzz mutants clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: ## create .venv (pinned LocalStack + cargo-lambda); idempotent
	@cargo xtask setup

emulator: setup ## start LocalStack on 127.0.0.1:4566 and moto (Security Hub) on :4570 (idempotent)
	@cargo xtask emulator start

emulator-stop: ## stop the LocalStack and moto server this project started
	@cargo xtask emulator stop

build: setup ## cargo lambda build --release --arm64 (the deployable zip)
	@echo "==> cargo lambda build --release --arm64 --bin bootstrap --output-format zip"
	cargo lambda build --release --arm64 --bin bootstrap --output-format zip
	@ls -l $(or $(CARGO_TARGET_DIR),target)/lambda/bootstrap/bootstrap.zip

fmt: ## format the code
	cargo fmt --all

lint: ## rustfmt check and clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit: ## unit and property tests (no emulator)
	$(NEXTEST) --workspace --lib --bins

integration: emulator ## tests against the emulator over real HTTP
	$(NEXTEST) -p kms-replica-guard --test integration

e2e: emulator ## the function under cargo lambda watch, driven with the sample events, asserted
	cargo xtask e2e

test: lint emulator ## every test: lint, unit, integration, end to end, infra checks
	$(NEXTEST) --workspace --all-targets
	cargo xtask e2e
	$(MAKE) --no-print-directory infra-test

demo: setup ## heal a default-policy and a hand-drifted replica on the emulator
	@cargo xtask demo

bench: ## criterion: CPU of the per-event policy work for a 32 KB policy
	cargo bench -p krg-engine --bench policy

bench-sweep: ## seed a fresh emulator with a fleet (BENCH_PRIMARIES=1000) and measure the sweep
	cargo xtask bench-sweep

bench-coldstart: ## cold start and peak RSS of bootstrap vs a hello-world lambda_runtime (COLDSTART_RUNS=20)
	cargo xtask bench-coldstart

fuzz: ## cargo-fuzz the event parser and the policy canonicaliser, FUZZ_SECONDS=60 per target
	@cargo xtask fuzz

# cargo-mutants builds each mutant in a scratch copy of the tree, in its own target dir: a
# shared CARGO_TARGET_DIR would keep mutated krg-policy artifacts that other checkouts of
# the workspace then take as up to date.
MUTANTS_VERSION := 27.1.0
MUTANTS_FILES ?= crates/policy/src/explain.rs crates/policy/src/validate.rs \
	crates/policy/src/guardrail.rs crates/policy/src/trust.rs
mutants: ## mutation testing of krg-policy (.cargo/mutants.toml), one job; MUTANTS_FILES=... to narrow
	@cargo mutants --version 2>/dev/null | grep -qx "cargo-mutants $(MUTANTS_VERSION)" \
		|| cargo install cargo-mutants --version $(MUTANTS_VERSION) --locked
	env -u CARGO_TARGET_DIR cargo mutants --package krg-policy --jobs $(or $(MUTANTS_JOBS),1) \
		$(addprefix -f ,$(MUTANTS_FILES)) $(MUTANTS_ARGS)

clean: emulator-stop ## remove build output and emulator state
	cargo clean
	rm -rf .localstack .moto

include infra/infra.mk
