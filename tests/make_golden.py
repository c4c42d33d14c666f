"""Writes the golden files: one .vz per decoder path, with the .png it decodes to, in tests/data.

    python tests/make_golden.py [NAME ...]

Paths: every installed model (the hyperprior path of the real networks: golden-<model>.vz), and three tiny
models whose weights live in tests/data because no shipped model takes their path: ``tiny-checkerboard``
(the two-pass checkerboard context), ``tiny-escape`` (values beyond the tables, escape-coded) and
``tiny-clamp`` (the same values clamped, as the archived msh64-r1 .. r4 wrote them). With NAMEs, only those.

Run once when a model starts shipping or a decoder path is added, never to make a failing golden test pass:
a golden file that stops decoding means that old files stopped decoding.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaezip.codec import decode_array, encode_array
from vaezip.entropy.coder import Coder
from vaezip.models import ModelConfig, build_model
from vaezip.zoo import REGISTRY
from vaezip.zoo.loader import LoadedModel, freeze, load_model, save_file

HERE = Path(__file__).parent / "data"
TINY = ModelConfig(n=8, m=12, levels=3)


def source() -> np.ndarray:
    """A small deterministic test card: gradients, edges and texture (no external image)."""
    h, w = 72, 104
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 100 * np.sin(xx / 7) * np.cos(yy / 11)
    g = np.where((xx // 13 + yy // 13) % 2 == 0, 200.0, 60.0)
    b = 255 * xx / w * (yy / h)
    return np.clip(np.stack([r, g, b], axis=2), 0, 255).round().astype(np.uint8)


def tiny(name: str) -> LoadedModel:
    """A tiny model with seeded weights, written to tests/data/<name>.npz and loaded back from it."""
    torch.manual_seed(0)
    net = build_model(ModelConfig(**{**TINY.__dict__, "arch": "msh-gain-cb"}) if name == "tiny-checkerboard" else TINY)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        if name != "tiny-checkerboard":  # latents far beyond the scales h_s predicts: beyond the tables
            net.gain.log_gain.add_(7.0)
            net.gain.log_inverse_gain.sub_(7.0)
        for v in net.state_dict().values():
            v.copy_(v.half().float())  # what a weights file holds
    frozen = freeze(net, name)
    escape = name != "tiny-clamp"
    path = HERE / f"{name}.npz"
    save_file(path, net, Coder(frozen.z_coder.table, escape), Coder(frozen.y_coder.table, escape),
              frozen.scale_thresholds, {"name": name, "cpu_hours": 0.0, "step": 0, "weights": "seeded"})
    return load_model(str(path), "cpu")


def write(model: LoadedModel) -> None:
    result = encode_array(source(), "RGB", 60, model)
    pixels, _ = decode_array(result.data, model)
    (HERE / f"golden-{model.name}.vz").write_bytes(result.data)
    Image.fromarray(pixels).save(HERE / f"golden-{model.name}.png")
    print(f"wrote golden-{model.name}.vz ({len(result.data)} bytes, {result.clipped} values clamped) and its .png")


def main() -> None:
    HERE.mkdir(exist_ok=True)
    names = sys.argv[1:] or [*(e.name for e in REGISTRY.values() if e.installed),
                             "tiny-checkerboard", "tiny-escape", "tiny-clamp"]
    for name in names:
        write(tiny(name) if name.startswith("tiny-") else load_model(name, "cpu"))


if __name__ == "__main__":
    main()
