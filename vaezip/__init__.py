"""vaezip: a learned image codec. The public API is this module's names only.

Importing vaezip is cheap: torch is imported when something is first coded, not before (``read_info``,
the registry and the errors need none of it). It registers the .vz format with Pillow (pillow_plugin.py).
"""
from __future__ import annotations

from pathlib import Path

from .errors import DecodeMismatchError, FormatError, ImageError, InputError, ModelError, OutputError, VaezipError
from .format import DEFAULT_QUALITY, VzHeader
from .image import MAX_PIXELS as _MAX_PIXELS
from .pillow_plugin import register as _register_pillow_plugin
from .zoo import DEFAULT_MODEL, FAST_MODEL, REGISTRY

__version__ = "1.0.0"


def compress(image, quality: float = DEFAULT_QUALITY, model: str = DEFAULT_MODEL, refine: int = 0) -> bytes:
    """Compress an image to .vz bytes.

    Args:
        image: a PIL image, an HxWx3 (or HxW grayscale) uint8 array, or a path.
        quality: 0..100, higher is better (continuous).
        model: an installed model's name (``vaezip.REGISTRY``), or the path of a weights file that
            ``vaezip export`` wrote.
        refine: optimizer steps of encode-time refinement of the latents (0: none; 20 makes files
            smaller at the same quality for about 1 s per step per 0.4 MP); decoding is unchanged.
    Returns:
        the bytes of a .vz file.
    Raises:
        ImageError, ModelError, ValueError (quality out of range, negative refine).
    """
    from .codec import encode_array
    from .image import from_input

    array, mode = from_input(image)
    return encode_array(array, mode, quality, model, refine=refine).data


def decompress(data: bytes | str | Path, max_pixels: int | None = _MAX_PIXELS, model: str | None = None):
    """Decode a .vz file to a PIL image (RGB, or L if the original was grayscale).

    Args:
        data: the bytes of a .vz file, or its path.
        max_pixels: refuse files that declare a larger image, before allocating (None: no limit).
        model: decode with these weights (a name or an .npz path) instead of the model the file names;
            they must be the weights it was written with.
    Raises:
        FormatError (truncated, corrupt, foreign or future files), ModelError, InputError (an unreadable path).
    """
    from .codec import decode_array
    from .image import to_image

    array, header = decode_array(_bytes(data), model, max_pixels=max_pixels)
    return to_image(array, header.mode)


def read_info(data: bytes | str | Path) -> VzHeader:
    """The header of a .vz file (model, size, mode, quality, sizes), without building a network."""
    from .format import read_header

    return read_header(_bytes(data))


def load_model(model: str = DEFAULT_MODEL, device: str | None = None):
    """A coding model (network, tables and coders) by name or weights path; see ``vaezip.zoo``."""
    from .zoo.loader import load_model as load

    return load(model, device)


_register_pillow_plugin()


def _bytes(data) -> bytes:
    if isinstance(data, (str, Path)):
        try:
            return Path(data).read_bytes()
        except OSError as e:
            raise InputError(f"{data}: cannot read ({e.strerror}); pass the path of a .vz file or its bytes") from None
    return bytes(data)


__all__ = [
    "compress", "decompress", "read_info", "load_model", "VzHeader", "REGISTRY", "DEFAULT_MODEL", "FAST_MODEL",
    "DEFAULT_QUALITY", "VaezipError", "FormatError", "ModelError", "ImageError", "InputError",
    "OutputError", "DecodeMismatchError",
    "__version__",
]
