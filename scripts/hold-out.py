#!/usr/bin/env python3
"""A fixed validation set: copies class folders SRC/<class>/ into OUT/train/<class>/ and
OUT/val/<class>/, the first PER_CLASS files of each class (by name) into val/ (standard library
only). scripts/transfer-recipes.sh then validates every seed on the same images.
Usage: scripts/hold-out.py SRC OUT [PER_CLASS=20]"""
import os
import shutil
import sys


def main():
    src, out = sys.argv[1], sys.argv[2]
    per_class = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    for cls in sorted(os.listdir(src)):
        folder = os.path.join(src, cls)
        if not os.path.isdir(folder):
            continue
        files = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))
        for split, chosen in (("val", files[:per_class]), ("train", files[per_class:])):
            target = os.path.join(out, split, cls)
            os.makedirs(target, exist_ok=True)
            for name in chosen:
                shutil.copyfile(os.path.join(folder, name), os.path.join(target, name))
        print(f"{cls}: {len(files) - per_class} train, {min(per_class, len(files))} val")


if __name__ == "__main__":
    main()
