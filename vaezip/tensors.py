"""uint8 image arrays <-> the float tensors the networks take: the boundary between image.py and the models."""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


def to_tensor(array: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW float in [0, 1]."""
    return torch.from_numpy(np.array(array, dtype=np.uint8)).to(device).permute(2, 0, 1)[None].float().div_(255.0)


def from_tensor(x: torch.Tensor) -> np.ndarray:
    """1x3xHxW float -> HxWx3 uint8, rounded and clipped."""
    return x[0].clamp(0, 1).mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad bottom and right to a multiple of ``multiple`` (the decoder crops it back)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")
