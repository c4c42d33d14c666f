"""The only user of Pillow: image files and PIL images <-> uint8 arrays (no torch: tensors.py takes it from here)."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}

#: The largest image compress accepts and decompress will allocate, in pixels (about 268 MP).
#: Larger files are refused before any allocation; see ``max_pixels`` arguments to raise it.
MAX_PIXELS = 1 << 28


def _open(path_or_file) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path_or_file)
            img.load()
        return img
    except FileNotFoundError:
        raise ImageError(f"{path_or_file}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path_or_file}: is a folder, not an image") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path_or_file}: not a readable image ({e.__class__.__name__}); "
                         "pass a PNG, JPEG, WebP, TIFF or BMP file") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{path_or_file}: cannot decode image ({e}); the file may be truncated or corrupt") from None


def to_array(img: Image.Image) -> tuple[np.ndarray, str]:
    """PIL image -> (HxWx3 uint8 array, mode) with mode "RGB" or "L".

    Grayscale stays grayscale and is coded as three equal channels; 16-bit samples are scaled to 8 bits,
    float samples clipped to 0..255. Palette images are expanded. Alpha is dropped by compositing onto
    white: vaezip codes colour only, and a transparent region comes back white, as when a PNG with alpha
    is shown on a page. EXIF orientation is applied, as viewers do.
    """
    img = ImageOps.exif_transpose(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode.startswith("I") or img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = a / 257.0 if img.mode.startswith("I") else a  # I and I;16* hold 16-bit samples
        img = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    if "A" in img.getbands() or "a" in img.getbands():
        base = "L" if img.getbands()[0] == "L" else "RGB"
        with_alpha = img.convert(base + "A")
        flat = Image.new(base, img.size, "white")
        flat.paste(with_alpha.convert(base), mask=with_alpha.getchannel("A"))
        img = flat
    if img.mode in ("L", "1"):
        gray = np.asarray(img.convert("L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), "L"
    return np.asarray(img.convert("RGB"), dtype=np.uint8), "RGB"


def load_rgb_array(path) -> np.ndarray:
    return to_array(_open(path))[0]


def load(path) -> tuple[np.ndarray, str]:
    """Read an image file -> (HxWx3 uint8, "RGB" | "L"). Raises ImageError."""
    return to_array(_open(path))


def from_input(image) -> tuple[np.ndarray, str]:
    """A PIL image, an HxWx3 / HxW uint8 array, or a path -> (HxWx3 uint8, mode)."""
    if isinstance(image, Image.Image):
        return to_array(image)
    if isinstance(image, (str, os.PathLike)):
        return load(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ImageError(f"array of dtype {image.dtype}: pass uint8 values 0..255")
        if image.ndim == 2:
            return np.repeat(image[:, :, None], 3, axis=2), "L"
        if image.ndim == 3 and image.shape[2] == 3:
            return np.ascontiguousarray(image), "RGB"
        raise ImageError(f"array of shape {image.shape}: pass HxWx3 (RGB) or HxW (grayscale)")
    raise ImageError(f"cannot compress a {type(image).__name__}: pass a PIL image, a uint8 array or a path")


def to_image(array: np.ndarray, mode: str) -> Image.Image:
    """HxWx3 uint8 -> PIL image in the original mode (grayscale takes the channel mean)."""
    if mode == "L":
        gray = np.round(array.astype(np.float32).mean(axis=2)).astype(np.uint8)
        return Image.fromarray(gray, "L")
    return Image.fromarray(array, "RGB")


def output_format(path: Path) -> str:
    """The Pillow format an output path's extension names. Raises ImageError for unknown ones."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError(f"{path}: cannot tell an image format from {path.suffix or 'no extension'!r}; "
                         "end the output name with .png, .jpg, .webp, .tif or .bmp")
    return fmt


def save(img: Image.Image, path: Path) -> bytes:
    """Encode img in the format the path's extension names and return the bytes."""
    fmt = output_format(path)
    if fmt == "JPEG" or fmt == "WEBP":
        kwargs = {"quality": 95}
    else:
        kwargs = {}
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt, **kwargs)
    except (OSError, KeyError, ValueError) as e:
        raise ImageError(f"{path}: cannot write {fmt} ({e}); use a .png output") from None
    return buf.getvalue()
