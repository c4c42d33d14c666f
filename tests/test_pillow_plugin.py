"""The .vz Pillow plugin, through Pillow's own API: open by magic, save by extension or format name."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import vaezip
from vaezip.errors import FormatError

from conftest import psnr, synthetic


def test_save_and_open_through_pillow(tmp_path):
    original = Image.fromarray(synthetic(60, 90))
    original.save(tmp_path / "a.vz", quality=60)
    assert vaezip.read_info(tmp_path / "a.vz").quality == 60
    (tmp_path / "a.vz").rename(tmp_path / "misleading.png")  # recognised by its magic, not its name
    with Image.open(tmp_path / "misleading.png") as im:
        assert (im.format, im.mode, im.size) == ("VZ", "RGB", (90, 60))
        assert im.info["model"] == vaezip.DEFAULT_MODEL
        pixels = np.asarray(im)
    assert psnr(np.asarray(original), pixels) > 28
    assert np.array_equal(pixels, np.asarray(vaezip.decompress(tmp_path / "misleading.png")))


def test_grayscale_and_options_through_a_stream():
    buf = io.BytesIO()
    Image.fromarray(synthetic(40, 40)[:, :, 0]).save(buf, format="VZ", quality=20, model=vaezip.FAST_MODEL)
    low = len(buf.getvalue())
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.mode == "L" and im.info["model"] == vaezip.FAST_MODEL and im.info["quality"] == 20
        assert im.convert("RGB").size == (40, 40)
    high = io.BytesIO()
    Image.fromarray(synthetic(40, 40)[:, :, 0]).save(high, format="VZ", quality=90, model=vaezip.FAST_MODEL)
    assert len(high.getvalue()) > low
    assert Image.registered_extensions()[".vz"] == "VZ" and Image.MIME["VZ"] == "image/x-vaezip"


def test_damaged_files_fail_with_the_codec_errors(tmp_path):
    data = vaezip.compress(synthetic(32, 32), 50)
    for cut in (10, 40, len(data) - 1):
        with pytest.raises(FormatError, match="truncated"):
            Image.open(io.BytesIO(data[:cut]))
    damaged = bytearray(data)
    damaged[-3] ^= 0xFF
    with Image.open(io.BytesIO(bytes(damaged))) as im:  # the header is intact: the payload check comes at load
        with pytest.raises(FormatError, match="checksum"):
            im.load()
