#!/usr/bin/env bash
# A/B of two zoo binaries on the same machine in the same hour, runs alternated (A, B, A, B,
# ...): `zoo evaluate` (SqueezeNet 1.0 finetuned on flowers5, all 400 photos), a frozen-conv
# finetune epoch (SqueezeNet 1.0 on flowers5, feature cache), and a LeNet-5 training epoch from
# scratch (MNIST test set). Prints one line per workload: the median of each binary and B/A.
# Usage: scripts/bench-ab.sh SHARED_DIR ZOO_A ZOO_B [ROUNDS]
set -euo pipefail
shared=${1:?usage: bench-ab.sh SHARED_DIR ZOO_A ZOO_B [ROUNDS]}
a=${2:?}; b=${3:?}; rounds=${4:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flowers="$shared/data/flowers5"
squeezenet="$shared/models/pretrained/squeezenet1.0-tflite-imagenet1001-opset9.onnx"
"$a" finetune "$squeezenet" --recipe head-only --data "$flowers" --epochs 1 --out "$work/run" >/dev/null 2>&1
"$a" export "$work/run" --onnx >/dev/null 2>&1
model="$work/run/model.onnx"
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
wall() { /usr/bin/time -f "%e" -o "$work/t" "$@" >/dev/null 2>&1; cat "$work/t"; }
epoch() { # seconds of the last epoch of a run directory
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["epoch_seconds"][-1])' "$1/summary.json"
}
evaluate() { wall "$1" evaluate "$model" --data "$flowers" --out "$work/e"; }
finetune() {
    rm -rf "$work/f"
    "$1" finetune "$squeezenet" --recipe head-only --data "$flowers" --epochs 2 --out "$work/f" >/dev/null 2>&1
    epoch "$work/f"
}
lenet() {
    rm -rf "$work/l"
    "$1" train lenet5 --data "$shared/data/mnist" --train-per-class 750 --epochs 2 --lr 0.01 \
        --head-lr-factor 1 --batch-size 64 --out "$work/l" >/dev/null 2>&1
    epoch "$work/l"
}
for workload in evaluate finetune lenet; do
    $workload "$a" >/dev/null; $workload "$b" >/dev/null  # warm-up
    : >"$work/a.txt"; : >"$work/b.txt"
    for _ in $(seq "$rounds"); do
        $workload "$a" >>"$work/a.txt"
        $workload "$b" >>"$work/b.txt"
    done
    ma=$(median <"$work/a.txt"); mb=$(median <"$work/b.txt")
    echo "$workload: A $ma s, B $mb s (A runs: $(tr '\n' ' ' <"$work/a.txt"); B runs: $(tr '\n' ' ' <"$work/b.txt")), B/A $(python3 -c "print(round($mb/$ma, 3))")"
done
