"""Frozen tables and the constriction coder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vaezip.entropy.coder import ESCAPE_LIMIT, Coder
from vaezip.entropy.parameters import scale_index_exact, scale_thresholds
from vaezip.entropy.priors import FactorizedDensity, gaussian_likelihood, scale_table
from vaezip.entropy.tables import Table, y_table, z_table
from vaezip.errors import FormatError


@pytest.fixture(scope="module")
def ytab():
    return y_table()


def test_tables_are_normalised(ytab):
    assert np.allclose(ytab.pmf.sum(axis=1), 1.0, atol=1e-12)
    zt = z_table(FactorizedDensity(8))
    assert np.allclose(zt.pmf.sum(axis=1), 1.0, atol=1e-9)
    assert (zt.length > 1).all()


def test_a_collapsed_z_channel_still_gets_a_codable_table():
    """A channel whose density put all its mass in one bin once gave a one-symbol table, which
    constriction refuses; the table keeps a bin on either side."""
    prior = FactorizedDensity(4)
    with torch.no_grad():
        for m in prior.matrices:
            m[0] = 10.0  # channel 0: a step of ~10^5 per unit, all mass in the bin of 0
    zt = z_table(prior)
    assert zt.length[0] >= 3 and zt.probabilities(0).max() > 1 - 1e-9
    coder = Coder(zt)
    values = np.array([zt.offset[0], 0, zt.offset[0] + zt.length[0] - 1, 0])
    index = np.zeros(4, dtype=np.int64)
    assert (coder.decode(coder.encode(values, index), index) == values).all()


def test_scale_index_picks_the_smallest_table_scale_not_below():
    table = scale_table()
    thresholds = scale_thresholds(table)
    s = torch.tensor([0.0, thresholds[0], thresholds[5] + 1, thresholds[-1] * 10], dtype=torch.float64)
    idx = scale_index_exact(s, thresholds).tolist()
    assert idx == [0, 0, 6, len(table) - 1]


def _sample(ytab, seed=0, shape=(12, 9, 13)):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ytab), shape)
    vals = np.round(rng.normal(0, 1, shape) * scale_table()[idx]).astype(np.int64)
    return Coder(ytab).clamp(torch.from_numpy(vals), torch.from_numpy(idx)).numpy(), idx


def test_round_trip_and_compressed_bits_exceed_information(ytab):
    coder = Coder(ytab)
    vals, idx = _sample(ytab)
    data = coder.encode(vals, idx)
    assert np.array_equal(coder.decode(data, idx), vals)
    info = coder.information_bits(vals, idx)
    assert info <= len(data) * 8 <= info * 1.01 + 64


def test_golden_bitstream():
    """Pins constriction's bitstream (its version is pinned) and our symbol order: if this changes, old
    files no longer decode. The table is built from exact dyadic numbers, so no libm is involved."""
    table = Table(np.array([[1, 2, 4, 8, 4, 2, 1], [1, 1, 1, 1, 1, 1, 1]]) / np.array([[22], [7]]),
                  offset=[-3, 0], length=[7, 7])
    idx = np.array([0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1])
    vals = np.array([0, 6, -3, 3, 0, 2, 1, 5, -1, 0, 2, 4])
    data = Coder(table).encode(vals, idx)
    assert data.hex() == GOLDEN_HEX
    assert np.array_equal(Coder(table).decode(data, idx), vals)


GOLDEN_HEX = "9f3ba2556fb9c093"


def test_golden_bitstream_with_escapes():
    """Pins the escape layout (entropy/coder.py): edge symbols, then n and the low bits, after the table
    symbols. Values at an edge (3, 6 at index 1) and beyond both edges of both tables."""
    table = Table(np.array([[1, 2, 4, 8, 4, 2, 1], [1, 1, 1, 1, 1, 1, 1]]) / np.array([[22], [7]]),
                  offset=[-3, 0], length=[7, 7])
    idx = np.array([0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1])
    vals = np.array([0, 9, -40, 3, -1000, 2, 1, 6, -1, 0, 2, 4])
    data = Coder(table, escape=True).encode(vals, idx)
    assert data.hex() == GOLDEN_ESCAPE_HEX
    assert np.array_equal(Coder(table, escape=True).decode(data, idx), vals)


GOLDEN_ESCAPE_HEX = "a13ba255346c8a108ea1ec39"


def test_without_escape_values_are_clamped_into_their_table(ytab):
    vals = torch.tensor([10**6, -(10**6), 0])
    idx = torch.tensor([0, 0, 0])
    clamped = Coder(ytab).clamp(vals, idx)
    assert clamped.tolist() == [ytab.offset[0] + ytab.length[0] - 1, ytab.offset[0], 0]


def _beyond_the_edges(ytab):
    """Values at, just beyond and far beyond both edges of a few tables, among ordinary ones."""
    idx = np.array([0, 0, 0, 0, 5, 5, 63, 63, 0, 20, 20, 0])
    lo, hi = ytab.offset[idx], ytab.offset[idx] + ytab.length[idx] - 1
    shift = np.array([0, 1, -1, -1000, 2, 0, 1, -70000, 0, 4000, -3, 0])
    vals = np.where(shift > 0, hi + shift, np.where(shift < 0, lo + shift, 0))
    vals[0], vals[5] = hi[0], lo[5]  # exactly at an edge: an escape of distance 0
    return vals.astype(np.int64), idx


def test_escape_codes_values_beyond_the_tables_exactly(ytab):
    coder = Coder(ytab, escape=True)
    vals, idx = _beyond_the_edges(ytab)
    assert np.array_equal(coder.clamp(torch.from_numpy(vals), torch.from_numpy(idx)).numpy(), vals)
    data = coder.encode(vals, idx)
    assert np.array_equal(coder.decode(data, idx), vals)
    info = coder.information_bits(vals, idx)
    assert info <= len(data) * 8 <= info + 64
    # an escape costs the edge symbol plus 4.6 + log2(e + 1) bits: far more than a value inside
    inside = np.zeros_like(vals)
    assert info > coder.information_bits(inside, idx) + 8 * 4.5


def test_escape_limit_is_the_last_value_that_comes_back(ytab):
    coder = Coder(ytab, escape=True)
    idx = np.array([3, 3])
    hi, lo = ytab.offset[3] + ytab.length[3] - 1, ytab.offset[3]
    vals = torch.tensor([hi + ESCAPE_LIMIT + 5, lo - ESCAPE_LIMIT])
    kept = coder.clamp(vals, torch.from_numpy(idx)).numpy()
    assert kept.tolist() == [hi + ESCAPE_LIMIT, lo - ESCAPE_LIMIT]
    assert np.array_equal(coder.decode(coder.encode(kept, idx), idx), kept)


def test_escape_changes_nothing_for_values_inside_the_tables(ytab):
    """Without an edge symbol the stream of an escape coder is the one of a clamping coder."""
    vals, idx = _sample(ytab, seed=3)
    lo, hi = ytab.offset[idx], ytab.offset[idx] + ytab.length[idx] - 1
    assert not ((vals == lo) | (vals == hi)).any()
    assert Coder(ytab, escape=True).encode(vals, idx) == Coder(ytab).encode(vals, idx)


def test_garbage_words_give_a_format_error_or_wrong_symbols(ytab):
    coder = Coder(ytab)
    vals, idx = _sample(ytab)
    with pytest.raises(FormatError):
        coder.decode(b"abc", idx)
    data = bytearray(coder.encode(vals, idx))
    data[0] ^= 0xFF
    try:
        out = coder.decode(bytes(data), idx)
    except FormatError:
        return
    assert not np.array_equal(out, vals)  # caught upstream by the symbol checksum


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_likelihoods_stay_float32_under_mixed_precision(device_type):
    """bfloat16 training (--precision bf16, and on GPUs) must not reach the likelihoods' tails."""
    if device_type == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU")
    torch.manual_seed(0)
    prior = FactorizedDensity(4).to(device_type)
    z = (torch.randn(2, 4, 5, 5) * 3).to(device_type)
    v, s = (torch.randn(2, 4, 5, 5) * 4).to(device_type), (torch.rand(2, 4, 5, 5) * 5).to(device_type)
    ref_z, ref_y = prior.likelihood(z), gaussian_likelihood(v, s)
    with torch.autocast(device_type, dtype=torch.bfloat16):
        pz, py = prior.likelihood(z), gaussian_likelihood(v, s)
    assert pz.dtype == py.dtype == torch.float32
    assert torch.equal(pz, ref_z) and torch.equal(py, ref_y)
