#!/usr/bin/env python3
"""PyTorch reference for zoo's training benchmarks: BVLC AlexNet (grouped convs, LRN, as the ONNX
zoo graph) trained on random 224x224 inputs (throughput does not depend on pixel values),
5 classes, SGD momentum 0.9. Prints images/s of the epochs after the first (median).

usage: torch_alexnet_train.py [--images 320] [--batch 128] [--epochs 3] [--frozen] [--device cuda|cpu]
                              [--data DIR]
  --frozen: conv1-conv5 frozen (requires_grad False), fc6-fc8 trained, as zoo's default plan
  --data:   a folder of class folders: every epoch decodes and preprocesses the photos (PIL,
            224x224, BGR minus the Caffe means), as the PyTorch finetuning tutorial's DataLoader
            does, instead of training on random tensors
"""
import argparse
import statistics
import time

import os

import torch
from torch import nn

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def photo_list(root, count):
    """The first `count` photos, taken round-robin over the class folders."""
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    per_class = [sorted(os.listdir(os.path.join(root, c))) for c in classes]
    out = []
    for i in range(max(len(p) for p in per_class)):
        for label, files in enumerate(per_class):
            if i < len(files) and len(out) < count:
                out.append((os.path.join(root, classes[label], files[i]), label))
    return out


def load_batch(items):
    import numpy as np
    from PIL import Image
    arrays = []
    for path, _ in items:
        rgb = np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR), np.float32)
        arrays.append((rgb[:, :, ::-1] - np.array(CAFFE_MEAN_BGR, np.float32)).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays)), torch.tensor([label for _, label in items])


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
    p.add_argument("--data")
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    net = alexnet(5).to(dev)
    if a.frozen:
        for layer in list(net)[:16]:
            for q in layer.parameters():
                q.requires_grad = False
    opt = torch.optim.SGD([q for q in net.parameters() if q.requires_grad], lr=1e-3, momentum=0.9)
    photos = photo_list(a.data, a.images) if a.data else None
    x = None if photos else torch.randn(a.images, 3, 224, 224, device=dev)
    y = None if photos else torch.randint(0, 5, (a.images,), device=dev)
    times = []
    for _ in range(a.epochs):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(0, a.images, a.batch):
            if photos:
                xb, yb = load_batch(photos[i:i + a.batch])
                xb, yb = xb.to(dev), yb.to(dev)
            else:
                xb, yb = x[i:i + a.batch], y[i:i + a.batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    later = statistics.median(times[1:]) if len(times) > 1 else times[0]
    source = "decoding the photos every epoch" if photos else "random tensors"
    print(f"PyTorch {torch.__version__} on {a.device}{' (frozen convs)' if a.frozen else ''}, {source}, "
          f"batch {a.batch}: epoch 1 {times[0]:.2f} s, later {later:.2f} s, "
          f"{a.images / later:.1f} images/s")


if __name__ == "__main__":
    main()
