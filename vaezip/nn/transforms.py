"""The four transforms of a mean–scale hyperprior model (Minnen, Ballé & Toderici 2018), the gain
units that give one set of weights a continuous range of rates (Cui et al. 2021), and the per-level
modulation of the transforms' hidden channels that lets g_a and g_s themselves depend on the rate (Choi
et al. 2019)."""
from __future__ import annotations

import torch
from torch import nn

from .layers import GDN, conv, deconv


def analysis(n: int, m: int, blocks: int = 0) -> nn.Sequential:
    """g_a: x (3 channels, values in [0, 1]) -> y (m channels, 1/16 resolution); with ``blocks``, that many
    residual blocks at 1/8 resolution, before the last convolution."""
    return nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n),
                         *(ResidualBlock(n) for _ in range(blocks)), conv(n, m))


def synthesis(n: int, m: int, blocks: int = 0) -> nn.Sequential:
    """g_s: y_hat -> x_hat; with ``blocks``, that many residual blocks at 1/8 resolution, after the first
    layer."""
    return nn.Sequential(
        deconv(m, n), GDN(n, inverse=True), *(ResidualBlock(n) for _ in range(blocks)),
        deconv(n, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True), deconv(n, 3),
    )


class ResidualBlock(nn.Module):
    """x + conv3x3(LeakyReLU(conv3x3(LeakyReLU(x)))): depth where it is cheap, at 1/8 resolution, where a
    3x3 convolution costs a ninth of a 5x5 one at 1/4 (the residual blocks of Cheng et al. 2020, "Learned
    image compression with discretized Gaussian mixture likelihoods and attention modules", CVPR, after He
    et al. 2016). The second convolution starts at zero, so a model that gains blocks computes exactly what
    it computed before (training/grow.py), and learns to use them from there.

    Each block widens the transform's receptive field by two positions at 1/8 resolution: 16 pixels for
    g_a, one latent position for g_s (the tiling halos of models/hyperprior.py).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.leaky_relu(x, 0.01))
        return x + self.conv2(nn.functional.leaky_relu(h, 0.01))


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

    def gain(self, t: torch.Tensor) -> torch.Tensor:
        return interpolate_levels(self.log_gain, t).exp()

    def inverse_gain(self, t: torch.Tensor) -> torch.Tensor:
        return interpolate_levels(self.log_inverse_gain, t).exp()


def interpolate_levels(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A (levels, C) table at continuous levels t (B,): linear between the neighbouring rows, as
    (B, C, 1, 1) to scale or shift feature maps."""
    t = t.clamp(0, table.shape[0] - 1)
    lo = t.floor().long().clamp(max=table.shape[0] - 2)
    w = (t - lo.to(t.dtype)).unsqueeze(-1)
    return (table[lo] * (1 - w) + table[lo + 1] * w)[..., None, None]


class LevelModulation(nn.Module):
    """A per-level scale and bias of each channel of a hidden layer: x * exp(s(t)) + b(t), with s and b
    interpolated between the levels like the gains (Choi, El-Khamy & Lee 2019, "Variable rate deep image
    compression with a conditional autoencoder", ICCV: their conditional convolution; feature-wise linear
    modulation in the sense of Perez et al. 2018, "FiLM").

    Placed after a convolution and before its GDN, it moves GDN's operating point per rate, so one set of
    filters can serve a rate range of 50x in different ways. Both tables start at zero (the identity), so
    a model that gains them computes exactly what it computed before (training/grow.py).
    """

    def __init__(self, levels: int, channels: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(levels, channels))
        self.bias = nn.Parameter(torch.zeros(levels, channels))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scale = interpolate_levels(self.log_scale, t).exp().to(x.dtype)
        return x * scale + interpolate_levels(self.bias, t).to(x.dtype)


def modulations(transform: nn.Sequential, levels: int) -> nn.ModuleList:
    """One LevelModulation for every GDN of ``transform`` (at the output of the convolution before it)."""
    return nn.ModuleList(LevelModulation(levels, layer.beta.shape[0]) for layer in transform
                         if isinstance(layer, GDN))


def run_modulated(transform: nn.Sequential, mods: nn.ModuleList | None, x: torch.Tensor,
                  t: torch.Tensor) -> torch.Tensor:
    """``transform(x)``, with each GDN's input modulated for the levels t when ``mods`` is given."""
    if mods is None:
        return transform(x)
    k = 0
    for layer in transform:
        if isinstance(layer, GDN):
            x = mods[k](x, t)
            k += 1
        x = layer(x)
    return x
