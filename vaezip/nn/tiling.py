"""Running a convolutional transform over an image in overlapping tiles: bounded memory whatever the image
size, all cores busy, and the same result on any number of them.

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

Determinism. The grid depends on the image's size only (``tile_grid``), never on the number of workers, and
every tile is computed by one thread (torch's intra-op threads are set to 1 while tiles run; the workers
are threads, and torch releases the GIL inside its operators). A tile's floats therefore come out the same
whichever worker computes it and however many there are: one input gives one file, one file one picture.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import torch

#: Images with fewer tiles than this along their longer side are split further (down to MIN_TILE_FRACTION
#: of the maximum tile), so that even a small image keeps two cores busy.
MIN_TILES = 2
MIN_TILE_FRACTION = 4


@dataclass(frozen=True)
class Tile:
    """Rows [r0, r1) and columns [c0, c1) of the input that this tile produces the output of, and the
    region [a0, a1) x [b0, b1) it reads (those plus the halo, clipped to the input)."""

    r0: int
    r1: int
    c0: int
    c1: int
    a0: int
    a1: int
    b0: int
    b1: int


def _cuts(length: int, pieces: int, align: int) -> list[int]:
    """Boundaries of ``pieces`` equal, aligned pieces (the last may be shorter)."""
    size = -(-length // pieces)
    size = -(-size // align) * align
    return list(range(0, length, size)) + [length]


def tile_grid(height: int, width: int, tile: int, halo: int, align: int = 1) -> list[Tile]:
    """The tiles of an input of height x width: as few as tiles of at most ``tile`` allow, in equal aligned
    sizes; the longer side is cut into at least MIN_TILES where that keeps tiles of tile / MIN_TILE_FRACTION.
    A function of the size only."""
    if tile % align or halo % align:
        raise ValueError("tile and halo must be multiples of the alignment")
    pieces = [max(1, -(-height // tile)), max(1, -(-width // tile))]
    longer = int(width > height)
    if max(pieces) < MIN_TILES and (height, width)[longer] >= MIN_TILES * tile // MIN_TILE_FRACTION:
        pieces[longer] = MIN_TILES
    rows, cols = _cuts(height, pieces[0], align), _cuts(width, pieces[1], align)
    return [Tile(r0, r1, c0, c1, max(0, r0 - halo), min(height, r1 + halo), max(0, c0 - halo), min(width, c1 + halo))
            for r0, r1 in zip(rows, rows[1:]) for c0, c1 in zip(cols, cols[1:])]


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def single_threaded_ops():
    """torch operators on one thread each (the tiles are the parallelism); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_tiles(fn: Callable[[torch.Tensor], torch.Tensor], tiles: list[Tile], read: Callable[[Tile], torch.Tensor],
              write: Callable[[Tile, torch.Tensor], None], scale: float, workers: int = 1) -> None:
    """For every tile, ``write(tile, centre)`` where centre is the part of ``fn(read(tile))`` that the tile
    owns; fn changes the resolution by ``scale`` (g_a: 1/16, g_s: 16). Up to ``workers`` tiles at a time."""
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()  # thread-local: pass them on

    def one(tile: Tile) -> None:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            piece = fn(read(tile))
            top, left = round((tile.r0 - tile.a0) * scale), round((tile.c0 - tile.b0) * scale)
            rows, cols = round((tile.r1 - tile.r0) * scale), round((tile.c1 - tile.c0) * scale)
            write(tile, piece[..., top:top + rows, left:left + cols])

    with single_threaded_ops():
        if workers <= 1 or len(tiles) == 1:
            for tile in tiles:
                one(tile)
            return
        with ThreadPoolExecutor(max_workers=min(workers, len(tiles))) as pool:
            for future in [pool.submit(one, tile) for tile in tiles]:
                future.result()


def run_tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, halo: int,
              up: int = 1, down: int = 1, workers: int = 1) -> torch.Tensor:
    """fn over a tensor x (B, C, H, W) in tiles of at most ``tile`` input positions plus ``halo`` around them,
    into a new tensor. fn changes the resolution by up/down (g_s: up=16; g_a: down=16); tile and halo must be
    multiples of ``down``."""
    height, width = x.shape[-2:]
    out = []

    def write(t: Tile, piece: torch.Tensor) -> None:
        if not out:
            out.append(piece.new_empty(*piece.shape[:2], height * up // down, width * up // down))
        out[0][..., t.r0 * up // down: t.r1 * up // down, t.c0 * up // down: t.c1 * up // down] = piece

    tiles = tile_grid(height, width, tile, halo, down)
    read = lambda t: x[..., t.a0:t.a1, t.b0:t.b1]  # noqa: E731
    run_tiles(fn, tiles[:1], read, write, up / down)  # allocates the output before the threads write into it
    run_tiles(fn, tiles[1:], read, write, up / down, workers)
    return out[0]
