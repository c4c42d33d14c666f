"""vaezip: a learned image codec. The public API is this module's names only."""
from __future__ import annotations

from PIL import Image

from . import format as _format
from . import image as _image
from .codec import DEFAULT_QUALITY, decode_array, encode_array
from .errors import DecodeMismatchError, FormatError, ImageError, ModelError, VaezipError
from .format import VzHeader
from .zoo import DEFAULT_MODEL, REGISTRY, load_model

__version__ = "0.1.0"


def compress(image, quality: float = DEFAULT_QUALITY, model: str = DEFAULT_MODEL, refine: int = 0) -> bytes:
    """Compress an image to .vz bytes.

    Args:
        image: a PIL image, an HxWx3 (or HxW grayscale) uint8 array, or a path.
        quality: 0..100, higher is better (continuous).
        model: the name of a shipped model (``vaezip.REGISTRY``).
        refine: optimizer steps of encode-time refinement of the latents (0: none; 20 makes files
            smaller at the same quality for about 1 s per step per 0.4 MP); decoding is unchanged.
    Returns:
        the bytes of a .vz file.
    Raises:
        ImageError, ModelError, ValueError (quality out of range, negative refine).
    """
    array, mode = _image.from_input(image)
    return encode_array(array, mode, quality, model, refine=refine).data


def decompress(data: bytes, max_pixels: int | None = _image.MAX_PIXELS) -> Image.Image:
    """Decode .vz bytes to a PIL image (RGB, or L if the original was grayscale).

    Raises:
        FormatError (truncated, corrupt, foreign or future files), ModelError.
    """
    array, header = decode_array(bytes(data), max_pixels=max_pixels)
    return _image.to_image(array, header.mode)


def read_info(data: bytes) -> VzHeader:
    """The header of .vz bytes (model, size, mode, quality, sizes), without building a network."""
    return _format.read_header(bytes(data))


__all__ = [
    "compress", "decompress", "read_info", "load_model", "VzHeader", "REGISTRY", "DEFAULT_MODEL",
    "DEFAULT_QUALITY", "VaezipError", "FormatError", "ModelError", "ImageError", "DecodeMismatchError",
    "__version__",
]
