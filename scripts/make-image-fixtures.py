#!/usr/bin/env python3
"""Writes the small image fixtures in tests/fixtures/images/ (committed; rerun to regenerate).

Needs Pillow (`pip install pillow`). Each file exercises one decoding path:
progressive and CMYK JPEG, EXIF orientation, 16-bit and RGBA PNG, GIF, BMP, WebP, TIFF,
plus broken files that must be skipped and reported by name.
"""
import os
import struct
import zlib
from PIL import Image

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "images")
os.makedirs(out, exist_ok=True)


def gradient(w, h):
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 255) // max(w - 1, 1), (y * 255) // max(h - 1, 1), 90) for y in range(h) for x in range(w)])
    return img


base = gradient(24, 16)
base.save(os.path.join(out, "progressive.jpg"), "JPEG", quality=90, progressive=True)
base.convert("CMYK").save(os.path.join(out, "cmyk.jpg"), "JPEG", quality=90)
base.save(os.path.join(out, "plain.jpeg"), "JPEG", quality=90)
# A 24x16 landscape image stored with EXIF orientation 6 (rotate 90 CW to display): upright it is 16x24.
exif = Image.Exif()
exif[0x0112] = 6
base.save(os.path.join(out, "exif-rotated.jpg"), "JPEG", quality=90, exif=exif.tobytes())
base.convert("RGBA").save(os.path.join(out, "rgba.png"))
base.convert("P").save(os.path.join(out, "palette.gif"))
base.save(os.path.join(out, "image.bmp"))
base.save(os.path.join(out, "image.webp"), lossless=True)
base.save(os.path.join(out, "image.tiff"))
base.convert("L").save(os.path.join(out, "gray.png"))


def png16(path, w, h):
    """A 16-bit grayscale PNG, written with zlib so the bit depth is exact."""
    raw = b"".join(b"\x00" + b"".join(struct.pack(">H", (x * 65535) // (w - 1)) for x in range(w)) for _ in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw)))
        f.write(chunk(b"IEND", b""))


png16(os.path.join(out, "sixteen-bit.png"), 20, 12)
with open(os.path.join(out, "plain.jpeg"), "rb") as f:
    jpeg = f.read()
with open(os.path.join(out, "corrupt.jpg"), "wb") as f:
    f.write(jpeg[: len(jpeg) // 3])
with open(os.path.join(out, "text.jpg"), "w") as f:
    f.write("this is a text file with a .jpg name\n")
print("wrote", sorted(os.listdir(out)))
