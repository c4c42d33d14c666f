"""How many latent channels does a model use? The share of y's bits (rounded latents, Gaussian bits under the
hyperprior) that each channel carries, at the lowest, middle and highest rate level, on training photos
(never Kodak). A channel under 0.1 % of the bits carries (almost) nothing: its filters and its slot in the
prior are spent for no information (the posterior collapse of VAEs).

    python benchmarks/channels.py CHECKPOINT.pt|WEIGHTS.npz [--data DIR] [--images 20]

The M=192 model grown from M=96 used about 100 channels at every level; see benchmarks/README.md.
"""
from __future__ import annotations

import torch
from context_potential import coded_latents, per_level_main  # the script's folder is on sys.path

from vaezip.entropy.priors import gaussian_likelihood

DEAD_SHARE = 1e-3


@torch.no_grad()
def usage(net, images, level: float) -> dict:
    bits = torch.zeros(net.config.m, dtype=torch.float64)
    pixels = 0
    for img in images:
        y, mean, scale = coded_latents(net, img, level)
        bits += -gaussian_likelihood(torch.round(y - mean), scale).log2().sum(dim=(0, 2, 3)).double()
        pixels += y.shape[2] * y.shape[3] * 256  # 16x16 pixels per latent position
    share = bits / bits.sum()
    ordered = share.sort(descending=True).values.cumsum(0)
    dead = [int(c) for c in (share < DEAD_SHARE).nonzero().flatten()]
    return {"level": level, "y_bpp": round(float(bits.sum()) / pixels, 4),
            "channels_for_90pct": int((ordered < 0.9).sum()) + 1,
            "channels_for_99pct": int((ordered < 0.99).sum()) + 1,
            "dead_count": len(dead), "dead": dead}


def main() -> None:
    per_level_main(lambda net, images, level, _: usage(net, images, level))


if __name__ == "__main__":
    main()
