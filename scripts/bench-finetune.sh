#!/usr/bin/env bash
# Finetune benchmark (the finetune issue's workload): AlexNet stand-in (conv1-conv5 frozen,
# fc6-fc8 trained), flowers5 (320 train / 80 val images at 224x224), batch 32, release build.
# Prints per-epoch seconds (the first includes the frozen-feature cache) and peak memory.
# Usage: scripts/bench-finetune.sh [SHARED_DIR]   (default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${1:-../shared}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zoo-target}"
cargo build --release -q -p zoo-cli
zoo="$CARGO_TARGET_DIR/release/zoo"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$zoo" materialize "$shared/models/light_bvlc_alexnet.onnx" -o "$work/alexnet.onnx" --opset 12 >/dev/null
for run in 1 2 3; do
    /usr/bin/time -f "%M" -o "$work/rss" "$zoo" finetune "$work/alexnet.onnx" --like alexnet --recipe head-only \
        --data "$shared/data/flowers5" --classes 5 --epochs 3 --batch-size 32 \
        --out "$work/run$run" --json 2>/dev/null >"$work/summary.json"
    python3 - "$work/summary.json" "$(cat "$work/rss")" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
e = s["epoch_seconds"]
print(f"epoch 1 {e[0]:.1f} s, later epochs {', '.join(f'{x:.2f}' for x in e[1:])} s, "
      f"{s['images_per_s']:.1f} images/s overall, peak RSS {int(sys.argv[2]) / 1024:.0f} MB, "
      f"freeze audit {s['frozen_params_unchanged']}")
PY
done
