"""Weights files <-> coding models: loading, checking and writing the ``.npz`` a model ships as.

A weights file is a NumPy .npz archive read with ``allow_pickle=False`` (no code is executed on load).
It holds everything needed to rebuild the model and code with it, so nothing is guessed from shapes:

* ``config.json``: the ModelConfig, as UTF-8 bytes;  ``meta.json``: how it was trained and exported, and
  ``content_sha256``, the hash of every other array (``content_digest``), checked on load;
* ``param/<name>``: every tensor of the network's state dict (stored as float16 to keep the package
  small; the model *is* the float16-rounded network, and its tables were frozen from it);
* ``table/z/{pmf,offset,length}`` and ``table/y/{pmf,offset,length}``: the frozen coding tables;
  ``table/y/threshold``: the scale table in fixed point, against which the exact integer h_s
  (entropy/parameters.py) selects a table. The config's ``arch`` names the model class (models/).
* ``table/escape``: 1 if values beyond a table's range are escape-coded (entropy/coder.py); absent in
  the weights of msh64-r1 .. r4, whose coders clamp such values.

A .vz file names its model and the first 16 bytes of the SHA-256 of this file.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..entropy.coder import Coder
from ..entropy.parameters import ExactEntropyParameters, scale_thresholds
from ..entropy.priors import scale_table
from ..entropy.tables import Table, y_table, z_table
from ..errors import ModelError
from ..models import MeanScaleHyperprior, ModelConfig, build_model
from . import DEFAULT_MODEL, REGISTRY, file_sha256, find_weights, is_path, weights_path


@dataclass
class LoadedModel:
    """A network with its frozen tables and coders: everything codec.py needs."""

    name: str
    weights_hash: bytes
    network: MeanScaleHyperprior
    z_coder: Coder
    y_coder: Coder
    scale_thresholds: np.ndarray
    exact: ExactEntropyParameters
    meta: dict

    @property
    def config(self) -> ModelConfig:
        return self.network.config


def _read_json(arrays, key: str) -> dict:
    return json.loads(bytes(arrays[key]).decode("utf-8"))


def _table(arrays, prefix: str) -> Table:
    return Table(arrays[f"{prefix}/pmf"], arrays[f"{prefix}/offset"], arrays[f"{prefix}/length"])


def content_digest(arrays) -> str:
    """SHA-256 over every array of a weights file but meta.json: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for key in sorted(k for k in arrays.keys() if k != "meta.json"):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@torch.inference_mode(False)  # ordinary tensors even when called under inference mode: refine.py needs autograd
def load_file(path: Path | str, name: str | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a weights file (shipped or exported by ``vaezip export``), checked against the content hash it
    records. Raises ModelError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read model weights ({e.strerror}); "
                         "pass an .npz that vaezip export wrote") from None
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
            contents = {k: arrays[k] for k in arrays.files}
        config = ModelConfig.from_dict(_read_json(contents, "config.json"))
        meta = _read_json(contents, "meta.json")
        recorded = meta.get("content_sha256")
        if recorded is not None and recorded != content_digest(contents):
            raise ModelError(f"{path}: the weights do not match the hash recorded inside the file (damaged or "
                             "altered); re-export or download them again")
        state = {k[len("param/"):]: torch.from_numpy(v.astype(np.float32))
                 for k, v in contents.items() if k.startswith("param/")}
        thresholds = contents["table/y/threshold"].astype(np.int64)
        escape = "table/escape" in contents and bool(contents["table/escape"])
        z_tab, y_tab = _table(contents, "table/z"), _table(contents, "table/y")
        if len(thresholds) != len(y_tab):
            raise ValueError("scale thresholds and y tables differ in length")
        network = build_model(config)
        network.load_state_dict(state)
        exact = ExactEntropyParameters(network)
    except ModelError:
        raise
    except Exception as e:  # zip, JSON, shape and key errors all mean: not a vaezip weights file
        raise ModelError(f"{path}: not a valid vaezip weights file ({e.__class__.__name__}: {e}); "
                         "re-export it with vaezip export") from None
    network.eval().requires_grad_(False).to(device)
    return LoadedModel(name or meta.get("name", path.stem), hashlib.sha256(raw).digest()[:16], network,
                       Coder(z_tab, escape), Coder(y_tab, escape), thresholds, exact, meta)


def freeze(network: MeanScaleHyperprior, name: str, meta: dict | None = None) -> LoadedModel:
    """A coding model straight from a trained network (tables frozen now, in memory, with escape
    coding): what export writes, without the file. Used by validation during training."""
    network = network.eval().requires_grad_(False)
    return LoadedModel(name, b"\0" * 16, network, Coder(z_table(network.z_prior), True), Coder(y_table(), True),
                       scale_thresholds(scale_table()), ExactEntropyParameters(network), meta or {})


def _device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


@functools.lru_cache(maxsize=4)
def load_model(model: str = DEFAULT_MODEL, device: str | None = None, weights_hash: bytes | None = None) -> LoadedModel:
    """A model by name (installed, or ``<name>.npz`` in $VAEZIP_MODEL_PATH) or by the path of a weights file.

    An installed model's file is checked against the manifest's SHA-256 first; with ``weights_hash`` (what a
    .vz file records), only weights with that hash are accepted.

    Raises:
        ModelError: unknown, archived, missing, damaged or mismatched weights (one line naming the fix).
    """
    if is_path(model):
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"{path}: no such weights file; pass an .npz that vaezip export wrote, or a model "
                             "that `vaezip models` lists")
        loaded = load_file(path, device=_device(device))
        if weights_hash is not None and loaded.weights_hash != weights_hash:
            raise ModelError(f"{path}: these are not the weights the file was written with "
                             f"(it needs {weights_hash.hex()[:12]}…, this file is {loaded.weights_hash.hex()[:12]}…)")
        return loaded
    path = find_weights(model, weights_hash)
    entry = REGISTRY.get(model)
    if entry is not None and path == weights_path(entry):
        try:
            digest = file_sha256(path)
        except OSError:
            raise ModelError(f"weights of model {model!r} are missing ({path}); reinstall vaezip") from None
        if digest != entry.sha256:
            raise ModelError(f"weights of model {model!r} do not match the manifest (sha256 {digest[:12]}…, "
                             f"expected {entry.sha256[:12]}…); reinstall vaezip")
    return load_file(path, model, _device(device))


def save_file(path: Path | str, network: MeanScaleHyperprior, z_coder: Coder, y_coder: Coder,
              thresholds: np.ndarray, meta: dict) -> None:
    """Write a weights file (used by export), recording its content hash in meta.json. The network must
    already hold the float16-rounded values."""
    arrays = {"config.json": np.frombuffer(json.dumps(network.config.to_dict()).encode(), dtype=np.uint8)}
    for k, v in network.state_dict().items():
        arrays[f"param/{k}"] = v.detach().cpu().numpy().astype(np.float16)
    for prefix, coder in (("table/z", z_coder), ("table/y", y_coder)):
        arrays[f"{prefix}/pmf"] = coder.table.pmf
        arrays[f"{prefix}/offset"] = coder.table.offset
        arrays[f"{prefix}/length"] = coder.table.length
    if z_coder.escape != y_coder.escape:
        raise ValueError("z and y coders must agree on escape coding")
    if y_coder.escape:
        arrays["table/escape"] = np.array(1, dtype=np.uint8)
    arrays["table/y/threshold"] = np.asarray(thresholds, dtype=np.int64)
    meta = {**meta, "content_sha256": content_digest(arrays)}
    arrays["meta.json"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    Path(path).write_bytes(buf.getvalue())
