"""Image quality metrics on uint8 RGB arrays: PSNR-RGB, and MS-SSIM (Wang et al. 2003) through pytorch-msssim
(the bench extra)."""
from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM on RGB (data range 255); NaN for images under 161 pixels a side (five scales need it)."""
    if min(a.shape[:2]) < 161:
        return math.nan
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    x = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float()
    y = torch.from_numpy(np.array(b)).permute(2, 0, 1)[None].float()
    return float(_ms_ssim(x, y, data_range=255.0))
