"""The one place where continuous latents become integers.

Training follows the "mixed" recipe that works best at small compute budgets: the rate term sees
additive uniform noise (the reparameterised posterior of Ballé et al. 2017, whose cross-entropy under
the prior is the KL term of the VAE), while the decoder sees rounded values with a straight-through
gradient, so that it is trained on what it will get at coding time (Minnen & Singh 2020, "Channel-wise
autoregressive entropy models", section 3.3).
"""
from __future__ import annotations

import torch


def noisy(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + u, u ~ U(-1/2, 1/2): a sample of the posterior q(y_tilde | x)."""
    return x + torch.empty_like(x).uniform_(-0.5, 0.5, generator=generator)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) in the forward pass, identity in the backward pass."""
    return x + (torch.round(x) - x).detach()
