"""Bytes per section of .vz files on Kodak (z, y and, for checkerboard models, y2): where the rate goes,
and how much a context model saves on the non-anchors (y2) against the anchors (y).

    python benchmarks/sections.py WEIGHTS.npz|MODEL [...] [--kodak DIR] [--qualities 0,50,100] [--every 1]
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from vaezip import format as vzformat
from vaezip.zoo import loader
from vaezip.codec import encode_array
from vaezip.format.container import SECTION_NAMES
from vaezip.image import load
from vaezip.training.data import image_files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--kodak", default=os.environ.get("VAEZIP_KODAK", "../shared/datasets/kodak"))
    ap.add_argument("--qualities", default="0,50,100")
    ap.add_argument("--every", type=int, default=1, help="use every k-th image")
    args = ap.parse_args()
    torch.set_num_threads(1)
    images = [load(f) for f in image_files(args.kodak)[:: args.every]]
    for name in args.models:
        model = loader.load_model(name, "cpu")
        for q in (float(v) for v in args.qualities.split(",")):
            totals: dict[str, float] = {}
            for img, mode in images:
                data = encode_array(img, mode, q, model).data
                header, sections = vzformat.parse(data)
                for kind, payload in sections.items():
                    totals[SECTION_NAMES[kind]] = totals.get(SECTION_NAMES[kind], 0) + len(payload)
                totals["file"] = totals.get("file", 0) + len(data)
            print(json.dumps({"model": name, "quality": q,
                              "mean_bytes": {k: round(v / len(images)) for k, v in totals.items()}}), flush=True)


if __name__ == "__main__":
    main()
