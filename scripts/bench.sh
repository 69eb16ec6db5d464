#!/usr/bin/env bash
# Regenerates BENCHMARKS.md: zoo next to ONNX Runtime, tract and PyTorch, measured in this run
# on this machine (medians of 5 after a warm-up). Needs ../shared (or ZOO_SHARED).
# Peers: ONNX Runtime is the PyPI `onnxruntime` wheel (installed when missing), loaded through
# `ort`; tract is the crate zoo links; PyTorch is installed from PyPI when missing and reachable
# (skipped, and said so, when it cannot be installed).
# Usage: scripts/bench.sh            (writes BENCHMARKS.md at the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zoo-target}"
export ZOO_SHARED="${ZOO_SHARED:-$(cd .. && pwd)/shared}"
# Raw measurements stay in bench-results/ (git-ignored): the report can be redone from them
# with `python3 scripts/bench_report.py bench-results > BENCHMARKS.md`.
work=bench-results
rm -rf "$work"
mkdir -p "$work"

python3 -c 'import onnxruntime' 2>/dev/null || pip install -q onnxruntime || true
python3 -c 'import torch' 2>/dev/null || timeout 300 pip install -q torch || true

echo "forward + import (cargo bench -p zoo-parity --bench forward)..." >&2
cargo bench -q -p zoo-parity --bench forward 2>"$work/forward.err" >"$work/forward.jsonl"
echo "decode + preprocess..." >&2
cargo bench -q -p zoo-data --bench decode -- "$ZOO_SHARED/data/flowers5" >"$work/decode.txt" 2>/dev/null
echo "finetune epochs (scripts/bench-finetune.sh)..." >&2
scripts/bench-finetune.sh "$ZOO_SHARED" >"$work/finetune.txt"
if python3 -c 'import torch' 2>/dev/null; then
    echo "PyTorch..." >&2
    python3 scripts/torch_alexnet_train.py --device cpu --frozen --batch 32 --epochs 3 \
        --data "$ZOO_SHARED/data/flowers5" >"$work/torch-finetune.txt"
    python3 scripts/torch_forward.py >"$work/torch-forward.jsonl"
fi
python3 scripts/bench_report.py "$work" > BENCHMARKS.md
echo "wrote BENCHMARKS.md" >&2
