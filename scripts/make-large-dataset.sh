#!/usr/bin/env bash
# A large image folder for the large-dataset benchmark (README "Large datasets"): random crops
# of ../shared/data/flowers5, resized and saved as separate JPEGs (crates/zoo-data/examples/
# synthetic_folder.rs). Usage: scripts/make-large-dataset.sh OUT [COUNT=100000] [SIZE=128] [SEED=0]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/make-large-dataset.sh OUT [COUNT] [SIZE] [SEED]}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zoo-target}"
cargo run --quiet --release -p zoo-data --example synthetic_folder -- \
  "${ZOO_SHARED:-../shared}/data/flowers5" "$out" "${2:-100000}" "${3:-128}" "${4:-0}"
