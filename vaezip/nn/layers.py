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


class SubpixelConvTranspose2d(nn.ConvTranspose2d):
    """A 5x5, stride-2 transposed convolution computed as a 3x3 convolution with four times the output
    channels followed by a pixel shuffle (Shi et al. 2016, "Real-time single image and video super-resolution
    using an efficient sub-pixel convolutional neural network"; the equivalence is their section 2.2).

    The parameters are those of the ConvTranspose2d (same state dict, same function); only the forward
    differs: at inference about twice as fast on CPU. In training mode the native transposed convolution
    is used, since its backward pass is faster here (benchmarks/README.md).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 5, stride=2, padding=2, output_padding=1)

    def subpixel_weight(self, weight: torch.Tensor) -> torch.Tensor:
        cin, cout = weight.shape[:2]
        # Output pixel (2i + a, 2j + b) takes x[i + 1 - u, j + 1 - v] times w[a + 2u, b + 2v].
        w6 = F.pad(weight, (0, 1, 0, 1)).view(cin, cout, 3, 2, 3, 2)         # [c, o, u, a, v, b]
        w = w6.permute(1, 3, 5, 0, 2, 4).flip(4, 5)                           # [o, a, b, c, 2-u, 2-v]
        return w.reshape(cout * 4, cin, 3, 3)

    def subpixel_bias(self, bias: torch.Tensor) -> torch.Tensor:
        return bias.repeat_interleave(4)

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if self.training:
            return super().forward(x, output_size)
        w = self.subpixel_weight(self.weight)
        return F.pixel_shuffle(F.conv2d(x, w, self.subpixel_bias(self.bias), padding=1), 2)


def deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    """The up-sampling layer of g_s and h_s: 5x5, stride 2."""
    return SubpixelConvTranspose2d(cin, cout)
