"""Kodak with real coding for training checkpoints (EMA and raw weights) and weights files: the quick
comparison behind the campaign's decisions (benchmarks/README.md, "Training campaign").

    python benchmarks/eval_checkpoint.py RUN/checkpoint.pt [weights.npz ...] [--qualities 10,50,90]
    python benchmarks/eval_checkpoint.py RUN/checkpoint.pt --ceiling [--limit 6]
    python benchmarks/eval_checkpoint.py CANDIDATE.npz --against msh64-r12

bpp from the bytes of the .vz data, PSNR-RGB from the decoded pixels, mean over the images.
``--against MODEL`` is the check before a weights file ships (README, "Training recipe"): every image at
qualities 0, 25, 50, 75, 90 and 100 (unless --qualities says otherwise) with the candidate and with a
shipped model; it prints both curves, the candidate's BD-rate and BD-PSNR against the shipped model, the
images whose PSNR falls as the quality rises (by more than 0.02 dB), and the latent values that had to be
clipped. Weights ship only with PSNR rising on every image and nothing clipped.

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

from vaezip.bench.bd import bd_quality, bd_rate
from vaezip.image import load
from vaezip.models import ModelConfig, build_model
from vaezip.training.data import image_files
from vaezip.training.checkpoint import load_checkpoint
from vaezip.training.validation import code_folder, folder_means
from vaezip.zoo.loader import freeze, load_file, load_model


def models_in(path: str) -> dict:
    """Coding models: a weights file as shipped, or a checkpoint's EMA and raw weights frozen now."""
    if path.endswith(".npz"):
        return {path: load_file(path)}
    ck = load_checkpoint(Path(path))
    out = {}
    for key in ("ema", "model"):
        net = build_model(ModelConfig.from_dict(ck["model_config"]))
        net.load_state_dict(ck[key])
        name = f"{path}:{key}@{ck['step']}"
        out[name] = freeze(net.eval(), name)
    return out


@torch.no_grad()
def ceiling(net, images) -> list[dict]:
    from vaezip.tensors import to_tensor

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


def points(means: dict, qualities: list[float]) -> list[dict]:
    """The mean curve (``folder_means`` of a ``code_folder`` result), rounded for printing."""
    return [{"quality": q, "bpp": round(means[f"q{q:g}"]["bpp"], 4), "psnr_rgb": round(means[f"q{q:g}"]["psnr_rgb"], 3)}
            for q in qualities]


def check(per: dict, reference: dict, qualities: list[float]) -> dict:
    """A candidate's per-image results against a reference's (both from ``code_folder``)."""
    keys = [f"q{q:g}" for q in qualities]
    means = folder_means(per)

    def curve(result_means: dict) -> tuple[np.ndarray, np.ndarray]:
        return (np.array([result_means[k]["bpp"] for k in keys]),
                np.array([result_means[k]["psnr_rgb"] for k in keys]))

    rate, psnr = curve(means)
    ref_rate, ref_psnr = curve(folder_means(reference))
    files = per[keys[0]]["files"]
    falling = [{"image": files[i], "from": qualities[j - 1], "to": qualities[j],
                "psnr": [round(per[keys[j - 1]]["psnr_rgb"][i], 3), round(per[keys[j]]["psnr_rgb"][i], 3)]}
               for i in range(len(files)) for j in range(1, len(keys))
               if per[keys[j]]["psnr_rgb"][i] < per[keys[j - 1]]["psnr_rgb"][i] - 0.02]
    return {"points": points(means, qualities),
            "bd_rate_vs_reference": round(bd_rate(ref_rate, ref_psnr, rate, psnr), 2),
            "bd_psnr_vs_reference": round(bd_quality(ref_rate, ref_psnr, rate, psnr), 3),
            "psnr_falling": falling, "clipped": sum(per[k]["clipped"] for k in keys)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--kodak", default=os.environ.get("VAEZIP_KODAK", "../shared/datasets/kodak"))
    ap.add_argument("--qualities", default=None, help="default 10,50,90; 0,25,50,75,90,100 with --against")
    ap.add_argument("--against", metavar="MODEL", help="per-image check against a shipped model")
    ap.add_argument("--ceiling", action="store_true")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = ap.parse_args()
    torch.set_num_threads(1)
    # Decoded up front only for --ceiling; real coding reads each image itself (code_folder).
    images = [load(f) for f in image_files(args.kodak)[: args.limit]] if args.ceiling else []
    default = "0,25,50,75,90,100" if args.against else "10,50,90"
    qualities = [float(q) for q in (args.qualities or default).split(",")]
    reference = None
    if args.against:
        reference = code_folder(load_model(args.against, "cpu"), args.kodak, qualities, args.limit)
        print(json.dumps({"model": args.against, **check(reference, reference, qualities)}), flush=True)
    for path in args.paths:
        for name, model in models_in(path).items():
            if args.ceiling:
                print(json.dumps({"model": name, "ceiling": ceiling(model.network, images)}), flush=True)
                continue
            # Real coding as in the training loop's validation: one implementation.
            per = code_folder(model, args.kodak, qualities, args.limit)
            if reference is not None:
                print(json.dumps({"model": name, **check(per, reference, qualities)}), flush=True)
                continue
            print(json.dumps({"model": name, "points": points(folder_means(per), qualities)}), flush=True)


if __name__ == "__main__":
    main()
