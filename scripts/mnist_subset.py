#!/usr/bin/env python3
"""Writes a subset of an MNIST IDX set (images + labels, gzipped) with only some digits.

usage: mnist_subset.py SRC_DIR OUT_PREFIX DIGITS [PER_DIGIT]
  SRC_DIR     folder with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz
  OUT_PREFIX  writes OUT_PREFIX-images-idx3-ubyte.gz and OUT_PREFIX-labels-idx1-ubyte.gz
  DIGITS      e.g. 0-4 or 5,6,7,8,9
  PER_DIGIT   keep the first N of each digit, in file order (default: all)
"""
import gzip
import struct
import sys


def digits(spec):
    if "-" in spec:
        a, b = spec.split("-")
        return set(range(int(a), int(b) + 1))
    return {int(d) for d in spec.split(",")}


def main():
    src, prefix, spec = sys.argv[1:4]
    per_digit = int(sys.argv[4]) if len(sys.argv) > 4 else None
    wanted = digits(spec)
    with gzip.open(f"{src}/t10k-images-idx3-ubyte.gz") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051, "not an IDX images file"
        pixels = f.read(n * rows * cols)
    with gzip.open(f"{src}/t10k-labels-idx1-ubyte.gz") as f:
        magic, n_labels = struct.unpack(">II", f.read(8))
        assert magic == 2049 and n_labels == n, "labels do not match images"
        labels = f.read(n)
    taken = {d: 0 for d in wanted}
    keep = []
    for i, label in enumerate(labels):
        if label in wanted and (per_digit is None or taken[label] < per_digit):
            taken[label] += 1
            keep.append(i)
    size = rows * cols
    # mtime=0: the same input gives byte-identical files.
    with gzip.GzipFile(f"{prefix}-images-idx3-ubyte.gz", "wb", mtime=0) as f:
        f.write(struct.pack(">IIII", 2051, len(keep), rows, cols))
        for i in keep:
            f.write(pixels[i * size:(i + 1) * size])
    with gzip.GzipFile(f"{prefix}-labels-idx1-ubyte.gz", "wb", mtime=0) as f:
        f.write(struct.pack(">II", 2049, len(keep)))
        f.write(bytes(labels[i] for i in keep))
    print(f"{prefix}: {len(keep)} images, per digit {dict(sorted(taken.items()))}")


if __name__ == "__main__":
    main()
