#!/usr/bin/env bash
# Companion of scripts/gpu-check.sh, run on a CPU machine with the crate registry: builds the
# `--features cuda` release binary, strips it, and gathers what the GPU machine needs (it has no
# network and no registry) into gpu-kit/ (git-ignored):
#   gpu-kit/zoo                      stripped zoo with --device cuda
#   gpu-kit/flowers5/                the 400 flower photos
#   gpu-kit/light_bvlc_alexnet.onnx  the AlexNet graph (weights are filled in on the GPU machine)
# Usage: scripts/build-gpu-binary.sh [SHARED_DIR]   (default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${1:-../shared}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zoo-target}"
cargo build --release -p zoo-cli --features cuda
rm -rf gpu-kit
mkdir -p gpu-kit
cp "$CARGO_TARGET_DIR/release/zoo" gpu-kit/zoo
strip gpu-kit/zoo
cp -r "$shared/data/flowers5" gpu-kit/flowers5
cp "$shared/models/light_bvlc_alexnet.onnx" gpu-kit/
du -sh gpu-kit gpu-kit/zoo
