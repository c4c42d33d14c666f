"""The only user of constriction: range coding of integer symbols under frozen tables.

constriction's RangeEncoder is a queue: symbols decode in the order they were encoded. Its output is a
sequence of 32-bit words, stored little-endian. Each table becomes a ``Categorical`` model with
``perfect=False``; constriction quantizes the float64 probabilities to fixed point with a deterministic
integer algorithm, so the same stored table gives the same model on every machine. The bitstream of
constriction is part of the .vz format: its version is pinned in pyproject.toml.
"""
from __future__ import annotations

import functools

import constriction
import numpy as np

from ..errors import FormatError
from .tables import Table

_Categorical = constriction.stream.model.Categorical


class Coder:
    """Encodes and decodes symbol groups where each group uses one table of ``table``."""

    def __init__(self, table: Table):
        self.table = table

    @functools.lru_cache(maxsize=None)
    def _model(self, i: int):
        return _Categorical(self.table.probabilities(i), perfect=False)

    def _groups(self, index: np.ndarray):
        """Positions of the elements that use each table, in a fixed, decodable order."""
        order = np.argsort(index, kind="stable")
        tables, starts = np.unique(index[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        return [(int(t), order[s:e]) for t, s, e in zip(tables, starts, ends)]

    def encode(self, values: np.ndarray, index: np.ndarray) -> bytes:
        """values: integer symbols (already clamped into their table's range); index: the table of each."""
        values = values.ravel().astype(np.int64)
        index = index.ravel().astype(np.int64)
        encoder = constriction.stream.queue.RangeEncoder()
        for t, pos in self._groups(index):
            symbols = (values[pos] - self.table.offset[t]).astype(np.int32)
            encoder.encode(symbols, self._model(t))
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, index: np.ndarray) -> np.ndarray:
        if len(data) % 4:
            raise FormatError(f"entropy-coded section of {len(data)} bytes is not a whole number of "
                              "32-bit words; the file is corrupt")
        flat = index.ravel().astype(np.int64)
        out = np.empty(flat.shape, dtype=np.int64)
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        try:
            decoder = constriction.stream.queue.RangeDecoder(words)
            for t, pos in self._groups(flat):
                out[pos] = decoder.decode(self._model(t), len(pos)).astype(np.int64) + self.table.offset[t]
        except Exception as e:  # constriction reports invalid data with various exception types
            raise FormatError(f"entropy-coded data cannot be decoded ({e}); the file is corrupt") from None
        return out.reshape(index.shape)

    def information_bits(self, values: np.ndarray, index: np.ndarray) -> float:
        """-sum log2 P(symbol) under the tables: the rate the coder should reach."""
        values = values.ravel().astype(np.int64)
        index = index.ravel().astype(np.int64)
        p = self.table.pmf[index, values - self.table.offset[index]]
        return float(-np.log2(np.maximum(p, 2.0**-24)).sum())
