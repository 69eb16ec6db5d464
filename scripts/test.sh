#!/usr/bin/env bash
# The project's test command (README "Tests"; .ci/run calls it).
# Runs the whole workspace; with ../shared present (real models and data) the tests that need it
# run too (`--include-ignored`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zoo-target}"
if [ -d ../shared/models ]; then
    cargo test --workspace -- --include-ignored
else
    echo "note: ../shared not found; tests that need it are skipped (ignored)"
    cargo test --workspace
fi
