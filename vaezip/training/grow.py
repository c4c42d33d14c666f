"""Growing a trained model into a wider one without losing what it has learned.

The latent width M bounds the quality a model can reach at high rates: with no quantization at all,
the shipped N=64, M=96 model reconstructs Kodak at only about 31 dB, because 96 values per 16x16x3
pixels cannot carry more. Training a wider model from scratch would throw away the CPU-hours already
spent, so we widen the trained one instead, in the function-preserving way of Net2Net (Chen, Goodfellow
& Shlens 2016, "Net2Net: accelerating learning via knowledge transfer", ICLR):

* every weight of the old model keeps its value and meaning;
* the new latent channels start small (g_a's new filters are scaled down), so that they quantize to
  zero and neither the reconstruction nor the old channels' rate changes at the start;
* the layers that read the new channels (g_s, h_a) start with zero weights on them where a non-zero
  value would change the output (h_a), and with their usual random init where the input is zero anyway
  (g_s: it sees the rounded latents, which are zero), so that gradients reach the new channels;
* h_s's output rows for the new channels' means and scales start at zero (mean 0, smallest scale), so
  that a zero latent costs almost no bits until it is used.

The hyper-synthesis keeps its hidden widths (``hyper_hidden``); only its output grows.

A hyperprior model may also gain a checkerboard context (models/checkerboard.py): its context and
entropy-parameters networks are new, and the latter's last layer starts at zero, so the grown model again
computes what the source computed. Only M and the context may change; everything else must match.
"""
from __future__ import annotations

import dataclasses

import torch

from ..errors import VaezipError
from ..models import MeanScaleHyperprior, ModelConfig, build_model

#: New analysis filters start at this fraction of their default initialisation.
NEW_FILTER_SCALE = 0.01


class GrowError(VaezipError):
    pass


def hyper_hidden(config: ModelConfig) -> int:
    return config.m if config.hyper_hidden is None else config.hyper_hidden


#: Architecture changes that keep what the source computes: (source arch, target arch).
GROWABLE_ARCHS = {("msh-gain", "msh-gain"), ("msh-gain", "msh-gain-cb"), ("msh-gain-cb", "msh-gain-cb")}


def can_grow(source: ModelConfig, target: ModelConfig) -> bool:
    """True when target differs from source only by a larger (or equal) M, with h_s's hidden width kept,
    and perhaps by an added context model."""
    same = dataclasses.replace(target, m=source.m, hyper_hidden=source.hyper_hidden, arch=source.arch)
    return (same == source and target.m >= source.m and hyper_hidden(target) == hyper_hidden(source)
            and (source.arch, target.arch) in GROWABLE_ARCHS
            and (source.arch == "msh-gain" or target.m == source.m))  # a trained context does not widen


def grow(source: MeanScaleHyperprior, target: ModelConfig, seed: int = 0) -> MeanScaleHyperprior:
    """A model of config ``target`` that computes what ``source`` computes (see the module docstring)."""
    if not can_grow(source.config, target):
        raise GrowError(f"cannot grow a model of config {source.config} into {target}: only the latent "
                        f"channels M may grow, with --hyper-channels {hyper_hidden(source.config)}, "
                        "and a context model be added")
    m0, m = source.config.m, target.m
    torch.manual_seed(seed)
    grown = build_model(target)
    old = source.state_dict()
    new = grown.state_dict()
    with torch.no_grad():
        for key, value in new.items():
            src = old.get(key)  # None: a new context network, which keeps its (function-preserving) init
            if src is not None and src.shape == value.shape:
                value.copy_(src)
        # g_a's last convolution: (M, N, k, k); new filters small.
        last = f"g_a.{len(source.g_a) - 1}"
        new[f"{last}.weight"][:m0] = old[f"{last}.weight"]
        new[f"{last}.weight"][m0:] *= NEW_FILTER_SCALE
        new[f"{last}.bias"][:m0] = old[f"{last}.bias"]
        new[f"{last}.bias"][m0:] = 0
        # g_s's first (transposed) convolution: (M, N, k, k); keeps its random init for new inputs.
        new["g_s.0.weight"][:m0] = old["g_s.0.weight"]
        # h_a's first convolution: (N, M, k, k); zero weight on the new inputs.
        new["h_a.0.weight"][:, :m0] = old["h_a.0.weight"]
        new["h_a.0.weight"][:, m0:] = 0
        # h_s's last convolution: (2M, hidden, k, k) = [means; scales].
        out = f"h_s.{len(source.h_s) - 1}"
        for name in ("weight", "bias"):
            w, w0 = new[f"{out}.{name}"], old[f"{out}.{name}"]
            w.zero_()
            w[:m0] = w0[:m0]
            w[m:m + m0] = w0[m0:]
        # Gain units: (levels, M); new channels keep the initial gains.
        for key in ("gain.log_gain", "gain.log_inverse_gain"):
            new[key][:, :m0] = old[key]
    grown.load_state_dict(new)
    return grown
