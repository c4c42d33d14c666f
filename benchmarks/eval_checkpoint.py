"""Kodak with real coding for training checkpoints (EMA and raw weights) and weights files: the quick
comparison behind the campaign's decisions (benchmarks/README.md, "Training campaign").

    python benchmarks/eval_checkpoint.py RUN/checkpoint.pt [weights.npz ...] [--qualities 10,50,90]
    python benchmarks/eval_checkpoint.py RUN/checkpoint.pt --ceiling [--limit 6]

bpp from the bytes of the .vz data, PSNR-RGB from the decoded pixels, mean over the images.
``--ceiling`` instead asks what the transforms can do at all: PSNR with the latents rounded (as coded)
and with no quantization, at the lowest, middle and highest rate level.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from vaezip.image import load
from vaezip.models import ModelConfig, build_model
from vaezip.training.data import image_files
from vaezip.training.loop import load_checkpoint, validate
from vaezip.zoo import load_file


def networks_in(path: str) -> dict:
    if path.endswith(".npz"):
        return {path: load_file(path).network}
    ck = load_checkpoint(Path(path))
    out = {}
    for key in ("ema", "model"):
        net = build_model(ModelConfig.from_dict(ck["model_config"]))
        net.load_state_dict(ck[key])
        out[f"{path}:{key}@{ck['step']}"] = net.eval()
    return out


@torch.no_grad()
def ceiling(net, images) -> list[dict]:
    from vaezip.image import to_tensor

    out = []
    for level in (0.0, (net.config.levels - 1) / 2, float(net.config.levels - 1)):
        t = torch.tensor([level])
        rounded, continuous = [], []
        for img, _ in images:
            x = to_tensor(img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2))
            y, z = net.analyse(x, t)
            mean, _ = net.hyper_parameters(torch.round(z), t)
            for latents, acc in ((torch.round(y - mean) + mean, rounded), (y, continuous)):
                x_hat = net.synthesise(latents, t).clamp(0, 1).mul(255).round().div(255)
                acc.append(float(10 * torch.log10(1 / (x_hat - x).pow(2).mean())))
        out.append({"level": level, "psnr_rounded": round(float(np.mean(rounded)), 3),
                    "psnr_unquantized": round(float(np.mean(continuous)), 3)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--kodak", default=os.environ.get("VAEZIP_KODAK", "../shared/datasets/kodak"))
    ap.add_argument("--qualities", default="10,50,90")
    ap.add_argument("--ceiling", action="store_true")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = ap.parse_args()
    torch.set_num_threads(1)
    images = [load(f) for f in image_files(args.kodak)[: args.limit]]
    qualities = [float(q) for q in args.qualities.split(",")]
    for path in args.paths:
        for name, net in networks_in(path).items():
            if args.ceiling:
                print(json.dumps({"model": name, "ceiling": ceiling(net, images)}), flush=True)
                continue
            # The training loop's validation: the same real coding, one implementation.
            result = validate(net, args.kodak, qualities, max_images=len(images))
            points = [{"quality": q, "bpp": round(result[f"q{q:g}"]["bpp"], 4),
                       "psnr_rgb": round(result[f"q{q:g}"]["psnr_rgb"], 3)} for q in qualities]
            print(json.dumps({"model": name, "points": points}), flush=True)


if __name__ == "__main__":
    main()
