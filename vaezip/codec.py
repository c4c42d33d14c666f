"""Orchestration without file I/O: image array -> latents -> sections -> .vz bytes, and back.

::

    compress:   x -g_a,h_a-> (y', z') ; z_sym = clamp(round(z')) -coder(z tables)-> section z
                z_sym -exact integer h_s-> (mean, scale) ; idx = scale index ; r = clamp(round(y' - mean))
                r -coder(y tables[idx])-> section y ; header + sections -format-> .vz
    decompress: the header names the model; section z -> z_sym -h_s-> (mean, idx) ; section y -> r
                y_hat' = r + mean -g_s-> x_hat, cropped to the stored size
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from . import format as vzformat
from . import image as vzimage
from .entropy.parameters import ACT_BITS, quantized_gain, scale_index_exact
from .errors import DecodeMismatchError, FormatError, ImageError, ModelError
from .models.hyperprior import STRIDE_Z
from .zoo import DEFAULT_MODEL, LoadedModel, load_model

DEFAULT_QUALITY = 75.0
#: Transforms run in tiles beyond these sizes (pixels for g_a, latent positions for g_s), which bounds
#: memory to a few hundred MB whatever the image size; smaller images go through in one piece.
ENCODE_TILE = 1024
DECODE_TILE = 64


@dataclass
class EncodeResult:
    data: bytes
    width: int
    height: int
    estimated_bits: float  # -log2 P(symbols) under the frozen tables, z and y together
    seconds: float

    @property
    def bpp(self) -> float:
        return bits_per_pixel(len(self.data) * 8, self.width, self.height)


def bits_per_pixel(bits: float, width: int, height: int) -> float:
    return bits / (width * height)


def rate_level(model: LoadedModel, quality: float) -> torch.Tensor:
    """Quality 0..100 (as stored: hundredths) -> the continuous rate level t of the model."""
    q = vzformat.container.quality_code(quality) / 10000.0
    return torch.tensor([q * (model.config.levels - 1)], dtype=torch.float32)


def symbol_checksum(z_sym: np.ndarray, y_sym: np.ndarray) -> int:
    crc = zlib.crc32(np.ascontiguousarray(z_sym, dtype="<i4").tobytes())
    return zlib.crc32(np.ascontiguousarray(y_sym, dtype="<i4").tobytes(), crc)


def _z_index(model: LoadedModel, shape) -> torch.Tensor:
    """The table of each z element: its channel."""
    c = shape[1]
    return torch.arange(c).view(1, c, 1, 1).expand(shape)


def entropy_parameters(model: LoadedModel, z_sym: torch.Tensor, quality: float) -> tuple[torch.Tensor, torch.Tensor]:
    """z symbols -> (mean of y', scale-table index of each y' element), bit-identical on every machine
    (entropy/parameters.py). Returned on the CPU; the mean as float32."""
    code = vzformat.container.quality_code(quality)
    gain = quantized_gain(model.network.hyper_gain.log_inverse_gain.detach().cpu().numpy(), code,
                          model.config.levels)
    out = model.exact_h_s(z_sym, gain)
    mean_q, scale_q = out.chunk(2, dim=1)
    return (mean_q / 2**ACT_BITS).float(), scale_index_exact(scale_q, model.scale_thresholds)


def _device(model: LoadedModel) -> torch.device:
    return next(model.network.parameters()).device


@torch.inference_mode()
def encode_array(array: np.ndarray, mode: str = "RGB", quality: float = DEFAULT_QUALITY,
                 model: LoadedModel | str = DEFAULT_MODEL, max_pixels: int | None = vzimage.MAX_PIXELS) -> EncodeResult:
    """HxWx3 uint8 -> .vz bytes. Raises VaezipError subclasses for bad arguments."""
    start = time.perf_counter()
    if isinstance(model, str):
        model = load_model(model)
    if not 0 <= float(quality) <= 100:
        raise ValueError(f"quality {quality} is outside 0..100")
    height, width = array.shape[:2]
    if height < 1 or width < 1:
        raise ImageError(f"image of {width}x{height} pixels is empty")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(f"image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels")
    if width > 0xFFFFFFFF or height > 0xFFFFFFFF:
        raise ImageError(f"image of {width}x{height} pixels is too large for the .vz format")
    net, dev = model.network, _device(model)
    t = rate_level(model, quality).to(dev)
    x = vzimage.pad(vzimage.to_tensor(array, dev), STRIDE_Z)
    y, z = net.analyse(x, t, tile=ENCODE_TILE)
    z_idx = _z_index(model, z.shape).to(dev)
    z_sym = model.z_coder.table.clamp(torch.round(z), z_idx)
    mean, y_idx = entropy_parameters(model, z_sym, quality)
    y_sym = model.y_coder.table.clamp(torch.round(y.cpu() - mean), y_idx)
    z_np, y_np = z_sym.cpu().numpy().astype(np.int64), y_sym.cpu().numpy().astype(np.int64)
    zi_np, yi_np = z_idx.cpu().numpy(), y_idx.cpu().numpy()
    sections = [
        vzformat.Section(vzformat.container.SECTION_Z, model.z_coder.encode(z_np, zi_np)),
        vzformat.Section(vzformat.container.SECTION_Y, model.y_coder.encode(y_np, yi_np)),
    ]
    data = vzformat.pack(mode=mode, width=width, height=height, quality=quality, model=model.name,
                         weights_hash=model.weights_hash, sections=sections,
                         symbols_crc=symbol_checksum(z_np, y_np))
    bits = model.z_coder.information_bits(z_np, zi_np) + model.y_coder.information_bits(y_np, yi_np)
    return EncodeResult(data, width, height, bits, time.perf_counter() - start)


def model_for(header: vzformat.VzHeader) -> LoadedModel:
    model = load_model(header.model)
    if model.weights_hash != header.weights_hash:
        raise ModelError(f"this file was written with other weights of model {header.model!r} than the ones "
                         "installed; decode it with the vaezip version that wrote it")
    return model


@torch.inference_mode()
def decode_array(data: bytes, model: LoadedModel | None = None,
                 max_pixels: int | None = vzimage.MAX_PIXELS) -> tuple[np.ndarray, vzformat.VzHeader]:
    """.vz bytes -> (HxWx3 uint8, header). Raises FormatError / ModelError."""
    header, sections = vzformat.parse(data, max_pixels)
    for kind in (vzformat.container.SECTION_Z, vzformat.container.SECTION_Y):
        if kind not in sections:
            raise FormatError(f"corrupt .vz file (section {vzformat.container.SECTION_NAMES[kind]} is missing)")
    if model is None:
        model = model_for(header)
    elif model.weights_hash != header.weights_hash:
        raise ModelError(f"this file needs model {header.model!r} with other weights than the one given")
    net, dev = model.network, _device(model)
    t = rate_level(model, header.quality).to(dev)
    hz, wz = -(-header.height // STRIDE_Z), -(-header.width // STRIDE_Z)
    z_shape = (1, model.config.n, hz, wz)
    z_idx = _z_index(model, z_shape)
    z_np = model.z_coder.decode(sections[vzformat.container.SECTION_Z], z_idx.numpy())
    mean, y_idx = entropy_parameters(model, torch.from_numpy(z_np), header.quality)
    y_np = model.y_coder.decode(sections[vzformat.container.SECTION_Y], y_idx.numpy())
    if symbol_checksum(z_np, y_np) != header.symbols_crc:
        raise DecodeMismatchError("decoded symbols do not match the encoder's (symbol checksum); this machine "
                                  "computed different probabilities than the one that wrote the file")
    y_hat = (torch.from_numpy(y_np).float() + mean).to(dev)
    x_hat = net.synthesise(y_hat, t, tile=DECODE_TILE)[..., : header.height, : header.width]
    return vzimage.from_tensor(x_hat), header
