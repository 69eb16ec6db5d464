#!/usr/bin/env bash
# Compares finetuning recipes on real transfer (issue #32): each recipe (a label and zoo
# finetune options) on each model and seed, the best validation accuracy per seed, their mean
# and worst. Models: SqueezeNet 1.0 and MobileNet v1 0.25 with real ImageNet weights
# (../shared/models/pretrained/). Data: class folders, or train/ and val/ of them (see below). No options: zoo's
# default recipe (--recipe auto); "--recipe head-only" is zoo's default before recipes.
# Usage: scripts/transfer-recipes.sh ZOO OUT DATA "label|options" ... (SEEDS="0 1 2",
#        SHARED=../shared, ONLY=name-part to run one model, in the environment)
# With TORCH=a Python that has torch and onnx (a venv), each model also gets a row "fastai
# (PyTorch)": fastai's fine_tune recipe in PyTorch on the same weights, images and seeds
# (scripts/torch_fine_tune.py; needs DATA/train and DATA/val).
# e.g.   scripts/transfer-recipes.sh zoo /tmp/r ../shared/data/flowers5 "before|--recipe head-only" "default|"
set -euo pipefail
usage="usage: scripts/transfer-recipes.sh ZOO OUT DATA \"label|options\" ..."
zoo="${1:?$usage}"
out="${2:?$usage}"
data="${3:?$usage}"
shift 3
shared="${SHARED:-$(dirname "$0")/../../shared}"
seeds="${SEEDS:-0 1 2}"
models=(
    "squeezenet1.0|squeezenet1.0-tflite-imagenet1001-opset9.onnx|--scale 1 --mean 127.5 --std 127.5"
    "mobilenet-v1-0.25|mobilenet_v1_0.25_128-imagenet1001-dequant-opset9.onnx|--scale 1 --mean 128 --std 128"
)
# A fixed validation set (DATA/train and DATA/val) when there is one: then the seeds vary the
# training alone; else 20 images of each class validate, drawn by the seed.
if [[ -d "$data/train" && -d "$data/val" ]]; then
    split="--data $data/train --val-data $data/val"
else
    split="--data $data --val-per-class 20"
fi
mkdir -p "$out"
summarise() {
    python3 - "$@" <<'PY'
import statistics, sys
name, label, values = sys.argv[1], sys.argv[2], [float(v) for v in sys.argv[3:]]
each = " / ".join(f"{v:.1f}" for v in values)
print(f"{name:18} {label:16} seeds {each} %: mean {statistics.mean(values):.1f} %, worst {min(values):.1f} %")
PY
}
for model in "${models[@]}"; do
    IFS='|' read -r name file recipe <<<"$model"
    [[ "$name" == *"${ONLY:-}"* ]] || continue
    for spec in "$@"; do
        IFS='|' read -r label options <<<"$spec"
        accuracies=()
        for seed in $seeds; do
            run="$out/$name-$label-seed$seed"
            rm -rf "$run"
            # shellcheck disable=SC2086 # options are words on purpose
            "$zoo" finetune "$shared/models/pretrained/$file" $split $recipe \
                --seed "$seed" $options --out "$run" >/dev/null 2>"$run.log"
            accuracies+=("$(python3 -c "import json,sys; print(100 * json.load(open(sys.argv[1]))['best_val_accuracy'])" "$run/summary.json")")
        done
        summarise "$name" "$label" "${accuracies[@]}"
    done
    if [[ -n "${TORCH:-}" && ! -d "$data/train" ]]; then
        echo "$name: fastai (PyTorch) row skipped: it needs DATA/train and DATA/val" >&2
    elif [[ -n "${TORCH:-}" ]]; then
        accuracies=()
        for seed in $seeds; do
            # shellcheck disable=SC2086 # the preprocessing options are words on purpose
            "$TORCH" "$(dirname "$0")/torch_fine_tune.py" "$shared/models/pretrained/$file" \
                "$data/train" "$data/val" $recipe --seed "$seed" \
                >"$out/$name-fastai-torch-seed$seed.log" 2>&1
            accuracies+=("$(sed -n 's/.* best \([0-9.]*\) %.*/\1/p' "$out/$name-fastai-torch-seed$seed.log")")
        done
        summarise "$name" "fastai (PyTorch)" "${accuracies[@]}"
    fi
done
