"""The training loop on a tiny model: runs, resumes exactly where it stopped, and exports a model that codes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaezip import zoo
from vaezip.codec import decode_array, encode_array
from vaezip.models import ModelConfig
from vaezip.training.data import DatasetError
from vaezip.training.export import export
from vaezip.training.loop import CheckpointError, TrainConfig, load_checkpoint, train

from conftest import synthetic

TINY = ModelConfig(n=8, m=12, levels=3)


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for i in range(3):
        Image.fromarray(synthetic(80, 100, seed=i)).save(d / f"{i}.png")
    (d / "broken.jpg").write_bytes(b"nope")
    return d


def cfg(data_dir, run_dir, steps):
    return TrainConfig(data=str(data_dir), run_dir=str(run_dir), steps=steps, patch=64, batch=2,
                       warmup=2, log_every=2, save_every_s=0)


def test_train_resume_export_and_code(data_dir, tmp_path):
    run = tmp_path / "run"
    train(cfg(data_dir, run, 4), TINY, log=lambda *_: None)
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 4
    train(cfg(data_dir, run, 6), TINY, log=lambda *_: None)
    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["step"] == 6
    log = [json.loads(l) for l in (run / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6]

    out = tmp_path / "tiny.npz"
    digest = export(run / "checkpoint.pt", out, "tiny-r1")
    assert len(digest) == 64
    model = zoo.load_file(out, "tiny-r1")
    assert model.config == TINY
    img = synthetic(33, 47)
    dec, _ = decode_array(encode_array(img, "RGB", 50, model).data, model)
    assert dec.shape == img.shape


def test_resumed_run_matches_an_uninterrupted_one(data_dir, tmp_path):
    train(cfg(data_dir, tmp_path / "a", 4), TINY, log=lambda *_: None)
    train(cfg(data_dir, tmp_path / "b", 2), TINY, log=lambda *_: None)
    train(cfg(data_dir, tmp_path / "b", 4), TINY, log=lambda *_: None)
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_empty_folder_and_corrupt_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        train(cfg(tmp_path / "empty", tmp_path / "r", 2), TINY, log=lambda *_: None)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)
