#!/usr/bin/env bash
# `zoo evaluate` end to end (decode + preprocess + forward + report) on every flowers5 photo
# with a finetuned SqueezeNet 1.0 (../shared/models/pretrained; or the ONNX file given third,
# e.g. timm's ViT-tiny from `scripts/torch_timm_train.py vit_tiny_patch16_224 --export F`),
# zoo's own network against
# tract, ONNX Runtime through zoo, and an ONNX Runtime Python loop doing the same work
# (scripts/ort_evaluate.py). Medians of 3 after a warm-up; one JSON line per engine.
# Usage: scripts/bench-evaluate.sh SHARED_DIR [ZOO_BINARY] [ONNX_TO_FINETUNE]
set -euo pipefail
shared=${1:?usage: bench-evaluate.sh SHARED_DIR [ZOO] [ONNX]}
zoo=${2:-${CARGO_TARGET_DIR:-$HOME/.cache/zoo-target}/release/zoo}
source_model=${3:-$shared/models/pretrained/squeezenet1.0-tflite-imagenet1001-opset9.onnx}
workload="evaluate $(basename "$source_model" .onnx)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data="$shared/data/flowers5"
"$zoo" finetune "$source_model" --recipe head-only \
    --data "$data" --epochs 1 --out "$work/run" >/dev/null 2>&1
"$zoo" export "$work/run" --onnx >/dev/null 2>&1
model="$work/run/model.onnx"
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
timed() { # label, command...: median wall seconds of 3 runs after one warm-up
    local label=$1; shift
    "$@" >/dev/null 2>&1
    local t
    t=$(for _ in 1 2 3; do
        /usr/bin/time -f "%e" -o "$work/t" "$@" >/dev/null 2>&1
        cat "$work/t"
    done | median)
    echo "{\"workload\": \"$workload\", \"engine\": \"$label\", \"seconds\": $t}"
}
timed "zoo evaluate (zoo's network, burn flex)" "$zoo" evaluate "$model" --data "$data" --out "$work/e1"
timed "zoo evaluate --engine tract" "$zoo" evaluate "$model" --data "$data" --engine tract --out "$work/e2"
if python3 -c 'import onnxruntime, PIL' 2>/dev/null; then
    timed "zoo evaluate --engine ort" "$zoo" evaluate "$model" --data "$data" --engine ort --out "$work/e3"
    timed "ONNX Runtime Python loop (PIL + NumPy)" python3 "$(dirname "$0")/ort_evaluate.py" \
        "$model" "$data" "$work/run/config.json"
fi
