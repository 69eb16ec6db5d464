#!/usr/bin/env python3
"""Writes zoo/<name>.toml for every fp32 classifier of the ONNX Model Zoo.

File facts (path, opset, sha256, bytes, io names) are read from the reference table
(../shared/reference/model-zoo-cards.md, gathered from onnx/models' manifest); the per-family
facts below (preprocessing, output kind, head, freeze plan) come from the same reference's
sections 3-6, with the sources and disagreements it names written into each card's comment.
Run from the repository root: python3 scripts/make-cards.py [REFERENCE.md]
"""
import re
import sys
from pathlib import Path

REF = Path(sys.argv[1] if len(sys.argv) > 1 and __name__ == "__main__"
           else "../shared/reference/model-zoo-cards.md")
ROOT = "validated/vision/classification/"
MIN_OPSET = 7  # zoo imports opsets 7 and later

CAFFE = dict(resize="direct", size=[224, 224], interpolation="bilinear", color="bgr",
             scale=1.0, mean=[103.939, 116.779, 123.68], std=[1.0, 1.0, 1.0])
IMAGENET = dict(resize="shorter-side-crop", size=[224, 224], resize_shorter=256,
                interpolation="bilinear", color="rgb", scale=0.00392156862745098,
                mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
LITE = dict(resize="shorter-side-crop", size=[224, 224], resize_shorter=256,
            interpolation="bilinear", color="rgb", scale=1.0,
            mean=[127.0, 127.0, 127.0], std=[128.0, 128.0, 128.0])
MNIST = dict(resize="direct", size=[28, 28], interpolation="bilinear", color="gray",
             scale=0.00392156862745098, mean=[0.0], std=[1.0])

CAFFE_NOTE = ("Caffe recipe the published accuracy was measured with (Intel Neural Compressor's "
              "ONNX zoo example): resize directly to 224x224, 0..255, subtract the channel means, "
              "BGR. The README gives no preprocessing.")
IMAGENET_NOTE = ("torchvision/MXNet recipe: shorter side to 256, centre crop 224, RGB, x/255, "
                 "ImageNet mean/std (README). The published opset-12 figure was measured with a "
                 "square 256x256 resize before the crop; the README's aspect-keeping resize is "
                 "used here.")
UNESTABLISHED = ("Preprocessing is not published for this file (README silent, no reference "
                 "code); the Caffe2 lineage suggests the Caffe recipe used here. Check it on a "
                 "few labelled images before trusting absolute accuracy.")

# name: (family, title, folder, file prefix, default opset, output kind, preprocessing, note,
#        head, freeze patterns, licence)
SYNSET = "synset"
CARDS = {
    "alexnet": ("AlexNet", "BVLC AlexNet (Caffe), ImageNet 1000 classes", "alexnet", "bvlcalexnet-", 12,
                "probabilities", CAFFE, CAFFE_NOTE, "fc8", ["conv1", "conv2", "conv3", "conv4", "conv5"], "BSD-3-Clause (BVLC)"),
    "caffenet": ("CaffeNet", "BVLC CaffeNet (AlexNet variant), ImageNet 1000 classes", "caffenet", "caffenet-", 12,
                 "probabilities", CAFFE, CAFFE_NOTE + " Head name expected as AlexNet's (fc8); not verified on a graph.",
                 "fc8", ["conv1", "conv2", "conv3", "conv4", "conv5"], "BSD-3-Clause (BVLC)"),
    "zfnet512": ("ZFNet-512", "ZFNet-512 (Caffe2), ImageNet 1000 classes", "zfnet-512", "zfnet512-", 12,
                 "probabilities", CAFFE, CAFFE_NOTE, "gpu_0/fc8",
                 ["gpu_0/conv1", "gpu_0/conv2", "gpu_0/conv3", "gpu_0/conv4", "gpu_0/conv5"], "Apache-2.0 (ONNX Model Zoo)"),
    "googlenet": ("GoogLeNet", "BVLC GoogLeNet (Caffe), ImageNet 1000 classes", "inception_and_googlenet/googlenet", "googlenet-", 12,
                  "probabilities", CAFFE, CAFFE_NOTE + " Head name expected as Inception v1's; not verified on a graph.",
                  "loss3/classifier", ["conv1/*", "conv2/*", "inception_3*", "inception_4*"], "BSD-3-Clause (BVLC)"),
    "inception-v1": ("Inception v1", "Inception v1 (Caffe2 reproduction of GoogLeNet), ImageNet 1000 classes",
                     "inception_and_googlenet/inception_v1", "inception-v1-", 12, "probabilities", CAFFE, CAFFE_NOTE,
                     "loss3/classifier", ["conv1/*", "conv2/*", "inception_3*", "inception_4*"], "Apache-2.0 (ONNX Model Zoo)"),
    "inception-v2": ("Inception v2", "Inception v2 / BN-Inception (Caffe2), ImageNet 1000 classes",
                     "inception_and_googlenet/inception_v2", "inception-v2-", 9, "probabilities", CAFFE, UNESTABLISHED,
                     "loss3/classifier", ["conv1/*", "conv2/*", "inception_3*", "inception_4*"], "Apache-2.0 (ONNX Model Zoo)"),
    "squeezenet1.0": ("SqueezeNet", "SqueezeNet 1.0 (Caffe), ImageNet 1000 classes", "squeezenet", "squeezenet1.0-", 12,
                      "probabilities", CAFFE, CAFFE_NOTE + " The README's RGB mean/std text was written for the MXNet 1.1 model.",
                      "conv10", ["conv1", "fire*"], "BSD-2-Clause (DeepScale SqueezeNet)"),
    "squeezenet1.1": ("SqueezeNet", "SqueezeNet 1.1 (MXNet Gluon), ImageNet 1000 classes", "squeezenet", "squeezenet1.1-", 7,
                      "logits", IMAGENET, IMAGENET_NOTE, "squeezenet0_conv25", ["squeezenet0_conv*", "squeezenet0_relu*"],
                      "Apache-2.0 (MXNet Gluon model zoo)"),
    "vgg16": ("VGG", "VGG-16 (MXNet Gluon), ImageNet 1000 classes", "vgg", "vgg16-", 12, "logits", IMAGENET, IMAGENET_NOTE,
              "vgg0_dense2", ["vgg0_conv*"], "CC BY 4.0 (VGG weights), Apache-2.0 (MXNet)"),
    "vgg16-bn": ("VGG", "VGG-16 with batch norm (MXNet Gluon), ImageNet 1000 classes", "vgg", "vgg16-bn-", 7, "logits",
                 IMAGENET, IMAGENET_NOTE, "vgg0_dense2", ["vgg0_conv*", "vgg0_batchnorm*"], "Apache-2.0 (MXNet Gluon model zoo)"),
    "vgg19": ("VGG", "VGG-19 (MXNet Gluon), ImageNet 1000 classes", "vgg", "vgg19-", 7, "logits", IMAGENET, IMAGENET_NOTE,
              "vgg0_dense2", ["vgg0_conv*"], "CC BY 4.0 (VGG weights), Apache-2.0 (MXNet)"),
    "vgg19-bn": ("VGG", "VGG-19 with batch norm (MXNet Gluon), ImageNet 1000 classes", "vgg", "vgg19-bn-", 7, "logits",
                 IMAGENET, IMAGENET_NOTE, "vgg0_dense2", ["vgg0_conv*", "vgg0_batchnorm*"], "Apache-2.0 (MXNet Gluon model zoo)"),
    "vgg19-caffe2": ("VGG", "VGG-19 (Caffe2), ImageNet 1000 classes", "vgg", "vgg19-caffe2-", 9, "probabilities", CAFFE,
                     UNESTABLISHED, "fc8", ["conv1_*", "conv2_*", "conv3_*", "conv4_*", "conv5_*"], "CC BY 4.0 (VGG weights)"),
    "resnet50-caffe2": ("ResNet", "ResNet-50 v1 (Caffe2), ImageNet 1000 classes", "resnet", "resnet50-caffe2-v1-", 9,
                        "probabilities", CAFFE, UNESTABLISHED, "gpu_0/pred",
                        ["gpu_0/conv1", "gpu_0/res_conv1_bn", "gpu_0/res2_*", "gpu_0/res3_*", "gpu_0/res4_*"], "Apache-2.0 (ONNX Model Zoo)"),
    "mobilenetv2": ("MobileNet v2", "MobileNet v2 1.0 (MXNet Gluon / PyTorch export), ImageNet 1000 classes", "mobilenet",
                    "mobilenetv2-", 12, "logits", IMAGENET, IMAGENET_NOTE + " Opset 7 (Gluon names) has another head name: "
                    "`mobilenetv20_output_pred`; the -10/-12 head names are not verified, so the head is the last layer.",
                    "", [], "Apache-2.0 (ONNX Model Zoo)"),
    "shufflenet": ("ShuffleNet v1", "ShuffleNet v1 (Caffe2), ImageNet 1000 classes", "shufflenet", "shufflenet-", 9,
                   "probabilities", CAFFE, UNESTABLISHED, "gpu_0/pred",
                   # Stem and stages 2-3 (units 0-11 of 16: gconv1_0..23, gconv3_0..11, each with its
                   # batch norm); stage 4 (units 12-15) and pred train.
                   ["gpu_0/conv3_0*"] + [f"gpu_0/gconv1_{i}{bn}" for i in range(24) for bn in ("", "_bn")]
                   + [f"gpu_0/gconv3_{i}{bn}" for i in range(12) for bn in ("", "_bn")], "Apache-2.0 (ONNX Model Zoo)"),
    "shufflenet-v2": ("ShuffleNet v2", "ShuffleNet v2 x1.0 (torchvision export), ImageNet 1000 classes", "shufflenet",
                      "shufflenet-v2-", 12, "logits", IMAGENET, "torchvision recipe (README and its export script: "
                      "Resize(256), CenterCrop(224), ImageNet mean/std). Head initializer names are not verified, so "
                      "the head is the last layer.", "", [], "BSD-3-Clause (torchvision)"),
    "densenet121": ("DenseNet-121", "DenseNet-121 (Caffe2), ImageNet 1000 classes", "densenet-121", "densenet-", 12,
                    "logits", IMAGENET, "Measured with RGB ImageNet mean/std after a square 256x256 resize and "
                    "224 crop (INC), 60.96 % top-1, far below DenseNet-121's usual ~75 %: the true recipe of this "
                    "Caffe2 model is not established. Output is [1,1000,1,1] logits (no Softmax).",
                    "fc6", ["conv1", "conv1/*", "conv2_*", "conv3_*", "conv4_*"], "BSD-3-Clause (DenseNet), Apache-2.0"),
    "efficientnet-lite4": ("EfficientNet-Lite4", "EfficientNet-Lite4 (TensorFlow, tf2onnx), ImageNet 1000 classes",
                           "efficientnet-lite4", "efficientnet-lite4-", 11, "probabilities", LITE,
                           "README recipe: shorter side 256, centre crop 224, RGB, (x - 127) / 128. INC used "
                           "per-channel means instead. The input is NHWC [1,224,224,3]; weight names are not "
                           "verified (tf2onnx), so the head is the last layer.", "", [], "Apache-2.0 (TensorFlow TPU models)"),
}
for depth, v1, v2 in [(18, 15, 22), (34, 16, 23), (50, 17, 24), (101, 18, 25), (152, 19, 27)]:
    for ver, p in [("v1", v1), ("v2", v2)]:
        prefix = f"resnetv{p}"
        CARDS[f"resnet{depth}-{ver}"] = (
            "ResNet", f"ResNet-{depth} {ver} (MXNet Gluon), ImageNet 1000 classes", "resnet",
            f"resnet{depth}-{ver}-", 12 if (depth, ver) == (50, "v1") else 7, "logits", IMAGENET, IMAGENET_NOTE,
            f"{prefix}_dense0",
            [f"{prefix}_conv0", f"{prefix}_batchnorm0", f"{prefix}_stage1_*", f"{prefix}_stage2_*", f"{prefix}_stage3_*"],
            "Apache-2.0 (MXNet Gluon model zoo)")


def files(text):
    rows = {}
    for m in re.finditer(r"^\| `model/([^`]+)` \| (\d+) \| `([0-9a-f]{64})` \| (\d+) \| (.*?) \| (.*?) \|$", text, re.M):
        name, opset, sha, size, inp, out = m.groups()
        rows[name] = dict(opset=int(opset), sha=sha, size=int(size), input=inp, output=out)
    return rows


def io(cell):
    m = re.match(r"`([^`]+)` \[([^\]]*)\]", cell)
    return (m.group(1), [d.strip() for d in m.group(2).split(",")]) if m else None


def toml_value(v):
    if isinstance(v, str):
        return '"' + v.replace('\\', '\\\\').replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def source(folder, name, f):
    return (f'repo = "onnxmodelzoo/legacy_models"\nrevision = "main"\n'
            f'path = "{ROOT}{folder}/model/{name}"\nsha256 = "{f["sha"]}"\nsize = {f["size"]}\nopset = {f["opset"]}\n')


def card(name, spec, rows):
    family, title, folder, prefix, default_opset, kind, pre, note, head, freeze, licence = spec
    mine = {n: f for n, f in rows.items()
            if n.startswith(prefix) and re.fullmatch(re.escape(prefix) + r"\d+\.onnx", n)}
    default = next(n for n, f in mine.items() if f["opset"] == default_opset)
    variants = sorted((n for n, f in mine.items() if n != default and f["opset"] >= MIN_OPSET),
                      key=lambda n: mine[n]["opset"])
    old = sorted(f["opset"] for n, f in mine.items() if f["opset"] < MIN_OPSET)
    inp = io(mine[default]["input"]) or next(io(mine[v]["input"]) for v in variants if io(mine[v]["input"]))
    out = io(mine[default]["output"]) or next(io(mine[v]["output"]) for v in variants if io(mine[v]["output"]))
    shape = [1 if not d.isdigit() else int(d) for d in inp[1]]
    layout = "nhwc" if shape[3] == 3 and shape[1] != 3 else "nchw"
    lines = [f"# {title}. Generated by scripts/make-cards.py from shared/reference/model-zoo-cards.md.",
             "# " + note]
    if old:
        lines.append(f"# Opsets {', '.join(map(str, old))} are also published; zoo imports opset 7 and later.")
    lines += [f'name = "{name}"', f'family = "{family}"', f'title = "{title}"', 'task = "image-classification"',
              f'license = "{licence}, redistributed by the ONNX Model Zoo"', "", "[source]",
              source(folder, default, mine[default])]
    for v in variants:
        lines += ["[[variants]]", source(folder, v, mine[v])]
    lines += ["[input]", f'name = "{inp[0]}"', f"shape = {shape}"]
    if layout == "nhwc":
        lines.append('layout = "nhwc"')
    lines += ["", "[output]", f'name = "{out[0]}"', f'kind = "{kind}"', "", "[preprocessing]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in pre.items()]
    lines += ["", "[labels]", 'format = "synset"', f'hub_path = "{ROOT}synset.txt"',
              'url = "https://raw.githubusercontent.com/onnx/models/main/validated/vision/classification/synset.txt"',
              'sha256 = "acf75ef0abe89694b19056e0796401068b459c457baa30335f240c7692857355"', "size = 31675",
              "count = 1000", "", "[finetune]"]
    if not head:
        # Head initializer names unverified: the last layer is the head, everything else frozen.
        lines.append("# No verified head name: the head is the last layer, and every other layer is frozen.")
        freeze = ["*"]
    lines += [f"freeze = {toml_value(freeze)}", f'head = "{head}"']
    return "\n".join(lines) + "\n"


def main():
    rows = files(REF.read_text())
    out = Path("zoo")
    for name, spec in CARDS.items():
        (out / f"{name}.toml").write_text(card(name, spec, rows))
    write_embedded()
    print(f"wrote {len(CARDS)} cards")


def write_embedded():
    """crates/zoo-cards/src/embedded.rs: every card in zoo/ (this script's, the modern ones of
    scripts/make-modern-cards.py and lenet), compiled in."""
    names = sorted(p.stem for p in Path("zoo").glob("*.toml"))
    embedded = ["// Generated by scripts/make-cards.py: every card in zoo/, compiled in.",
                "pub(crate) const EMBEDDED: &[(&str, &str)] = &["]
    embedded += [f'    ("{n}", include_str!("../../../zoo/{n}.toml")),' for n in names]
    embedded.append("];")
    Path("crates/zoo-cards/src/embedded.rs").write_text("\n".join(embedded) + "\n")


if __name__ == "__main__":
    main()
