# aispend — the only entry points. `make run` for the demo, `make test` for
# everything CI runs. Targets install what they need and are quick when
# nothing changed (cargo is incremental, the venv has a stamp file).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(HOME)/.cargo/bin:$(PATH)

VENV       := .venv
PYTHON     := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
# The FOCUS validator lives in its own venv (tests/focus-requirements.txt says why).
FOCUS_VENV  := $(VENV)/focus
FOCUS_STAMP := $(FOCUS_VENV)/.installed
# Honour a CARGO_TARGET_DIR from the environment; the tests, `run` and `bench`
# find the binaries through these two variables.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
WASM_DIR   := $(TARGET_DIR)/wasm32-wasip1/release
export AISPEND_WASM          := $(abspath $(WASM_DIR)/aispend_plugin.wasm)
export AISPEND_NOOP_WASM     := $(abspath $(WASM_DIR)/noop_filter.wasm)
export AISPEND_COLLECTOR_BIN := $(abspath $(TARGET_DIR)/release/aispend-collector)

.PHONY: soak run test bench wrk bench-ttfb bench-fuel bench-instr bench-footprint bench-registry bench-dashboard wasm collector fmt lint unit unit-wasm node e2e wasm-host venv chromium toolchain clean-data help fuzz fuzz-smoke fuzz-tool fuzz-build

help:
	@echo "make run        collector + mock provider + Envoy with aispend (Ctrl-C stops)"
	@echo "make test       fmt check, clippy (native + wasm32), unit tests, builds, end-to-end tests"
	@echo "make unit-wasm  the plugin's unit tests compiled to wasm32-wasip1, run under Node's WASI"
	@echo "make bench      gateway benchmark: no filter, no-op wasm, aispend (+limits, strict, signing), floor (wrk; gateway on CPU 0)"
	@echo "make bench-ttfb streamed time to first byte: no-op wasm filter vs aispend"
	@echo "make bench-fuel wasm instructions per request: no-op, aispend, floor (exact, not timed)"
	@echo "make bench-instr Envoy instructions per request under callgrind, V8 JIT included (exact)"
	@echo "make bench-footprint  the wasm functions a chat call runs, with the i-cache lines and misses of each (aispend vs floor)"
	@echo "make bench-registry  key registry of 10k/100k keys: bytes and wasm instructions per refresh"
	@echo "make wasm       build $(AISPEND_WASM) (+ the no-op baseline filter)"
	@echo "make collector  build $(AISPEND_COLLECTOR_BIN)"
	@echo "make fmt        cargo fmt --all"
	@echo "make lint       fmt check + clippy"
	@echo "make fuzz       every cargo-fuzz target for FUZZ_SECONDS each (default 300); fuzz-smoke: a few seconds each"
	@echo "make venv       Python venv with Envoy 1.40 and the test dependencies (+ .venv/focus: the FOCUS validator)"
	@echo "make chromium   Debian's chromium for the dashboard tests (apt-get, when missing)"
	@echo "make bench-dashboard  the dashboard overview's API calls over 1M records (SQLite, PostgreSQL)"

# --- toolchain and venv ---------------------------------------------------
toolchain:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

venv: $(VENV_STAMP) $(FOCUS_STAMP)

# The browser the dashboard tests drive (tests/e2e/test_ui.py): Debian's
# chromium, through Playwright with executable_path (no browser download).
CHROMIUM := $(or $(shell command -v chromium 2>/dev/null),/usr/bin/chromium)
chromium:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

$(VENV_STAMP): tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

$(FOCUS_STAMP): tests/focus-requirements.txt | $(VENV_STAMP)
	python3 -m venv $(FOCUS_VENV)
	$(FOCUS_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/focus-requirements.txt
	touch $@

# --- builds ---------------------------------------------------------------
wasm: toolchain
	cargo build --release --target wasm32-wasip1 -p aispend-plugin -p noop-filter -p floor-filter

collector:
	cargo build --release -p aispend-collector

# --- checks ---------------------------------------------------------------
fmt:
	cargo fmt --all

lint: toolchain
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p aispend-plugin --target wasm32-wasip1 -- -D warnings

unit:
	cargo test --workspace

# What ships is what is tested: every plugin #[test] (lib + tests/) again,
# compiled to wasm32-wasip1 (32-bit usize, the shipped target) and run under
# Node's WASI by scripts/wasi_test_runner.mjs as cargo's runner. Not
# wasm-bindgen-test: that needs wasm32-unknown-unknown (not the target that
# ships), a #[wasm_bindgen_test] copy of each test and a wasm-bindgen-cli
# pinned to the crate; this runs the existing tests unchanged, with the same
# names, on the real target. ~35 s of run time plus one debug build.
NODE := $(or $(shell command -v node 2>/dev/null),/usr/bin/node)
node:
	@test -x $(NODE) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs; }

unit-wasm: toolchain node
	CARGO_TARGET_WASM32_WASIP1_RUNNER="$(NODE) --no-warnings $(abspath scripts/wasi_test_runner.mjs)" \
	  cargo test -p aispend-plugin --target wasm32-wasip1 --lib --tests

# Soak (not part of `make test`): SOAK_SECONDS (default 600) of mixed
# traffic through Envoy; fails on memory or p99 growth or any lost record.
soak: venv wasm collector
	$(PYTHON) scripts/soak.py

e2e: venv chromium wasm collector
	$(PYTHON) -m pytest tests/e2e -q -ra

# The compiled .wasm under a proxy-wasm host enforcing Envoy's and Kong's
# (ngx_wasm_module) semantics, plus the kong/ config schema.
wasm-host: venv wasm
	AISPEND_WASM_DIR=$(abspath $(WASM_DIR)) $(PYTHON) -m pytest tests/wasm_host -q -ra

# Order matters (make without -j runs prerequisites left to right): cheap
# checks first so a format slip fails in seconds, not after the builds.
test: lint unit unit-wasm fuzz-smoke wasm collector venv chromium wasm-host e2e

# --- fuzzing (fuzz/, cargo-fuzz + libFuzzer) ------------------------------
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# take them. Sanitizer none: the code under test is safe Rust, and libFuzzer's
# coverage, panics (debug assertions and overflow checks on) and its RSS and
# malloc limits are what the targets look for. Seeds: fuzz/seeds/<target>
# and tests/corpus (read only); what libFuzzer learns goes to fuzz/corpus/
# (gitignored), a crash to fuzz/artifacts/<target>/ (the run fails).
FUZZ_TARGETS       := filter_config sse_framer response_meter request_body caps_registry collector_records usage_query
FUZZ_SECONDS       ?= 300
FUZZ_SMOKE_SECONDS ?= 6
FUZZ_FLAGS         := -rss_limit_mb=1024 -malloc_limit_mb=512 -timeout=10 -max_len=32768 -print_final_stats=0
FUZZ_ENV           := RUSTC_BOOTSTRAP=1

fuzz-tool:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

fuzz-build: fuzz-tool
	cd fuzz && $(FUZZ_ENV) cargo fuzz build -s none

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $$t: $(FUZZ_SECONDS) s"; mkdir -p fuzz/corpus/$$t; \
	  (cd fuzz && $(FUZZ_ENV) cargo fuzz run -s none $$t corpus/$$t seeds/$$t ../tests/corpus -- \
	    $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done

fuzz-smoke: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  (cd fuzz && $(FUZZ_ENV) cargo fuzz run -s none $$t corpus/$$t seeds/$$t ../tests/corpus -- \
	    $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SMOKE_SECONDS) > corpus/$$t.log 2>&1) \
	    || { tail -n 40 fuzz/corpus/$$t.log; exit 1; }; \
	  echo "fuzz $$t: $$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' fuzz/corpus/$$t.log)"; \
	done

# --- run and bench --------------------------------------------------------
run: venv wasm collector
	$(PYTHON) scripts/run.py

# wrk drives the load (Debian's package; installed when missing, as chromium).
wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

bench: venv wasm collector wrk
	benches/gateway.sh

# Streamed time to first byte through Envoy: no-op wasm filter vs aispend.
bench-ttfb: venv wasm collector
	$(PYTHON) benches/gateway/ttfb.py

# Wasm instructions per request (wasmtime fuel): exact and repeatable on any
# machine, so a change to the filter's logic shows even where wrk is noise.
bench-fuel: venv wasm
	$(PYTHON) benches/gateway/fuel.py

# Envoy's own instructions per request under callgrind (V8's compiled wasm
# included): exact, where wrk's requests/s on a shared machine are noise.
bench-instr: venv wasm collector
	@command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
	$(PYTHON) benches/gateway/instr.py

# Which wasm functions a chat call runs and the instruction-cache lines and
# misses each costs, aispend against the floor (a build that keeps its name
# section, in target/symbols; the same code as the release build).
bench-footprint: venv
	@command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
	CARGO_TARGET_DIR=target/symbols CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --target wasm32-wasip1 -p aispend-plugin -p floor-filter
	$(PYTHON) benches/gateway/footprint.py

# The key registry at 10,000 and 100,000 keys: snapshot and shared-data
# bytes, wasm instructions per refresh per worker and per request.
bench-registry: venv wasm
	$(PYTHON) benches/gateway/registry_fuel.py

# The dashboard overview's API calls over 1M records on SQLite and PostgreSQL
# (AISPEND_BENCH_RECORDS, AISPEND_BENCH_SKIP_POSTGRES=1), then its first
# render in Chromium over 1M records in the real collector binary.
bench-dashboard: venv chromium collector
	cargo bench -p aispend-collector --bench dashboard
	$(PYTHON) benches/dashboard/first_render.py

clean-data:
	rm -rf data/
