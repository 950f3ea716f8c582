#!/usr/bin/env bash
# `make bench`: Envoy with no filter vs the no-op wasm filter vs aispend under
# wrk. The work is in benches/gateway/bench.py (uses the repo's .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python benches/gateway/bench.py "$@"
