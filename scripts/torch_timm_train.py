#!/usr/bin/env python3
"""PyTorch reference for finetuning a timm classifier on CPU (issue #29): timm's own model
(random weights from seed 0; throughput does not depend on them), a new 5-class head, 224x224
random inputs, batch 32, SGD momentum 0.9; each epoch also runs validation (eval mode,
no gradients) over `--val-images` inputs, as zoo's epochs do. `--frozen` trains the head only, running the frozen
trunk forward every step (what PyTorch does without a feature cache). `--export PATH` also
writes the same weights (head replaced) as ONNX for zoo, with the TorchScript exporter at
opset 17 and a dynamic batch (the common user export). Prints per-epoch seconds.

usage: torch_timm_train.py MODEL [--images 245] [--val-images 155] [--epochs 3] [--threads 2]
                           [--frozen] [--export PATH]
"""
import argparse
import statistics
import time
import warnings

import timm
import torch


def export(net, path):
    net.eval()
    x = torch.randn(1, 3, 224, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--images", type=int, default=245)
    p.add_argument("--val-images", type=int, default=155)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frozen", action="store_true")
    p.add_argument("--export")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = timm.create_model(a.model, num_classes=5)
    if a.export:
        export(net, a.export)
        print(f"wrote {a.export}")
        return
    head = net.get_classifier()
    if a.frozen:
        for q in net.parameters():
            q.requires_grad = False
        for q in head.parameters():
            q.requires_grad = True
    trained = [q for q in net.parameters() if q.requires_grad]
    opt = torch.optim.SGD(trained, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(a.images, 3, 224, 224)
    y = torch.randint(0, 5, (a.images,))
    loss_fn = torch.nn.CrossEntropyLoss()
    val = torch.randn(a.val_images, 3, 224, 224)
    seconds, train_seconds = [], []
    for epoch in range(a.epochs):
        net.train()
        start = time.perf_counter()
        for i in range(0, a.images, 32):
            opt.zero_grad()
            loss_fn(net(x[i : i + 32]), y[i : i + 32]).backward()
            opt.step()
        train_seconds.append(time.perf_counter() - start)
        net.eval()
        with torch.no_grad():
            for i in range(0, a.val_images, 32):
                net(val[i : i + 32])
        seconds.append(time.perf_counter() - start)
        print(f"epoch {epoch + 1}: {seconds[-1]:.2f} s ({train_seconds[-1]:.2f} s training)")
    med = statistics.median(seconds)
    kind = "head only" if a.frozen else "full unfreeze"
    print(f"PyTorch {torch.__version__} cpu, {a.threads} threads, {a.model} {kind}: "
          f"median epoch {med:.2f} s (training {statistics.median(train_seconds):.2f} s), "
          f"{a.images} training + {a.val_images} validation images")


if __name__ == "__main__":
    main()
