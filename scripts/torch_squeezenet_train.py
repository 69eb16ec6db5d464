#!/usr/bin/env python3
"""PyTorch reference for a full-unfreeze finetune epoch of SqueezeNet 1.0 (torchvision's
architecture, 5 outputs) at 224x224: random inputs (throughput does not depend on pixel values),
batch 32, SGD momentum 0.9, every layer training; `--frozen` trains the classifier only (the
frozen features still run forward every step, as with augmented inputs). Prints per-epoch
seconds and images/s.

usage: torch_squeezenet_train.py [--images 320] [--epochs 2] [--threads 2] [--frozen]
"""
import argparse
import statistics
import time

import torch
import torchvision


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=320)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frozen", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = torchvision.models.squeezenet1_0(num_classes=5)
    if a.frozen:
        for q in net.features.parameters():
            q.requires_grad = False
    trained = [q for q in net.parameters() if q.requires_grad]
    opt = torch.optim.SGD(trained, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(a.images, 3, 224, 224)
    y = torch.randint(0, 5, (a.images,))
    loss_fn = torch.nn.CrossEntropyLoss()
    seconds = []
    for epoch in range(a.epochs):
        net.train()
        start = time.perf_counter()
        for i in range(0, a.images, 32):
            opt.zero_grad()
            loss_fn(net(x[i : i + 32]), y[i : i + 32]).backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
        print(f"epoch {epoch + 1}: {seconds[-1]:.2f} s")
    med = statistics.median(seconds)
    print(f"PyTorch {torch.__version__} cpu, {a.threads} threads, SqueezeNet 1.0 {'head only' if a.frozen else 'full unfreeze'}: median epoch {med:.2f} s, {a.images / med:.1f} images/s")


if __name__ == "__main__":
    main()
