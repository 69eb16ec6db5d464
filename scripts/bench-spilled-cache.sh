#!/usr/bin/env bash
# The spilling feature cache, measured (issue #31): an AlexNet-sized frozen prefix (conv1-conv5
# of the AlexNet stand-in: 9216 floats per image at pool5, fc6-fc8 trained) on COUNT photos of
# 224 px under `--memory-budget 400M`. The cache does not fit the budget, so it spills to
# RUN/cache/ and training reads it from there. A second run is killed with SIGKILL after its
# third validation and resumed (reusing its cache files); its weights must equal the first's.
# Prints peak resident memory (/usr/bin/time -v) and times of each run.
# Usage: scripts/bench-spilled-cache.sh [SHARED_DIR=../shared] [COUNT=20000] [WORK=mktemp]
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${1:-../shared}"
count="${2:-20000}"
work="${3:-$(mktemp -d)}"
mkdir -p "$work"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zoo-target}"
cargo build --release -q -p zoo-cli
zoo="$CARGO_TARGET_DIR/release/zoo"
[ -f "$work/alexnet.onnx" ] ||
    "$zoo" materialize "$shared/models/light_bvlc_alexnet.onnx" -o "$work/alexnet.onnx" --opset 12 >/dev/null
[ -d "$work/data" ] || ZOO_SHARED="$shared" scripts/make-large-dataset.sh "$work/data" "$count" 224 0
args=(finetune "$work/alexnet.onnx" --like alexnet --recipe head-only --data "$work/data" --classes 5
    --epochs 2 --batch-size 32 --val-every 100 --memory-budget 400M --seed 0)
peak() { awk -F': ' '/Maximum resident/ {printf "%.0f MB", $2 / 1024}' "$1"; }

rm -rf "$work/whole" "$work/killed"
/usr/bin/time -v -o "$work/whole.time" "$zoo" "${args[@]}" --out "$work/whole" \
    2>"$work/whole.log" >/dev/null
echo "uninterrupted: peak $(peak "$work/whole.time"), $(grep -E 'Elapsed' "$work/whole.time" | sed 's/.*: //') wall"
grep -E "feature cache|streaming" "$work/whole.log" | sed 's/^/  /'

"$zoo" "${args[@]}" --out "$work/killed" >/dev/null 2>"$work/killed.log" &
pid=$!
until [ -f "$work/killed/checkpoint.bin" ] &&
    [ "$(grep -cv ',,$' "$work/killed/metrics.csv" 2>/dev/null || echo 0)" -ge 4 ]; do
    kill -0 $pid 2>/dev/null || { echo "the run ended before it could be killed"; exit 1; }
    sleep 0.5
done
kill -9 $pid
wait $pid 2>/dev/null || true
echo "killed after $(($(grep -cv ',,$' "$work/killed/metrics.csv") - 1)) validations; cache files:"
ls -l "$work/killed/cache" | sed 's/^/  /'
/usr/bin/time -v -o "$work/resumed.time" "$zoo" finetune --resume "$work/killed" 2>"$work/resumed.log" >/dev/null
echo "resumed: peak $(peak "$work/resumed.time"), $(grep -E 'Elapsed' "$work/resumed.time" | sed 's/.*: //') wall"
grep -E "feature cache|resuming" "$work/resumed.log" | sed 's/^/  /'
for f in last.onnx best.onnx; do
    if cmp -s "$work/whole/$f" "$work/killed/$f"; then
        echo "$f: resumed == uninterrupted (byte for byte)"
    else
        echo "$f: DIFFERS"; exit 1
    fi
done
python3 - "$work/whole/summary.json" "$work/killed/summary.json" <<'PY'
import json, sys
for name, path in zip(["uninterrupted", "resumed"], sys.argv[1:]):
    s = json.load(open(path))
    e = ", ".join(f"{x:.1f}" for x in s["epoch_seconds"])
    print(f"{name}: {s['train_images']} train / {s['val_images']} val images, epochs {e} s, "
          f"{s['images_per_s']:.0f} images/s, best validation {100 * s['best_val_accuracy']:.1f} %")
PY
