#!/usr/bin/env bash
# The lecture's first half, measured: an MLP 784-100-30-10 on MNIST with sigmoid, tanh and ReLU,
# each with cross-entropy and quadratic loss (same epochs, batch, learning rate and seed), and the
# single neuron on two hand-made features (linear2d, digits 1 vs 5, 20 % of them held out). The
# MLPs train on 750 digits per class of the MNIST test set (7,500) and validate on the other 2,500.
# Usage: scripts/lecture-table.sh [MNIST_DIR] [ZOO_BINARY]   (prints a Markdown table)
set -euo pipefail
mnist="${1:-../shared/data/mnist}"
zoo="${2:-${CARGO_TARGET_DIR:-$HOME/.cache/zoo-target}/release/zoo}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
common=(--data "$mnist" --epochs 10 --batch-size 64 --lr 0.1 --head-lr-factor 1 --seed 0 --json)
accuracy() { # run: best validation accuracy, accuracy after epochs 1 and 3
  python3 -c '
import csv, json, sys
s = json.load(open(sys.argv[1] + "/summary.json"))
val = [r for r in csv.DictReader(open(sys.argv[1] + "/metrics.csv")) if r.get("val_accuracy")]
by_epoch = {int(r["epoch"]): float(r["val_accuracy"]) for r in val}
print("%.2f %% | %.2f %% | %.2f %% | %.1f" % (100 * s["best_val_accuracy"], 100 * by_epoch.get(1, 0), 100 * by_epoch.get(3, 0), s["wall_time_s"]))
' "$1"
}
echo "| network | activation | loss | best val acc | after epoch 1 | after epoch 3 | wall s |"
echo "|---|---|---|---:|---:|---:|---:|"
for act in sigmoid tanh relu; do
  for loss in cross-entropy quadratic; do
    run="$out/mlp-$act-$loss"
    "$zoo" train mlp --hidden 100,30 --activation "$act" --loss "$loss" --train-per-class 750 \
      "${common[@]}" --out "$run" >/dev/null 2>&1
    echo "| mlp 784-100-30-10 | $act | $loss | $(accuracy "$run") |"
  done
done
run="$out/linear2d"
# Its two features are small numbers (0..0.3): a larger step, and more of them.
"$zoo" train linear2d --digits 1,5 --data "$mnist" --epochs 20 --batch-size 64 --lr 1 \
  --head-lr-factor 1 --seed 0 --json --out "$run" >/dev/null 2>&1
echo "| linear2d (1 vs 5: intensity, symmetry) | - | cross-entropy | $(accuracy "$run") |"
