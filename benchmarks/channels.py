"""How many latent channels does a model use? The share of y's bits (rounded latents, Gaussian bits under the
hyperprior) that each channel carries, at the lowest, middle and highest rate level, on training photos
(never Kodak). A channel under 0.1 % of the bits carries (almost) nothing: its filters and its slot in the
prior are spent for no information (the posterior collapse of VAEs).

    python benchmarks/channels.py CHECKPOINT.pt|WEIGHTS.npz [--data DIR] [--images 20]

The M=192 model grown from M=96 used about 100 channels at every level; see benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from context_potential import network  # the script's folder is on sys.path
from vaezip.entropy.priors import gaussian_likelihood
from vaezip.image import load, to_tensor
from vaezip.training.data import image_files

DEAD_SHARE = 1e-3


@torch.no_grad()
def usage(net, images, level: float) -> dict:
    bits = torch.zeros(net.config.m, dtype=torch.float64)
    pixels = 0
    for img in images:
        h, w = (img.shape[0] // 64) * 64, (img.shape[1] // 64) * 64
        t = torch.tensor([level])
        y, z = net.analyse(to_tensor(img)[..., :h, :w], t)
        mean, scale = net.hyper_parameters(torch.round(z), t)
        bits += -gaussian_likelihood(torch.round(y - mean), scale).log2().sum(dim=(0, 2, 3)).double()
        pixels += h * w
    share = bits / bits.sum()
    ordered = share.sort(descending=True).values.cumsum(0)
    return {"level": level, "y_bpp": round(float(bits.sum()) / pixels, 4),
            "channels_for_90pct": int((ordered < 0.9).sum()) + 1,
            "channels_for_99pct": int((ordered < 0.99).sum()) + 1,
            "dead": [int(c) for c in (share < DEAD_SHARE).nonzero().flatten()]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--data", default=os.environ.get("VAEZIP_TRAIN", "../shared/datasets/train"))
    ap.add_argument("--images", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    net = network(args.path)
    images = [load(f)[0] for f in image_files(args.data)[: 2 * args.images : 2]]
    images = [i if i.ndim == 3 else i[..., None].repeat(3, axis=2) for i in images]
    for level in (0.0, (net.config.levels - 1) / 2, float(net.config.levels - 1)):
        r = usage(net, images, level)
        print(json.dumps({**r, "dead_count": len(r["dead"])}), flush=True)


if __name__ == "__main__":
    main()
