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

.PHONY: help setup emulator emulator-stop build fmt lint unit integration e2e test test-infra-lane test-rust-lane demo bench bench-sweep bench-scale bench-coldstart bench-report fuzz mutants docs-setup docs docs-check clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: ## create .venv (pinned LocalStack + cargo-lambda); idempotent
	@cargo xtask setup

emulator: setup ## start LocalStack on 127.0.0.1:4566 and moto (Security Hub) on :4570 (idempotent)
	@cargo xtask emulator start

emulator-stop: ## stop the LocalStack and moto server this project started
	@cargo xtask emulator stop

LAMBDA_DIR = $(or $(CARGO_TARGET_DIR),target)/lambda

build: setup ## cargo lambda build --release --arm64: the remediator's and the detector's zips; writes their size rows of BENCHMARKS.md
	@echo "==> cargo lambda build --release --arm64 --bin bootstrap --bin detector --output-format zip"
	cargo lambda build --release --arm64 --bin bootstrap --bin detector --output-format zip
	@ls -l $(LAMBDA_DIR)/bootstrap/bootstrap.zip $(LAMBDA_DIR)/detector/bootstrap.zip
	@cargo xtask bench-report --package $(LAMBDA_DIR)/bootstrap/bootstrap.zip --detector-package $(LAMBDA_DIR)/detector/bootstrap.zip

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

# The infra checks run beside the Rust tests (make -j2 of the two lanes below): their alarms check
# spends minutes waiting for the alarm windows. The Rust tests start once the alarms' functions are
# built and their data sent (ALARMS_DRIVEN_FILE: cargo builds one thing at a time in a target dir,
# and that data must not wait on a build). A failure in either lane fails `make test` once both
# have finished; Ctrl-C stops both.
ALARMS_DRIVEN := infra/.build/alarms/driven
test: lint docs-check emulator ## every test: lint, docs, unit, integration, end to end, infra checks
	cargo xtask bench-report --check
	@mkdir -p $(dir $(ALARMS_DRIVEN)); rm -f $(ALARMS_DRIVEN)
	@$(MAKE) --no-print-directory -j2 test-infra-lane test-rust-lane

# The marker is also written when infra-test ends, whatever happened to the alarms check.
test-infra-lane:
	@ALARMS_DRIVEN_FILE=$(ROOT)/$(ALARMS_DRIVEN) $(MAKE) --no-print-directory infra-test; rc=$$?; touch $(ALARMS_DRIVEN); exit $$rc

test-rust-lane:
	@echo "==> the Rust tests wait until the alarms check (make infra-test, beside them) has driven its functions"
	@while [ ! -e $(ALARMS_DRIVEN) ]; do sleep 1; done
	$(NEXTEST) --workspace --all-targets
	cargo xtask e2e

demo: setup ## heal a default-policy and a hand-drifted replica on the emulator
	@cargo xtask demo

bench: ## criterion: CPU of the per-event policy work for a 32 KB policy; writes its row of BENCHMARKS.md
	cargo bench -p krg-engine --bench policy
	cargo xtask bench-report --criterion

bench-sweep: ## seed a fresh emulator with a fleet (BENCH_PRIMARIES=1000) and measure the sweep
	cargo xtask bench-sweep

bench-scale: emulator ## 1,000 accounts x 17 Regions, a 10,000-replica sweep and an event storm on the KMS simulator (~15 min)
	cargo xtask bench-scale

bench-coldstart: ## cold start and peak RSS of bootstrap vs a hello-world lambda_runtime (COLDSTART_RUNS=20)
	cargo xtask bench-coldstart

fuzz: ## cargo-fuzz the event parser, the policy canonicaliser and the Config invocation reader, FUZZ_SECONDS=60 per target
	@cargo xtask fuzz

# cargo-mutants builds each mutant in a scratch copy of the tree, in its own target dir: a
# shared CARGO_TARGET_DIR would keep mutated krg-policy artifacts that other checkouts of
# the workspace then take as up to date.
MUTANTS_VERSION := 27.1.0
MUTANTS_FILES ?= crates/policy/src/explain.rs crates/policy/src/validate.rs crates/policy/src/lockout.rs crates/policy/src/pattern.rs \
	crates/policy/src/guardrail.rs crates/policy/src/trust.rs
mutants: ## mutation testing of krg-policy (.cargo/mutants.toml), one job; MUTANTS_FILES=... to narrow
	@cargo mutants --version 2>/dev/null | grep -qx "cargo-mutants $(MUTANTS_VERSION)" \
		|| cargo install cargo-mutants --version $(MUTANTS_VERSION) --locked
	env -u CARGO_TARGET_DIR cargo mutants --package krg-policy --jobs $(or $(MUTANTS_JOBS),1) \
		$(addprefix -f ,$(MUTANTS_FILES)) $(MUTANTS_ARGS)

# The book's tools, pinned, installed by cargo from crates.io when the pinned version is missing
# (like cargo-mutants above). mdbook builds docs/ into docs/book; hyperlink checks every link and
# anchor of the built pages. hyperlink never follows external links, so the check is offline.
# A first install compiles both from source; later runs find the pinned versions and skip it.
MDBOOK_VERSION := 0.4.52
HYPERLINK_VERSION := 0.3.2
docs-setup: ## install the pinned mdbook and hyperlink (cargo install, only when missing)
	@mdbook --version 2>/dev/null | grep -qx "mdbook v$(MDBOOK_VERSION)" \
		|| cargo install mdbook --version $(MDBOOK_VERSION) --locked --no-default-features --features search
	@hyperlink --version 2>/dev/null | grep -qx "hyperlink $(HYPERLINK_VERSION)" \
		|| cargo install hyperlink --version $(HYPERLINK_VERSION) --locked

docs: docs-setup ## build the book (docs/, mdBook) into docs/book
	mdbook build docs

docs-check: docs ## the generated parts current (cargo xtask docs --check); the book's links and anchors (offline); the top-level pages' repository links
	cargo xtask docs --check
	hyperlink docs/book --check-anchors --sources docs/src
	@for f in README.md BENCHMARKS.md CHANGELOG.md; do \
	  for p in $$(grep -oE '\]\([^):#]+(#[^)]*)?\)' $$f | sed -E 's/^\]\(([^)#]*).*/\1/'); do \
	    [ -e "$$p" ] || { echo "$$f: broken link to $$p" >&2; exit 1; }; \
	  done; \
	done; echo "README.md, BENCHMARKS.md, CHANGELOG.md: every link to a file of the repository resolves"

bench-report: ## check that BENCHMARKS.md has one row per declared budget and figure (runs no benchmark)
	cargo xtask bench-report --check

clean: emulator-stop ## remove build output and emulator state
	cargo clean
	rm -rf .localstack .moto

include infra/infra.mk
