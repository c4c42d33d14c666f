"""Format stability across releases: committed .vz files must keep decoding to the same symbols (the
symbol checksum in each file) and the same pixels, for as long as their model ships."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vaezip
from vaezip.zoo import REGISTRY

GOLDEN = sorted((Path(__file__).parent / "data").glob("golden-*.vz"))


def test_every_shipped_model_has_a_golden_file():
    assert {p.stem for p in GOLDEN} == {f"golden-{name}" for name in REGISTRY}


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_file_decodes_to_its_pixels(path):
    info = vaezip.read_info(path.read_bytes())
    assert info.model in REGISTRY, "a golden file's model was removed: old files no longer decode"
    out = np.asarray(vaezip.decompress(path.read_bytes()))  # raises if any symbol differs
    expected = np.asarray(Image.open(path.with_suffix(".png")))
    assert out.shape == expected.shape
    diff = np.abs(out.astype(int) - expected)
    # The symbols are exact; the float synthesis may differ in the last bit on other hardware.
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
