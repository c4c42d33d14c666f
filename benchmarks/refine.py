"""What encode-time refinement of the latents (vaezip/refine.py, ``vaezip compress --refine STEPS``) buys:
bpp from the file size and PSNR-RGB from the decoded file with and without it, the BD-rate between the
two curves, seconds per image and the process's peak memory.

    python benchmarks/refine.py [--images DIR] [--every K] [--steps 0,20] [--qualities 0,25,50,75,100]

DIR defaults to $VAEZIP_KODAK, else ../shared/datasets/kodak (every K-th image, sorted by name); pass
``--images ../shared/datasets/photos`` for the modern photographs. One thread, CPU. The step size and
schedule were chosen on training photos, never on Kodak or photos/.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
from pathlib import Path

import numpy as np
import torch

import vaezip
from vaezip.bench.bd import bd_quality, bd_rate
from vaezip.metrics import psnr
from vaezip.codec import decode_array, encode_array
from vaezip.image import load
from vaezip.refine import REFINE_LR


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default=os.environ.get("VAEZIP_KODAK", "../shared/datasets/kodak"))
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--model", default=vaezip.DEFAULT_MODEL)
    ap.add_argument("--steps", default="0,20")
    ap.add_argument("--qualities", default="0,25,50,75,100")
    ap.add_argument("--out", default="benchmarks/results/refine.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = vaezip.load_model(args.model, "cpu")
    folder = Path(args.images)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".ppm"))[::args.every]
    if not files:
        raise SystemExit(f"no images in {folder}; pass --images or set VAEZIP_KODAK")
    images = [(f.name, *load(f)) for f in files]
    steps_list = [int(s) for s in args.steps.split(",")]
    qualities = [float(q) for q in args.qualities.split(",")]
    curves = {}
    for steps in steps_list:
        points = []
        for q in qualities:
            bpp, quality, seconds = [], [], []
            for name, img, mode in images:
                res = encode_array(img, mode, q, model, refine=steps)
                dec, _ = decode_array(res.data, model)
                bpp.append(res.bpp)
                quality.append(psnr(img, dec))
                seconds.append(res.seconds)
            points.append({"quality": q, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(quality)),
                           "encode_s": float(np.mean(seconds))})
            print(f"steps {steps:3d} q {q:5.1f}: {points[-1]['bpp']:.4f} bpp {points[-1]['psnr']:.2f} dB "
                  f"{points[-1]['encode_s']:.1f} s/image", flush=True)
        curves[str(steps)] = {"points": points, "peak_rss_mb_after": round(peak_mb())}
    base = curves[str(steps_list[0])]["points"]
    for steps in steps_list[1:]:
        pts = curves[str(steps)]["points"]
        args_bd = ([p["bpp"] for p in base], [p["psnr"] for p in base],
                   [p["bpp"] for p in pts], [p["psnr"] for p in pts])
        rate, quality = bd_rate(*args_bd), bd_quality(*args_bd)
        curves[str(steps)].update(bd_rate_vs_first=rate, bd_psnr_vs_first=quality)
        print(f"steps {steps} against {steps_list[0]}: BD-rate {rate:+.2f} %, BD-PSNR {quality:+.3f} dB")
    out = {"model": model.name, "images": [n for n, *_ in images], "source": str(folder),
           "refine_lr": REFINE_LR, "threads": 1, "curves": curves}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
