"""The schedules of a run: its learning rate by step, and the rate levels it draws for each batch."""
from __future__ import annotations

import math

import numpy as np

from .config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then either a cosine decay over the whole run or, with ``decay_steps`` > 0, a
    warmup-stable-decay schedule: constant until the last ``decay_steps`` steps, then a linear decay.

    The second lets a run that has no planned end go on at a constant rate while short decayed branches
    (copies of its checkpoint resumed with a larger --steps) give the weights to export; a branch decayed
    over the last 10–20 % of its steps matches a cosine schedule of the same length (Hägele et al. 2024,
    "Scaling laws and compute-optimal training beyond fixed training durations"; Hu et al. 2024, MiniCPM).
    """
    floor = 0.02
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.decay_steps > 0:
        frac = min(1.0, max(0.0, (step - (cfg.steps - cfg.decay_steps)) / cfg.decay_steps))
        return cfg.lr * (1 - (1 - floor) * frac)
    frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def draw_levels(rng: np.random.Generator, count: int, levels: int, tilt: float = 1.0) -> np.ndarray:
    """Rate levels t in [0, levels - 1] for one batch (float32), one uniform draw each.

    ``tilt`` 1 draws t uniformly. Otherwise t has the truncated exponential density that is ``tilt`` times
    higher at t = 0 than at the top. Why tilt: BD-rate, the figure the model is judged by, weighs a
    relative change of rate equally at every quality, but the loss (rate + lambda * distortion) gives the same
    relative saving at the top level, where the rate is ~6x that of level 0, ~6x the weight. A tilt equal to
    that ratio of rates makes each level's share of the gradient match its share of BD-rate.
    """
    u = rng.uniform(0.0, 1.0, count)
    if tilt == 1.0:
        frac = u
    else:
        c = math.log(tilt)  # density of frac proportional to exp(-c * frac) on [0, 1], by inverting its CDF
        frac = -np.log1p(u * math.expm1(-c)) / c
    return (frac * (levels - 1)).astype(np.float32)
