"""The .vz format as a Pillow plugin: ``Image.open`` recognises a .vz file by its magic number, and
``img.save("photo.vz", quality=80)`` writes one. ``import vaezip`` registers it.

Opening reads and validates the header only (size, mode; the image-size limit of ``vaezip.decompress``
applies); the networks run when the pixels are first needed (``load``). Save options: ``quality`` (0..100,
default 75), ``model`` (a model name or weights path) and ``refine`` (encode-time refinement steps).
"""
from __future__ import annotations

from PIL import Image, ImageFile

from .format.container import DEFAULT_QUALITY, MAGIC, read_header
from .image import MAX_PIXELS

FORMAT = "VZ"
EXTENSION = ".vz"
MIME = "image/x-vaezip"


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


class VzImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "vaezip learned image codec"

    def _open(self) -> None:
        data = self.fp.read()
        header = read_header(data, MAX_PIXELS)  # a damaged file raises vaezip.FormatError here
        self._vz_data = data
        self._mode = header.mode
        self._size = (header.width, header.height)
        self.info.update(quality=header.quality, model=header.model)
        self.tile = []

    def load(self):
        if self._vz_data is not None:
            from . import decompress

            decoded = decompress(self._vz_data, max_pixels=None)  # the header was checked in _open
            self._vz_data = None
            self.im = decoded.im
        return Image.Image.load(self)


def _save(im: Image.Image, fp, filename) -> None:
    from . import DEFAULT_MODEL, compress

    info = im.encoderinfo
    fp.write(compress(im, quality=info.get("quality", DEFAULT_QUALITY), model=info.get("model", DEFAULT_MODEL),
                      refine=info.get("refine", 0)))


def register() -> None:
    """Register the plugin with Pillow (``import vaezip`` does)."""
    Image.register_open(FORMAT, VzImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
