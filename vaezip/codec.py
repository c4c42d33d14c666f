"""Orchestration without file I/O: image array -> latents -> sections -> .vz bytes, and back.

::

    compress:   x -g_a,h_a-> (y', z') ; z_sym = round(z') -coder(z tables)-> section z
                z_sym -exact integer h_s-> (mean, scale) ; idx = scale index ; r = round(y' - mean)
                r -coder(y tables[idx])-> section y ; header + sections -format-> .vz
    decompress: the header names the model; section z -> z_sym -h_s-> (mean, idx) ; section y -> r
                y_hat' = r + mean -g_s-> x_hat, cropped to the stored size

With a checkerboard context model (models/checkerboard.py), y is coded in two passes: the anchors
(section y) with parameters from h_s alone, then the non-anchors (section y2) with parameters that also
depend on the decoded anchors. Both passes use the exact integer networks, so encoder and decoder agree.
"""
from __future__ import annotations

import contextlib
import time
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from . import format as vzformat
from . import image as vzimage
from . import tensors
from .entropy.parameters import ACT_BITS, quantized_gain, scale_index_exact
from .errors import DecodeMismatchError, FormatError, ImageError, ModelError
from .format.container import DEFAULT_QUALITY, SECTION_NAMES, SECTION_Y, SECTION_Y2, SECTION_Z
from .models.checkerboard import anchor_mask
from .models.hyperprior import STRIDE_Z
from .nn.tiling import Tile, default_workers, run_tiles, single_threaded_ops, tile_grid
from .refine import refine_latents, refine_max_pixels
from .zoo import DEFAULT_MODEL
from .zoo.loader import LoadedModel, load_model

#: The largest tiles the transforms run in (pixels for g_a, latent positions for g_s): memory stays at a few
#: hundred MB per worker whatever the image size; the grid depends on the image size only (nn/tiling.py).
ENCODE_TILE = 1024
DECODE_TILE = 64


@dataclass
class EncodeResult:
    data: bytes
    width: int
    height: int
    estimated_bits: float  # -log2 P(symbols) under the frozen tables, z and y together
    seconds: float
    #: Latent values that the model's coder cannot represent (beyond the range of their tables for a model
    #: without escape coding, entropy/coder.py), coded as the nearest value it can. The file still decodes
    #: exactly to what the encoder coded, but the image may show local errors there.
    clipped: int = 0

    @property
    def bpp(self) -> float:
        return bits_per_pixel(len(self.data) * 8, self.width, self.height)


def bits_per_pixel(bits: float, width: int, height: int) -> float:
    return bits / (width * height)


def level_code(model: LoadedModel, quality: float) -> int:
    """Quality 0..100 -> the model's rate level t times 10000 (exact), through the quality code a header stores."""
    return model.config.level_code(vzformat.container.quality_code(quality))


def rate_level(model: LoadedModel, quality: float) -> torch.Tensor:
    """Quality 0..100 -> the continuous rate level t of the model, for the float transforms."""
    return torch.tensor([level_code(model, quality) / 10000.0], dtype=torch.float32)


def symbol_checksum(z_sym: np.ndarray, y_sym: np.ndarray) -> int:
    crc = zlib.crc32(np.ascontiguousarray(z_sym, dtype="<i4").tobytes())
    return zlib.crc32(np.ascontiguousarray(y_sym, dtype="<i4").tobytes(), crc)


def _z_index(model: LoadedModel, shape) -> torch.Tensor:
    """The table of each z element: its channel."""
    c = shape[1]
    return torch.arange(c).view(1, c, 1, 1).expand(shape)


def analyse(model: LoadedModel, array: np.ndarray, t: torch.Tensor, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HxWx3 uint8 -> (y', z'): g_a tile by tile, each tile read from the 8-bit image (replicated beyond its
    bottom and right edges up to a multiple of STRIDE_Z): no image-sized float copy is ever made."""
    net, dev = model.network, _device(model)
    height, width = array.shape[:2]
    hp, wp = -(-height // STRIDE_Z) * STRIDE_Z, -(-width // STRIDE_Z) * STRIDE_Z
    y = torch.empty(1, model.config.m, hp // 16, wp // 16, device=dev)

    def read(tile: Tile) -> torch.Tensor:
        rows = np.minimum(np.arange(tile.a0, tile.a1), height - 1)
        cols = np.minimum(np.arange(tile.b0, tile.b1), width - 1)
        return tensors.to_tensor(array[rows][:, cols], dev)

    def write(tile: Tile, piece: torch.Tensor) -> None:
        y[..., tile.r0 // 16:tile.r1 // 16, tile.c0 // 16:tile.c1 // 16] = piece

    run_tiles(net.analysis(t), tile_grid(hp, wp, ENCODE_TILE, net.g_a_halo, 16), read, write, 1 / 16, workers)
    with single_threaded_ops():  # h_a's float sums, too, in an order that no thread count changes
        return net.latents(y, t)


def synthesise(model: LoadedModel, y_hat: torch.Tensor, t: torch.Tensor, height: int, width: int,
               workers: int) -> np.ndarray:
    """y_hat' -> HxWx3 uint8: g_s tile by tile, each tile written straight into the 8-bit output."""
    net = model.network
    g_in = net.ungain(y_hat, t)
    out = np.empty((height, width, 3), dtype=np.uint8)

    def write(tile: Tile, piece: torch.Tensor) -> None:
        r0, c0 = tile.r0 * 16, tile.c0 * 16
        r1, c1 = min(tile.r1 * 16, height), min(tile.c1 * 16, width)
        if r1 > r0 and c1 > c0:
            out[r0:r1, c0:c1] = tensors.from_tensor(piece[..., : r1 - r0, : c1 - c0])

    tiles = tile_grid(*g_in.shape[-2:], DECODE_TILE, net.g_s_halo)
    run_tiles(net.synthesis(t), tiles, lambda tl: g_in[..., tl.a0:tl.a1, tl.b0:tl.b1], write, 16, workers)
    return out


#: z rows per stripe of the exact hyper-synthesis of a model without context, and the rows it reads on either
#: side: an output row of h_s depends on z rows within 2 of its own (two 5x5 stride-2 transposed convolutions,
#: as 3x3 convolutions and pixel shuffles, then a 3x3 convolution), and integer sums do not depend on how
#: the work is cut, so the stripes give exactly the whole image's values.
HYPER_STRIPE = 8
HYPER_HALO = 2


def _hyper_gain(model: LoadedModel, quality: float) -> np.ndarray:
    return quantized_gain(model.network.hyper_gain.log_inverse_gain.detach().cpu().numpy(), level_code(model, quality))


def hyper_output(model: LoadedModel, z_sym: torch.Tensor, quality: float) -> torch.Tensor:
    """z symbols -> h_s's output (means and scales of y') in ACT_BITS fixed point, bit-identical on every
    machine (entropy/parameters.py). On the CPU, float64 holding integers."""
    return model.exact.hyper(z_sym, _hyper_gain(model, quality))


def _dequantize(mean_q: torch.Tensor) -> torch.Tensor:
    """A fixed-point mean of the exact networks -> float32."""
    return (mean_q / 2**ACT_BITS).float()


def _split(model: LoadedModel, params_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-point parameters -> (mean, still fixed point; scale-table index)."""
    mean_q, scale_q = params_q.chunk(2, dim=1)
    return mean_q, scale_index_exact(scale_q, model.scale_thresholds)


def _striped_parameters(model: LoadedModel, z_sym: torch.Tensor, quality: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean of y' as float32, table index as int16) of a model without context, h_s computed in stripes of
    z rows: its float64 output, four times y's size, never exists for the whole image."""
    gain = _hyper_gain(model, quality)
    height, width = z_sym.shape[2:]
    mean = torch.empty(1, model.config.m, 4 * height, 4 * width)
    idx = torch.empty(mean.shape, dtype=torch.int16)
    for s0 in range(0, height, HYPER_STRIPE):
        s1 = min(height, s0 + HYPER_STRIPE)
        a0, a1 = max(0, s0 - HYPER_HALO), min(height, s1 + HYPER_HALO)
        h_q = model.exact.hyper(z_sym[..., a0:a1, :], gain)[..., 4 * (s0 - a0):4 * (s1 - a0), :]
        mean_q, stripe_idx = _split(model, h_q)
        mean[..., 4 * s0:4 * s1, :] = _dequantize(mean_q)
        idx[..., 4 * s0:4 * s1, :] = stripe_idx
    return mean, idx


def entropy_parameters(model: LoadedModel, z_sym: torch.Tensor, quality: float) -> tuple[torch.Tensor, torch.Tensor]:
    """z symbols -> (mean of y', scale-table index of each y' element) of a model without context (for a
    checkerboard model: of the anchors). Returned on the CPU; the mean as float32."""
    if not model.exact.has_context:
        return _striped_parameters(model, z_sym, quality)
    mean_q, idx = _split(model, model.exact.refine(hyper_output(model, z_sym, quality), None))
    return _dequantize(mean_q), idx


def y_sections(model: LoadedModel) -> tuple[int, ...]:
    """The sections y is coded in, in decode order."""
    return (SECTION_Y, SECTION_Y2) if model.exact.has_context else (SECTION_Y,)


def _code_y(model: LoadedModel, z_sym: torch.Tensor, quality: float, code) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs the coding passes of y in decode order; the one definition of that order for both directions.

    ``code(section, mean, idx, where)`` codes (encoder) or decodes (decoder) the symbols of the positions
    ``where`` ((1, 1, H, W) bool; None: all) and returns the symbols as an integer tensor of y's shape
    (only its values at ``where`` matter). Returns (symbols, mean of y' in float32) over all positions.
    """
    if not model.exact.has_context:
        mean, idx = _striped_parameters(model, z_sym, quality)
        return code(SECTION_Y, mean, idx, None), mean
    h_q = hyper_output(model, z_sym, quality)
    anchor = anchor_mask(*h_q.shape[2:])
    mean_a, idx_a = _split(model, model.exact.refine(h_q, None, anchor))
    r_a = code(SECTION_Y, _dequantize(mean_a), idx_a, anchor)
    y_anchor_q = torch.where(anchor, r_a.double() * 2**ACT_BITS + mean_a, torch.zeros_like(mean_a))
    mean_n, idx_n = _split(model, model.exact.refine(h_q, y_anchor_q, ~anchor))
    r_n = code(SECTION_Y2, _dequantize(mean_n), idx_n, ~anchor)
    return torch.where(anchor, r_a, r_n), _dequantize(torch.where(anchor, mean_a, mean_n))


def _positions(where: torch.Tensor | None, shape) -> np.ndarray | slice:
    return slice(None) if where is None else where.expand(shape).numpy()


def _device(model: LoadedModel) -> torch.device:
    return next(model.network.parameters()).device


@contextlib.contextmanager
def _ieee_float32():
    """cuDNN runs float32 convolutions in TF32 (a 10-bit mantissa) by default; the transforms here run in
    full float32 on every device, so a GPU reconstructs what a CPU does to within float rounding
    (benchmarks/cross_device.py measures it)."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous


@torch.inference_mode()
@_ieee_float32()
def encode_array(array: np.ndarray, mode: str = "RGB", quality: float = DEFAULT_QUALITY,
                 model: LoadedModel | str = DEFAULT_MODEL, max_pixels: int | None = vzimage.MAX_PIXELS,
                 refine: int = 0, workers: int | None = None) -> EncodeResult:
    """HxWx3 uint8 -> .vz bytes. ``refine``: steps of encode-time latent refinement (refine.py; 0: none).
    ``workers``: tiles coded at once (None: every core); the file is the same for any number.
    Raises VaezipError subclasses for bad arguments."""
    start = time.perf_counter()
    if isinstance(model, str):
        model = load_model(model)
    if not 0 <= float(quality) <= 100:
        raise ValueError(f"quality {quality} is outside 0..100")
    if refine < 0:
        raise ValueError(f"refine {refine} is negative")
    height, width = array.shape[:2]
    if height < 1 or width < 1:
        raise ImageError(f"image of {width}x{height} pixels is empty")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(f"image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels")
    if width > 0xFFFFFFFF or height > 0xFFFFFFFF:
        raise ImageError(f"image of {width}x{height} pixels is too large for the .vz format")
    refine_limit = refine_max_pixels(model.config)
    if refine and width * height > refine_limit:
        raise ImageError(f"image of {width}x{height} pixels is too large to refine with {model.name} (the "
                         f"limit is {refine_limit / 1e6:g} MP, for memory); encode it without refinement")
    net, dev = model.network, _device(model)
    t = rate_level(model, quality).to(dev)
    y, z = analyse(model, array, t, workers or default_workers())
    if refine:
        x = tensors.pad(tensors.to_tensor(array, dev), STRIDE_Z)
        with single_threaded_ops():  # one file for one input, whatever the machine's thread count
            y, z = refine_latents(net, x, y, z, t, refine, height, width)
    z_idx = _z_index(model, z.shape).to(dev)
    z_round = torch.round(z)
    z_sym = model.z_coder.clamp(z_round, z_idx)
    clipped = int((z_sym != z_round).sum())
    z_np, zi_np = z_sym.cpu().numpy().astype(np.int64), z_idx.cpu().numpy()
    sections = [vzformat.Section(SECTION_Z, model.z_coder.encode(z_np, zi_np))]
    bits = model.z_coder.information_bits(z_np, zi_np)
    y = y.cpu()

    def encode_pass(kind, mean, idx, where):
        nonlocal bits, clipped
        rounded = torch.sub(y, mean).round_()
        r = model.y_coder.clamp(rounded, idx)
        sel = _positions(where, r.shape)
        clipped += int((r != rounded).numpy()[sel].sum())
        values, index = r.numpy()[sel], idx.numpy()[sel]
        sections.append(vzformat.Section(kind, model.y_coder.encode(values, index)))
        bits += model.y_coder.information_bits(values, index)
        return r

    y_sym, _ = _code_y(model, z_sym.cpu(), quality, encode_pass)
    data = vzformat.pack(mode=mode, width=width, height=height, quality=quality, model=model.name,
                         weights_hash=model.weights_hash, sections=sections,
                         symbols_crc=symbol_checksum(z_np, y_sym.numpy()))
    return EncodeResult(data, width, height, bits, time.perf_counter() - start, clipped)


def model_for(header: vzformat.VzHeader, model: LoadedModel | str | None = None) -> LoadedModel:
    """The model a file needs: the one given (a loaded model, a name or a weights path), else the one its
    header names, found by name and weights hash (zoo.find_weights). Raises ModelError in one line naming the
    model, its hash and where its weights are."""
    if model is None or isinstance(model, str):
        return load_model(model or header.model, weights_hash=header.weights_hash)
    if model.weights_hash != header.weights_hash:
        raise ModelError(f"this file needs model {header.model!r} with weights {header.weights_hash.hex()[:12]}…, "
                         f"not {model.name!r} ({model.weights_hash.hex()[:12]}…)")
    return model


@torch.inference_mode()
@_ieee_float32()
def decode_array(data: bytes, model: LoadedModel | str | None = None, max_pixels: int | None = vzimage.MAX_PIXELS,
                 workers: int | None = None) -> tuple[np.ndarray, vzformat.VzHeader]:
    """.vz bytes -> (HxWx3 uint8, header). ``model``: the model to decode with (None: the one the header
    names). ``workers``: tiles decoded at once (None: every core); the pixels are the same for any number.
    Raises FormatError / ModelError."""
    header, sections = vzformat.parse(data, max_pixels)
    model = model_for(header, model)
    needed = (SECTION_Z, *y_sections(model))
    for kind in needed:
        if kind not in sections:
            raise FormatError(f"corrupt .vz file (section {SECTION_NAMES[kind]} is missing)")
    for kind in sections:
        if kind not in needed:
            raise FormatError(f"corrupt .vz file (section {SECTION_NAMES[kind]} does not belong to model "
                              f"{header.model!r})")
    dev = _device(model)
    t = rate_level(model, header.quality).to(dev)
    hz, wz = -(-header.height // STRIDE_Z), -(-header.width // STRIDE_Z)
    z_shape = (1, model.config.hyper_width, hz, wz)
    z_idx = _z_index(model, z_shape)
    z_np = model.z_coder.decode(sections[SECTION_Z], z_idx.numpy())

    def decode_pass(kind, mean, idx, where):
        r = np.zeros(idx.shape, dtype=np.int32)
        sel = _positions(where, r.shape)
        r[sel] = model.y_coder.decode(sections[kind], idx.numpy()[sel])
        return torch.from_numpy(r)

    y_sym, mean = _code_y(model, torch.from_numpy(z_np), header.quality, decode_pass)
    if symbol_checksum(z_np, y_sym.numpy()) != header.symbols_crc:
        raise DecodeMismatchError("decoded symbols do not match the encoder's (symbol checksum); this machine "
                                  "computed different probabilities than the one that wrote the file")
    y_hat = (y_sym.float() + mean).to(dev)
    return synthesise(model, y_hat, t, header.height, header.width, workers or default_workers()), header
