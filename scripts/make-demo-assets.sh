#!/usr/bin/env bash
# Rebuilds the defaults `zoo demo` embeds, from the MNIST test set in ../shared/data/mnist:
#   crates/zoo-app/assets/demo/lenet5-digits0-4.onnx   `zoo train lenet5` on digits 0-4, exported
#   crates/zoo-app/assets/demo/lenet5-digits0-4.json   its accuracy and how it was trained
#   crates/zoo-app/assets/demo/digits5-9-*-ubyte.gz    the first 100 of each digit 5-9 (IDX)
# Deterministic (seeded training, mtime-free gzip): rerunning gives the same accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
MNIST="${ZOO_SHARED:-../shared}/data/mnist"
OUT=crates/zoo-app/assets/demo
cargo build --release -p zoo-cli
ZOO="${CARGO_TARGET_DIR:-target}/release/zoo"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 scripts/mnist_subset.py "$MNIST" "$work/digits0-4" 0-4
python3 scripts/mnist_subset.py "$MNIST" "$OUT/digits5-9" 5-9 100
"$ZOO" train lenet5 --data "$work/digits0-4-images-idx3-ubyte.gz" --epochs 4 --lr 0.01 \
    --head-lr-factor 1 --batch-size 64 --seed 0 --out "$work/run" --json > "$work/summary.json"
"$ZOO" export "$work/run" --onnx --engines tract --output "$work/lenet5.onnx" --json > "$work/parity.json"
cp "$work/lenet5.onnx" "$OUT/lenet5-digits0-4.onnx"
python3 - "$work/summary.json" "$work/parity.json" "$OUT/lenet5-digits0-4.json" <<'PY'
import json, sys
summary, parity = (json.load(open(p)) for p in sys.argv[1:3])
record = {
    "model": "lenet5-digits0-4.onnx",
    "trained_with": "zoo train lenet5 --epochs 4 --lr 0.01 --head-lr-factor 1 --batch-size 64 --seed 0",
    "data": "MNIST test set (t10k), digits 0-4, 20 % of each digit held out for validation",
    "train_images": summary["train_images"],
    "val_images": summary["val_images"],
    "val_accuracy": summary["best_val_accuracy"],
    "best_epoch": summary["best_epoch"],
    "export_parity_pass": parity["pass"],
    "export_max_rel_diff": max(parity["batch_1"]["max_rel_diff"], parity["batch_7"]["max_rel_diff"]),
}
json.dump(record, open(sys.argv[3], "w"), indent=2)
print(json.dumps(record, indent=2))
PY
