"""Training-time densities: the factorized prior of z and the conditional Gaussian of y.

Both return likelihoods of (noisy or rounded) values integrated over unit-width bins, so that
-log2 of them is the rate in bits. The coding tables (tables.py) are frozen from these same
densities at export.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..nn.layers import lower_bound

SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 64
LIKELIHOOD_MIN = 1e-9


def scale_table() -> np.ndarray:
    """The frozen table of Gaussian scales y is coded with: log-spaced, as in tensorflow-compression's
    and CompressAI's indexed entropy models. Computed in float64 from constants only."""
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))


def float32_only(fn):
    """Runs ``fn`` outside mixed precision on every device (bfloat16 would ruin the likelihoods' tails)."""
    return torch.autocast("cpu", enabled=False)(torch.autocast("cuda", enabled=False)(fn))


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


@float32_only
def gaussian_likelihood(values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """P(v) for v = y_tilde - mean under N(0, scale) integrated over [v - 1/2, v + 1/2].

    Computed on the lower tail (|v|) for numerical accuracy, as in Ballé et al.'s implementation, and
    always in float32 (mixed precision would ruin the tails).
    """
    values, scales = values.float(), scales.float()
    scales = lower_bound(scales, SCALE_MIN)
    v = values.abs()
    upper = _std_normal_cdf((0.5 - v) / scales)
    lower = _std_normal_cdf((-0.5 - v) / scales)
    return lower_bound(upper - lower, LIKELIHOOD_MIN)


class FactorizedDensity(nn.Module):
    """The non-parametric, per-channel density of z (Ballé et al. 2018, "Variational image compression
    with a scale hyperprior", appendix 6.1): a cumulative function built from small monotonic
    layers, one set per channel. No auxiliary loss is needed: the coding range is found at export
    by evaluating the cumulative on the integer grid (tables.py).
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, 1, K) -> logit of the cumulative distribution at x, (C, 1, K)."""
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    @float32_only
    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """P(z) over unit bins for z of shape (B, C, H, W), in float32."""
        z = z.float()
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cumulative(v - 0.5)
        upper = self.logits_cumulative(v + 0.5)
        # Difference of sigmoids on the side where they are small, for accuracy in the tails.
        sign = -torch.sign(lower + upper).detach()
        p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        p = lower_bound(p, LIKELIHOOD_MIN)
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3)
