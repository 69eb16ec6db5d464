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

# timm's ViT-tiny for the transformer forward rows (needs torch + timm; skipped without them).
if python3 scripts/torch_timm_train.py vit_tiny_patch16_224 --export "$work/vit_tiny.onnx" \
    >/dev/null 2>&1; then
    export ZOO_BENCH_VIT="$work/vit_tiny.onnx"
fi
echo "forward + import (cargo bench -p zoo-parity --bench forward)..." >&2
cargo bench -q -p zoo-parity --bench forward 2>"$work/forward.err" >"$work/forward.jsonl"
echo "import peak memory..." >&2
bench_bin=$(cargo bench -q -p zoo-parity --bench forward --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m["target"]["name"] == "forward": print(m["executable"])')
cargo build --release -q -p zoo-cli
"$CARGO_TARGET_DIR/release/zoo" materialize "$ZOO_SHARED/models/light_bvlc_alexnet.onnx" \
    -o "$work/alexnet.onnx" --opset 12 >/dev/null
peak() { # engine, command...: one JSON line with the command's peak resident memory
    local engine=$1; shift
    /usr/bin/time -f "%M" -o "$work/rss" "$@" >/dev/null
    echo "{\"engine\": \"$engine\", \"peak_rss_mb\": $(( $(cat "$work/rss") / 1024 ))}"
}
{
    peak "zoo (burn flex)" "$bench_bin" --import-only zoo "$work/alexnet.onnx"
    peak "tract 0.23 (load + optimise)" "$bench_bin" --import-only tract "$work/alexnet.onnx"
    if python3 -c 'import onnxruntime' 2>/dev/null; then
        peak "ONNX Runtime (Python session)" python3 -c \
            'import sys, onnxruntime as o; o.InferenceSession(sys.argv[1])' "$work/alexnet.onnx"
    fi
} >"$work/import-rss.jsonl"
rm -f "$work/alexnet.onnx" "$work/rss"
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
echo "evaluate end to end (scripts/bench-evaluate.sh)..." >&2
scripts/bench-evaluate.sh "$ZOO_SHARED" "$CARGO_TARGET_DIR/release/zoo" >"$work/evaluate.jsonl"
if [ -n "${ZOO_BENCH_VIT:-}" ]; then
    scripts/bench-evaluate.sh "$ZOO_SHARED" "$CARGO_TARGET_DIR/release/zoo" "$ZOO_BENCH_VIT" \
        >>"$work/evaluate.jsonl"
fi
echo "training through conv layers (scripts/bench-training.sh, cargo bench -p zoo-net)..." >&2
if python3 -c 'import torch' 2>/dev/null; then
    scripts/bench-training.sh "$ZOO_SHARED" "$CARGO_TARGET_DIR/release/zoo" >"$work/training.md"
fi
cargo bench -q -p zoo-net --bench train_ops >"$work/train_ops.jsonl" 2>/dev/null
python3 scripts/bench_report.py "$work" > BENCHMARKS.md
echo "wrote BENCHMARKS.md" >&2
