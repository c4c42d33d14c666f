"""Checkpoint -> shipped inference artefact: EMA weights rounded to float16, tables frozen from them."""
from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import torch

from ..models import ModelConfig, build_model
from ..zoo import freeze, save_file
from .loop import load_checkpoint


def export(checkpoint: str | Path, output: str | Path, name: str, use_ema: bool = True) -> str:
    """Write a weights file; returns its SHA-256 (for the registry)."""
    ck = load_checkpoint(Path(checkpoint))
    network = build_model(ModelConfig.from_dict(ck["model_config"]))
    network.load_state_dict(ck["ema" if use_ema else "model"])
    with torch.no_grad():
        for v in network.state_dict().values():
            v.copy_(v.half().float())  # the shipped model is the float16-rounded one
    network.eval()
    meta = {
        "name": name, "step": ck["step"], "cpu_hours": round(ck["cpu_seconds"] / 3600, 3),
        "weights": "ema" if use_ema else "raw",
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    output = Path(output)
    tmp = output.with_suffix(".tmp")
    frozen = freeze(network, name, meta)
    save_file(tmp, network, frozen.z_coder, frozen.y_coder, frozen.scale_thresholds, meta)
    tmp.replace(output)
    return hashlib.sha256(output.read_bytes()).hexdigest()
