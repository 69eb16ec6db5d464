#!/usr/bin/env python3
"""Writes zoo/<name>.toml for the model zoo's modern classifiers (`Computer_Vision/`: ViT, DeiT,
BEiT, ConvNeXt, Swin, EfficientNetV2, MobileViT, LeViT, RegNet, ResNet-50 (timm), MobileNetV3,
GhostNet, RepVGG), then regenerates crates/zoo-cards/src/embedded.rs.

File facts (path, opset, bytes, sha256, input size, preprocessing, weights tag, licence) and the
opset-16 twins are read from ../shared/reference/modern-cards.md (section 2); heads and freeze
plans (torch module prefixes, section 3) are below. Every file was exported by TurnkeyML with
`torch.onnx.export(model, x, input_names=("x",), do_constant_folding=True)`: input `x`,
batch 1 in the file (zoo follows the batch through the graph), raw logits.
Run from the repository root: python3 scripts/make-modern-cards.py [REFERENCE.md]
"""
import importlib.util
import math
import re
import sys
from pathlib import Path

REF = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/modern-cards.md")
spec = importlib.util.spec_from_file_location("make_cards", Path(__file__).with_name("make-cards.py"))
make_cards = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_cards)
toml_value = make_cards.toml_value

NORMS = {"I": ([0.5] * 3, [0.5] * 3), "M/S": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
         "0/1": ([0.0] * 3, [1.0] * 3)}


def blocks(prefix, last):
    return [f"{prefix}.{i}" for i in range(last + 1)]


# card: (family, title, head, freeze)
FAMILIES = {
    "vit-tiny": ("ViT", "ViT-Ti/16 (timm), ImageNet-1k", "head",
                 ["patch_embed", "cls_token", "pos_embed"] + blocks("blocks", 9)),
    "vit-small": ("ViT", "ViT-S/16 (timm), ImageNet-1k", "head",
                  ["patch_embed", "cls_token", "pos_embed"] + blocks("blocks", 9)),
    "vit-base": ("ViT", "ViT-B/16 (timm), ImageNet-1k", "head",
                 ["patch_embed", "cls_token", "pos_embed"] + blocks("blocks", 9)),
    "deit-tiny": ("DeiT", "DeiT-Ti/16 (timm), ImageNet-1k", "head",
                  ["patch_embed", "cls_token", "pos_embed"] + blocks("blocks", 9)),
    "deit3-small": ("DeiT", "DeiT-III-S/16 (timm), ImageNet-1k", "head",
                    ["patch_embed", "cls_token", "pos_embed"] + blocks("blocks", 9)),
    "deit-small": ("DeiT", "DeiT-S/16 (timm), ImageNet-1k", "head",
                   ["patch_embed", "cls_token", "pos_embed"] + blocks("blocks", 9)),
    "beit-base": ("BEiT", "BEiT-B/16 (timm), ImageNet-22k then 1k", "head",
                  ["patch_embed", "cls_token"] + blocks("blocks", 9)),
    "convnext-tiny": ("ConvNeXt", "ConvNeXt-T (timm, ImageNet-12k then 1k)", "head.fc",
                      ["stem"] + blocks("stages", 2)),
    "convnext-tiny-tv": ("ConvNeXt", "ConvNeXt-T (torchvision), ImageNet-1k", "classifier.2",
                         blocks("features", 6)),
    "convnext-nano": ("ConvNeXt", "ConvNeXt-nano (timm, ImageNet-12k then 1k)", "head.fc",
                      ["stem"] + blocks("stages", 2)),
    "swin-tiny": ("Swin", "Swin-T window 7 (timm), ImageNet-1k", "head.fc",
                  ["patch_embed"] + blocks("layers", 2)),
    "swin-t-tv": ("Swin", "Swin-T (torchvision), ImageNet-1k", "head", blocks("features", 6)),
    "effnetv2-b0": ("EfficientNetV2", "EfficientNetV2-B0 (timm, TF port), ImageNet-1k", "classifier",
                    ["conv_stem"] + blocks("blocks", 4)),
    "effnetv2-rw-t": ("EfficientNetV2", "EfficientNetV2-rw-T (timm), ImageNet-1k", "classifier",
                      ["conv_stem"] + blocks("blocks", 4)),
    "effnetv2-rw-s": ("EfficientNetV2", "EfficientNetV2-rw-S (timm), ImageNet-1k", "classifier",
                      ["conv_stem"] + blocks("blocks", 4)),
    "mobilevit-xxs": ("MobileViT", "MobileViT-XXS (timm), ImageNet-1k", "head.fc",
                      ["stem"] + blocks("stages", 3)),
    "mobilevitv2-050": ("MobileViT", "MobileViTv2-0.5 (timm), ImageNet-1k", "head.fc",
                        ["stem"] + blocks("stages", 3)),
    "levit-128s": ("LeViT", "LeViT-128S (timm, distilled), ImageNet-1k", "head.linear",
                   ["stem"] + blocks("stages", 1)),
    "regnety-002": ("RegNet", "RegNetY-200MF (timm), ImageNet-1k", "head.fc", ["stem", "s1", "s2", "s3"]),
    "regnety-016": ("RegNet", "RegNetY-1.6GF (timm), ImageNet-1k", "head.fc", ["stem", "s1", "s2", "s3"]),
    "regnetx-002": ("RegNet", "RegNetX-200MF (timm), ImageNet-1k", "head.fc", ["stem", "s1", "s2", "s3"]),
    "resnet50-a1": ("ResNet", "ResNet-50 A1 recipe (timm), ImageNet-1k", "fc",
                    ["conv1", "layer1", "layer2", "layer3"]),
    "resnet50d": ("ResNet", "ResNet-50-D (timm), ImageNet-1k", "fc", ["conv1", "layer1", "layer2", "layer3"]),
    "mnv3-large": ("MobileNetV3", "MobileNetV3-Large 1.0 (timm), ImageNet-1k", "classifier",
                   ["conv_stem"] + blocks("blocks", 5)),
    "mnv3-small-075": ("MobileNetV3", "MobileNetV3-Small 0.75 (timm), ImageNet-1k", "classifier",
                       ["conv_stem"] + blocks("blocks", 4)),
    "ghostnet-100": ("GhostNet", "GhostNet 1.0 (timm), ImageNet-1k", "classifier",
                     ["conv_stem"] + blocks("blocks", 8)),
    "repvgg-a2": ("RepVGG", "RepVGG-A2 (timm, training form), ImageNet-1k", "head.fc",
                  ["stem"] + blocks("stages", 2)),
    "repvgg-b0": ("RepVGG", "RepVGG-B0 (timm, training form), ImageNet-1k", "head.fc",
                  ["stem"] + blocks("stages", 2)),
}

# torchvision rows give their own recipe: (resize_shorter, interpolation).
TORCHVISION = {"convnext-tiny-tv": (236, "bilinear"), "swin-t-tv": (232, "bicubic")}


def rows(text):
    out = {}
    pattern = (r"^\| ([a-z0-9-]+)(?: \(skip\))? \| `([^`]+)` \| (\d+) \| (timm|tv) \| (\d+) \| "
               r"`([0-9a-f]{64})` \| \**(\d+)\** \| [^|]+ \| ([^|]+) \| ([^|]+) \| [^|]+ \| ([^|]+) \|$")
    for m in re.finditer(pattern, text, re.M):
        card, path, opset, src, size, sha, x, tag, pre, licence = m.groups()
        out[card] = dict(path=path, opset=int(opset), src=src, size=int(size), sha=sha, x=int(x),
                         tag=tag.strip(), pre=pre.strip(), licence=licence.strip())
    return out


def twins(text):
    """Opset-16 files by their opset-17 path."""
    out = {}
    for m in re.finditer(r"^\| `([^`]+_Opset16[^`]*)` \| (\d+) \| `([0-9a-f]{64})` \|$", text, re.M):
        path, size, sha = m.groups()
        out[path.replace("Opset16", "Opset17")] = dict(path=path, size=int(size), sha=sha, opset=16)
    return out


def source(f):
    return (f'repo = "onnxmodelzoo/legacy_models"\nrevision = "main"\n'
            f'path = "Computer_Vision/{f["path"]}"\nsha256 = "{f["sha"]}"\nsize = {f["size"]}\nopset = {f["opset"]}\n')


def preprocessing(card, f):
    size = f["x"]
    if card in TORCHVISION:
        shorter, interp = TORCHVISION[card]
        mean, std = NORMS["M/S"]
    else:
        _, interp, crop, norm = f["pre"].split()
        shorter = math.floor(size / float(crop))
        mean, std = NORMS[norm]
    return dict(resize="shorter-side-crop", size=[size, size], resize_shorter=shorter,
                interpolation=interp, color="rgb", scale=0.00392156862745098, mean=mean, std=std)


def card(name, f, twin):
    family, title, head, freeze = FAMILIES[name]
    licence = f["licence"].replace("†", "")
    origin = "timm 0.9.8 weights tag " + f["tag"] if f["src"] == "timm" else "torchvision " + f["tag"]
    lines = [f"# {title}. Generated by scripts/make-modern-cards.py from shared/reference/modern-cards.md.",
             f"# TurnkeyML export ({origin}): input `x` with batch 1 baked in, raw logits, constant folding on;",
             "# layer names come from the PyTorch module scopes, so freeze entries are module prefixes.",
             f'name = "{name}"', f'family = "{family}"', f'title = "{title}"', 'task = "image-classification"',
             f'license = "{licence} (weights), redistributed by the ONNX Model Zoo"', "", "[source]", source(f)]
    if twin:
        lines += ["[[variants]]", source(twin)]
    lines += ["[input]", 'name = "x"', f"shape = [1, 3, {f['x']}, {f['x']}]", "",
              "[output]", "# A number the exporter chose, not published; zoo reads the file's own output.",
              'name = ""', 'kind = "logits"', "", "[preprocessing]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in preprocessing(name, f).items()]
    lines += ["", "[labels]", 'format = "synset"', 'hub_path = "validated/vision/classification/synset.txt"',
              'url = "https://raw.githubusercontent.com/onnx/models/main/validated/vision/classification/synset.txt"',
              'sha256 = "acf75ef0abe89694b19056e0796401068b459c457baa30335f240c7692857355"', "size = 31675",
              "count = 1000", "", "[finetune]", f"freeze = {toml_value(freeze)}", f'head = "{head}"']
    return "\n".join(lines) + "\n"


def main():
    text = REF.read_text()
    found, pairs = rows(text), twins(text)
    missing = sorted(set(FAMILIES) - set(found))
    if missing:
        sys.exit(f"not in {REF}: {missing}")
    for name in FAMILIES:
        f = found[name]
        Path("zoo", f"{name}.toml").write_text(card(name, f, pairs.get(f["path"])))
    make_cards.write_embedded()
    print(f"wrote {len(FAMILIES)} cards")


if __name__ == "__main__":
    main()
