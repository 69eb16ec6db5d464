#!/usr/bin/env python3
"""PyTorch reference for `zoo train lenet5` (README command): the lecture's MATLAB LeNet-5 with
batch norm (3x3 conv 16/32/64 + BN + ReLU, 2x2 max-pool after the first two, fc 50 + ReLU,
fc 10), trained from scratch on 750 MNIST digits per class of the MNIST test set (7,500), the
other 2,500 validate after each epoch; SGD momentum 0.9, lr 0.01, weight decay 1e-4, batch 64,
shuffled each epoch. Prints per-epoch training seconds (validation timed apart), training
images/s (median over epochs) and the best validation accuracy.

usage: torch_lenet_train.py MNIST_DIR [--epochs 8] [--threads 2]
"""
import argparse
import gzip
import statistics
import time

import numpy as np
import torch
from torch import nn


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def lenet5():
    def block(cin, cout, pool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        return layers + ([nn.MaxPool2d(2)] if pool else [])

    return nn.Sequential(
        *block(1, 16, True), *block(16, 32, True), *block(32, 64, False),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 50), nn.ReLU(), nn.Linear(50, 10),
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mnist")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    images = idx(f"{a.mnist}/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    labels = idx(f"{a.mnist}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    rng = np.random.default_rng(0)
    train_idx, val_idx = [], []
    for c in range(10):
        members = rng.permutation(np.flatnonzero(labels == c))
        train_idx += list(members[:750])
        val_idx += list(members[750:])
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    xt, yt, xv, yv = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    net = lenet5()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    train_s, val_s, best = [], [], 0.0
    for epoch in range(a.epochs):
        net.train()
        order = torch.randperm(len(xt))
        start = time.perf_counter()
        for i in range(0, len(xt), 64):
            b = order[i : i + 64]
            opt.zero_grad()
            loss_fn(net(xt[b]), yt[b]).backward()
            opt.step()
        train_s.append(time.perf_counter() - start)
        net.eval()
        with torch.no_grad():
            v_start = time.perf_counter()
            correct = sum((net(xv[i : i + 64]).argmax(1) == yv[i : i + 64]).sum().item() for i in range(0, len(xv), 64))
            v_s = time.perf_counter() - v_start
        val_s.append(v_s)
        best = max(best, correct / len(xv))
        print(f"epoch {epoch + 1}: training {train_s[-1]:.2f} s, validation {v_s:.2f} s, val acc {correct / len(xv):.4f}")
    med = statistics.median(train_s)
    print(f"PyTorch {torch.__version__} cpu, {a.threads} threads: median training epoch {med:.2f} s, "
          f"median validation {statistics.median(val_s):.2f} s, {len(xt) / med:.0f} images/s, best val acc {best:.4f}")


if __name__ == "__main__":
    main()
