"""The one model registry: name -> weights file in this package and its SHA-256.

A weights file is a NumPy .npz archive read with ``allow_pickle=False`` (no code is executed on load).
It holds everything needed to rebuild the model and code with it, so nothing is guessed from shapes:

* ``config.json``: the ModelConfig, as UTF-8 bytes;  ``meta.json``: how it was trained and exported;
* ``param/<name>``: every tensor of the network's state dict (stored as float16 to keep the package
  small; the model *is* the float16-rounded network, and its tables were frozen from it);
* ``table/z/{pmf,offset,length}`` and ``table/y/{pmf,offset,length}``: the frozen coding tables;
  ``table/y/threshold``: the scale table in fixed point, against which the exact integer h_s
  (entropy/parameters.py) selects a table. The config's ``arch`` names the model class (models/).
* ``table/escape``: 1 if values beyond a table's range are escape-coded (entropy/coder.py); absent in
  the weights of msh64-r1 .. r4, whose coders clamp such values.

New weights get a new name (``-r2``, ...), so that files written with older weights keep decoding while
their model ships; a .vz file names its model and the hash of its weights file.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..entropy.coder import Coder
from ..entropy.parameters import ExactEntropyParameters
from ..entropy.tables import Table
from ..errors import ModelError
from ..models import MeanScaleHyperprior, ModelConfig, build_model


@dataclass(frozen=True)
class ZooEntry:
    name: str
    sha256: str
    description: str

    @property
    def file(self) -> str:
        """The weights file's name in zoo/weights."""
        return f"{self.name}.npz"


_M96 = "mean-scale hyperprior, N=64 M=96, gain units, variable rate; trained on CPU"
_M192 = "mean-scale hyperprior, N=64 M=192 (grown from M=96), gain units, variable rate; trained on CPU"
_M192_MODULATED = ("mean-scale hyperprior, N=64 M=192 (grown from M=96), gain units and per-level modulation "
                   "of the transforms, variable rate; trained on CPU")
_N128_MODULATED = ("mean-scale hyperprior, N=128 M=192 (grown from msh64-r12), gain units and per-level modulation "
                   "of the transforms, variable rate; smaller files than msh64-r12 for 2-3x its coding time; "
                   "trained on CPU")


_ENTRIES = (
    ZooEntry("msh64-r1", "dbfc4006a0b255fb2c08ab2c018edf3a576e6cc168f79aa61df4addc6fca0ad6", _M96),
    ZooEntry("msh64-r2", "ce449fd349773cd6306f669766a7e13db2a7c9c4d31ef9db397c3b807f3e2ef3", _M192),
    ZooEntry("msh64-r3", "928977c80eee95a6545725c0f3457655f179711186778f9c11c2af22f1497071", _M192),
    ZooEntry("msh64-r4", "af6756928748e64dfa12b6dda0f80936f1eb6860871b09b2d773fe156ab80b9f", _M192),
    ZooEntry("msh64-r5", "0cf1894b253fc2cd921c22bbca2c8661197dd4598659867ec48c5bdc20eed582", _M192),
    ZooEntry("msh64-r6", "47e3e1db068e6e99c446ed876fe20bcdcc91c4cdfad0260d4ebe1cb91b0842d9", _M192),
    ZooEntry("msh64-r7", "93260331701347948fd51f215e8d33e46d54ce360e466aa982dbf9ad9f609a19", _M192),
    ZooEntry("msh64-r8", "01955f1d19c242899bae63703752e2fb52f9fdefeaa1d3cd991e1247153e12a4", _M192),
    ZooEntry("msh64-r9", "85b5c0dbcc1b7174e727296fdaeedfeaf12058ee8f8dac12b9b471890a7252f8", _M192),
    ZooEntry("msh64-r10", "f94c01d537349f21b57bb464bc0df09d12bdf86b6299d80b74357d46bb31ddc6", _M192),
    ZooEntry("msh64-r11", "b0d8c9d97821e8a47d96c6f7b1b1f7f368351ed912906d8f3b1f7615f3cd9766", _M192_MODULATED),
    ZooEntry("msh64-r12", "485ff759265b796f3343afaa94a5308dce17f0c5c324b4026b3ea995c3efe219", _M192_MODULATED),
    ZooEntry("msh128-r1", "43ac0d7908d81d39b6632739c3275c7f0a352ce16e52b44071195a4cc9733c50", _N128_MODULATED),
    ZooEntry("msh128-r2", "32b04f9e84c71b1943bd2fc72f637b217c155124d348b6889f7d02316ed272e7", _N128_MODULATED),
    ZooEntry("msh128-r3", "838ae754557d27f6c1611a84ab4e2a6ace9f5a2764db3afc898d21e7522cdbc5", _N128_MODULATED),
    ZooEntry("msh128-r4", "3d2dc9c157dd9daa7d597b274a502b4860fb1177308bf8f83101340dd2672c63", _N128_MODULATED),
    ZooEntry("msh128-r5", "50b996ae0550aa47948d8378acb5ead03192d75abc6521438d0d6a4a8194f3de", _N128_MODULATED),
    ZooEntry("msh128-r6", "1d27a29937cbf41d388b2baddb5d83e6dd61dfbddcee714e52b45733a3d125a7", _N128_MODULATED),
    ZooEntry("msh128-r7", "3b7b9902f5b1fa37c63b803d7d1e90731a6883c5a09b3e5ade9ad648f374b17a", _N128_MODULATED),
    ZooEntry("msh128-r8", "a891c0921640218675f11cdf3b88de85d9434a83aa638a1588e04593a5147d6d", _N128_MODULATED),
    ZooEntry("msh128-r9", "9779d1ad2ed740e863666e121aa63308b3d7f52cbddb3ae4ca01c77f20a277d6", _N128_MODULATED),
    ZooEntry("msh128-r10", "4bc2f0237515ec30d9276040176a4ace611332bb6000311c06251162e36037be", _N128_MODULATED),
    ZooEntry("msh128-r11", "dac2c77f69b5861a0b8868acd26b53a86115fc66ce2e0f01d150223ed8e267fb", _N128_MODULATED),
)
REGISTRY: dict[str, ZooEntry] = {e.name: e for e in _ENTRIES}
DEFAULT_MODEL = "msh128-r11"


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


def weights_path(entry: ZooEntry) -> Path:
    return Path(str(resources.files(__package__).joinpath("weights", entry.file)))


def _read_json(arrays, key: str) -> dict:
    return json.loads(bytes(arrays[key]).decode("utf-8"))


def _table(arrays, prefix: str) -> Table:
    return Table(arrays[f"{prefix}/pmf"], arrays[f"{prefix}/offset"], arrays[f"{prefix}/length"])


@torch.inference_mode(False)  # ordinary tensors even when called under inference mode: refine.py needs autograd
def load_file(path: Path | str, name: str | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a weights file (shipped or exported by ``vaezip export``). Raises ModelError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read model weights ({e.strerror}); reinstall vaezip or re-export") from None
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
            config = ModelConfig.from_dict(_read_json(arrays, "config.json"))
            meta = _read_json(arrays, "meta.json")
            state = {k[len("param/"):]: torch.from_numpy(arrays[k].astype(np.float32))
                     for k in arrays.files if k.startswith("param/")}
            z_table, y_table = _table(arrays, "table/z"), _table(arrays, "table/y")
            thresholds = arrays["table/y/threshold"].astype(np.int64)
            escape = "table/escape" in arrays.files and bool(arrays["table/escape"])
        if len(thresholds) != len(y_table):
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
                       Coder(z_table, escape), Coder(y_table, escape), thresholds, exact, meta)


def freeze(network: MeanScaleHyperprior, name: str, meta: dict | None = None) -> LoadedModel:
    """A coding model straight from a trained network (tables frozen now, in memory, with escape
    coding): what export writes, without the file. Used by validation during training."""
    from ..entropy.parameters import scale_thresholds
    from ..entropy.priors import scale_table
    from ..entropy.tables import y_table, z_table

    network = network.eval().requires_grad_(False)
    return LoadedModel(name, b"\0" * 16, network, Coder(z_table(network.z_prior), True),
                       Coder(y_table(), True),
                       scale_thresholds(scale_table()), ExactEntropyParameters(network), meta or {})


@functools.lru_cache(maxsize=4)
def load_model(name: str = DEFAULT_MODEL, device: str | None = None) -> LoadedModel:
    """A shipped model by name, its weights checked against the registry's SHA-256 first."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise ModelError(f"unknown model {name!r}; `vaezip models` lists the shipped ones "
                         f"({', '.join(REGISTRY)})")
    path = weights_path(entry)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        raise ModelError(f"weights of model {name!r} are missing ({path}); reinstall vaezip") from None
    if digest != entry.sha256:
        raise ModelError(f"weights of model {name!r} do not match the registry (sha256 {digest[:12]}…, "
                         f"expected {entry.sha256[:12]}…); reinstall vaezip")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_file(path, name, device)


def save_file(path: Path | str, network: MeanScaleHyperprior, z_coder: Coder, y_coder: Coder,
              scale_thresholds: np.ndarray, meta: dict) -> None:
    """Write a weights file (used by export). The network must already hold the float16-rounded values."""
    arrays = {
        "config.json": np.frombuffer(json.dumps(network.config.to_dict()).encode(), dtype=np.uint8),
        "meta.json": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8),
    }
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
    arrays["table/y/threshold"] = np.asarray(scale_thresholds, dtype=np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    Path(path).write_bytes(buf.getvalue())
