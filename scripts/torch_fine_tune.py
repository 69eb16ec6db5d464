#!/usr/bin/env python3
"""fastai's `fine_tune` recipe written out in plain PyTorch, on the same ONNX weights and the
same images as a zoo run, so zoo's default recipe can be compared with it (issue #32).

The ONNX classifier (Conv, Clip, Relu, Concat, MaxPool, AveragePool, GlobalAveragePool,
Flatten, Dropout, Identity: the real SqueezeNet 1.0 and MobileNet v1 0.25 in
../shared/models/pretrained/) is rebuilt as a torch module with its weights. Its head (the last
Conv) gets `classes` outputs with PyTorch's default initialisation, and a ReLU behind it becomes
LeakyReLU(0.2), as zoo does (a ReLU there lets classes die).

Recipe (fastai 2.x `Learner.fine_tune(epochs)` with `vision_learner`'s defaults): AdamW
(betas 0.9/0.99, eps 1e-5, decoupled weight decay 0.01), one frozen epoch of the head alone,
`fit_one_cycle(1, base_lr, pct_start=0.99)`; then everything unfreezes and
`fit_one_cycle(epochs, slice(base_lr/2/100, base_lr/2), pct_start=0.3, div=5)`: the body at
the low rate, the head at the high one. One-cycle: cosine up from lr/div to lr, then cosine down
to lr/1e5; Adam's beta1 cycles 0.95 -> 0.85 -> 0.95. Batch 32; images resized straight to the
model's size (as zoo does for a file without a card), random flips and crops of 80-100 % of
the side when --augment (default on).

Prints the validation accuracy after each epoch, then one line: best and final accuracy.

usage: torch_fine_tune.py MODEL.onnx TRAIN_DIR VAL_DIR --scale 1 --mean 127.5 --std 127.5
       [--seed 0] [--epochs 10] [--base-lr 2e-3] [--no-augment] [--threads 2]
"""
import argparse
import math
import os

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from PIL import Image

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def attributes(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class OnnxNet(torch.nn.Module):
    """Runs an ONNX graph of the ops above with trainable torch parameters."""

    def __init__(self, path, classes):
        super().__init__()
        graph = onnx.load(path).graph
        weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.nodes = list(graph.node)
        self.input = graph.input[0].name
        self.output = graph.output[0].name
        self.convs = torch.nn.ModuleDict()
        conv_nodes = [n for n in self.nodes if n.op_type == "Conv"]
        self.head = conv_nodes[-1].name
        for node in conv_nodes:
            w = torch.tensor(weights[node.input[1]])
            a = attributes(node)
            group = a.get("group", 1)
            out, inp = w.shape[0], w.shape[1] * group
            if node.name == self.head:
                out = classes
            conv = torch.nn.Conv2d(inp, out, w.shape[2:], stride=a.get("strides", [1, 1]),
                                   groups=group, bias=True)
            if node.name != self.head:
                conv.weight.data.copy_(w)
                conv.bias.data.copy_(torch.tensor(weights[node.input[2]]) if len(node.input) > 2
                                     else torch.zeros(out))
            self.convs[self.key(node.name)] = conv
        self.leaky = self.relus_after_head()

    @staticmethod
    def key(name):
        """The module key of a node name (ModuleDict keys cannot hold dots)."""
        return name.replace(".", "_")

    def relus_after_head(self):
        """Names of the ReLU/Clip nodes between the head and the logits (made leaky)."""
        head_out = next(n.output[0] for n in self.nodes if n.name == self.head)
        seen, value = set(), head_out
        for node in self.nodes:
            if value in node.input:
                if node.op_type in ("Relu", "Clip"):
                    seen.add(node.name)
                value = node.output[0]
        return seen

    def body_parameters(self):
        return [p for k, c in self.convs.items() if k != self.key(self.head) for p in c.parameters()]

    def head_parameters(self):
        return list(self.convs[self.key(self.head)].parameters())

    def forward(self, x):
        values = {self.input: x}
        for node in self.nodes:
            a = attributes(node)
            ins = [values[i] for i in node.input if i in values]
            op = node.op_type
            if op == "Conv":
                pads = a.get("pads", [0, 0, 0, 0])
                x = F.pad(ins[0], (pads[1], pads[3], pads[0], pads[2]))
                y = self.convs[self.key(node.name)](x)
            elif node.name in self.leaky:
                y = F.leaky_relu(ins[0], 0.2)
            elif op == "Relu":
                y = F.relu(ins[0])
            elif op == "Clip":
                y = torch.clamp(ins[0], a.get("min", -math.inf), a.get("max", math.inf))
            elif op == "Concat":
                y = torch.cat(ins, dim=a["axis"])
            elif op in ("MaxPool", "AveragePool"):
                pads = a.get("pads", [0, 0, 0, 0])
                x = F.pad(ins[0], (pads[1], pads[3], pads[0], pads[2]),
                          value=-math.inf if op == "MaxPool" else 0.0)
                pool = F.max_pool2d if op == "MaxPool" else F.avg_pool2d
                y = pool(x, a["kernel_shape"], a.get("strides", [1, 1]),
                         ceil_mode=bool(a.get("ceil_mode", 0)))
            elif op == "GlobalAveragePool":
                y = ins[0].mean(dim=(2, 3), keepdim=True)
            elif op == "Flatten":
                y = torch.flatten(ins[0], a.get("axis", 1))
            elif op == "Dropout":
                y = F.dropout(ins[0], a.get("ratio", 0.5), self.training)
            elif op == "Identity":
                y = ins[0]
            else:
                raise SystemExit(f"torch_fine_tune.py: op {op} ({node.name}) is not supported")
            values[node.output[0]] = y
        return values[self.output]


def load_folder(root, classes, size, scale, mean, std):
    xs, ys = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        for file in sorted(os.listdir(folder)):
            if not file.lower().endswith(EXTENSIONS):
                continue
            image = Image.open(os.path.join(folder, file)).convert("RGB")
            image = image.resize((size[1], size[0]), Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) * scale
            xs.append(((pixels - mean) / std).transpose(2, 0, 1))
            ys.append(label)
    return torch.tensor(np.stack(xs)), torch.tensor(ys)


def augment(batch, generator):
    """Random horizontal flips and crops of 80-100 % of the side, resized back (bilinear)."""
    n, _, h, w = batch.shape
    out = torch.empty_like(batch)
    for i in range(n):
        image = batch[i]
        if torch.rand(1, generator=generator).item() < 0.5:
            image = image.flip(-1)
        side = 0.8 + 0.2 * torch.rand(1, generator=generator).item()
        ch, cw = max(1, round(h * side)), max(1, round(w * side))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        crop = image[:, top:top + ch, left:left + cw].unsqueeze(0)
        out[i] = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]
    return out


def one_cycle(step, total, lr_max, pct_start, div, div_final=1e5):
    """fastai's one-cycle: (learning rate, beta1) at `step` of `total`."""
    cos = lambda start, end, pct: end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)
    warm = max(1, round(total * pct_start))
    if step < warm:
        pct = step / warm
        return cos(lr_max / div, lr_max, pct), cos(0.95, 0.85, pct)
    pct = (step - warm) / max(1, total - warm)
    return cos(lr_max, lr_max / div_final, pct), cos(0.85, 0.95, pct)


def accuracy(net, x, y):
    net.eval()
    with torch.no_grad():
        hits = sum((net(x[i:i + 64]).argmax(1) == y[i:i + 64]).sum().item()
                   for i in range(0, len(x), 64))
    return hits / len(x)


def fit_one_cycle(net, groups, epochs, data, args, pct_start, div, generator, log):
    """`groups`: (parameters, lr_max) pairs; the rest of the net is frozen."""
    for p in net.parameters():
        p.requires_grad = False
    for params, _ in groups:
        for p in params:
            p.requires_grad = True
    opt = torch.optim.AdamW([{"params": p, "lr": lr} for p, lr in groups],
                            betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    x, y, vx, vy = data
    steps_per_epoch = math.ceil(len(x) / args.batch_size)
    total, step = epochs * steps_per_epoch, 0
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), args.batch_size):
            idx = order[i:i + args.batch_size]
            batch = augment(x[idx], generator) if args.augment else x[idx]
            for g, (_, lr_max) in zip(opt.param_groups, groups):
                g["lr"], beta1 = one_cycle(step, total, lr_max, pct_start, div)
                g["betas"] = (beta1, 0.99)
            opt.zero_grad()
            F.cross_entropy(net(batch), y[idx]).backward()
            opt.step()
            step += 1
        log.append(accuracy(net, vx, vy))
        print(f"epoch {len(log)}: validation accuracy {100 * log[-1]:.1f} %", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("train")
    p.add_argument("val")
    p.add_argument("--scale", type=float, default=1 / 255)
    p.add_argument("--mean", type=float, default=0.0)
    p.add_argument("--std", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10, help="unfrozen epochs (after 1 frozen)")
    p.add_argument("--base-lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-augment", dest="augment", action="store_false")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    classes = sorted(d for d in os.listdir(args.train) if os.path.isdir(os.path.join(args.train, d)))
    dims = onnx.load(args.model).graph.input[0].type.tensor_type.shape.dim
    size = (dims[2].dim_value, dims[3].dim_value)
    net = OnnxNet(args.model, len(classes))
    load = lambda root: load_folder(root, classes, size, args.scale, args.mean, args.std)
    data = (*load(args.train), *load(args.val))
    log = []
    head, body = net.head_parameters(), net.body_parameters()
    fit_one_cycle(net, [(head, args.base_lr)], 1, data, args, 0.99, 25.0, generator, log)
    lr = args.base_lr / 2
    fit_one_cycle(net, [(body, lr / 100), (head, lr)], args.epochs, data, args, 0.3, 5.0,
                  generator, log)
    print(f"fastai fine_tune in PyTorch {torch.__version__}: seed {args.seed}, best "
          f"{100 * max(log):.1f} %, final {100 * log[-1]:.1f} %")


if __name__ == "__main__":
    main()
