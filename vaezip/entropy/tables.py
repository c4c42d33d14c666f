"""Frozen coding tables, computed once at export from the training densities and stored with the
weights (tensorflow-compression's indexed entropy models; no ``update()`` step to forget).

* z: one table per channel of the factorized prior, over the integers [offset_c, offset_c + length_c).
* y: one zero-mean Gaussian table per entry of the scale table, over [-K_k, K_k]. y is coded as
  round(y - mean) under the table that an integer *scale index* selects, so the mean only moves the
  reconstruction and can never change which table decodes a symbol.

The probability mass beyond a table's range is folded into its edge symbols. The ranges are wide (tail
mass 1e-12 for z; 8 sigma plus 16 for y), yet a model can still meet a value beyond them where it
predicts a small scale wrongly; how such a value is coded (clamped, or escaped) is the coder's business
(entropy/coder.py).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from .priors import FactorizedDensity, scale_table

Z_TAIL = 1e-12
Z_SEARCH = 4096  # z values are searched for on [-Z_SEARCH, Z_SEARCH]
Y_SIGMAS = 8.0
Y_MARGIN = 16


@dataclass
class Table:
    """Probability tables of varying lengths, padded into one array.

    pmf[i, :length[i]] are the probabilities of symbols offset[i] .. offset[i] + length[i] - 1 (float64).
    """

    pmf: np.ndarray
    offset: np.ndarray
    length: np.ndarray

    def __post_init__(self):
        self.pmf = np.ascontiguousarray(self.pmf, dtype=np.float64)
        self.offset = np.asarray(self.offset, dtype=np.int64)
        self.length = np.asarray(self.length, dtype=np.int64)
        if not (self.pmf.ndim == 2 and self.offset.shape == self.length.shape == (self.pmf.shape[0],)):
            raise ValueError("inconsistent table shapes")
        if (self.length < 1).any() or (self.length > self.pmf.shape[1]).any():
            raise ValueError("table lengths out of range")

    def __len__(self) -> int:
        return self.pmf.shape[0]

    def probabilities(self, i: int) -> np.ndarray:
        return self.pmf[i, : self.length[i]]


def _pad(rows: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.float64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


@torch.no_grad()
def z_table(prior: FactorizedDensity) -> Table:
    """Per-channel tables of the factorized prior on the integer grid."""
    channels = prior.matrices[0].shape[0]
    grid = torch.arange(-Z_SEARCH, Z_SEARCH + 2, dtype=torch.float64) - 0.5  # bin edges
    prior64 = copy.deepcopy(prior).double()
    logits = prior64.logits_cumulative(grid.view(1, 1, -1).expand(channels, 1, -1).contiguous())[:, 0]
    cdf = torch.sigmoid(logits).numpy()  # (C, 2*Z_SEARCH + 2) at edges -Z-.5 .. Z+.5
    rows, offsets = [], []
    for c in range(channels):
        below = np.nonzero(cdf[c] < Z_TAIL / 2)[0]
        above = np.nonzero(cdf[c] > 1 - Z_TAIL / 2)[0]
        first = int(below[-1]) if len(below) else 0             # edge index of the lowest kept bin
        last = int(above[0]) if len(above) else len(cdf[c]) - 1  # edge index of the highest kept bin's top
        if last - first < 3:  # a collapsed channel (all mass in one bin): keep a bin on either side,
            first = max(0, first - 1)  # since constriction cannot build a one-symbol model
            last = min(len(cdf[c]) - 1, first + 3)
        pmf = np.diff(cdf[c, first:last + 1])
        pmf[0] += cdf[c, first]
        pmf[-1] += 1 - cdf[c, last]
        rows.append(np.clip(pmf, 0, None))
        offsets.append(first - Z_SEARCH)
    return Table(_pad(rows), np.array(offsets), np.array([len(r) for r in rows]))


def y_table() -> Table:
    """Zero-mean Gaussian tables, one per entry of the scale table (float64, from constants only)."""
    rows, offsets = [], []
    for s in scale_table():
        k = int(math.ceil(Y_SIGMAS * s)) + Y_MARGIN
        edges = (np.arange(-k, k + 2) - 0.5) / s
        cdf = 0.5 * np.array([math.erfc(-e / math.sqrt(2)) for e in edges])
        pmf = np.diff(cdf)
        pmf[0] += cdf[0]
        pmf[-1] += 1 - cdf[-1]
        rows.append(pmf)
        offsets.append(-k)
    return Table(_pad(rows), np.array(offsets), np.array([len(r) for r in rows]))
