#!/usr/bin/env python3
"""Reads a zoo run's TensorBoard file with TensorBoard's own reader (PyPI `tensorboard`) and
checks it holds metrics.csv's values: every iteration's train loss and accuracy, every
validation's loss, accuracy and learning rate, each step once, plus a positive images/s.

    python3 scripts/check-tensorboard.py RUN_DIR     (in a venv with `pip install tensorboard`)

Without the package it reads the file with its own TFRecord/protobuf reader (CRC-32C checked,
wire format decoded by hand, independent of zoo's Rust encoder) and says so.
Exit 0 when everything matches, 1 with the differences listed otherwise."""
import collections
import csv
import os
import struct
import sys
from pathlib import Path

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    READER = "TensorBoard's EventAccumulator"
except ImportError:  # offline machines: the TFRecord and protobuf specs, read by hand below
    EventAccumulator = None
    READER = "this script's own reader (tensorboard is not installed)"

COLUMNS = {  # metrics.csv column -> (tag, decimals written in the CSV)
    "train_loss": ("train/loss", 6),
    "train_accuracy": ("train/accuracy", 4),
    "val_loss": ("val/loss", 6),
    "val_accuracy": ("val/accuracy", 4),
    "lr": ("lr", 9),
}


# The stand-in reader: only what main() uses of EventAccumulator.

ScalarEvent = collections.namedtuple("ScalarEvent", "wall_time step value")

def _crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def _masked(data):
    c = _crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF

def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]; i += 1
        value |= (b & 0x7F) << shift; shift += 7
        if not b & 0x80:
            return value, i

def _fields(buf):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(buf, i)
        elif wire == 1:
            v = buf[i:i + 8]; i += 8
        elif wire == 5:
            v = buf[i:i + 4]; i += 4
        elif wire == 2:
            n, i = _varint(buf, i); v = buf[i:i + n]; i += n
        else:
            raise ValueError(f"wire type {wire}")
        yield field, wire, v

class OwnReader:
    def __init__(self, path, size_guidance=None):
        self.path = path
        self.scalars = collections.defaultdict(list)

    def Reload(self):
        for name in sorted(os.listdir(self.path)):
            if "tfevents" not in name:
                continue
            data = open(os.path.join(self.path, name), "rb").read()
            i = 0
            while i < len(data):
                header = data[i:i + 8]
                (length,) = struct.unpack("<Q", header)
                assert struct.unpack("<I", data[i + 8:i + 12])[0] == _masked(header), "length crc"
                record = data[i + 12:i + 12 + length]
                assert struct.unpack("<I", data[i + 12 + length:i + 16 + length])[0] == _masked(record), "data crc"
                i += 16 + length
                wall, step, summary = 0.0, 0, None
                for field, wire, v in _fields(record):
                    if field == 1: wall = struct.unpack("<d", v)[0]
                    elif field == 2: step = v
                    elif field == 5: summary = v
                if summary is None:
                    continue
                for field, wire, value in _fields(summary):
                    tag, simple = None, None
                    for f, w, x in _fields(value):
                        if f == 1: tag = x.decode()
                        elif f == 2: simple = struct.unpack("<f", x)[0]
                    self.scalars[tag].append(ScalarEvent(wall, step, simple))
        return self

    def Tags(self):
        return {"scalars": list(self.scalars)}

    def Scalars(self, tag):
        return self.scalars[tag]


def main(run: Path) -> int:
    events = (EventAccumulator or OwnReader)(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    logged = {}
    for tag in tags:
        for e in events.Scalars(tag):
            logged.setdefault((tag, e.step), []).append(e.value)
    problems = []
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    for row in rows:
        step = int(row["iteration"])
        for column, (tag, decimals) in COLUMNS.items():
            values = logged.get((tag, step), [])
            if row[column] == "":
                if values:
                    problems.append(f"step {step}: {tag} logged without a validation")
                continue
            expected = float(row[column])
            if len(values) != 1:
                problems.append(f"step {step}: {tag} logged {len(values)} times")
            elif abs(values[0] - expected) > 0.5 * 10**-decimals + 1e-6 * abs(expected):
                problems.append(f"step {step}: {tag} {values[0]} vs {expected}")
        rate = logged.get(("train/images_per_second", step), [])
        if len(rate) != 1 or not rate[0] > 0:
            problems.append(f"step {step}: images/s {rate}")
    steps = {step for (_, step) in logged}
    if len(steps) != len(rows):
        problems.append(f"{len(steps)} steps logged, {len(rows)} rows in metrics.csv")
    for p in problems:
        print(p)
    print(f"read with {READER}")
    print(f"{run}: {len(rows)} steps, tags {sorted(tags)}: "
          + ("match metrics.csv" if not problems else f"{len(problems)} differences"))
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
