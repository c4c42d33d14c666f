"""Encode-time refinement of the latents: an optional, slower encoder that makes smaller files.

The analysis transform is amortised inference: one network proposes the latents of every image, which
leaves an amortisation gap (Cremer et al. 2018). For the image at hand the encoder can close part of it
by minimising the model's own rate–distortion loss over the latents y' and z', the decoder fixed
(Campos et al. 2019, "Content adaptive optimization for neural image compression"; Yang, Bamler & Mandt
2020, "Improving inference for neural image compression"). The loss is the training loss (models.rd_loss) at the
image's rate level: additive noise for the rate, rounding with a straight-through gradient into the synthesis.
The file format and the decoder are unchanged: every decoder decodes refined files. The rate is the
hyperprior's alone (for a checkerboard model too, whose context would only lower it further), and the
coder's exact integer parameters are not involved: refinement only moves the latents that the ordinary
encoder then rounds and codes.
"""
from __future__ import annotations

import torch

from .models import MeanScaleHyperprior, rd_loss

#: Adam's step size on the latents, decayed linearly to zero over the steps.
REFINE_LR = 1e-2
#: Refinement back-propagates through g_s over the whole image, so its memory grows with the pixels and
#: with the transforms' width N: measured on the CPU, 0.6-0.8 GB per MP at N=64 and 1.1 GB per MP at
#: N=128. Images above this many pixels (at N=64; proportionally fewer for wider models) are refused
#: rather than run out of memory (at most about 13 GB at N=64, 9 GB at N=128).
REFINE_MAX_PIXELS = 16_000_000


def refine_max_pixels(config) -> int:
    """The largest image (in pixels) that ``refine_latents`` takes with a model of this config."""
    return REFINE_MAX_PIXELS * 64 // max(config.n, 64)


def refine_latents(net: MeanScaleHyperprior, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor,
                   t: torch.Tensor, steps: int, height: int, width: int,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(y', z') of ``net.analyse(x, t)`` -> refined (y', z') after ``steps`` Adam steps.

    x is the padded image; only its top-left ``height`` x ``width`` pixels count in the distortion. The
    noise is drawn from a generator seeded with ``seed``, so that an encoder run is repeatable.
    """
    if steps <= 0:
        return y, z
    gen = torch.Generator(device=y.device).manual_seed(seed)
    lam = float(net.config.lam(t.float()).item())

    # The codec runs under inference_mode; its tensors are cloned into ordinary ones for autograd.
    with torch.inference_mode(False), torch.enable_grad():
        target, t = x[..., :height, :width].clone(), t.clone()
        y = y.clone().requires_grad_(True)
        z = z.clone().requires_grad_(True)
        opt = torch.optim.Adam([y, z], lr=REFINE_LR)
        for i in range(steps):
            for group in opt.param_groups:
                group["lr"] = REFINE_LR * (1 - i / steps)
            loss, _, _ = rd_loss(net.from_latents(y, z, t, gen), target, lam)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return y.detach(), z.detach()
