#!/bin/bash
# The project's test command (and CI's, through .ci/run):
#   bash scripts/test.sh
# setup, shell lint, the workload's model check, then fmt, clippy, build, test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step setup
bash scripts/setup.sh
if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
VENV=${SNAPRUN_VENV:-$PWD/.venv}

step "shellcheck"
shellcheck -x scripts/*.sh scripts/gpu/*.sh .ci/run

step "pyflakes (GPU scripts)"
pyflakes3 scripts/gpu/*.py

step "workload model check"
"$VENV/bin/python" tests/workloads/inference_server/check_model.py

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace"
cargo build --workspace

step "cargo test --workspace --no-fail-fast"
cargo test --workspace --no-fail-fast

step "all checks passed"
