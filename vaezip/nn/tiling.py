"""Running a convolutional transform over an image in overlapping tiles, so that memory stays bounded
whatever the image size.

A fully convolutional transform only looks at a finite neighbourhood (its receptive field), so running
it on a tile extended by a halo at least that wide and keeping the centre gives the same values as
running it on the whole image (up to floating-point summation order). The tile grid is aligned to the
transform's stride, so every tile sees the same sampling phase as the whole image.

Receptive radii of our transforms (5x5 kernels, four stride-2 layers; see transforms.py):

* g_a: 2 + 2·2 + 2·4 + 2·8 = 30 input pixels, so a halo of 32 pixels (two latent positions) is exact;
* g_s at inference (each stride-2 layer is a 3x3 convolution and a pixel shuffle): under two latent
  positions, so a halo of 4 latent positions is exact with a margin;
* each residual block (two 3x3 convolutions at 1/8 resolution) adds 16 pixels to g_a's radius and one
  latent position to g_s's.
"""
from __future__ import annotations

from typing import Callable

import torch


def run_tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, halo: int,
              up: int = 1, down: int = 1) -> torch.Tensor:
    """fn over x (B, C, H, W) in tiles of ``tile`` x ``tile`` input positions plus ``halo`` around them.

    fn changes the resolution by up/down (g_s: up=16; g_a: down=16); tile and halo must be multiples
    of ``down``. An image no larger than one tile is transformed in one piece, exactly as fn(x).
    """
    if tile % down or halo % down:
        raise ValueError("tile and halo must be multiples of the down-sampling factor")
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return fn(x)
    out = None
    for r0 in range(0, height, tile):
        for c0 in range(0, width, tile):
            r1, c1 = min(r0 + tile, height), min(c0 + tile, width)
            a0, b0 = max(0, r0 - halo), max(0, c0 - halo)
            a1, b1 = min(height, r1 + halo), min(width, c1 + halo)
            piece = fn(x[..., a0:a1, b0:b1])
            if out is None:
                out = piece.new_empty(*piece.shape[:2], height * up // down, width * up // down)
            out[..., r0 * up // down: r1 * up // down, c0 * up // down: c1 * up // down] = piece[
                ..., (r0 - a0) * up // down: (r1 - a0) * up // down, (c0 - b0) * up // down: (c1 - b0) * up // down]
    return out
