"""The codecs a benchmark compares: each encodes an RGB uint8 array at one setting to bytes, and decodes
those bytes back with its own decoder (never trusting an encoder's reconstruction)."""
from __future__ import annotations

import importlib.metadata
import io
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image, features


class CodecUnavailable(Exception):
    pass


@dataclass
class Codec:
    """A codec at a sweep of settings. ``encode(array, setting) -> bytes``, ``decode(bytes) -> array``."""

    name: str
    settings: list[float]
    encode: Callable[[np.ndarray, float], bytes]
    decode: Callable[[bytes], np.ndarray]
    version: str
    options: dict = field(default_factory=dict)


def _pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return np.asarray(img.convert("RGB"))


def _pil_codec(name: str, fmt: str, settings, version: str, options: dict, kwargs: Callable[[float], dict]) -> Codec:
    def encode(array: np.ndarray, s: float) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format=fmt, **options, **kwargs(s))
        return buf.getvalue()

    return Codec(name, list(settings), encode, _pil_decode, version, dict(options))


def jpeg() -> Codec:
    return _pil_codec("JPEG", "JPEG", [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
                      f"libjpeg-turbo {features.version('jpg')} (Pillow {importlib.metadata.version('pillow')})",
                      {"subsampling": 2, "optimize": True}, lambda q: {"quality": int(q)})


def webp() -> Codec:
    if not features.check("webp"):
        raise CodecUnavailable("Pillow was built without WebP")
    return _pil_codec("WebP", "WEBP", [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
                      f"libwebp {features.version('webp')}", {"method": 6}, lambda q: {"quality": int(q)})


def jpeg2000() -> Codec:
    if not features.check("jpg_2000"):
        raise CodecUnavailable("Pillow was built without OpenJPEG")
    return _pil_codec("JPEG 2000", "JPEG2000", [300, 200, 140, 100, 70, 48, 32, 22, 15, 10],
                      f"OpenJPEG {features.version('jpg_2000')}", {"irreversible": True, "quality_mode": "rates"},
                      lambda ratio: {"quality_layers": [float(ratio)]})


def avif() -> Codec:
    if not features.check("avif"):
        raise CodecUnavailable("Pillow was built without AVIF")
    try:
        from PIL import _avif
        version = f"libavif {features.version('avif')}, {_avif.codec_versions()}"
    except (ImportError, AttributeError):
        version = f"libavif {features.version('avif')}"
    return _pil_codec("AVIF", "AVIF", [5, 10, 20, 30, 40, 50, 60, 70, 80, 90], version,
                      {"subsampling": "4:2:0", "speed": 6, "max_threads": 1}, lambda q: {"quality": int(q)})


def heic() -> Codec:
    try:
        import pillow_heif
    except ImportError:
        raise CodecUnavailable("pillow-heif is not installed (pip install 'vaezip[bench]')") from None
    pillow_heif.register_heif_opener()
    info = pillow_heif.libheif_info()
    version = f"libheif {info.get('libheif')}, {info.get('HEIF')} (pillow-heif {pillow_heif.__version__})"
    settings = [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 70, 80, 90]  # to ~40 dB, for vaezip's top
    return _pil_codec("HEIC", "HEIF", settings, version, {"chroma": 420},
                      lambda q: {"quality": int(q)})


def jpegxl() -> Codec:
    try:
        import pillow_jxl  # noqa: F401  registers the JXL plugin
    except ImportError:
        raise CodecUnavailable("pillow-jxl-plugin is not installed (pip install 'vaezip[bench]')") from None
    version = f"libjxl (pillow-jxl-plugin {importlib.metadata.version('pillow-jxl-plugin')})"
    return _pil_codec("JPEG XL", "JXL", [10, 20, 30, 40, 50, 60, 70, 80, 90, 95], version, {"effort": 7},
                      lambda q: {"quality": int(q)})


def vaezip_codec(model: str | None = None, weights: str | None = None, refine: int = 0) -> Codec:
    """vaezip with a shipped model or a weights file; ``refine`` > 0: the slow encoder that refines the
    latents of each image (``vaezip compress --refine``), a separate curve."""
    import torch

    import vaezip
    from vaezip.codec import decode_array, encode_array
    from vaezip.zoo.loader import load_file

    from vaezip.runtime import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()  # this worker process codes like the command line
    loaded = load_file(weights) if weights else vaezip.load_model(model or vaezip.DEFAULT_MODEL, "cpu")
    suffix = f" refine {refine}" if refine else ""
    # One tile at a time on one thread, as every codec here is timed (the files are the same on any number).
    return Codec(f"vaezip {loaded.name}{suffix}", [0, 15, 30, 45, 60, 75, 90, 100],
                 lambda a, q: encode_array(a, "RGB", q, loaded, refine=refine, workers=1).data,
                 lambda d: decode_array(d, loaded, workers=1)[0],
                 f"vaezip {vaezip.__version__} (1 thread, as the CLI), weights {loaded.weights_hash.hex()[:12]}"
                 f"{suffix}",
                 {"model": loaded.name, "threads": 1, **({"refine": refine} if refine else {}),
                  **{k: loaded.meta.get(k) for k in ("step", "cpu_hours")}})


FACTORIES: dict[str, Callable[[], Codec]] = {
    "jpeg": jpeg, "webp": webp, "jpeg2000": jpeg2000, "avif": avif, "heic": heic, "jpegxl": jpegxl,
    "vaezip": vaezip_codec, "vaezip-refine": vaezip_codec,
}
