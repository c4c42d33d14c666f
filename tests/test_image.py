"""Reading images: every Pillow mode maps to RGB or grayscale as documented."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vaezip.errors import ImageError
from vaezip.image import from_input, load, to_array


def test_sixteen_bit_grayscale_is_scaled_to_eight_bits(tmp_path):
    a = (np.arange(64 * 8).reshape(8, 64) * 128).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    out, mode = load(tmp_path / "g16.png")
    assert mode == "L" and out.shape == (8, 64, 3)
    assert np.abs(out[:, :, 0].astype(int) - np.round(a / 257)).max() <= 1


@pytest.mark.parametrize("mode", ["LA", "La"])
def test_gray_alpha_is_composited_on_white(mode):
    img = Image.new("LA", (4, 2), (0, 0)).convert(mode)  # black, fully transparent
    out, m = to_array(img)
    assert m == "L" and (out == 255).all()


@pytest.mark.parametrize("mode", ["RGBA", "RGBa", "PA"])
def test_colour_alpha_is_composited_on_white(mode):
    img = Image.new("RGBA", (4, 2), (10, 20, 30, 255))
    img.putpixel((0, 0), (10, 20, 30, 0))
    out, m = to_array(img.convert(mode))
    assert m == "RGB" and tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (10, 20, 30)


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr", "P", "1", "F"])
def test_other_modes(mode):
    out, m = to_array(Image.new("RGB", (5, 3), (200, 100, 50)).convert(mode) if mode != "F"
                      else Image.new("F", (5, 3), 300.0))
    assert out.shape == (3, 5, 3) and out.dtype == np.uint8
    assert m == ("L" if mode in ("1", "F") else "RGB")


def test_truncated_image_is_an_image_error(tmp_path):
    Image.new("RGB", (64, 64), "red").save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError):
        load(tmp_path / "cut.png")


def test_from_input_rejects_other_types():
    with pytest.raises(ImageError):
        from_input(3.5)
