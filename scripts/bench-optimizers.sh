#!/usr/bin/env bash
# Optimizer defaults on real transfer: sgdm vs adam at several learning rates, finetuning the
# two real ImageNet classifiers of shared/models/pretrained on flowers5 laid out as train/ (60
# per class) and val/ (20 per class), 10 epochs, seeds 0-2; the README's "Optimizer defaults"
# table. Prints one line per run: tag, best and final validation accuracy, wall seconds.
# Usage: scripts/bench-optimizers.sh [SHARED_DIR] [ZOO_BINARY]
set -euo pipefail
shared="${1:-../shared}"
zoo="${2:-${CARGO_TARGET_DIR:-$HOME/.cache/zoo-target}/release/zoo}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for class in "$shared"/data/flowers5/*/; do
  name="$(basename "$class")"
  mkdir -p "$work/train/$name" "$work/val/$name"
  i=0
  for photo in "$class"*; do
    split=train
    [ "$i" -ge 60 ] && split=val
    ln -s "$(realpath "$photo")" "$work/$split/$name/"
    i=$((i + 1))
  done
done
pretrained="$shared/models/pretrained"
mobilenet=("$pretrained/mobilenet_v1_0.25_128-imagenet1001-dequant-opset9.onnx" --scale 1 --mean 128 --std 128)
squeezenet=("$pretrained/squeezenet1.0-tflite-imagenet1001-opset9.onnx" --preprocessing inception)
run() { # tag, then the model and its options
  local tag="$1"
  shift
  "$zoo" finetune "$@" --recipe head-only --data "$work/train" --val-data "$work/val" --epochs 10 \
    --out "$work/runs/$tag" --json 2>/dev/null |
    python3 -c "import json,sys; s=json.load(sys.stdin); print('$tag', round(s['best_val_accuracy'],3), round(s['final_val_accuracy'],3), round(s['wall_time_s'],1))"
}
for seed in 0 1 2; do
  for model in mobilenet squeezenet; do
    declare -n m="$model"
    run "$model-sgdm-s$seed" "${m[@]}" --seed "$seed"
    run "$model-adam-1e-3-s$seed" "${m[@]}" --seed "$seed" --optimizer adam --lr 1e-3
    run "$model-adam-1e-4-s$seed" "${m[@]}" --seed "$seed" --optimizer adam --lr 1e-4
    run "$model-adam-default-s$seed" "${m[@]}" --seed "$seed" --optimizer adam
  done
done
for args in "" "--optimizer adam --lr 1e-3" "--optimizer adam --lr 1e-4" "--optimizer adam"; do
  # shellcheck disable=SC2086
  run "mobilenet-unfreeze-all${args// /_}" "${mobilenet[@]}" --unfreeze-all $args
done
