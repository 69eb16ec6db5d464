#!/usr/bin/env bash
# Dead classes (issue #32, item 0): SqueezeNet 1.0 (real ImageNet weights, its head a 1x1 Conv
# followed by a ReLU) finetuned head-only on ten classes, one run per seed. Prints each
# seed's best validation accuracy, the classes at 0 % recall, and the classes the run found
# dead. Run it with the zoo before and after a change to compare.
# DATA: ten class folders (scripts/mnist-folders.py DATA makes 96 digits each); 24 per class
# validate. ZOO_EXTRA adds finetune options (e.g. "--lr 0.01").
# Usage: scripts/dead-classes.sh ZOO_BINARY OUT_DIR DATA [SHARED=../shared] [SEEDS="0 ... 9"]
set -euo pipefail
usage="usage: scripts/dead-classes.sh ZOO OUT DATA [SHARED] [SEEDS]"
zoo="${1:?$usage}"
out="${2:?$usage}"
data="${3:?$usage}"
shared="${4:-$(dirname "$0")/../../shared}"
seeds="${5:-0 1 2 3 4 5 6 7 8 9}"
mkdir -p "$out"
for seed in $seeds; do
    rm -rf "$out/seed$seed"
    "$zoo" finetune "$shared/models/pretrained/squeezenet1.0-tflite-imagenet1001-opset9.onnx" \
        --data "$data" --classes 10 \
        --val-per-class 24 --epochs 10 --recipe head-only --seed "$seed" ${ZOO_EXTRA:-} \
        --scale 1 --mean 127.5 --std 127.5 --out "$out/seed$seed" >/dev/null 2>"$out/seed$seed.log"
    python3 - "$out/seed$seed" "$seed" <<'PY'
import json, sys
run, seed = sys.argv[1], sys.argv[2]
s = json.load(open(f"{run}/summary.json"))
c = json.load(open(f"{run}/confusion.json"))
zero = [name for name, row in zip(c["classes"], c["counts"])
        if sum(row) and row[c["classes"].index(name)] == 0]
print(f"seed {seed}: best {100 * s['best_val_accuracy']:.1f} %, final {100 * s['final_val_accuracy']:.1f} %, "
      f"0 % recall: {zero or '-'}, found dead: {s.get('dead_classes', 'n/a') or '-'}")
PY
done
