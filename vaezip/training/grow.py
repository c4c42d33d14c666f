"""Growing a trained model into a wider one without losing what it has learned.

The latent width M bounds the quality a model can reach at high rates: with no quantization at all,
the shipped N=64, M=96 model reconstructed Kodak at only about 31 dB, because 96 values per 16x16x3
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

The transforms' width N bounds what g_a and g_s can represent at all (with M=192, the unquantized
reconstruction still stayed near 32.5 dB on Kodak). Growing N adds hidden channels to g_a and g_s only
(z and the hyper networks keep their width, ``z_channels``): the new channels get their usual random
init, every weight from a new channel into an old one starts at zero (so the old channels, and the
outputs, compute what they computed), and GDN's new cross terms start at their (zero) initial value.
The zero weights receive gradients at once, since the new channels are active.

A hyperprior model may also gain a checkerboard context (models/checkerboard.py): its context and
entropy-parameters networks are new, and the latter's last layer starts at zero, so the grown model again
computes what the source computed. It may gain per-level modulation of its transforms (``conditional``,
nn/transforms.py) and residual blocks (``res_blocks``), which start as the identity; the layers after new
blocks move down g_a's and g_s's sequences, and their weights move with them.

Rate levels may be added above the top one (``--levels``, ModelConfig.with_levels: the same lambda spacing,
so the old levels keep their lambda) for qualities beyond the source's: the gains of a new level continue
the source's progression, its modulation starts as the top level's (_extend_levels). Only N, M, the
context, the modulation, the blocks and levels may be added; everything else must match.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from ..errors import GrowError
from ..models import MeanScaleHyperprior, ModelConfig, build_model
from ..nn.transforms import ResidualBlock

#: New analysis filters start at this fraction of their default initialisation.
NEW_FILTER_SCALE = 0.01
#: Architecture changes that keep what the source computes: (source arch, target arch).
GROWABLE_ARCHS = {("msh-gain", "msh-gain"), ("msh-gain", "msh-gain-cb"), ("msh-gain-cb", "msh-gain-cb")}


def hyper_hidden(config: ModelConfig) -> int:
    return config.m if config.hyper_hidden is None else config.hyper_hidden


def can_grow(source: ModelConfig, target: ModelConfig) -> bool:
    """True when target differs from source only by a larger (or equal) N and M, with the hyper networks'
    widths kept, perhaps by an added context model, per-level modulation or residual blocks, and perhaps by
    more rate levels above the top one at the same lambda spacing (ModelConfig.with_levels)."""
    if target.levels < source.levels or not math.isclose(
            target.lambda_max, source.with_levels(target.levels).lambda_max, rel_tol=1e-9):
        return False
    same = dataclasses.replace(target, n=source.n, m=source.m, hyper_hidden=source.hyper_hidden,
                               z_channels=source.z_channels, arch=source.arch, conditional=source.conditional,
                               res_blocks=source.res_blocks, levels=source.levels, lambda_max=source.lambda_max)
    return (same == source and target.n >= source.n and target.m >= source.m
            and target.conditional >= source.conditional and target.res_blocks >= source.res_blocks
            and hyper_hidden(target) == hyper_hidden(source) and target.hyper_width == source.hyper_width
            and (source.arch, target.arch) in GROWABLE_ARCHS
            and (source.arch == "msh-gain" or target.m == source.m))  # a trained context does not widen


def _lead(t: torch.Tensor, shape) -> torch.Tensor:
    """The leading block of t with the given shape: where the old values go."""
    return t[tuple(slice(0, s) for s in shape)]


def _moved_layers(source: MeanScaleHyperprior, grown: MeanScaleHyperprior) -> dict[str, str]:
    """Where the source's layers of g_a and g_s are in the grown model ("g_a.6" -> "g_a.7"): in order,
    passing over the residual blocks the grown model adds (its first blocks are the source's)."""
    moved = {}
    for name in ("g_a", "g_s"):
        old_blocks = sum(isinstance(layer, ResidualBlock) for layer in getattr(source, name))
        j = 0
        for i, layer in enumerate(getattr(grown, name)):
            if isinstance(layer, ResidualBlock):
                if old_blocks == 0:
                    continue  # a new block
                old_blocks -= 1
            moved[f"{name}.{j}"] = f"{name}.{i}"
            j += 1
    return moved


def _rename(key: str, moved: dict[str, str]) -> str:
    """A state-dict key with its layer prefix moved ("g_a.6.weight" -> "g_a.7.weight")."""
    head, _, rest = key.partition(".")
    index, _, rest = rest.partition(".")
    prefix = f"{head}.{index}"
    return f"{moved[prefix]}.{rest}" if prefix in moved else key


def grow(source: MeanScaleHyperprior, target: ModelConfig, seed: int = 0) -> MeanScaleHyperprior:
    """A model of config ``target`` that computes what ``source`` computes (see the module docstring)."""
    if not can_grow(source.config, target):
        raise GrowError(f"cannot grow a model of config {source.config} into {target}: only the widths N and M "
                        f"may grow, with --z-channels {source.config.hyper_width} and --hyper-channels "
                        f"{hyper_hidden(source.config)}, and a context model, --conditional, --res-blocks or --levels "
                        "(at the same lambda spacing) be added")
    m0, m = source.config.m, target.m
    torch.manual_seed(seed)
    grown = build_model(target)
    old = source.state_dict()
    new = grown.state_dict()
    moved = _moved_layers(source, grown)
    old = {_rename(key, moved): value for key, value in old.items()}  # in the grown model's names
    h_s_out = f"h_s.{len(source.h_s) - 1}"
    with torch.no_grad():
        for key, value in new.items():
            src = old.get(key)  # None: a new context network, modulation or block: keeps its (identity) init
            if src is not None and not key.startswith(h_s_out):
                _lead(value, src.shape).copy_(src)
        # New channels must not reach old ones: zero weights from new inputs into old outputs. Except in
        # g_s's first layer, whose new inputs (latents) are zero anyway and must pass gradients.
        for name, layer in grown.named_modules():
            key = f"{name}.weight"
            if (name.split(".")[0] not in ("g_a", "h_a", "g_s") or key == "g_s.0.weight" or key not in old
                    or not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))):
                continue
            w, (a, b) = new[key], old[key].shape[:2]
            if isinstance(layer, nn.ConvTranspose2d):  # (in, out, k, k)
                w[a:, :b] = 0
            else:  # (out, in, k, k)
                w[:a, b:] = 0
        # g_a's last convolution: new latent filters small, so that they quantize to zero.
        last = f"g_a.{len(grown.g_a) - 1}"
        new[f"{last}.weight"][m0:] *= NEW_FILTER_SCALE
        new[f"{last}.bias"][m0:] = 0
        # h_s's last convolution: (2M, hidden, k, k) = [means; scales]; new rows zero.
        for name in ("weight", "bias"):
            w, w0 = new[f"{h_s_out}.{name}"], old[f"{h_s_out}.{name}"]
            w.zero_()
            w[:m0] = w0[:m0]
            w[m:m + m0] = w0[m0:]
        _extend_levels(new, old, source.config.levels)
    grown.load_state_dict(new)
    return grown


def _extend_levels(new: dict, old: dict, levels: int) -> None:
    """Fill the rows of the rate levels added above the source's top one (``levels`` rows came from it).

    The gains (log-gain tables) continue the source's progression per channel: their mean step over its top
    three intervals, so each new level refines the quantization as the ones below it did. The per-level
    modulations copy the top level's. The new levels then start as a plausible extrapolation that training
    corrects, and the old levels compute exactly what they did.
    """
    for key, table in new.items():
        level_table = key.endswith(("gain.log_gain", "gain.log_inverse_gain")) or "_levels." in key
        if not level_table or table.shape[0] == levels:
            continue
        src = old[key].to(table.dtype)  # (levels, channels)
        cols = src.shape[1]
        added = torch.arange(1, table.shape[0] - levels + 1, dtype=table.dtype)[:, None]
        if key.endswith(("log_gain", "log_inverse_gain")):
            span = min(3, levels - 1)
            slope = (src[-1] - src[-1 - span]) / span
            table[levels:, :cols] = src[-1] + added * slope
        else:  # modulation: log_scale and bias
            table[levels:, :cols] = src[-1]
