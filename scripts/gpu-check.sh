#!/usr/bin/env bash
# One-shot GPU check (the CUDA issue). Run from the repository root on a machine with an NVIDIA
# GPU, no network and no crate registry, after scripts/build-gpu-binary.sh made gpu-kit/ on a
# CPU machine. Finishes in a few minutes; prints images/s for CUDA next to CPU, the parity of the
# GPU-trained model (on GPU, and on CPU) with tract, and PyTorch's figure when torch is there.
# Usage: scripts/gpu-check.sh [KIT_DIR]   (default gpu-kit)
set -euo pipefail
cd "$(dirname "$0")/.."
kit="${1:-gpu-kit}"
zoo="$kit/zoo"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$zoo" materialize "$kit/light_bvlc_alexnet.onnx" -o "$work/alexnet.onnx" --opset 12 >/dev/null

finetune() { # name device extra-args...
    local name="$1" device="$2"
    shift 2
    /usr/bin/time -f "%e" -o "$work/$name.time" "$zoo" finetune "$work/alexnet.onnx" --like alexnet --recipe head-only \
        --data "$kit/flowers5" --classes 5 --device "$device" --out "$work/$name" --json "$@" \
        >"$work/$name.json" 2>"$work/$name.log" || { tail -5 "$work/$name.log"; return 1; }
}
summary() { # name label
    python3 - "$work/$1.json" "$2" "$(cat "$work/$1.time")" <<'PY'
import json, statistics, sys
s = json.load(open(sys.argv[1]))
e = s["epoch_seconds"]
later = statistics.median(e[1:]) if len(e) > 1 else float("nan")
print(f"{sys.argv[2]:<44} epoch 1 {e[0]:6.2f} s  later {later:6.2f} s  "
      f"{s['train_images'] / later if later == later else s['images_per_s']:8.1f} images/s (later epochs)  "
      f"val acc {s['best_val_accuracy']:.3f}  audit {s['frozen_params_unchanged']}  wall {sys.argv[3]} s")
PY
}

echo "== finetune: conv1-conv5 frozen, fc6-fc8 trained, batch 32, 3 epochs (feature cache on)"
finetune cpu-frozen cpu --epochs 3
finetune cuda-frozen cuda --epochs 3
summary cpu-frozen "CPU (flex)"
summary cuda-frozen "CUDA (burn-cuda)"

echo "== full unfreeze, batch 128, no feature cache"
finetune cuda-full cuda --unfreeze-all --no-feature-cache --batch-size 128 --epochs 3 --lr 0.001
summary cuda-full "CUDA, all layers, batch 128"
finetune cpu-full cpu --unfreeze-all --no-feature-cache --batch-size 128 --epochs 2 --lr 0.001
summary cpu-full "CPU, all layers, batch 128"

echo "== parity of the GPU-trained model with tract (CPU) on the validation images"
for device in cuda cpu; do
    "$zoo" verify "$work/cuda-full/best.onnx" --run "$work/cuda-full" --device "$device" \
        --engines tract --tolerance 1e-3 --json >"$work/verify-$device.json" || true
    python3 - "$work/verify-$device.json" "$device" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
print(f"zoo on {sys.argv[2]:<4} vs tract: max_rel_diff {v['max_rel_diff']:.2e}, "
      f"top-1 agreement {v['top1_agreement']:.4f} over {v['samples']} images: "
      f"{'pass' if v['pass'] else 'FAIL'} (tolerance 1e-3)")
PY
done

echo "== PyTorch, same full-unfreeze workload (AlexNet with LRN, 320 images, batch 128)"
if python3 -c 'import torch' 2>/dev/null; then
    python3 scripts/torch_alexnet_train.py --images 320 --batch 128 --epochs 3
else
    echo "torch not installed here: no PyTorch figure"
fi
