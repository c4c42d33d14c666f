"""The model registry: the manifest, its installed weights, archived models, weights files given by path."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

import vaezip
from vaezip import zoo
from vaezip.errors import ModelError
from vaezip.models import MeanScaleHyperprior, ModelConfig
from vaezip.zoo import loader

from conftest import synthetic


def test_installed_models_match_the_manifest_and_load_as_their_exact_class():
    installed = [e for e in zoo.REGISTRY.values() if e.installed]
    assert [e.status for e in installed][:2] == ["default", "fast"]
    for entry in installed:
        path = zoo.weights_path(entry)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256, entry.name
        assert path.stat().st_size == entry.file_bytes
        loaded = loader.load_model(entry.name, "cpu")
        assert type(loaded.network) is MeanScaleHyperprior
        assert loaded.name == entry.name and loaded.meta["name"] == entry.name
        with np.load(path, allow_pickle=False) as a:  # no object arrays: nothing executes on load
            assert all(a[k].dtype != object for k in a.files)


def test_the_package_holds_exactly_the_installed_models():
    """Releases, not snapshots: the wheel carries the weights the manifest installs, and nothing else."""
    files = {p.name for p in zoo.WEIGHTS.glob("*.npz")}
    assert files == {e.file for e in zoo.REGISTRY.values() if e.installed}
    assert zoo.DEFAULT_MODEL == vaezip.DEFAULT_MODEL and zoo.REGISTRY[zoo.FAST_MODEL].status == "fast"
    archived = [e for e in zoo.REGISTRY.values() if e.status == "archived"]
    assert archived and all(e.source.startswith("git:") and len(e.sha256) == 64 for e in archived)


def test_unknown_and_archived_models_are_one_line_with_the_fix():
    with pytest.raises(ModelError, match="unknown model 'no-such-model'.*vaezip models"):
        loader.load_model("no-such-model")
    entry = next(e for e in zoo.REGISTRY.values() if e.status == "archived")
    with pytest.raises(ModelError) as err:
        loader.load_model(entry.name)
    msg = str(err.value)
    assert "\n" not in msg and "archived" in msg and entry.sha256[:12] in msg and "git show" in msg
    assert "-m PATH.npz" in msg and "VAEZIP_MODEL_PATH" in msg


def test_a_file_of_an_archived_model_decodes_from_the_search_path(tmp_path, monkeypatch):
    """A model found as <name>.npz in $VAEZIP_MODEL_PATH decodes the files it wrote, checked by their hash."""
    shutil.copy(zoo.weights_path(zoo.REGISTRY[zoo.FAST_MODEL]), tmp_path / "mine.npz")
    data = vaezip.compress(synthetic(40, 56), 50, model=str(tmp_path / "mine.npz"))
    assert vaezip.read_info(data).model == zoo.FAST_MODEL  # the name recorded inside the weights
    loader.load_model.cache_clear()
    renamed = tmp_path / "elsewhere"
    renamed.mkdir()
    shutil.copy(tmp_path / "mine.npz", renamed / f"{zoo.FAST_MODEL}.npz")
    assert np.asarray(vaezip.decompress(data)).shape == (40, 56, 3)  # installed
    monkeypatch.setattr(zoo, "REGISTRY", {})  # as if it were not installed
    monkeypatch.setattr(loader, "REGISTRY", {})
    loader.load_model.cache_clear()
    with pytest.raises(ModelError, match=f"unknown model '{zoo.FAST_MODEL}'"):
        vaezip.decompress(data)
    monkeypatch.setenv(zoo.SEARCH_PATH_VARIABLE, str(renamed))
    assert np.asarray(vaezip.decompress(data)).shape == (40, 56, 3)
    loader.load_model.cache_clear()


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """Point the registry at a folder of the test's own, with a fresh model cache."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(zoo, "weights_path", lambda e: folder / e.file)
    monkeypatch.setattr(loader, "weights_path", lambda e: folder / e.file)
    loader.load_model.cache_clear()
    yield folder
    loader.load_model.cache_clear()


def test_tampered_weights_are_refused(weights_dir):
    entry = zoo.REGISTRY[zoo.FAST_MODEL]
    shutil.copy(zoo.WEIGHTS / entry.file, weights_dir / entry.file)
    with open(weights_dir / entry.file, "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    with pytest.raises(ModelError, match="do not match the manifest"):
        loader.load_model(zoo.FAST_MODEL, "cpu")


def test_missing_weights(weights_dir):
    with pytest.raises(ModelError, match="missing.*reinstall"):
        loader.load_model(zoo.DEFAULT_MODEL, "cpu")


def test_a_weights_file_is_checked_against_the_hash_recorded_inside_it(tmp_path):
    m = loader.load_model(zoo.FAST_MODEL, "cpu")
    good = tmp_path / "good.npz"
    loader.save_file(good, m.network, m.z_coder, m.y_coder, m.scale_thresholds, {"name": "mine-r1"})
    with np.load(good) as a:
        arrays = {k: a[k] for k in a.files}
    assert json.loads(bytes(arrays["meta.json"]))["content_sha256"] == loader.content_digest(arrays)
    assert loader.load_model(str(good)).name == "mine-r1"
    arrays["param/g_s.0.bias"] = arrays["param/g_s.0.bias"] + np.float16(0.5)  # altered, zip CRCs intact
    np.savez_compressed(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelError, match="do not match the hash recorded inside"):
        loader.load_model(str(tmp_path / "bad.npz"))
    with pytest.raises(ModelError, match="no such weights file"):
        loader.load_model(str(tmp_path / "none.npz"))


def test_corrupt_weights_file(tmp_path):
    p = tmp_path / "x.npz"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError, match="not a valid vaezip weights file"):
        loader.load_file(p)


def test_a_release_updates_the_manifest_and_keeps_former_defaults(tmp_path):
    """vaezip export --release writes the manifest: a new default keeps the old one installed as supported, a
    new fast model archives the old fast one; exactly one default."""
    entries = zoo.read_manifest()
    old_default, old_fast = zoo.DEFAULT_MODEL, zoo.FAST_MODEL
    new = zoo.ZooEntry(name="msh-new", sha256="ab" * 32, status="default", description="d", cpu_hours=1.0,
                       file_bytes=1)
    after = zoo.record_release(entries, new)
    assert after[old_default].status == "supported" and after["msh-new"].status == "default"
    fast = zoo.ZooEntry(**{**new.__dict__, "name": "msh-small", "status": "fast"})
    after = zoo.record_release(after, fast, archived_source="git:abc:vaezip/zoo/weights/x.npz")
    assert after[old_fast].status == "archived" and after[old_fast].source.startswith("git:abc")
    zoo.write_manifest(after, tmp_path / "manifest.json")
    back = zoo.read_manifest(tmp_path / "manifest.json")
    assert list(back)[:3] == ["msh-new", "msh-small", old_default] and back == after
    with pytest.raises(ModelError, match="exactly one default"):
        zoo.write_manifest({k: v for k, v in after.items() if k != "msh-new"}, tmp_path / "m2.json")


def test_config_round_trip_rejects_unknown_keys():
    c = ModelConfig(n=8, m=12)
    assert ModelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError):
        ModelConfig.from_dict({**c.to_dict(), "surprise": 1})
