"""Format stability across releases: one committed .vz file per decoder path must keep decoding to the same
symbols (the symbol checksum in each file) and the same pixels: every installed model (the hyperprior path),
the checkerboard context, escape-coded and clamped values (tests/make_golden.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vaezip
from vaezip.format.container import SECTION_Y2
from vaezip.zoo import REGISTRY

DATA = Path(__file__).parent / "data"
GOLDEN = sorted(DATA.glob("golden-*.vz"))
PATHS = {"tiny-checkerboard", "tiny-escape", "tiny-clamp"}


def test_every_installed_model_and_decoder_path_has_a_golden_file():
    installed = {name for name, e in REGISTRY.items() if e.installed}
    assert {p.stem for p in GOLDEN} == {f"golden-{name}" for name in installed | PATHS}


def test_the_golden_files_take_the_paths_they_are_named_for():
    from vaezip.codec import encode_array
    from vaezip.zoo.loader import load_model

    assert SECTION_Y2 in vaezip.read_info(DATA / "golden-tiny-checkerboard.vz").section_kinds
    for name in ("tiny-escape", "tiny-clamp"):
        model = load_model(str(DATA / f"{name}.npz"), "cpu")
        assert model.y_coder.escape == (name == "tiny-escape")
    from make_golden import source

    clamped = encode_array(source(), "RGB", 60, load_model(str(DATA / "tiny-clamp.npz"), "cpu")).clipped
    assert clamped > 0  # values beyond the tables: clamped here, escape-coded by tiny-escape


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_file_decodes_to_its_pixels(path):
    info = vaezip.read_info(path)
    weights = DATA / f"{info.model}.npz"
    if info.model not in PATHS:
        assert REGISTRY[info.model].installed, "a golden file's model was removed: old files no longer decode"
    # decompress raises if any symbol differs
    out = np.asarray(vaezip.decompress(path, model=str(weights) if weights.exists() else None))
    expected = np.asarray(Image.open(path.with_suffix(".png")))
    assert out.shape == expected.shape
    diff = np.abs(out.astype(int) - expected)
    # The symbols are exact; the float synthesis may differ in the last bit on other hardware.
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
