"""Device-independent entropy parameters: h_s (and a context model's networks) evaluated as exact integer
networks.

Every quantity that selects a probability table must come out bit-identical on any CPU or GPU, thread
count or BLAS (Ballé, Johnston & Minnen 2019, "Integer networks for data compression with latent-variable
models"). Instead of training a quantized network, the trained float h_s is evaluated at coding time
in fixed point so that it is *exact*:

* inputs are integers: z_hat times the hyper inverse gain, rounded to ``ACT_BITS`` fractional bits;
* weights are rounded to ``WEIGHT_BITS`` fractional bits, biases to the product's bits;
* before each convolution, activations are clamped to ±``ACT_LIMIT``; with the weights' absolute column
  sums this bounds every partial sum below 2^53, so the float64 convolution of these integers is exact
  whatever the summation order or algorithm, and all machines get the same integers;
* rescaling is a division by a power of two and rounding, LeakyReLU a correctly rounded multiply and
  rounding, the gain an ``exp`` built from IEEE basic operations only (no libm);
* the scale index compares the integer scale with integer thresholds frozen at export;
* with a checkerboard context, the decoded anchors enter the context network as integers too
  (symbol times 2^ACT_BITS plus the exact fixed-point mean), so the non-anchors' tables are exact as well.

The cost in rate is the difference between this network and the float one it approximates (measured in
benchmarks/); the mean comes out of the same exact path, so reconstructions agree too up to the synthesis.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..nn.layers import SubpixelConvTranspose2d

WEIGHT_BITS = 16
ACT_BITS = 12
ACT_LIMIT = 4096.0 * 2**ACT_BITS  # activations beyond ±4096 are clamped (far outside what h_s produces)
_EXACT = 2.0**53


def exact_exp(x: float) -> float:
    """exp(x) from IEEE-754 basic operations only (range reduction by ln 2, then a Taylor series), so
    that every platform computes the same double. Accurate to a few ulp, which is all we need."""
    ln2 = 0.6931471805599453
    k = math.floor(x / ln2 + 0.5)
    r = x - k * ln2
    term, total = 1.0, 1.0
    for n in range(1, 24):
        term = term * r / n
        total = total + term
    return math.ldexp(total, k)  # exact scaling by 2^k


def quantized_gain(log_gain: np.ndarray, level_code: int) -> np.ndarray:
    """Per-channel gain of a (levels, C) log-gain table at the rate level t = level_code / 10000 (an exact
    integer: ModelConfig.level_code), in ACT_BITS fixed point (int64).

    The same exponential interpolation as GainUnits, computed in Python floats (no vectorised libm)."""
    pos = level_code
    lo = min(pos // 10000, log_gain.shape[0] - 2)
    w = (pos - lo * 10000) / 10000
    rows = log_gain.astype(np.float64)
    out = [math.floor(exact_exp(float(a) * (1 - w) + float(b) * w) * 2**ACT_BITS + 0.5)
           for a, b in zip(rows[lo], rows[lo + 1])]
    return np.asarray(out, dtype=np.int64)


def _integer_conv(module: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-point weights (WEIGHT_BITS) and biases (WEIGHT_BITS + ACT_BITS) of a convolution, checked to
    keep every sum exact; a SubpixelConvTranspose2d gives its equivalent convolution's."""
    w = torch.round(module.weight.detach().double().cpu() * 2**WEIGHT_BITS)
    b = torch.round(module.bias.detach().double().cpu() * 2 ** (WEIGHT_BITS + ACT_BITS))
    if isinstance(module, SubpixelConvTranspose2d):  # the same integer sums, as convolution + pixel shuffle
        w, b = module.subpixel_weight(w), module.subpixel_bias(b)
    # Largest |sum| one output can reach: ACT_LIMIT times the largest sum of |w| feeding it.
    bound = ACT_LIMIT * float(w.abs().sum(dim=(1, 2, 3)).max()) + float(b.abs().max())
    if bound >= _EXACT:
        raise ValueError(f"layer cannot be evaluated exactly (bound {bound:.3g} >= 2^53)")
    return w, b


def _rescale(y: torch.Tensor) -> torch.Tensor:
    """Sums in WEIGHT_BITS + ACT_BITS fixed point -> ACT_BITS, rounded half up."""
    return torch.floor((y + 2.0 ** (WEIGHT_BITS - 1)) / 2.0**WEIGHT_BITS)


class IntegerNetwork:
    """A chain of Conv2d / SubpixelConvTranspose2d / LeakyReLU layers evaluated exactly in fixed point on
    the CPU: ACT_BITS fixed-point values in (float64 holding integers), the same out."""

    def __init__(self, layers):
        self.layers = []
        for module in layers:
            if isinstance(module, (SubpixelConvTranspose2d, nn.Conv2d)):
                w, b = _integer_conv(module)
                shuffle = isinstance(module, SubpixelConvTranspose2d)
                padding = 1 if shuffle else module.padding
                stride = 1 if shuffle else module.stride
                self.layers.append(("conv", (shuffle, stride, padding), w, b))
            elif isinstance(module, nn.LeakyReLU):
                self.layers.append(("leaky", module.negative_slope, None, None))
            else:
                raise TypeError(f"no exact integer form for {type(module).__name__}")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for kind, a, w, b in self.layers:
            if kind == "conv":
                shuffle, stride, padding = a
                x = _rescale(F.conv2d(x.clamp(-ACT_LIMIT, ACT_LIMIT), w, b, stride, padding))
                if shuffle:
                    x = F.pixel_shuffle(x, 2)
            else:
                x = torch.where(x < 0, torch.floor(x * a + 0.5), x)
        return x


class IntegerCheckerboardContext:
    """The 5x5 context convolution of a checkerboard model, exactly, at the non-anchor positions only.

    Its input is zero off the anchors and its output is needed only at the non-anchors, so instead of a
    dense 5x5 convolution over the whole grid, each non-anchor sub-grid (even row / odd column and odd row /
    even column) is computed as a 3x3 convolution over the two anchor sub-grids at a quarter of the
    positions: about a fifth of the arithmetic. The sums are exact integers, so the result is the dense
    convolution's, bit for bit (tests/test_checkerboard.py). Anchor positions of the output are zero.
    """

    def __init__(self, module: nn.Conv2d):
        if module.kernel_size != (5, 5) or module.padding != (2, 2) or module.stride != (1, 1):
            raise TypeError("the checkerboard context must be a 5x5 convolution with padding 2")
        w, self.bias = _integer_conv(module)
        self.dense = w  # for tests: the plain convolution this one equals
        o, c = w.shape[:2]
        # kernels[s][:, k*c:(k+1)*c, p+1, q+1]: output sub-grid s (0: even/odd, 1: odd/even) reads anchor
        # sub-grid k (0: even/even, 1: odd/odd) at quarter-grid offset (p, q).
        self.kernels = [torch.zeros(o, 2 * c, 3, 3, dtype=w.dtype) for _ in range(2)]
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                if (dy + dx) % 2 == 0:
                    continue  # lands on a non-anchor: its input is always zero
                tap = w[:, :, 2 + dy, 2 + dx]
                for s, (ry, rx) in enumerate(((0, 1), (1, 0))):
                    iy, ix = ry + dy, rx + dx  # input parity and quarter-grid offset
                    k = iy % 2  # the input is an anchor: both coordinates share this parity
                    p, q = (iy - k) // 2, (ix - k) // 2
                    self.kernels[s][:, k * c:(k + 1) * c, p + 1, q + 1] = tap

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        x = F.pad(x.clamp(-ACT_LIMIT, ACT_LIMIT), (0, w % 2, 0, h % 2))  # even sizes; zeros, as the padding
        anchors = torch.cat([x[..., 0::2, 0::2], x[..., 1::2, 1::2]], dim=1)
        out = torch.zeros(x.shape[0], self.bias.shape[0], *x.shape[2:], dtype=x.dtype)
        out[..., 0::2, 1::2] = _rescale(F.conv2d(anchors, self.kernels[0], self.bias, padding=1))
        out[..., 1::2, 0::2] = _rescale(F.conv2d(anchors, self.kernels[1], self.bias, padding=1))
        return out[..., :h, :w]


class ExactEntropyParameters:
    """Everything that turns decoded symbols into probability tables, as exact integer networks: h_s and,
    for a checkerboard model (models/checkerboard.py), its context convolution and entropy-parameters
    network. All values are ACT_BITS fixed point (float64 holding integers) on the CPU."""

    def __init__(self, network: nn.Module):
        self.h_s = IntegerNetwork(network.h_s)
        self.has_context = hasattr(network, "context_prediction")
        if self.has_context:
            self.context = IntegerCheckerboardContext(network.context_prediction)
            self.entropy_parameters = IntegerNetwork(network.entropy_parameters)

    def hyper(self, z_hat: torch.Tensor, inverse_gain_q: np.ndarray) -> torch.Tensor:
        """z_hat: integer-valued (1, N, h, w); inverse_gain_q: (N,) in ACT_BITS fixed point.
        Returns h_s's output (means and scales of y')."""
        x = z_hat.detach().double().cpu() * torch.from_numpy(inverse_gain_q.astype(np.float64)).view(1, -1, 1, 1)
        return self.h_s(x)

    def refine(self, h_q: torch.Tensor, y_anchor_q: torch.Tensor | None,
               where: torch.Tensor | None = None) -> torch.Tensor:
        """h + e([h, c(anchors)]); ``y_anchor_q`` None: no context (the anchors' own parameters).
        ``where`` ((1, 1, H, W) bool): compute only these positions (e is 1x1), zero elsewhere."""
        if y_anchor_q is None:
            context = h_q.new_zeros(h_q.shape[0], h_q.shape[1] // 2, *h_q.shape[2:])
        else:
            context = self.context(y_anchor_q)
        if where is None:
            return h_q + self.entropy_parameters(torch.cat([h_q, context], dim=1))
        sel = where[0, 0]
        h_sel = h_q[..., sel].unsqueeze(-1)  # (B, C, K, 1): the chosen positions as a column
        out = torch.zeros_like(h_q)
        out[..., sel] = (h_sel + self.entropy_parameters(torch.cat([h_sel, context[..., sel].unsqueeze(-1)],
                                                                   dim=1)))[..., 0]
        return out


def scale_thresholds(scales: np.ndarray) -> np.ndarray:
    """Table scales in ACT_BITS fixed point, rounded up: index = number of thresholds below the scale."""
    return np.ceil(np.asarray(scales, dtype=np.float64) * 2**ACT_BITS).astype(np.int64)


def scale_index_exact(scale_q: torch.Tensor, thresholds: np.ndarray) -> torch.Tensor:
    """Smallest table entry whose threshold is >= the integer scale (clamped to the table)."""
    t = torch.from_numpy(thresholds.astype(np.float64))
    return torch.bucketize(scale_q, t).clamp_(0, len(thresholds) - 1)
