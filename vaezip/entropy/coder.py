"""The only user of constriction: range coding of integer symbols under frozen tables.

constriction's RangeEncoder is a queue: symbols decode in the order they were encoded. Its output is a
sequence of 32-bit words, stored little-endian. Each table becomes a ``Categorical`` model with
``perfect=False``; constriction quantizes the float64 probabilities to fixed point with a deterministic
integer algorithm, so the same stored table gives the same model on every machine. The bitstream of
constriction is part of the .vz format: its version is pinned in pyproject.toml.

Values beyond a table's range. A table covers [lo, hi] = [offset, offset + length - 1] and its edge
symbols carry the probability mass of the tails. What a value beyond the range becomes depends on the
model (its weights file says which; ``Coder.escape``):

* without escape (msh64-r1 .. r4, kept so that their files decode as before): the value is clamped to the
  range, and the reconstruction uses the clamped value;
* with escape: an edge symbol means "this far or farther", and the distance e >= 0 beyond the edge follows
  after all table symbols of the section, for each edge symbol in raster order, as an Exp-Golomb code
  (Teuhola 1978) under uniform models: n = floor(log2(e + 1)) with Uniform(ESCAPE_BITS), then the n low
  bits of e + 1 with Uniform(2**n). This is the bypass coding of overflow values of
  tensorflow-compression's and CompressAI's entropy models, so that any value up to ESCAPE_LIMIT beyond
  the edge is coded exactly, at about -log2 P(edge) + 4.6 + log2(e + 1) bits. A value beyond even that is
  clamped to it.
"""
from __future__ import annotations

import functools

import constriction
import numpy as np
import torch

from ..errors import FormatError
from .tables import Table

_Categorical = constriction.stream.model.Categorical
_Uniform = constriction.stream.model.Uniform
ESCAPE_BITS = 24  # n in 0..23: constriction's uniform models hold fewer than 2**24 symbols
ESCAPE_LIMIT = 2**ESCAPE_BITS - 2  # the largest distance beyond an edge that an escape codes
#: Elements handled at a time where per-element bounds are needed: memory stays flat for any image size.
CHUNK = 1 << 22


class Coder:
    """Encodes and decodes symbol groups where each group uses one table of ``table``."""

    def __init__(self, table: Table, escape: bool = False):
        self.table = table
        self.escape = escape
        # Each table's range as int32, so that per-element bounds cost 4 bytes, not 8 (50 MP: 38 M elements).
        self._lo = table.offset.astype(np.int32)
        self._hi = (table.offset + table.length - 1).astype(np.int32)

    @functools.lru_cache(maxsize=None)
    def _model(self, i: int):
        return _Categorical(self.table.probabilities(i), perfect=False)

    def _groups(self, index: np.ndarray):
        """Positions of the elements that use each table, in a fixed, decodable order: table by table, and
        within a table in raster order."""
        order = np.argsort(index, kind="stable")  # a radix sort for the small integer index types
        counts = np.bincount(index, minlength=len(self.table))
        ends = np.cumsum(counts)
        return [(t, order[ends[t] - counts[t]:ends[t]]) for t in np.flatnonzero(counts)]

    def _range(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._lo[index], self._hi[index]

    def clamp(self, values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Integer-valued ``values`` -> the values a decoder will get back, as int32 (for a coder without
        escape: clamped to the range of each element's table; with escape: to ESCAPE_LIMIT beyond it)."""
        margin = ESCAPE_LIMIT if self.escape else 0
        flat = values.detach().cpu().reshape(-1).clamp(-2.0**30, 2.0**30).to(torch.int32).numpy()
        tables = index.cpu().reshape(-1).numpy()
        for start in range(0, len(flat), CHUNK):
            part = slice(start, start + CHUNK)
            lo, hi = self._range(tables[part])
            np.clip(flat[part], lo - margin, hi + margin, out=flat[part])
        return torch.from_numpy(flat).view(values.shape).to(values.device)

    def _split(self, values: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat values -> (table symbols clamped into range, distances beyond the edge of the elements
        at an edge, in raster order), a chunk at a time."""
        symbols = np.empty_like(values)
        beyond = []
        for start in range(0, len(values), CHUNK):
            part = slice(start, start + CHUNK)
            lo, hi = self._range(index[part])
            np.clip(values[part], lo, hi, out=symbols[part])
            at_edge = (symbols[part] == lo) | (symbols[part] == hi)
            beyond.append(np.abs(values[part] - symbols[part])[at_edge])
        return symbols, np.concatenate(beyond) if beyond else np.zeros(0, values.dtype)

    def encode(self, values: np.ndarray, index: np.ndarray) -> bytes:
        """values: integer symbols, already passed through ``clamp``; index: the table of each."""
        values, index = values.ravel(), index.ravel()
        symbols, beyond = self._split(values, index) if self.escape else (values, None)
        encoder = constriction.stream.queue.RangeEncoder()
        for t, pos in self._groups(index):
            encoder.encode((symbols[pos] - self.table.offset[t]).astype(np.int32), self._model(t))
        if self.escape and len(beyond):
            n, low = _exp_golomb(beyond)
            encoder.encode(n.astype(np.int32), _Uniform(ESCAPE_BITS))
            long = n > 0
            if long.any():
                encoder.encode(low[long].astype(np.int32), _Uniform(), (1 << n[long]).astype(np.int32))
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, index: np.ndarray) -> np.ndarray:
        if len(data) % 4:
            raise FormatError(f"entropy-coded section of {len(data)} bytes is not a whole number of "
                              "32-bit words; the file is corrupt")
        flat = index.ravel()
        out = np.empty(flat.shape, dtype=np.int32)
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        try:
            decoder = constriction.stream.queue.RangeDecoder(words)
            for t, pos in self._groups(flat):
                out[pos] = decoder.decode(self._model(t), len(pos)) + self._lo[t]
            if self.escape:
                lo, hi = self._range(flat)
                edge = np.nonzero((out == lo) | (out == hi))[0]
                if len(edge):
                    n = decoder.decode(_Uniform(ESCAPE_BITS), len(edge)).astype(np.int64)
                    low = np.zeros_like(n)
                    long = n > 0
                    if long.any():
                        low[long] = decoder.decode(_Uniform(), (1 << n[long]).astype(np.int32))
                    beyond = ((1 << n) + low - 1).astype(np.int32)
                    out[edge] += np.where(out[edge] == lo[edge], -beyond, beyond)
        except Exception as e:  # constriction reports invalid data with various exception types
            raise FormatError(f"entropy-coded data cannot be decoded ({e}); the file is corrupt") from None
        return out.reshape(index.shape)

    def information_bits(self, values: np.ndarray, index: np.ndarray, chunk: int = 1 << 22) -> float:
        """-sum log2 P(symbol) under the tables, escapes included: the rate the coder should reach (summed
        over chunks of elements, so that no image-sized float64 array is made)."""
        values, index = values.ravel(), index.ravel()
        bits = 0.0
        for start in range(0, len(values), chunk):
            v, i = values[start:start + chunk], index[start:start + chunk]
            symbols, beyond = self._split(v, i) if self.escape else (v, np.zeros(0, np.int64))
            p = self.table.pmf[i, symbols - self._lo[i]]
            n, _ = _exp_golomb(beyond)
            bits += float(-np.log2(np.maximum(p, 2.0**-24)).sum() + len(n) * np.log2(ESCAPE_BITS) + n.sum())
        return bits


def _exp_golomb(beyond: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances e >= 0 -> (n = floor(log2(e + 1)), the n low bits of e + 1)."""
    v = beyond.astype(np.int64) + 1
    n = np.frexp(v.astype(np.float64))[1].astype(np.int64) - 1  # exact: v < 2**53
    return n, v - (1 << n)
