"""The four transforms of a mean–scale hyperprior model (Minnen, Ballé & Toderici 2018) and the gain
units that give one set of weights a continuous range of rates (Cui et al. 2021)."""
from __future__ import annotations

import torch
from torch import nn

from .layers import GDN, conv, deconv


def analysis(n: int, m: int) -> nn.Sequential:
    """g_a: x (3 channels, values in [0, 1]) -> y (m channels, 1/16 resolution)."""
    return nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))


def synthesis(n: int, m: int) -> nn.Sequential:
    """g_s: y_hat -> x_hat."""
    return nn.Sequential(
        deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
        deconv(n, n), GDN(n, inverse=True), deconv(n, 3),
    )


def hyper_analysis(n: int, m: int) -> nn.Sequential:
    """h_a: y -> z (n channels, 1/64 resolution)."""
    return nn.Sequential(
        conv(m, n, 3, 1), nn.LeakyReLU(inplace=True),
        conv(n, n), nn.LeakyReLU(inplace=True),
        conv(n, n),
    )


def hyper_synthesis(n: int, m: int, hidden: int | None = None) -> nn.Sequential:
    """h_s: z_hat -> (mean, scale) of y, 2m channels. Its hidden layers have ``hidden`` and
    3·hidden/2 channels; Minnen et al. use hidden = m."""
    hidden = m if hidden is None else hidden
    return nn.Sequential(
        deconv(n, hidden), nn.LeakyReLU(inplace=True),
        deconv(hidden, hidden * 3 // 2), nn.LeakyReLU(inplace=True),
        conv(hidden * 3 // 2, 2 * m, 3, 1),
    )


class GainUnits(nn.Module):
    """A gain vector and an inverse-gain vector per rate level (Cui et al. 2021, "Asymmetric gained
    deep image compression with continuous rate adaptation", CVPR).

    ``gain(t)`` for a continuous level t in [0, levels-1] interpolates the neighbouring vectors
    exponentially, g = g_i^(1-w) * g_{i+1}^w, which is linear in the stored log-gains. The same
    interpolation is used in training (t drawn per sample) and at coding time, so every quality
    in between the levels has been trained, not only the knots.
    """

    def __init__(self, levels: int, channels: int, init_log_gain: torch.Tensor):
        super().__init__()
        init = init_log_gain.view(levels, 1).expand(levels, channels).clone()
        self.log_gain = nn.Parameter(init)
        self.log_inverse_gain = nn.Parameter(-init)

    @property
    def levels(self) -> int:
        return self.log_gain.shape[0]

    @staticmethod
    def _interpolate(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.clamp(0, table.shape[0] - 1)
        lo = t.floor().long().clamp(max=table.shape[0] - 2)
        w = (t - lo.to(t.dtype)).unsqueeze(-1)
        log_g = table[lo] * (1 - w) + table[lo + 1] * w
        return log_g.exp()[..., None, None]  # (B, C, 1, 1)

    def gain(self, t: torch.Tensor) -> torch.Tensor:
        return self._interpolate(self.log_gain, t)

    def inverse_gain(self, t: torch.Tensor) -> torch.Tensor:
        return self._interpolate(self.log_inverse_gain, t)
