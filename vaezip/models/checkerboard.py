"""The variable-rate mean–scale hyperprior with a checkerboard context model (He, Zheng, Sun, Wang & Qin
2021, "Checkerboard context model for efficient learned image compression", CVPR).

The latent grid is split like a checkerboard: *anchors* (row + column even) are coded first, from the
hyperprior alone; the *non-anchors* then also see their decoded anchor neighbours through a context
convolution. Decoding takes two parallel passes instead of the one-position-at-a-time loop of an
autoregressive context (Minnen et al. 2018), and still removes much of the spatial redundancy the
hyperprior leaves.

::

    h = h_s(z_hat')                                       (2M channels: means and scales, as without context)
    anchors:      (mean, scale) = h + e([h, 0])
    non-anchors:  (mean, scale) = h + e([h, c(y_hat'_anchors)])
    y_hat'_anchors = (round(y' - mean) + mean) on anchors, 0 elsewhere

c is a 5x5 convolution (M -> M). Its input is zero off the anchors, so at a non-anchor position only the
12 taps that land on anchors ever see a value; the others start at zero and never receive a gradient.
e is the 1x1 "entropy parameters" network of Minnen et al. (3M -> 2M -> 2M). Its output is a residual
on h, and its last layer starts at zero, so that a model started from a hyperprior-only one computes
exactly what that model computed and only improves from there (training/grow.py).

At coding time h_s, c and e are evaluated as exact integer networks (entropy/parameters.py): the
non-anchors' tables depend on decoded values, so every machine must compute them bit for bit.
"""
from __future__ import annotations

import torch
from torch import nn

from ..entropy import quantize
from ..entropy.priors import gaussian_likelihood
from .hyperprior import MeanScaleHyperprior, ModelConfig, RDOutput

CONTEXT_KERNEL = 5


def anchor_mask(height: int, width: int, device=None) -> torch.Tensor:
    """(1, 1, height, width) bool: True at the anchors (row + column even), coded first."""
    i = torch.arange(height, device=device).view(-1, 1)
    j = torch.arange(width, device=device).view(1, -1)
    return ((i + j) % 2 == 0).view(1, 1, height, width)


def context_taps(kernel: int = CONTEXT_KERNEL) -> torch.Tensor:
    """(kernel, kernel) float: 1 on the taps that land on anchors when centred on a non-anchor."""
    return (~anchor_mask(kernel, kernel)[0, 0]).float()  # odd offsets from the (even) centre


class CheckerboardHyperprior(MeanScaleHyperprior):
    def __init__(self, config: ModelConfig = ModelConfig(arch="msh-gain-cb")):
        super().__init__(config)
        m = config.m
        self.context_prediction = nn.Conv2d(m, m, CONTEXT_KERNEL, padding=CONTEXT_KERNEL // 2)
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(3 * m, 2 * m, 1), nn.LeakyReLU(inplace=True), nn.Conv2d(2 * m, 2 * m, 1),
        )
        with torch.no_grad():
            self.context_prediction.weight.mul_(context_taps())
            self.entropy_parameters[-1].weight.zero_()
            self.entropy_parameters[-1].bias.zero_()

    def refine(self, h: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """h (h_s's output) and the context (None: zero, for anchors) -> the means and scales of y'."""
        if context is None:
            context = h.new_zeros(h.shape[0], self.config.m, *h.shape[2:])
        return h + self.entropy_parameters(torch.cat([h, context], dim=1))

    def from_latents(self, y: torch.Tensor, z: torch.Tensor, t: torch.Tensor,
                     noise: torch.Generator | None = None) -> RDOutput:
        z_likelihood = self.z_prior.likelihood(quantize.noisy(z, noise))
        h = self.hyper_synthesis(quantize.round_ste(z), t)
        anchor = anchor_mask(*y.shape[2:], device=y.device)
        params_a = self.refine(h, None)
        mean_a = params_a[:, : self.config.m]
        y_anchor = torch.where(anchor, quantize.round_ste(y - mean_a) + mean_a, torch.zeros_like(y))
        params_n = self.refine(h, self.context_prediction(y_anchor))
        mean, scale = torch.where(anchor, params_a, params_n).chunk(2, dim=1)
        y_likelihood = gaussian_likelihood(quantize.noisy(y, noise) - mean, scale)
        y_hat = quantize.round_ste(y - mean) + mean
        return RDOutput(self.synthesise(y_hat, t), y_likelihood, z_likelihood)
