"""Frozen tables and the constriction coder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vaezip.entropy.coder import Coder
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
    return ytab.clamp(torch.from_numpy(vals), torch.from_numpy(idx)).numpy(), idx


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


def test_clamping_keeps_symbols_inside_their_table(ytab):
    vals = torch.tensor([10**6, -(10**6), 0])
    idx = torch.tensor([0, 0, 0])
    clamped = ytab.clamp(vals, idx)
    assert clamped.tolist() == [ytab.offset[0] + ytab.length[0] - 1, ytab.offset[0], 0]


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
