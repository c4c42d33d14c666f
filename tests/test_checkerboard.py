"""The checkerboard context model: starts as the hyperprior it grows from, codes in two exact passes, and
its files decode only with both sections."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vaezip import format as vzformat
from vaezip.zoo import loader as zoo
from vaezip.codec import decode_array, encode_array
from vaezip.errors import FormatError, VaezipError
from vaezip.format.container import SECTION_Y, SECTION_Y2, SECTION_Z
from vaezip.models import CheckerboardHyperprior, ModelConfig, build_model
from vaezip.models.checkerboard import anchor_mask, context_taps
from vaezip.training.grow import can_grow, grow

from conftest import synthetic

TINY = ModelConfig(n=8, m=12, levels=3)
TINY_CB = ModelConfig(arch="msh-gain-cb", n=8, m=12, levels=3)


def trained_context(seed: int = 0) -> CheckerboardHyperprior:
    """A tiny checkerboard model whose context actually changes the parameters (as after training)."""
    torch.manual_seed(seed)
    net = build_model(TINY_CB)
    with torch.no_grad():
        last = net.entropy_parameters[-1]
        last.weight.normal_(0, 0.05)
        last.bias.normal_(0, 0.1)
    return net.eval()


def test_anchors_are_a_checkerboard_and_the_context_sees_only_anchors():
    a = anchor_mask(4, 5)[0, 0]
    assert a[0, 0] and not a[0, 1] and not a[1, 0] and a[1, 1]
    assert int(a.sum()) == 10
    taps = context_taps(5)
    assert int(taps.sum()) == 12 and taps[2, 2] == 0 and taps[2, 3] == 1
    net = build_model(TINY_CB)
    assert torch.equal(net.context_prediction.weight * (1 - taps), torch.zeros_like(net.context_prediction.weight))


def test_non_anchor_parameters_do_not_depend_on_non_anchors():
    """Causality of the two passes: changing a non-anchor latent must not move any non-anchor's mean or
    scale (the decoder does not know it yet when it needs them)."""
    net = trained_context()
    h = torch.randn(1, 24, 6, 6)
    y = torch.randn(1, 12, 6, 6) * 3
    anchor = anchor_mask(6, 6)

    def params(y):
        mean_a = net.refine(h, None)[:, :12]
        y_anchor = torch.where(anchor, torch.round(y - mean_a) + mean_a, torch.zeros_like(y))
        return torch.where(anchor, net.refine(h, None), net.refine(h, net.context_prediction(y_anchor)))

    y2 = y.clone()
    y2[:, :, 2, 3] += 7  # a non-anchor
    assert torch.equal(params(y), params(y2))
    y3 = y.clone()
    y3[:, :, 2, 2] += 7  # an anchor: its non-anchor neighbours' parameters move
    assert not torch.equal(params(y)[..., 2, 3], params(y3)[..., 2, 3])


def test_adding_the_context_keeps_what_the_model_computes():
    torch.manual_seed(0)
    source = build_model(TINY).eval()
    assert can_grow(TINY, TINY_CB) and not can_grow(TINY_CB, TINY)
    assert not can_grow(TINY_CB, ModelConfig(arch="msh-gain-cb", n=8, m=16, levels=3))
    grown = grow(source, TINY_CB).eval()
    x, t = torch.rand(2, 3, 64, 64), torch.tensor([0.3, 1.7])
    torch.manual_seed(1)
    a = source(x, t)
    torch.manual_seed(1)
    b = grown(x, t)
    for u, v in ((a.x_hat, b.x_hat), (a.y_likelihood, b.y_likelihood), (a.z_likelihood, b.z_likelihood)):
        assert torch.equal(u, v)


def test_grown_shipped_model_codes_the_same_bits_in_two_sections(photos, model):
    """At the start the context contributes exactly zero, also in the integer networks: the same symbols,
    the same estimated bits and the same image as the shipped model, now in sections z, y and y2."""
    cb = zoo.freeze(grow(model.network, model.config.__class__(**{**model.config.to_dict(), "arch": "msh-gain-cb"})),
                    "cb-test")
    base = zoo.freeze(model.network, "base-test")
    img = photos["coffee"][:128, :192]
    r_cb, r_base = encode_array(img, "RGB", 60, cb), encode_array(img, "RGB", 60, base)
    assert r_cb.estimated_bits == pytest.approx(r_base.estimated_bits, rel=1e-12)
    header, sections = vzformat.parse(r_cb.data)
    assert header.section_kinds == (SECTION_Z, SECTION_Y, SECTION_Y2)
    assert abs(len(r_cb.data) - len(r_base.data)) <= 16  # one more section entry and coder flush
    assert np.array_equal(decode_array(r_cb.data, cb)[0], decode_array(r_base.data, base)[0])


def test_context_model_round_trip_and_rate():
    model = zoo.freeze(trained_context(), "cb-tiny")
    img = synthetic(70, 90, seed=3)
    res = encode_array(img, "RGB", 40, model)
    dec, header = decode_array(res.data, model)  # the symbol checksum proves both passes agree
    assert dec.shape == img.shape and header.section_kinds == (SECTION_Z, SECTION_Y, SECTION_Y2)
    assert len(res.data) * 8 <= res.estimated_bits * 1.02 + 8 * 120
    assert encode_array(img, "RGB", 40, model).data == res.data


def test_context_sections_are_required_and_exclusive(model):
    cb = zoo.freeze(trained_context(), "cb-tiny")
    img = synthetic(40, 40)
    header, sections = vzformat.parse(encode_array(img, "RGB", 50, cb).data)

    def repack(kinds):
        return vzformat.pack(mode="RGB", width=40, height=40, quality=50, model=header.model,
                             weights_hash=header.weights_hash, symbols_crc=header.symbols_crc,
                             sections=[vzformat.Section(k, sections.get(k, b"")) for k in kinds])

    with pytest.raises(FormatError, match="y2 is missing"):
        decode_array(repack((SECTION_Z, SECTION_Y)), cb)
    base = zoo.freeze(build_model(TINY).eval(), "base-tiny")
    header, sections = vzformat.parse(encode_array(img, "RGB", 50, base).data)
    sections[SECTION_Y2] = b""
    with pytest.raises(FormatError, match="y2 does not belong"):
        decode_array(repack((SECTION_Z, SECTION_Y, SECTION_Y2)), base)


@pytest.mark.parametrize("h, w", [(5, 7), (6, 6), (1, 2), (4, 9)])
def test_exact_context_on_sub_grids_equals_the_dense_convolution(h, w):
    """The sub-grid evaluation is another summation order of the same exact integer sums: it must give
    the dense 5x5 convolution's integers at every non-anchor, whatever the grid size."""
    from vaezip.entropy.parameters import _rescale

    model = zoo.freeze(trained_context(), "cb-tiny")
    ctx = model.exact.context
    torch.manual_seed(h * w)
    anchor = anchor_mask(h, w)
    y_anchor = torch.where(anchor, torch.randint(-40, 40, (1, 12, h, w)).double() * 4096
                           + torch.randint(-4096, 4096, (1, 12, h, w)).double(), 0.0)
    dense = _rescale(torch.nn.functional.conv2d(y_anchor, ctx.dense, ctx.bias, padding=2))
    got = ctx(y_anchor)
    assert torch.equal(torch.where(anchor, 0.0, dense), got)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_mutated_context_files_end_in_a_vaezip_error(data):
    """Damage anywhere, including the second pass's section, ends in a vaezip error or an image."""
    model = _fuzz_model()
    buf = bytearray(_fuzz_sample())
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, max(0, len(buf) - 1)))  # cuts may leave nothing
        if data.draw(st.booleans()) and buf:
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:
            del buf[pos:pos + data.draw(st.integers(1, 32))]
    try:
        decode_array(bytes(buf), model, max_pixels=1 << 20)
    except VaezipError:
        pass


@functools.lru_cache(maxsize=1)
def _fuzz_model():
    return zoo.freeze(trained_context(), "cb-tiny")


@functools.lru_cache(maxsize=1)
def _fuzz_sample() -> bytes:
    return encode_array(synthetic(40, 72, seed=11), "RGB", 60, _fuzz_model()).data
