#!/usr/bin/env python3
"""Small ONNX files in the patterns everyday exporters write, for zoo's import tests.

Each model is a tiny network (32x32 input, a few channels, random weights, eval mode) built
from the same torch modules and calls as the torchvision family it is named after, so that
torch.onnx.export (TorchScript exporter) writes that family's op patterns: Clip (ReLU6),
HardSigmoid/HardSwish, ReduceMean, Shape/Gather/Unsqueeze/Concat flattening, channel shuffle
(rank-5 Reshape + Transpose), Split, BatchNorm statistics behind Identity, the Inception input
transform (Gather + Unsqueeze + Concat), ceil-mode pooling, Conv heads. Files go to
tests/fixtures/exporters/<family>-opset<N>[-dynamic].onnx; tests run every file found there.

Needs torch, torchvision and onnx (fixture generation only; zoo never uses them):
    python3 scripts/make-exporter-fixtures.py
"""
import os
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops.misc import SqueezeExcitation
from torchvision.models.shufflenetv2 import channel_shuffle

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "exporters"
OPSETS_DYNAMIC = [9, 11, 13, 17]
OPSETS_FIXED = [10, 14]


def cbr(i, o, k=3, s=1, groups=1, act=nn.ReLU):
    return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(o), act())


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 8, 3, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.block = nn.Sequential(cbr(8, 8), nn.Conv2d(8, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8))
        self.down = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
        self.block2 = nn.Sequential(cbr(8, 16, 3, 2), nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(self.stem(x))
        x = F.relu(x + self.block(x))
        x = F.relu(self.down(x) + self.block2(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(cbr(3, 8, 3, 2, act=nn.ReLU6), cbr(8, 8, 3, 1, groups=8, act=nn.ReLU6),
                                      nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.expand = nn.Sequential(cbr(8, 16, 1, act=nn.ReLU6), cbr(16, 16, 3, 1, groups=16, act=nn.ReLU6),
                                    nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(8, 10))

    def forward(self, x):
        x = self.features(x)
        x = x + self.expand(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


class MobileNetV3(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 8, 3, 2, act=nn.Hardswish)
        self.dw = cbr(8, 8, 3, 1, groups=8, act=nn.Hardswish)
        self.se = SqueezeExcitation(8, 4, scale_activation=nn.Hardsigmoid)
        self.project = nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.Hardswish())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(16, 12), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(12, 10))

    def forward(self, x):
        x = self.project(self.se(self.dw(self.stem(x))))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


class MNASNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(cbr(3, 8, 3, 2), cbr(8, 8, 5, 1, groups=8), cbr(8, 16, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, 10))

    def forward(self, x):
        return self.classifier(self.layers(x).mean([2, 3]))


class ShuffleNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = cbr(3, 8, 3, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.branch2 = nn.Sequential(cbr(4, 4, 1), nn.Conv2d(4, 4, 3, 1, 1, groups=4, bias=False),
                                     nn.BatchNorm2d(4), cbr(4, 4, 1))
        self.conv5 = cbr(8, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x1, x2 = x.chunk(2, dim=1)
        x = channel_shuffle(torch.cat((x1, self.branch2(x2)), dim=1), 2)
        return self.fc(self.conv5(x).mean([2, 3]))


class DenseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3, 1, 1, bias=False))
        self.layer2 = nn.Sequential(nn.BatchNorm2d(12), nn.ReLU(), nn.Conv2d(12, 4, 3, 1, 1, bias=False))
        self.transition = nn.Sequential(nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 8, 1, bias=False),
                                        nn.AvgPool2d(2, 2))
        self.norm5 = nn.BatchNorm2d(8)
        self.classifier = nn.Linear(8, 10)

    def forward(self, x):
        x = self.conv0(x)
        x = torch.cat([x, self.layer1(x)], 1)
        x = torch.cat([x, self.layer2(x)], 1)
        out = F.relu(self.norm5(self.transition(x)))
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(torch.flatten(out, 1))


class Inception(nn.Module):
    """GoogLeNet / Inception v3: the input transform, ceil-mode pools, branches and Concat."""

    def __init__(self):
        super().__init__()
        self.conv1 = cbr(3, 8, 3, 2)
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.b1 = cbr(8, 4, 1)
        self.b2 = nn.Sequential(cbr(8, 4, 1), cbr(4, 6, 3))
        self.b3 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), cbr(8, 2, 1))
        self.b4 = nn.Sequential(nn.AvgPool2d(3, 1, 1), cbr(8, 4, 1))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        x = torch.cat((x_ch0, x_ch1, x_ch2), 1)
        x = self.maxpool1(self.conv1(x))
        x = torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


class EfficientNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 8, 3, 2, act=nn.SiLU)
        self.dw = cbr(8, 8, 3, 1, groups=8, act=nn.SiLU)
        self.se = SqueezeExcitation(8, 2, activation=nn.SiLU)
        self.head = cbr(8, 16, 1, act=nn.SiLU)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, 10))

    def forward(self, x):
        x = self.head(self.se(self.dw(self.stem(x))))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


class RegNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 8, 3, 2)
        self.block = nn.Sequential(cbr(8, 8, 1), cbr(8, 8, 3, 2, groups=2), SqueezeExcitation(8, 2),
                                   nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.proj = nn.Sequential(nn.Conv2d(8, 8, 1, 2, bias=False), nn.BatchNorm2d(8))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(self.proj(x) + self.block(x))
        return self.fc(self.avgpool(x).flatten(start_dim=1))


class VGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(cbr(3, 8), nn.MaxPool2d(2, 2), cbr(8, 16), nn.MaxPool2d(2, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
        self.classifier = nn.Sequential(nn.Linear(16 * 16, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class AlexNet(nn.Module):
    """The old-style flatten `x.view(x.size(0), -1)`: Shape, Gather, Unsqueeze, Concat, Reshape."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 5, 2, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(16 * 3 * 3, 32), nn.ReLU(inplace=True),
                                        nn.Linear(32, 10))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


class SqueezeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True))
        self.squeeze = nn.Conv2d(8, 4, 1)
        self.e1 = nn.Conv2d(4, 8, 1)
        self.e3 = nn.Conv2d(4, 8, 3, padding=1)
        final_conv = nn.Conv2d(16, 10, 1)
        self.classifier = nn.Sequential(nn.Dropout(0.5), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        x = F.relu(self.squeeze(self.features(x)))
        x = torch.cat([F.relu(self.e1(x)), F.relu(self.e3(x))], 1)
        return torch.flatten(self.classifier(x), 1)


class Activations(nn.Module):
    """PRelu, Elu, Selu, Softplus, LeakyRelu, Clip with one bound, Pad, Max/Min/Mean of tensors."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2)
        self.prelu = nn.PReLU(8)
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.prelu(self.conv(F.pad(x, (1, 2, 0, 1), mode="reflect")))
        y = F.elu(x) + F.selu(x) - F.softplus(x) + F.leaky_relu(x, 0.1) + torch.clamp(x, min=-0.5)
        x = self.conv2(F.pad(torch.maximum(x, y) - torch.minimum(x, y), (1, 1, 1, 1)))
        return self.fc(torch.amax(x, dim=(2, 3)))


MODELS = {"resnet": ResNet, "mobilenet_v2": MobileNetV2, "mobilenet_v3": MobileNetV3, "mnasnet": MNASNet,
          "shufflenet_v2": ShuffleNetV2, "densenet": DenseNet, "inception": Inception,
          "efficientnet": EfficientNet, "regnet": RegNet, "vgg_bn": VGG, "alexnet": AlexNet,
          "squeezenet": SqueezeNet, "activations": Activations}


def randomise_statistics(model):
    """Non-trivial batch-norm statistics, as trained weights have (all-equal ones get deduplicated)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def export(name, cls, opset, dynamic):
    torch.manual_seed(0)
    model = cls().eval()
    if name != "densenet":  # densenet keeps the default statistics: the Identity pattern
        randomise_statistics(model)
    x = torch.rand(1, 3, 32, 32)
    suffix = "-dynamic" if dynamic else ""
    path = OUT / f"{name}-opset{opset}{suffix}.onnx"
    kwargs = dict(input_names=["input"], output_names=["output"], opset_version=opset, dynamo=False)
    if dynamic:
        kwargs["dynamic_axes"] = {"input": {0: "batch_size"}, "output": {0: "batch_size"}}
    with torch.no_grad():
        torch.onnx.export(model, x, str(path), **kwargs)
    return path


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.onnx"):
        old.unlink()
    for name, cls in MODELS.items():
        for opset in OPSETS_DYNAMIC:
            export(name, cls, opset, True)
        for opset in OPSETS_FIXED:
            export(name, cls, opset, False)
    total = sum(p.stat().st_size for p in OUT.glob("*.onnx"))
    print(f"{len(list(OUT.glob('*.onnx')))} files, {total} bytes in {OUT}")


if __name__ == "__main__":
    sys.exit(main())
