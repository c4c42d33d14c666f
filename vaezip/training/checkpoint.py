"""Checkpoints: written atomically, read back with a one-line error for anything that is not one."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import CheckpointError


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:  # torch raises many types for a damaged zip/pickle
        raise CheckpointError(f"{path}: not a readable vaezip checkpoint ({e.__class__.__name__}); "
                              "pass the checkpoint.pt of a training run") from None
