"""How much could a checkerboard context save at most on a model's latents? For the non-anchor latents,
fit (least squares, per channel, in-sample) a linear prediction of y' - mean from the four decoded anchor
neighbours, and compare the Gaussian bits of the residual under the hyperprior's scales with and without
it. Training photos only (never Kodak): an upper bound for what the mean part of a context can learn.

    python benchmarks/context_potential.py CHECKPOINT.pt|WEIGHTS.npz [--data DIR] [--images 20] [--slices K]

With ``--slices K`` the same bound for a channel-wise context instead (Minnen & Singh 2020, "Channel-wise
autoregressive entropy models for learned image compression"): y's channels in K slices of consecutive
indices, each latent predicted from the decoded latents of the earlier slices at its own position.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from vaezip.entropy.priors import gaussian_likelihood
from vaezip.image import load
from vaezip.tensors import to_tensor
from vaezip.models import ModelConfig, build_model
from vaezip.models.checkerboard import anchor_mask
from vaezip.training.data import image_files
from vaezip.training.checkpoint import load_checkpoint
from vaezip.zoo.loader import load_file

NEIGHBOURS = ((0, 1), (1, 0), (0, -1), (-1, 0))


def network(path: str):
    if path.endswith(".npz"):
        return load_file(path).network
    ck = load_checkpoint(path)
    net = build_model(ModelConfig.from_dict(ck["model_config"]))
    net.load_state_dict(ck["ema"])
    return net.eval()


def training_photos(data: str, count: int) -> list:
    """Every other one of the first 2 * ``count`` images of ``data``, as RGB arrays."""
    images = [load(f)[0] for f in image_files(data)[: 2 * count : 2]]
    return [i if i.ndim == 3 else i[..., None].repeat(3, axis=2) for i in images]


def coded_latents(net, img, level: float):
    """(y', mean, scale) of a photo cropped to a multiple of 64: the latents and the hyperprior's
    parameters for them, as the coder sees them at ``level``."""
    h, w = (img.shape[0] // 64) * 64, (img.shape[1] // 64) * 64
    t = torch.tensor([level])
    y, z = net.analyse(to_tensor(img)[..., :h, :w], t)
    mean, scale = net.hyper_parameters(torch.round(z), t)
    return y, mean, scale


@torch.no_grad()
def potential(net, images, level: float) -> dict:
    feats, targets, scales = [], [], []
    for img in images:
        y, mean, scale = coded_latents(net, img, level)
        anchor = anchor_mask(*y.shape[2:])
        decoded = torch.where(anchor, torch.round(y - mean), torch.zeros_like(y))
        sel = (~anchor).expand_as(y)
        c = y.shape[1]
        feats.append(torch.stack([torch.roll(decoded, s, dims=(2, 3))[sel].view(c, -1) for s in NEIGHBOURS], -1))
        targets.append((y - mean)[sel].view(c, -1))
        scales.append(scale[sel].view(c, -1))
    f, target, s = torch.cat(feats, 1).double(), torch.cat(targets, 1).double(), torch.cat(scales, 1)
    a = torch.cat([f, torch.ones_like(f[..., :1])], -1)
    pred = (a @ torch.linalg.lstsq(a, target.unsqueeze(-1)).solution).squeeze(-1)
    before = float(-gaussian_likelihood(target.float(), s).log2().sum())
    after = float(-gaussian_likelihood((target - pred).float(), s).log2().sum())
    return {"level": level, "non_anchor_bits": round(before), "with_linear_mean": round(after),
            "saving_pct": round(100 * (1 - after / before), 2)}


@torch.no_grad()
def channel_potential(net, images, level: float, slices: int) -> dict:
    """The bound of ``potential`` for a channel-wise context: the mean of every latent in slice k fitted
    from the decoded residuals of slices 0..k-1 at the same position (slice 0 has nothing to go on)."""
    targets, decoded, scales = [], [], []
    for img in images:
        y, mean, scale = coded_latents(net, img, level)
        c = y.shape[1]
        targets.append((y - mean).reshape(c, -1))
        decoded.append(torch.round(y - mean).reshape(c, -1))
        scales.append(scale.reshape(c, -1))
    target, dec, s = torch.cat(targets, 1).double(), torch.cat(decoded, 1).double(), torch.cat(scales, 1)
    bounds = torch.linspace(0, target.shape[0], slices + 1).round().long().tolist()
    pred = torch.zeros_like(target)
    for k in range(1, slices):
        a = torch.cat([dec[: bounds[k]].T, torch.ones_like(dec[:1].T)], 1)  # positions x (earlier channels + 1)
        rows = target[bounds[k]: bounds[k + 1]].T
        pred[bounds[k]: bounds[k + 1]] = (a @ torch.linalg.lstsq(a, rows).solution).T
    before = float(-gaussian_likelihood(target.float(), s).log2().sum())
    after = float(-gaussian_likelihood((target - pred).float(), s).log2().sum())
    return {"level": level, "slices": slices, "y_bits": round(before), "with_linear_mean": round(after),
            "saving_pct": round(100 * (1 - after / before), 2)}


def per_level_main(measure, add_arguments=None) -> None:
    """The command line shared with channels.py: a model, training photos, and one JSON line of
    ``measure(net, images, level, args)`` at the lowest, middle and highest rate level."""
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--data", default=os.environ.get("VAEZIP_TRAIN", "../shared/datasets/train"))
    ap.add_argument("--images", type=int, default=20)
    if add_arguments:
        add_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    net = network(args.path)
    images = training_photos(args.data, args.images)
    for level in (0.0, (net.config.levels - 1) / 2, float(net.config.levels - 1)):
        print(json.dumps(measure(net, images, level, args)), flush=True)


def main() -> None:
    per_level_main(lambda net, images, level, args: channel_potential(net, images, level, args.slices)
                   if args.slices else potential(net, images, level),
                   lambda ap: ap.add_argument("--slices", type=int, default=0,
                                              help="a channel-wise context of this many slices"))


if __name__ == "__main__":
    main()
