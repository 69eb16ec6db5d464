#!/usr/bin/env python3
"""The first PER_CLASS digits of each class of the MNIST test set as PNG class folders (standard
library only): a ten-class image folder for the dead-class check (scripts/dead-classes.sh).
Usage: scripts/mnist-folders.py OUT [PER_CLASS=96] [SHARED=../shared]"""
import gzip
import os
import struct
import sys
import zlib


def png(path, pixels, width, height):
    raw = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    out = sys.argv[1]
    per_class = int(sys.argv[2]) if len(sys.argv) > 2 else 96
    shared = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(__file__), "../../shared")
    mnist = os.path.join(shared, "data/mnist")
    images = gzip.open(os.path.join(mnist, "t10k-images-idx3-ubyte.gz")).read()
    labels = gzip.open(os.path.join(mnist, "t10k-labels-idx1-ubyte.gz")).read()[8:]
    count, height, width = struct.unpack(">III", images[4:16])
    size = height * width
    written = [0] * 10
    for i in range(count):
        label = labels[i]
        if written[label] >= per_class:
            continue
        folder = os.path.join(out, str(label))
        os.makedirs(folder, exist_ok=True)
        png(os.path.join(folder, f"{i:05d}.png"), images[16 + i * size:16 + (i + 1) * size], width, height)
        written[label] += 1
        if min(written) >= per_class:
            break
    print(f"{sum(written)} digits in {out} ({per_class} per class)")


if __name__ == "__main__":
    main()
