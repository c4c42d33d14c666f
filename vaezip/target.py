"""Coding to a size or quality target: a bisection over the continuous quality scale.

The rate and the PSNR of a file rise with its quality (they are trained to, level by level), so the
highest quality whose file fits a byte budget, or the lowest whose decoded image reaches a PSNR, is found by
bisection on the quality code that the header stores (hundredths, 0..10000), as cwebp's ``-size`` and
``-psnr`` do with their own passes. Every probe is a whole encode (and, for a PSNR target, a decode), so a
target costs about ``PROBES`` encodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codec import EncodeResult, decode_array, encode_array
from .errors import ImageError
from .metrics import psnr
from .zoo.loader import LoadedModel

#: Bisection steps: the quality is found to within 100 / 2**PROBES (0.1 at 10).
PROBES = 10


@dataclass
class TargetResult:
    result: EncodeResult
    quality: float
    psnr: float | None  # for a PSNR target: the decoded file's
    reached: bool       # False: even quality 100 stays below the PSNR asked for


def _bisect(below, lo: int, hi: int) -> tuple[int, int]:
    """Narrow [lo, hi] with below(lo) and not below(hi) kept true, for PROBES steps or to neighbours."""
    for _ in range(PROBES):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        if below(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


def encode_to_size(array: np.ndarray, mode: str, model: LoadedModel, max_bytes: int, **kw) -> TargetResult:
    """The highest quality whose file is at most ``max_bytes`` long. Raises ImageError if quality 0 is larger."""
    cache: dict[int, EncodeResult] = {}

    def code(q: int) -> EncodeResult:
        if q not in cache:
            cache[q] = encode_array(array, mode, q / 100, model, **kw)
        return cache[q]

    if len(code(10000).data) <= max_bytes:
        return TargetResult(code(10000), 100.0, None, True)
    if len(code(0).data) > max_bytes:
        raise ImageError(f"even quality 0 needs {len(code(0).data):,} bytes, more than the {max_bytes:,} asked for; "
                         "allow more bytes")
    best, _ = _bisect(lambda q: len(code(q).data) <= max_bytes, 0, 10000)
    return TargetResult(code(best), best / 100, None, True)


def encode_to_psnr(array: np.ndarray, mode: str, model: LoadedModel, target_psnr: float, **kw) -> TargetResult:
    """The lowest quality whose decoded file reaches ``target_psnr`` dB (PSNR-RGB), or quality 100 if none does."""
    cache: dict[int, tuple[EncodeResult, float]] = {}
    reference = array if array.ndim == 3 else np.repeat(array[..., None], 3, axis=2)

    def code(q: int) -> tuple[EncodeResult, float]:
        if q not in cache:
            res = encode_array(array, mode, q / 100, model, **kw)
            decoded, _ = decode_array(res.data, model, workers=kw.get("workers"))
            cache[q] = (res, psnr(reference, decoded))
        return cache[q]

    for q in (10000, 0):
        res, value = code(q)
        if (q == 10000 and value < target_psnr) or (q == 0 and value >= target_psnr):
            return TargetResult(res, q / 100, value, value >= target_psnr)
    _, best = _bisect(lambda q: code(q)[1] < target_psnr, 0, 10000)  # best: the lowest known to reach it
    res, value = code(best)
    return TargetResult(res, best / 100, value, True)
