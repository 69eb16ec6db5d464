#!/usr/bin/env python3
"""Tiny transformer-era classifiers in every exporter style users meet, for zoo's import tests.

Each family is the real timm architecture (same modules, same forward code, so the exporter
writes the same op patterns: LayerNormalization or its opset-16 spelling, Erf GELU, attention
MatMuls on 4-D tensors, class-token Expand, Swin's window partition and Mod arithmetic, LeViT's
attention-bias Gather, TF-SAME padding computed with Ceil) at small widths and one or two
blocks, random weights, eval mode. Styles:

- `ts14`, `ts17`: torch.onnx.export (TorchScript exporter), dynamic batch, opsets 14 and 17;
- `zoo16`, `zoo17`: exactly as the ONNX Model Zoo's `Computer_Vision/` files were made
  (input `x`, batch fixed at 1, constant folding, no output names);
- `dynamo18`: the default exporter of torch 2.9+ (`dynamo=True`), dynamic batch, weights kept
  inside the file; `dynamo18x` (torchvision ViT only): the same with the exporter's default
  of weights in `<file>.onnx.data` beside it; `dynamo23` (ViTs only): opset 23, attention
  as one `Attention` node.

Files go to tests/fixtures/modern/<family>-<style>.onnx; tests run every file found there.
`<family>.expected.json` holds PyTorch's logits for two images given by a formula both sides
compute exactly (`probe_images`), a third opinion beside tract and ONNX Runtime.
`python3 scripts/make-modern-fixtures.py cards` writes tests/fixtures/modern/cards/<card>.onnx:
stand-ins with a model card's architecture, depth and input size at the smallest widths.
Needs torch, timm, onnx, onnxscript (fixture generation only; zoo never uses them):
    python3 scripts/make-modern-fixtures.py [family ... | cards]
"""
import json
import sys
import warnings
from pathlib import Path

import torch
import timm
from timm.models import efficientnet

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "modern"
CLASSES = 10


def vit():
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=16,
                             depth=2, num_heads=2, num_classes=CLASSES), 32


def deit():
    return timm.create_model("deit_tiny_distilled_patch16_224", img_size=32, patch_size=8,
                             embed_dim=16, depth=2, num_heads=2, num_classes=CLASSES), 32


def beit():
    return timm.create_model("beit_base_patch16_224", img_size=32, patch_size=8, embed_dim=16,
                             depth=2, num_heads=2, num_classes=CLASSES), 32


def convnext():
    return timm.create_model("convnext_atto", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16),
                             num_classes=CLASSES), 32


def swin():
    return timm.create_model("swin_tiny_patch4_window7_224", img_size=32, patch_size=2,
                             window_size=4, embed_dim=8, depths=(2, 1), num_heads=(1, 2),
                             num_classes=CLASSES), 32


def levit():
    return timm.models.levit.Levit(img_size=64, embed_dim=(16, 24), key_dim=8, depth=(1, 1),
                                   num_heads=(2, 3), num_classes=CLASSES), 64


def effnetv2():
    # tf_efficientnetv2_b0's definition: TF-style SAME padding (Ceil of the input size).
    return efficientnet._gen_efficientnetv2_base(
        "tf_efficientnetv2_b0", channel_multiplier=0.1, depth_multiplier=0.25,
        bn_eps=1e-3, pad_type="same", num_classes=CLASSES), 48


def vittv():
    # torchvision's ViT: nn.MultiheadAttention runs sequence-first inside, so the batch sits
    # in the middle of axes ([L, B * heads, d], [L * B, C]) between its reshapes.
    from torchvision.models import VisionTransformer
    return VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                             hidden_dim=16, mlp_dim=32, num_classes=CLASSES), 32


FAMILIES = {f.__name__: f for f in [vit, deit, beit, convnext, swin, levit, effnetv2, vittv]}
# Also written as the dynamo exporter's default: weights in `<file>.onnx.data` beside it.
EXTERNAL_DATA = {"vittv"}
# Also written at opset 23, where `scaled_dot_product_attention` becomes one Attention node.
ATTENTION = {"vit", "vittv"}

# Stand-ins of model cards: the card's architecture, depth and input size (so its freeze plan
# and head resolve to real layers), at the smallest widths; model-zoo style, opset 17.
CARD_SHAPED = {
    "vit-tiny": lambda: timm.create_model("vit_tiny_patch16_224", embed_dim=16, num_heads=1,
                                          num_classes=CLASSES),
    "deit-tiny": lambda: timm.create_model("deit_tiny_patch16_224", embed_dim=16, num_heads=1,
                                           num_classes=CLASSES),
    "convnext-tiny": lambda: timm.create_model("convnext_tiny", dims=(4, 4, 8, 8),
                                               num_classes=CLASSES),
    "swin-tiny": lambda: timm.create_model("swin_tiny_patch4_window7_224", embed_dim=4,
                                           num_heads=(1, 1, 1, 1), num_classes=CLASSES),
    "effnetv2-b0": lambda: efficientnet._gen_efficientnetv2_base(
        "tf_efficientnetv2_b0", channel_multiplier=0.1, bn_eps=1e-3, pad_type="same",
        num_classes=CLASSES),
    "levit-128s": lambda: timm.create_model("levit_128s", embed_dim=(16, 24, 32), key_dim=8,
                                            num_heads=(2, 3, 4), num_classes=CLASSES),
}
CARD_SIZES = {"effnetv2-b0": 192}


def probe_images(size):
    """Two images, pixel i of image k = ((i * 7919 + k * 104729) % 1000) / 500 - 1 (exact in f32)."""
    n = 3 * size * size
    i = torch.arange(n, dtype=torch.int64)
    rows = [((i * 7919 + k * 104729) % 1000).to(torch.float32) / 500.0 - 1.0 for k in (1, 2)]
    return torch.stack(rows).reshape(2, 3, size, size)


def export(model, size, path, style):
    x = torch.randn(1, 3, size, size)
    if style.startswith("ts"):
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=int(style[2:]),
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    elif style.startswith("zoo"):
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=int(style[3:]),
                          input_names=["x"], do_constant_folding=True)
    else:
        # Traced at batch 2: torch.export specialises a dim it sees as 1.
        x = torch.randn(2, 3, size, size)
        batch = torch.export.Dim("N", max=1024)
        torch.onnx.export(model, (x,), path, dynamo=True, opset_version=int(style[6:8]),
                          input_names=["input"], output_names=["logits"],
                          dynamic_shapes={"x": {0: batch}}, external_data=style == "dynamo18x")


def randomize(model):
    with torch.no_grad():
        # timm starts heads, layer scales and biases at (near) zero; random values make
        # every parameter matter to the logits the parity tests compare.
        for p in model.parameters():
            if p.abs().max() < 1e-2:
                p.normal_(0.0, 0.2)


def card_shaped():
    out = OUT / "cards"
    out.mkdir(parents=True, exist_ok=True)
    for card, make in CARD_SHAPED.items():
        torch.manual_seed(0)
        model = make().eval()
        randomize(model)
        path = out / f"{card}.onnx"
        export(model, CARD_SIZES.get(card, 224), str(path), "zoo17")
        print(f"cards/{path.name}: {path.stat().st_size} bytes")


def main():
    warnings.filterwarnings("ignore")
    OUT.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:] == ["cards"]:
        return card_shaped()
    names = sys.argv[1:] or list(FAMILIES)
    for name in names:
        torch.manual_seed(0)
        model, size = FAMILIES[name]()
        model.eval()
        randomize(model)
        with torch.no_grad():
            logits = model(probe_images(size))
        expected = {"size": size, "logits": logits.tolist()}
        (OUT / f"{name}.expected.json").write_text(json.dumps(expected) + "\n")
        styles = ["ts14", "ts17", "zoo16", "zoo17", "dynamo18"]
        styles += ["dynamo18x"] if name in EXTERNAL_DATA else []
        styles += ["dynamo23"] if name in ATTENTION else []
        for style in styles:
            path = OUT / f"{name}-{style}.onnx"
            try:
                export(model, size, str(path), style)
                print(f"{path.name}: {path.stat().st_size} bytes")
            except Exception as e:  # an exporter that cannot write this family: say so
                print(f"{path.name}: not written ({str(e).splitlines()[0][:120]})")


if __name__ == "__main__":
    main()
