"""Shared fixtures: real photographs shipped by scikit-image and small synthetic images."""
from __future__ import annotations

import numpy as np
import pytest

import vaezip
from vaezip.metrics import psnr  # noqa: F401  (re-exported for the tests)


@pytest.fixture(scope="session")
def model():
    return vaezip.load_model(vaezip.DEFAULT_MODEL, "cpu")


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    data = pytest.importorskip("skimage.data")
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}


@pytest.fixture(scope="session")
def gray_photo() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.camera()


def synthetic(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients with edges and a little noise: cheap, yet not trivially compressible."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / max(w, 1) * 200, yy / max(h, 1) * 200, ((xx + yy) % 64) * 3], axis=2)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


