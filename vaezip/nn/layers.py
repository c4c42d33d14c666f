"""Layers used by the transforms: GDN / inverse GDN and the lower-bound reparameterisation they need."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when it pushes x back above the bound.

    Ballé et al. (2018), "Variational image compression with a scale hyperprior", appendix 6.1:
    a plain clamp would freeze parameters that hit the bound.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through.to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    return _LowerBound.apply(x, bound)


class GDN(nn.Module):
    """Generalized divisive normalization, simplified form (Johnston et al. 2019, "Computationally
    efficient neural image compression"): y_i = x_i / (beta_i + sum_j gamma_ij |x_j|).

    The L1 form drops the square and square root of Ballé et al. (2016) at equal rate–distortion
    performance and is markedly cheaper on CPU. ``inverse=True`` gives IGDN (multiplication), used
    in the synthesis transform.

    beta and gamma are stored as square roots offset by a pedestal and bounded from below, as in
    Ballé et al. (2018), so that they stay positive and keep receiving gradients.
    """

    _PEDESTAL = 2.0**-18

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        p = self._PEDESTAL
        self._beta_bound = (beta_min + p) ** 0.5
        self._gamma_bound = p**0.5
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + p))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._PEDESTAL
        beta = lower_bound(self.beta, self._beta_bound) ** 2 - p
        gamma = lower_bound(self.gamma, self._gamma_bound) ** 2 - p
        c = gamma.shape[0]
        norm = F.conv2d(x.abs(), gamma.view(c, c, 1, 1), beta)
        return x * norm if self.inverse else x / norm


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1)
