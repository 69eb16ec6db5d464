#!/usr/bin/env python3
"""PyTorch forward throughput for scripts/bench.sh: BVLC AlexNet at batch 1 and 32, MNIST CNN at
batch 256, random weights and inputs, torch's default threads. One JSON object per line."""
import json
import statistics
import time

import torch
from torch import nn

from torch_alexnet_train import alexnet


def mnist_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 3),
        nn.Flatten(), nn.Linear(256, 10),
    )


def bench(workload, net, shape, batch):
    x = torch.randn(batch, *shape)
    with torch.inference_mode():
        net(x)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
    s = statistics.median(times)
    print(json.dumps({"workload": workload, "engine": f"PyTorch {torch.__version__}",
                      "batch": batch, "seconds": s, "images_per_s": batch / s}))


def main():
    torch.manual_seed(0)
    a = alexnet(1000).eval()
    for batch in (1, 32):
        bench("AlexNet forward 224x224", a, (3, 224, 224), batch)
    bench("MNIST CNN forward 28x28", mnist_cnn().eval(), (1, 28, 28), 256)


if __name__ == "__main__":
    main()
