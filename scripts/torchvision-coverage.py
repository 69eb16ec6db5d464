#!/usr/bin/env python3
"""Exports torchvision's classification families with torch.onnx.export (TorchScript exporter)
at every opset from 9 to 17 and runs `zoo verify --engines tract` on each file: the import
coverage of issue #14, measured on the real architectures (random weights: the ops, shapes
and export patterns are what matter; numbers are compared at the logits).

    python3 scripts/torchvision-coverage.py [--zoo PATH] [--opsets 9-17] [--out DIR]

Prints one line per file and writes DIR/coverage.json. Needs torch and torchvision (a
benchmark/fixture-side dependency; zoo itself never uses them).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision.models as tvm

FAMILIES = {
    "resnet18": lambda: tvm.resnet18(),
    "vgg11_bn": lambda: tvm.vgg11_bn(),
    "alexnet": lambda: tvm.alexnet(),
    "squeezenet1_1": lambda: tvm.squeezenet1_1(),
    "densenet121": lambda: tvm.densenet121(),
    "googlenet": lambda: tvm.googlenet(aux_logits=False, init_weights=True),
    "inception_v3": lambda: tvm.inception_v3(aux_logits=False, init_weights=True, transform_input=True),
    "mobilenet_v2": lambda: tvm.mobilenet_v2(),
    "mobilenet_v3_small": lambda: tvm.mobilenet_v3_small(),
    "mnasnet0_5": lambda: tvm.mnasnet0_5(),
    "shufflenet_v2_x0_5": lambda: tvm.shufflenet_v2_x0_5(),
    "efficientnet_b0": lambda: tvm.efficientnet_b0(),
    "regnet_x_400mf": lambda: tvm.regnet_x_400mf(),
}


def realistic_weights(model):
    """He-initialised convs and linears and non-trivial batch-norm statistics, so that the
    logits are far from zero (some torchvision initialisers make them vanish) and the
    comparison means something."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(1 + torch.randn(m.num_features, generator=g) * 0.1)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/zoo-target")), "release", "zoo"))
    ap.add_argument("--opsets", default="9-17")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    lo, hi = (int(x) for x in a.opsets.split("-"))
    out = Path(a.out or tempfile.mkdtemp(prefix="zoo-torchvision-"))
    out.mkdir(parents=True, exist_ok=True)
    results = []
    torch.set_num_threads(2)
    for name in a.families.split(","):
        torch.manual_seed(0)
        model = FAMILIES[name]().eval()
        realistic_weights(model)
        size = 299 if name == "inception_v3" else 224
        x = torch.rand(1, 3, size, size)
        with torch.no_grad():
            scale = float(model(x).abs().max())
        for opset in range(lo, hi + 1):
            path = out / f"{name}-opset{opset}.onnx"
            row = {"model": name, "opset": opset, "max_abs_logit": round(scale, 3)}
            try:
                with torch.no_grad():
                    torch.onnx.export(model, x, str(path), opset_version=opset, dynamo=False,
                                      input_names=["input"], output_names=["output"],
                                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
            except Exception as e:  # the exporter itself refuses some opsets
                row.update(export_error=str(e).splitlines()[0][:200])
                results.append(row)
                print(f"{name:20} opset {opset:2}: torch cannot export: {row['export_error']}", flush=True)
                continue
            started = time.time()
            r = subprocess.run([a.zoo, "verify", str(path), "--engines", "tract", "--samples", "2",
                                "--batch", "2", "--json"], capture_output=True, text=True)
            row["seconds"] = round(time.time() - started, 1)
            row["exit"] = r.returncode
            if r.returncode in (0, 1) and r.stdout.strip():
                j = json.loads(r.stdout)
                row.update(passed=j["pass"], max_rel_diff=j["max_rel_diff"], top1=j["top1_agreement"])
                verdict = (f"{'pass' if j['pass'] else 'FAIL'} max_rel_diff {j['max_rel_diff']:.2e} "
                           f"top-1 {j['top1_agreement']} (logits up to {scale:.3g})")
            else:
                row.update(passed=False, error=r.stderr.strip().splitlines()[-1][:300] if r.stderr.strip() else "no output")
                verdict = "ERROR " + row["error"]
            results.append(row)
            print(f"{name:20} opset {opset:2}: {verdict} ({row['seconds']} s)", flush=True)
            path.unlink()
    (out / "coverage.json").write_text(json.dumps(results, indent=1))
    exported = [r for r in results if "export_error" not in r]
    passed = sum(1 for r in exported if r.get("passed"))
    print(f"{passed} passed, {len(exported) - passed} failed")
    return 0 if passed == len(exported) else 1


if __name__ == "__main__":
    sys.exit(main())
