"""The model registry: exact types, hashes, and safe loading."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from vaezip import zoo
from vaezip.errors import ModelError
from vaezip.models import MeanScaleHyperprior, ModelConfig


def test_every_registered_model_matches_its_hash_and_loads():
    for name, entry in zoo.REGISTRY.items():
        path = zoo.weights_path(entry)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256, name
        loaded = zoo.load_model(name, "cpu")
        assert type(loaded.network) is MeanScaleHyperprior
        assert loaded.name == name and loaded.meta["name"] == name
        with np.load(path, allow_pickle=False) as a:  # no object arrays: nothing executes on load
            assert all(a[k].dtype != object for k in a.files)


def test_default_model_is_registered():
    assert zoo.DEFAULT_MODEL in zoo.REGISTRY


def test_unknown_model():
    with pytest.raises(ModelError, match="unknown model"):
        zoo.load_model("no-such-model")


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """Point the registry at a folder of the test's own, with a fresh model cache."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(zoo, "weights_path", lambda e: folder / e.file)
    zoo.load_model.cache_clear()
    yield folder
    zoo.load_model.cache_clear()


def test_tampered_weights_are_refused(weights_dir):
    entry = zoo.REGISTRY[zoo.DEFAULT_MODEL]
    shutil.copy(Path(zoo.__file__).parent / "weights" / entry.file, weights_dir / entry.file)
    with open(weights_dir / entry.file, "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    with pytest.raises(ModelError, match="do not match"):
        zoo.load_model(zoo.DEFAULT_MODEL, "cpu")


def test_missing_weights(weights_dir):
    with pytest.raises(ModelError, match="missing"):
        zoo.load_model(zoo.DEFAULT_MODEL, "cpu")


def test_corrupt_weights_file(tmp_path):
    p = tmp_path / "x.npz"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError, match="not a valid vaezip weights file"):
        zoo.load_file(p)


def test_config_round_trip_rejects_unknown_keys():
    c = ModelConfig(n=8, m=12)
    assert ModelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError):
        ModelConfig.from_dict({**c.to_dict(), "surprise": 1})
