#!/usr/bin/env python3
"""PyTorch reference for zoo's training benchmarks: BVLC AlexNet (grouped convs, LRN, as the ONNX
zoo graph) trained on random 224x224 inputs (throughput does not depend on pixel values),
5 classes, SGD momentum 0.9. Prints images/s of the epochs after the first (median).

usage: torch_alexnet_train.py [--images 320] [--batch 128] [--epochs 3] [--frozen] [--device cuda|cpu]
  --frozen: conv1-conv5 frozen (requires_grad False), fc6-fc8 trained, as zoo's default plan
"""
import argparse
import statistics
import time

import torch
from torch import nn


def alexnet(classes):
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(),
        nn.MaxPool2d(3, 2, ceil_mode=True), nn.Flatten(),  # ONNX pads [0,0,1,1]: 12 -> 6
        nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, classes),
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=320)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--frozen", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    net = alexnet(5).to(dev)
    if a.frozen:
        for layer in list(net)[:16]:
            for q in layer.parameters():
                q.requires_grad = False
    opt = torch.optim.SGD([q for q in net.parameters() if q.requires_grad], lr=1e-3, momentum=0.9)
    x = torch.randn(a.images, 3, 224, 224, device=dev)
    y = torch.randint(0, 5, (a.images,), device=dev)
    times = []
    for _ in range(a.epochs):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(0, a.images, a.batch):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x[i:i + a.batch]), y[i:i + a.batch])
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    later = statistics.median(times[1:]) if len(times) > 1 else times[0]
    print(f"PyTorch {torch.__version__} on {a.device}{' (frozen convs)' if a.frozen else ''}, "
          f"batch {a.batch}: epoch 1 {times[0]:.2f} s, later {later:.2f} s, "
          f"{a.images / later:.1f} images/s")


if __name__ == "__main__":
    main()
