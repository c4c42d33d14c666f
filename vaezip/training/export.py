"""Checkpoint(s) -> shipped inference artefact: EMA weights (or the average of several branches'), rounded to
float16, tables frozen from them."""
from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .. import zoo
from ..errors import CheckpointError, ModelError
from ..models import ModelConfig, build_model
from ..zoo.loader import freeze, save_file
from .checkpoint import load_checkpoint


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


def _last_commit(path: Path) -> str:
    """The git commit that last held ``path`` (where an archived model's weights stay), or "" outside git."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%H", "--", path.name], cwd=path.parent,
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f"git:{out}:{path.relative_to(Path(zoo.__file__).parents[2]).as_posix()}" if out else ""


def release(weights: str | Path, status: str, manifest: Path = zoo.MANIFEST) -> zoo.ZooEntry:
    """Install an exported weights file in the package as a release: copied to zoo/weights/<name>.npz and
    recorded in the manifest (zoo.record_release: a new default keeps the old one installed as
    ``supported``; a new fast model archives the old one, whose weights stay in git history)."""
    if status not in zoo.INSTALLED:
        raise ModelError(f"--release {status!r}: choose one of {', '.join(zoo.INSTALLED)}")
    weights = Path(weights)
    with np.load(weights, allow_pickle=False) as arrays:
        meta = json.loads(bytes(arrays["meta.json"]).decode())
        config = json.loads(bytes(arrays["config.json"]).decode())
    name = meta["name"]
    entries = zoo.read_manifest(manifest)
    if name in entries and entries[name].sha256 != zoo.file_sha256(weights):
        raise ModelError(f"model {name!r} was released with other weights; export these under a new name")
    target = manifest.with_name("weights") / f"{name}.npz"
    if weights.resolve() != target.resolve():
        shutil.copyfile(weights, target)
    entry = zoo.ZooEntry(name=name, sha256=zoo.file_sha256(target), status=status,
                         description=zoo.describe(config), cpu_hours=float(meta.get("cpu_hours", 0.0)),
                         file_bytes=target.stat().st_size)
    old_fast = [e for e in entries.values() if e.status == "fast" and e.name != name and status == "fast"]
    source = _last_commit(zoo.weights_path(old_fast[0])) if old_fast else ""
    updated = zoo.record_release(entries, entry, archived_source=source)
    for e in old_fast:  # archived: no longer in the package
        zoo.weights_path(e).unlink(missing_ok=True)
    zoo.write_manifest(updated, manifest)
    return entry
