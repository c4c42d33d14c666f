"""Variable-rate mean–scale hyperprior VAE (Minnen, Ballé & Toderici 2018, without the
autoregressive context) with gain units for continuous rate control (Cui et al. 2021).

::

    x -g_a-> y -*gain(t)-> y' -h_a-> z -*hgain(t)-> z' -Q-> z_hat' -/hgain(t)-> -h_s-> (mu, sigma)
                            y' - mu -Q-> r ;  y_hat' = r + mu -/gain(t)-> -g_s-> x_hat

    rate   = -log2 p(z_hat' | factorized prior) - log2 N(r; 0, sigma)        (the KL term)
    loss   = lambda(t) * 255^2 * MSE(x, x_hat) + rate / pixels                (beta-VAE with beta = 1/lambda)

t is a continuous rate level in [0, levels-1]; quality 0..100 maps linearly onto it (codec.py). With
``ModelConfig.conditional``, g_a and g_s also see t: every GDN's input is scaled and shifted per channel
and level (the conditional convolution of Choi et al. 2019), so the transforms, not only the latents'
gains, can differ between rates. With ``ModelConfig.res_blocks``, both transforms gain residual blocks at
1/8 resolution (Cheng et al. 2020): depth at a small cost in computation.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..entropy import quantize
from ..entropy.priors import FactorizedDensity, gaussian_likelihood
from ..nn.transforms import (GainUnits, analysis, hyper_analysis, hyper_synthesis, modulations, run_modulated,
                             synthesis)

#: Total down-sampling of z (g_a, 16, then h_a, 4): inputs are padded to a multiple of this.
STRIDE_Z = 64
#: Halos that make tiled transforms exact (receptive radii, nn/tiling.py): pixels for g_a, latent
#: positions for g_s; each residual block (nn/transforms.py) adds its own to both.
G_A_HALO = 32
G_S_HALO = 4
BLOCK_HALO_A = 16
BLOCK_HALO_S = 1


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build the network; stored beside the weights, never guessed from shapes."""

    arch: str = "msh-gain"
    n: int = 64
    m: int = 96
    levels: int = 8
    lambda_min: float = 0.0018
    lambda_max: float = 0.0932
    hyper_hidden: int | None = None  # width of h_s's hidden layers (None: m, as Minnen et al.)
    z_channels: int | None = None    # channels of z, and width of h_a and h_s's input (None: n)
    conditional: bool = False        # g_a and g_s modulated per rate level (nn/transforms.py, LevelModulation)
    res_blocks: int = 0              # residual blocks at 1/8 resolution in g_a and in g_s (nn/transforms.py)

    @property
    def hyper_width(self) -> int:
        """Channels of z (and of h_a's layers)."""
        return self.n if self.z_channels is None else self.z_channels

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key, absent in (("hyper_hidden", None), ("z_channels", None), ("conditional", False),
                            ("res_blocks", 0)):
            if d[key] == absent:
                del d[key]  # weights files written before the field existed read back equal
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)

    def with_levels(self, levels: int) -> "ModelConfig":
        """This config with ``levels`` rate levels at the same log-spacing of lambda: the existing levels keep
        their lambda, and new ones continue the progression above the top one (the levels training/grow.py
        adds for higher qualities)."""
        step = math.log(self.lambda_max / self.lambda_min) / (self.levels - 1)
        return dataclasses.replace(self, levels=levels, lambda_max=self.lambda_min * math.exp(step * (levels - 1)))

    def level_code(self, quality_code: int) -> int:
        """The one place where quality becomes a rate level: a quality code (hundredths of quality 0..100, as
        a .vz header stores it) -> the level t times 10000, an exact integer (the encoder's and decoder's exact
        gains are interpolated at it). Quality maps linearly onto [0, levels - 1]; each model keeps its own
        map, so a file's quality keeps its meaning under the model that wrote it."""
        return quality_code * (self.levels - 1)

    def lam(self, t: torch.Tensor) -> torch.Tensor:
        """lambda at level t, log-linear between lambda_min (t=0) and lambda_max (t=levels-1)."""
        frac = t / (self.levels - 1)
        return torch.exp(math.log(self.lambda_min) + frac * math.log(self.lambda_max / self.lambda_min))


@dataclass
class RDOutput:
    x_hat: torch.Tensor
    y_likelihood: torch.Tensor
    z_likelihood: torch.Tensor


def rd_loss(out: RDOutput, x: torch.Tensor,
            lam: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The one rate–distortion loss, for training and for encode-time refinement: per sample
    lambda * 255^2 * MSE(x, x_hat) + bits / pixels, averaged over the batch. As a VAE's negative ELBO: the rate
    is the KL term (the cross-entropy of the noisy latents under the prior), the MSE the likelihood term, and
    lambda their trade-off (Balle et al. 2018). x_hat is cropped to x's size (the model sees padded inputs).

    Returns:
        (loss, bpp per sample, MSE per sample), the MSE on values in [0, 1].
    """
    height, width = x.shape[-2:]
    bits = -(out.y_likelihood.log2().sum(dim=(1, 2, 3)) + out.z_likelihood.log2().sum(dim=(1, 2, 3)))
    bpp = bits / (height * width)
    mse = (out.x_hat[..., :height, :width].float() - x).pow(2).mean(dim=(1, 2, 3))
    return (lam * 255**2 * mse + bpp).mean(), bpp, mse


class MeanScaleHyperprior(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        n, m, levels, nz = config.n, config.m, config.levels, config.hyper_width
        self.g_a = analysis(n, m, config.res_blocks)
        self.g_s = synthesis(n, m, config.res_blocks)
        self.g_a_halo = G_A_HALO + BLOCK_HALO_A * config.res_blocks
        self.g_s_halo = G_S_HALO + BLOCK_HALO_S * config.res_blocks
        self.h_a = hyper_analysis(nz, m)
        self.h_s = hyper_synthesis(nz, m, config.hyper_hidden)
        # Initial gains follow the optimal quantizer step for MSE, step ~ lambda^-1/2.
        t = torch.arange(levels, dtype=torch.float32)
        log_lam = config.lam(t).log()
        init = 0.5 * (log_lam - log_lam.mean())
        self.gain = GainUnits(levels, m, init)
        self.hyper_gain = GainUnits(levels, nz, 0.5 * init)
        self.z_prior = FactorizedDensity(nz)
        # With ``conditional``, the hidden layers of g_a and g_s are modulated per level (Choi et al. 2019).
        self.g_a_levels = modulations(self.g_a, levels) if config.conditional else None
        self.g_s_levels = modulations(self.g_s, levels) if config.conditional else None

    # -- the steps shared by training and coding -------------------------------------------------
    def analysis(self, t: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """g_a at level t, as a function of (a tile of) x: the codec runs it tile by tile (nn/tiling.py)."""
        return lambda x: run_modulated(self.g_a, self.g_a_levels, x, t)

    def synthesis(self, t: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """g_s at level t, as a function of (a tile of) y_hat' divided by the gain (``ungain``)."""
        return lambda y: run_modulated(self.g_s, self.g_s_levels, y, t)

    def latents(self, y: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """g_a's output y -> (y', z'): the gained latents, before quantization."""
        y = y * self.gain.gain(t)
        return y, self.h_a(y) * self.hyper_gain.gain(t)

    def ungain(self, y_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """y_hat' -> g_s's input."""
        return y_hat * self.gain.inverse_gain(t)

    def analyse(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (y', z'): gained latents, before quantization."""
        return self.latents(self.analysis(t)(x), t)

    def hyper_synthesis(self, z_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_hat' -> h_s's output: the means and scales of y', stacked (2M channels)."""
        return self.h_s(z_hat * self.hyper_gain.inverse_gain(t))

    def hyper_parameters(self, z_hat: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_hat' -> (mean, scale) of y'."""
        mean, scale = self.hyper_synthesis(z_hat, t).chunk(2, dim=1)
        return mean, scale

    def synthesise(self, y_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """y_hat' -> x_hat."""
        return self.synthesis(t)(self.ungain(y_hat, t))

    # -- training ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> RDOutput:
        return self.from_latents(*self.analyse(x, t), t)

    def from_latents(self, y: torch.Tensor, z: torch.Tensor, t: torch.Tensor,
                     noise: torch.Generator | None = None) -> RDOutput:
        """The training path from the gained latents (y', z'): additive uniform noise for the rate (the
        posterior's reparameterised sample), rounding with a straight-through gradient into g_s and h_s.
        Encode-time refinement (refine.py) optimises y' and z' through it."""
        z_likelihood = self.z_prior.likelihood(quantize.noisy(z, noise))
        mean, scale = self.hyper_parameters(quantize.round_ste(z), t)
        y_likelihood = gaussian_likelihood(quantize.noisy(y, noise) - mean, scale)
        y_hat = quantize.round_ste(y - mean) + mean
        return RDOutput(self.synthesise(y_hat, t), y_likelihood, z_likelihood)
