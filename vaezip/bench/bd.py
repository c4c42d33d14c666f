"""Bjøntegaard deltas (G. Bjøntegaard, VCEG-M33, 2001; piecewise cubic variant of VCEG-AL22 / JVET
common test conditions): the average rate difference at equal quality (BD-rate) and the average quality
difference at equal rate (BD-PSNR), between two rate–distortion curves, over the range both cover."""
from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import PchipInterpolator


def _curve(x, y):
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) == 0:
        return x, y
    order = np.argsort(x)
    x, y = x[order], y[order]
    keep = np.concatenate([[True], np.diff(x) > 0])  # PCHIP needs strictly increasing abscissae
    return x[keep], y[keep]


def _mean_difference(x_a, y_a, x_b, y_b, lo=-math.inf, hi=math.inf) -> float:
    """Mean of f_b - f_a over the overlap of both x ranges intersected with [lo, hi]."""
    x_a, y_a = _curve(x_a, y_a)
    x_b, y_b = _curve(x_b, y_b)
    if len(x_a) < 2 or len(x_b) < 2:
        return math.nan
    lo, hi = max(x_a[0], x_b[0], lo), min(x_a[-1], x_b[-1], hi)
    if not hi > lo:
        return math.nan
    f_a, f_b = PchipInterpolator(x_a, y_a), PchipInterpolator(x_b, y_b)
    return float((f_b.integrate(lo, hi) - f_a.integrate(lo, hi)) / (hi - lo))


def _quality_at_rate(rate, quality, r: float) -> float:
    x, y = _curve(np.log(rate), quality)
    return float(PchipInterpolator(x, y, extrapolate=True)(math.log(r))) if len(x) >= 2 else math.nan


def rate_at_quality(rate, quality, q: float) -> float:
    """The rate at which a curve reaches quality ``q`` (piecewise cubic in log-rate; NaN outside its range)."""
    x, y = _curve(quality, np.log(rate))
    return float(np.exp(PchipInterpolator(x, y, extrapolate=False)(q))) if len(x) >= 2 else math.nan


def bd_rate(rate_anchor, quality_anchor, rate_test, quality_test, rate_range=None) -> float:
    """Percent rate change of the test curve against the anchor at equal quality (negative = smaller).

    ``rate_range=(lo, hi)`` in bpp restricts the comparison to the qualities both curves reach inside it.
    """
    q_lo, q_hi = -math.inf, math.inf
    if rate_range is not None:
        q_lo = max(_quality_at_rate(rate_anchor, quality_anchor, rate_range[0]),
                   _quality_at_rate(rate_test, quality_test, rate_range[0]))
        q_hi = min(_quality_at_rate(rate_anchor, quality_anchor, rate_range[1]),
                   _quality_at_rate(rate_test, quality_test, rate_range[1]))
    d = _mean_difference(quality_anchor, np.log(rate_anchor), quality_test, np.log(rate_test), q_lo, q_hi)
    return (math.exp(d) - 1) * 100 if math.isfinite(d) else math.nan


def bd_quality(rate_anchor, quality_anchor, rate_test, quality_test, rate_range=None) -> float:
    """Average quality difference (dB for PSNR) of the test curve against the anchor at equal rate."""
    lo, hi = (math.log(rate_range[0]), math.log(rate_range[1])) if rate_range else (-math.inf, math.inf)
    return _mean_difference(np.log(rate_anchor), quality_anchor, np.log(rate_test), quality_test, lo, hi)
