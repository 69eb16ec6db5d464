#!/usr/bin/env python3
"""Transfer quality of zoo against PyTorch on a small ViT (issue #28's check).

1. Pretrains a small timm ViT (28x28 gray input, 7x7 patches, width 32, 4 blocks) in PyTorch on
   the MNIST test set's digits 0-4 (all 5,139 images, 8 epochs, Adam) and exports it exactly as
   the ONNX Model Zoo's `Computer_Vision/` files were made (input `x`, batch 1 baked in,
   constant folding, opset 17).
2. Finetunes it on digits 5-9: the first 100 images of each digit train, the next 200 of each
   validate (written as IDX files both sides read), 10 epochs, SGD momentum 0.9, lr 0.01 with
   the head at the same rate, weight decay 1e-4, batch 32, a new 5-class head; once with only
   the head training and once with every layer. PyTorch runs its side; `zoo finetune` runs on
   the same file, the same images and the same recipe.
3. Prints both best validation accuracies per mode and their difference.

usage: vit_mnist_transfer.py MNIST_DIR OUT_DIR --zoo PATH_TO_ZOO [--seeds 0,1,2] [--threads 2]
The finetuning runs once per seed on both sides (PyTorch's head init and shuffling, zoo's
`--seed`); the pretrained model is the same for all.
Needs torch, timm, onnx (the PyTorch side only).
"""
import argparse
import gzip
import importlib.util
import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

EPOCHS, LR, MOMENTUM, WD, BATCH = 10, 0.01, 0.9, 1e-4, 32

# The IDX reader of the LeNet reference script.
_spec = importlib.util.spec_from_file_location("torch_lenet_train", Path(__file__).with_name("torch_lenet_train.py"))
_lenet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_lenet)
idx = _lenet.idx


def write_idx(prefix, images, labels):
    with gzip.open(f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(images), 28, 28) + images.tobytes())
    with gzip.open(f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def tensors(images, labels, offset):
    x = torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 255.0
    return x, torch.tensor(labels.astype(np.int64) - offset)


def vit(classes):
    return timm.create_model("vit_tiny_patch16_224", img_size=28, patch_size=7, in_chans=1,
                             embed_dim=32, depth=4, num_heads=4, num_classes=classes)


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def pretrain(x, y):
    torch.manual_seed(0)
    model = vit(5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    held = len(x) // 10
    for epoch in range(8):
        model.train()
        order = torch.randperm(len(x) - held) + held
        for k in range(0, len(order), 64):
            b = order[k:k + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    print(f"pretrained on digits 0-4: held-out accuracy {100 * accuracy(model, x[:held], y[:held]):.2f}%")
    return model


def finetune(state, train, val, every_layer, seed):
    torch.manual_seed(seed)
    model = vit(5)
    model.load_state_dict(state)
    model.reset_classifier(5)
    for name, p in model.named_parameters():
        p.requires_grad = every_layer or name.startswith("head.")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WD)
    (x, y), best = train, 0.0
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(x))
        for k in range(0, len(order), BATCH):
            b = order[k:k + BATCH]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
        best = max(best, accuracy(model, *val))
    return best


def zoo_finetune(zoo, model, out, every_layer, seed):
    # The recipe pinned: the same plain SGD as the PyTorch side (the default recipe would add
    # augmentation and a one-cycle schedule to the options given).
    args = [zoo, "finetune", str(model), "--recipe", "head-only",
            "--data", f"{out}/train59-images-idx3-ubyte.gz",
            "--val-data", f"{out}/val59-images-idx3-ubyte.gz", "--classes", "5",
            "--epochs", str(EPOCHS), "--lr", str(LR), "--head-lr-factor", "1",
            "--momentum", str(MOMENTUM), "--weight-decay", str(WD), "--batch-size", str(BATCH),
            "--seed", str(seed), "--out", f"{out}/zoo-{'all' if every_layer else 'head'}-{seed}"]
    if every_layer:
        args.append("--unfreeze-all")
    run = subprocess.run(args, capture_output=True, text=True)
    found = re.search(r"best validation accuracy ([\d.]+)%", run.stderr)
    if run.returncode != 0 or not found:
        raise SystemExit(f"zoo finetune failed:\n{run.stderr}")
    return float(found.group(1)) / 100


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mnist")
    ap.add_argument("out")
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", default="0")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    images = idx(f"{a.mnist}/t10k-images-idx3-ubyte.gz")
    labels = idx(f"{a.mnist}/t10k-labels-idx1-ubyte.gz")

    low = labels < 5
    model = pretrain(*tensors(images[low], labels[low], 0))
    model.eval()
    onnx_path = out / "vit-mnist04.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(onnx_path), dynamo=False,
                      input_names=["x"], do_constant_folding=True, opset_version=17)

    train_idx, val_idx = [], []
    for digit in range(5, 10):
        where = np.flatnonzero(labels == digit)
        train_idx += list(where[:100])
        val_idx += list(where[100:300])
    write_idx(out / "train59", images[train_idx], labels[train_idx])
    write_idx(out / "val59", images[val_idx], labels[val_idx])
    train = tensors(images[train_idx], labels[train_idx], 5)
    val = tensors(images[val_idx], labels[val_idx], 5)

    state = model.state_dict()
    seeds = [int(v) for v in a.seeds.split(",")]
    print("| mode | seed | PyTorch best val acc | zoo best val acc | zoo - PyTorch |")
    print("|---|---|---|---|---|")
    for every_layer in (False, True):
        mode = "every layer" if every_layer else "head only"
        gaps = []
        for seed in seeds:
            torch_acc = finetune(state, train, val, every_layer, seed)
            zoo_acc = zoo_finetune(a.zoo, onnx_path, out, every_layer, seed)
            gaps.append(zoo_acc - torch_acc)
            print(f"| {mode} | {seed} | {100 * torch_acc:.2f}% | {100 * zoo_acc:.2f}% | "
                  f"{100 * (zoo_acc - torch_acc):+.2f} points |", flush=True)
        print(f"| {mode} | mean | | | {100 * sum(gaps) / len(gaps):+.2f} points |", flush=True)


if __name__ == "__main__":
    main()
