#!/usr/bin/env python3
"""The ONNX Runtime side of the `zoo evaluate` benchmark: the same work as `zoo evaluate`
(decode every photo of a class-folder dataset, preprocess it with the run's recipe, forward in
batches of 32, count top-1 hits), as a user would write it in Python with PIL, NumPy and the
PyPI onnxruntime wheel. Prints one JSON line with the wall time and the accuracy."""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image


def main(model, data, config):
    started = time.perf_counter()
    p = json.load(open(config))["profile"]["preprocessing"]
    h, w = p["size"]
    mean = np.array(p["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.array(p["std"], dtype=np.float32).reshape(-1, 1, 1)
    session = ort.InferenceSession(model)
    name = session.get_inputs()[0].name
    classes = sorted(d for d in os.listdir(data) if os.path.isdir(os.path.join(data, d)))
    files = [(os.path.join(data, c, f), k) for k, c in enumerate(classes)
             for f in sorted(os.listdir(os.path.join(data, c)))]
    correct = 0
    for start in range(0, len(files), 32):
        chunk = files[start:start + 32]
        batch = []
        for path, _ in chunk:
            img = Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR)
            x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1)
            if p["color"] == "bgr":
                x = x[::-1]
            batch.append((x * p["scale"] - mean) / std)
        out = session.run(None, {name: np.stack(batch)})[0].reshape(len(chunk), -1)
        correct += int((out.argmax(1) == np.array([k for _, k in chunk])).sum())
    print(json.dumps({"seconds": time.perf_counter() - started, "samples": len(files),
                      "accuracy": correct / len(files)}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
