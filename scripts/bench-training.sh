#!/usr/bin/env bash
# Training through conv layers (issue #16), zoo beside PyTorch in the same run, same machine:
#   1. `zoo train lenet5`, the README command (7,500 MNIST digits, batch 64), vs
#      scripts/torch_lenet_train.py (same architecture, optimizer, data and batch);
#   2. SqueezeNet 1.0 (../shared/models/pretrained) `--unfreeze-all` on flowers5 at 224x224,
#      batch 32, vs scripts/torch_squeezenet_train.py (torchvision's SqueezeNet 1.0);
#   3. the same SqueezeNet head only with `--augment` (the frozen layers run every step) vs
#      scripts/torch_squeezenet_train.py --frozen.
# Prints markdown table rows (scripts/bench.sh puts them into BENCHMARKS.md).
# Usage: scripts/bench-training.sh [SHARED_DIR] [ZOO_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${1:-../shared}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zoo-target}"
zoo="${2:-}"
if [ -z "$zoo" ]; then
    cargo build --release -q -p zoo-cli
    zoo="$CARGO_TARGET_DIR/release/zoo"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export ZOO_HOME="$work/home"

# Median seconds of the epochs after the first (the first pays allocation warm-up), and the
# best validation accuracy, from a --json summary.
summary() {
    python3 - "$1" <<'PY'
import json, statistics, sys
s = json.load(open(sys.argv[1]))
e = s["epoch_seconds"]
later = e[1:] or e
print(f"{statistics.median(later):.2f} {s['images_per_s']:.0f} {100 * s['best_val_accuracy']:.2f}")
PY
}

"$zoo" train lenet5 --data "$shared/data/mnist" --train-per-class 750 --epochs 8 --lr 0.01 \
    --head-lr-factor 1 --batch-size 64 --out "$work/lenet" --json 2>/dev/null >"$work/lenet.json"
read -r zoo_epoch zoo_rate zoo_acc < <(summary "$work/lenet.json")
torch_lenet=$(python3 scripts/torch_lenet_train.py "$shared/data/mnist" --epochs 8 | tail -1)
torch_train=$(sed -n 's/.*median training epoch \([0-9.]*\) s.*/\1/p' <<<"$torch_lenet")
torch_val=$(sed -n 's/.*median validation \([0-9.]*\) s.*/\1/p' <<<"$torch_lenet")
python3 - "$zoo_epoch" "$zoo_rate" "$zoo_acc" "$torch_train" "$torch_val" "$torch_lenet" <<'PY'
import sys
zoo_epoch, zoo_rate, zoo_acc, torch_train, torch_val = (float(v) for v in sys.argv[1:6])
torch_epoch = torch_train + torch_val
print(f"| `zoo train lenet5` (README command; epoch = 7,500 training + 2,500 validation digits) "
      f"| {zoo_epoch:.2f} s/epoch ({zoo_rate:.0f} images/s over the run, best val {zoo_acc:.2f} %) "
      f"| {torch_epoch:.2f} s/epoch ({torch_train:.2f} training + {torch_val:.2f} validation) "
      f"| **{torch_epoch / zoo_epoch:.2f}x** |")
PY

squeezenet="$shared/models/pretrained/squeezenet1.0-tflite-imagenet1001-opset9.onnx"
"$zoo" finetune "$squeezenet" --recipe head-only --data "$shared/data/flowers5" --classes 5 --unfreeze-all \
    --epochs 3 --batch-size 32 --out "$work/squeezenet" --json 2>/dev/null >"$work/squeezenet.json"
read -r zoo_epoch zoo_rate _ < <(summary "$work/squeezenet.json")
torch_squeeze=$(python3 scripts/torch_squeezenet_train.py --images 320 --epochs 3 | tail -1)
torch_epoch=$(sed -n 's/.*median epoch \([0-9.]*\) s.*/\1/p' <<<"$torch_squeeze")
python3 - "$zoo_epoch" "$zoo_rate" "$torch_epoch" <<'PY'
import sys
zoo_epoch, zoo_rate, torch_epoch = (float(v) for v in sys.argv[1:4])
print(f"| SqueezeNet 1.0 `--unfreeze-all`, flowers5 at 224x224, batch 32 (zoo: 320 training + "
      f"80 validation photos; PyTorch: 320 training) | {zoo_epoch:.2f} s/epoch "
      f"| {torch_epoch:.2f} s/epoch | **{torch_epoch / zoo_epoch:.2f}x** |")
PY

"$zoo" finetune "$squeezenet" --recipe head-only --data "$shared/data/flowers5" --classes 5 --augment \
    --epochs 3 --batch-size 32 --out "$work/augment" --json 2>/dev/null >"$work/augment.json"
read -r zoo_epoch zoo_rate _ < <(summary "$work/augment.json")
torch_frozen=$(python3 scripts/torch_squeezenet_train.py --images 320 --epochs 3 --frozen | tail -1)
torch_epoch=$(sed -n 's/.*median epoch \([0-9.]*\) s.*/\1/p' <<<"$torch_frozen")
python3 - "$zoo_epoch" "$torch_epoch" <<'PY'
import sys
zoo_epoch, torch_epoch = (float(v) for v in sys.argv[1:3])
print(f"| SqueezeNet 1.0 head only with `--augment` (no feature cache: the frozen layers run "
      f"forward every step), same data | {zoo_epoch:.2f} s/epoch | {torch_epoch:.2f} s/epoch "
      f"(classifier only, features frozen) | **{torch_epoch / zoo_epoch:.2f}x** |")
PY

# Transformer-era classifiers (issue #29): timm's own models exported to ONNX by
# scripts/torch_timm_train.py (TorchScript exporter, opset 17, same weights as the PyTorch side),
# flowers5 at 224x224, batch 32; an epoch is 245 training + 155 validation photos in both.
timm_row() { # model, label, zoo flags..., PyTorch flags after `--`
    local model=$1 label=$2; shift 2
    local zoo_flags=() torch_flags=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do zoo_flags+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    torch_flags=("$@")
    python3 scripts/torch_timm_train.py "$model" --export "$work/$model.onnx" >/dev/null
    "$zoo" finetune "$work/$model.onnx" --recipe head-only --data "$shared/data/flowers5" --classes 5 \
        --train-per-class 49 --batch-size 32 --out "$work/$model-run" --json "${zoo_flags[@]}" \
        2>/dev/null >"$work/$model.json"
    rm -rf "$work/$model-run"
    python3 - "$work/$model.json" "$label" \
        "$(python3 scripts/torch_timm_train.py "$model" "${torch_flags[@]}" | tail -1)" <<'PY'
import json, re, statistics, sys
s = json.load(open(sys.argv[1]))
e = s["epoch_seconds"]
first, later = e[0], statistics.median(e[1:] or e)
torch = float(re.search(r"median epoch ([0-9.]+) s", sys.argv[3]).group(1))
print(f"| {sys.argv[2]} | {later:.2f} s/epoch (first {first:.2f} s) | {torch:.2f} s/epoch "
      f"| **{torch / later:.2f}x** (first epoch {torch / first:.2f}x) |")
PY
}
timm_row vit_tiny_patch16_224 "ViT-tiny (timm) \`--unfreeze-all\`" --unfreeze-all --epochs 3 -- --epochs 3
timm_row convnext_atto "ConvNeXt-atto (timm) \`--unfreeze-all\`" --unfreeze-all --epochs 3 -- --epochs 3
timm_row vit_tiny_patch16_224 "ViT-tiny (timm) head only (zoo: feature cache after epoch 1)" \
    --epochs 4 -- --epochs 3 --frozen
