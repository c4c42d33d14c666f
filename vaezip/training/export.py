"""Checkpoint(s) -> shipped inference artefact: EMA weights (or the average of several branches'), rounded to
float16, tables frozen from them."""
from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch

from ..models import ModelConfig, build_model
from ..zoo import freeze, save_file
from .loop import CheckpointError, load_checkpoint


def average_weights(states: list[dict]) -> dict:
    """The element-wise mean of state dicts of one architecture.

    A "model soup" (Wortsman et al. 2022, "Model soups: averaging weights of multiple fine-tuned models
    improves accuracy without increasing inference time"): branches that left one training run and were
    each decayed to a low learning rate lie in one basin, and the average of branches of similar quality is
    usually a little better than each (a weaker branch dilutes it: see benchmarks/README.md).
    Integer buffers (counters) are not averaged; they must agree.
    """
    out = {}
    for name, first in states[0].items():
        values = [state[name] for state in states]
        if first.is_floating_point():
            out[name] = torch.stack([v.double() for v in values]).mean(0).to(first.dtype)
        elif all(torch.equal(first, v) for v in values[1:]):
            out[name] = first
        else:
            raise CheckpointError(f"the checkpoints to average disagree in the integer buffer {name}")
    return out


def export(checkpoint: str | Path | Sequence[str | Path], output: str | Path, name: str, use_ema: bool = True,
           cpu_hours: float | None = None) -> str:
    """Write a weights file; returns its SHA-256 (for the registry).

    Several checkpoints (branches of one run) are averaged (``average_weights``). The file records the
    training CPU-hours: ``cpu_hours`` when given, else the checkpoint's own; for an average, pass the
    CPU-hours its branches took together (their shared trunk counted once), which no checkpoint knows.
    """
    paths = [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
    if not paths:
        raise CheckpointError("no checkpoint to export")
    cks = [load_checkpoint(Path(p)) for p in paths]
    configs = [ModelConfig.from_dict(ck["model_config"]) for ck in cks]
    if any(c != configs[0] for c in configs[1:]):
        raise CheckpointError("the checkpoints to average are of different architectures; "
                              "average only branches of one training run")
    network = build_model(configs[0])
    network.load_state_dict(average_weights([ck["ema" if use_ema else "model"] for ck in cks]))
    with torch.no_grad():
        for v in network.state_dict().values():
            v.copy_(v.half().float())  # the shipped model is the float16-rounded one
    network.eval()
    meta = {
        "name": name, "step": max(ck["step"] for ck in cks),
        "cpu_hours": round(cpu_hours if cpu_hours is not None else max(ck["cpu_seconds"] for ck in cks) / 3600, 3),
        "weights": "ema" if use_ema else "raw",
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if len(cks) > 1:
        meta["averaged"] = [{"step": ck["step"], "cpu_hours": round(ck["cpu_seconds"] / 3600, 3)} for ck in cks]
    output = Path(output)
    tmp = output.with_suffix(".tmp")
    frozen = freeze(network, name, meta)
    save_file(tmp, network, frozen.z_coder, frozen.y_coder, frozen.scale_thresholds, meta)
    tmp.replace(output)
    return hashlib.sha256(output.read_bytes()).hexdigest()
