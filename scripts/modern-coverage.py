#!/usr/bin/env python3
"""The held-out check of issue #28, repeatable: exports today's classifiers (timm and
torchvision, full size, random weights) the ways users export them and runs
`zoo verify --engines tract,ort` on each file at batch 1 and 2.

Styles: `ts14`/`ts17` (TorchScript exporter, dynamic batch), `zoo17` (as the ONNX Model
Zoo's `Computer_Vision/` files: input `x`, batch fixed at 1, constant folding), `dynamo18`
(the default exporter, weights in `<file>.onnx.data` beside it, as it writes them) and
`dynamo23` (opset 23: attention as one `Attention` node, weights inside).

    python3 scripts/modern-coverage.py [--zoo PATH] [--models a,b] [--styles ts14,zoo17] [--out DIR]

Prints one line per file and writes DIR/coverage.json. Needs torch, torchvision, timm,
onnx, onnxscript (benchmark side only) and, for `--engines ort`, ORT_DYLIB_PATH.
"""
import argparse
import json
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import timm
import torch
import torchvision.models as tvm

MODELS = {
    "vit_b_16": lambda: tvm.vit_b_16(),
    "vit_tiny_patch16_224": lambda: timm.create_model("vit_tiny_patch16_224"),
    "deit_tiny_distilled_patch16_224": lambda: timm.create_model("deit_tiny_distilled_patch16_224"),
    "convnext_atto": lambda: timm.create_model("convnext_atto"),
    "swin_t": lambda: tvm.swin_t(),
    "maxvit_nano_rw_256": lambda: timm.create_model("maxvit_nano_rw_256"),
    "efficientformer_l1": lambda: timm.create_model("efficientformer_l1"),
    "efficientformerv2_s0": lambda: timm.create_model("efficientformerv2_s0"),
    "fastvit_t8": lambda: timm.create_model("fastvit_t8"),
    "levit_128s": lambda: timm.create_model("levit_128s"),
    "mobilevit_xxs": lambda: timm.create_model("mobilevit_xxs"),
    "mobilevitv2_050": lambda: timm.create_model("mobilevitv2_050"),
    "tf_efficientnet_b0": lambda: timm.create_model("tf_efficientnet_b0"),
    "tf_efficientnetv2_b0": lambda: timm.create_model("tf_efficientnetv2_b0"),
}
SIZES = {"maxvit_nano_rw_256": 256}


def randomize(model):
    """Weights that make every parameter matter (timm starts some at zero)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().max() < 1e-2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def export(model, size, path, style):
    """The fixture script's exporter styles; `dynamo18` as that exporter writes it by default,
    weights in `<file>.onnx.data` beside the file."""
    fixtures = _fixture_script()
    fixtures.export(model, size, path, "dynamo18x" if style == "dynamo18" else style)


def _fixture_script():
    import importlib.util
    path = Path(__file__).resolve().parent / "make-modern-fixtures.py"
    spec = importlib.util.spec_from_file_location("make_modern_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def verify(zoo, path, batch):
    cmd = [zoo, "verify", str(path), "--engines", "tract,ort", "--batch", str(batch),
           "--samples", "4", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        return {"pass": False, "error": (p.stderr or p.stdout).strip().splitlines()[-1][:300]}
    report = json.loads(p.stdout)
    return {"pass": report.get("pass", False), "max_rel_diff": report.get("max_rel_diff")}


def main():
    warnings.filterwarnings("ignore")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/zoo-target"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default=os.path.join(target, "release", "zoo"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--styles", default="ts14,ts17,zoo17,dynamo18,dynamo23")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix="zoo-modern-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    results = []
    for name in a.models.split(","):
        torch.manual_seed(0)
        model = MODELS[name]().eval()
        randomize(model)
        for style in a.styles.split(","):
            path = out / f"{name}-{style}.onnx"
            row = {"model": name, "style": style}
            try:
                export(model, SIZES.get(name, 224), str(path), style)
            except Exception as e:  # the exporter itself fails: not zoo's to judge
                row["export_error"] = str(e).splitlines()[0][:200]
                print(f"{path.name}: export failed: {row['export_error']}", flush=True)
                results.append(row)
                continue
            start = time.time()
            row["batch1"] = verify(a.zoo, path, 1)
            row["batch2"] = verify(a.zoo, path, 2)
            row["seconds"] = round(time.time() - start, 1)
            ok = row["batch1"]["pass"] and row["batch2"]["pass"]
            detail = row["batch2"].get("max_rel_diff") if ok else (row["batch1"].get("error") or row["batch2"].get("error"))
            print(f"{path.name}: {'pass' if ok else 'FAIL'} {detail}", flush=True)
            results.append(row)
    (out / "coverage.json").write_text(json.dumps(results, indent=1) + "\n")
    passed = sum(1 for r in results if r.get("batch1", {}).get("pass") and r.get("batch2", {}).get("pass"))
    print(f"{passed} of {len(results)} files pass at batch 1 and 2; details in {out / 'coverage.json'}")


if __name__ == "__main__":
    main()
