"""End-to-end coding with the shipped model: round trips, sizes, rates, determinism."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from PIL import Image

import vaezip
from vaezip.codec import decode_array, encode_array, rate_level
from vaezip.entropy.coder import Coder
from vaezip.errors import DecodeMismatchError, FormatError, ImageError
from vaezip.refine import refine_max_pixels

from conftest import psnr, synthetic


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_photo_round_trip(photos, model, name):
    img = photos[name]
    res = encode_array(img, "RGB", 75, model)
    out, header = decode_array(res.data, model)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert header.width == img.shape[1] and header.height == img.shape[0]
    assert psnr(img, out) > 24.0, "shipped weights reconstruct a photo far too poorly"
    assert res.bpp < 3.0


def test_file_bits_are_within_one_percent_of_the_estimate_plus_header(photos, model):
    img = photos["astronaut"]
    for q in (0, 50, 100):
        res = encode_array(img, "RGB", q, model)
        header = vaezip.read_info(res.data)
        payload_bits = (len(res.data) - header.header_bytes) * 8
        # constriction quantizes the tables' probabilities, so the file may also come out slightly smaller.
        assert abs(payload_bits - res.estimated_bits) <= 0.01 * res.estimated_bits + 64


def test_quality_trades_rate_for_distortion(photos, model):
    img = photos["coffee"]
    results = [encode_array(img, "RGB", q, model) for q in (5, 50, 95)]
    sizes = [len(r.data) for r in results]
    quality = [psnr(img, decode_array(r.data, model)[0]) for r in results]
    assert sizes[0] < sizes[1] < sizes[2]
    assert quality[0] < quality[1] < quality[2]


def test_repeated_encodes_are_identical(photos, model):
    img = photos["chelsea"]
    assert encode_array(img, "RGB", 40, model).data == encode_array(img, "RGB", 40, model).data


@pytest.mark.parametrize("h,w", [(1, 1), (17, 999), (65, 3), (64, 64)])
def test_odd_sizes_keep_their_exact_size(model, h, w):
    img = synthetic(h, w)
    out, _ = decode_array(encode_array(img, "RGB", 50, model).data, model)
    assert out.shape == (h, w, 3)


def test_large_image_round_trip(model):
    img = synthetic(2000, 3000, seed=3)
    out, _ = decode_array(encode_array(img, "RGB", 30, model).data, model)
    assert out.shape == img.shape
    assert psnr(img, out) > 20


def test_grayscale_comes_back_grayscale(gray_photo):
    out = vaezip.decompress(vaezip.compress(gray_photo, quality=80))
    assert out.mode == "L" and out.size == (gray_photo.shape[1], gray_photo.shape[0])
    assert psnr(gray_photo, np.asarray(out)) > 24


def test_palette_and_alpha_inputs(photos):
    rgb = Image.fromarray(photos["chelsea"])
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    assert vaezip.decompress(vaezip.compress(pal)).mode == "RGB"
    rgba = rgb.convert("RGBA")
    alpha = np.zeros(rgba.size[::-1], dtype=np.uint8)
    alpha[:, : rgba.size[0] // 2] = 255
    rgba.putalpha(Image.fromarray(alpha))
    out = np.asarray(vaezip.decompress(vaezip.compress(rgba, quality=90)))
    right = out[:, rgba.size[0] // 2 + 40:]
    assert right.mean() > 235, "fully transparent pixels are composited onto white"


def test_public_api_accepts_pil_and_arrays(photos):
    img = photos["astronaut"][:128, :192]
    a = vaezip.compress(img, quality=60)
    b = vaezip.compress(Image.fromarray(img), quality=60)
    assert a == b
    info = vaezip.read_info(a)
    assert (info.width, info.height, info.quality, info.model) == (192, 128, 60, vaezip.DEFAULT_MODEL)


def test_bad_arguments():
    with pytest.raises(ValueError):
        vaezip.compress(synthetic(8, 8), quality=101)
    with pytest.raises(ImageError):
        vaezip.compress(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ImageError):
        vaezip.compress(np.zeros((4, 4, 4), dtype=np.uint8))


def test_symbol_checksum_catches_a_decoder_that_disagrees(model, monkeypatch):
    """If the decoder computes other probabilities (another machine), it must say so, not return garbage."""
    data = encode_array(synthetic(64, 96), "RGB", 60, model).data
    import vaezip.codec as codec
    real = codec.scale_index_exact
    monkeypatch.setattr(codec, "scale_index_exact", lambda s, t: (real(s, t) + 1).clamp(max=63))
    with pytest.raises((DecodeMismatchError, FormatError)):
        decode_array(data, model)


def _with_escape(model, escape: bool):
    return dataclasses.replace(model, z_coder=Coder(model.z_coder.table, escape),
                               y_coder=Coder(model.y_coder.table, escape))


def _huge_latents(model, monkeypatch):
    real = model.network.latents
    monkeypatch.setattr(model.network, "latents", lambda *a, **k: tuple(v * 1000 for v in real(*a, **k)))


def test_without_escape_latents_beyond_the_tables_are_counted_as_clipped(photos, model, monkeypatch):
    """msh64-r1 .. r4 clamp such values (entropy/coder.py)."""
    clamping = _with_escape(model, False)
    img = photos["astronaut"][:128, :192]
    assert encode_array(img, "RGB", 50, clamping).clipped == 0
    _huge_latents(model, monkeypatch)
    res = encode_array(img, "RGB", 50, clamping)
    assert res.clipped > 0
    decode_array(res.data, clamping)  # the file still decodes: clipped values are coded as the nearest in range


def test_the_default_model_codes_latents_beyond_the_tables_exactly(photos, model, monkeypatch):
    """Models exported since msh64-r5 escape-code such values: nothing is clipped, the decoder's symbols
    match the encoder's (the symbol checksum), the file is as large as estimated."""
    assert model.y_coder.escape and model.z_coder.escape
    img = photos["astronaut"][:128, :192]
    plain = encode_array(img, "RGB", 50, model)
    assert plain.data == encode_array(img, "RGB", 50, _with_escape(model, False)).data  # nothing beyond: same bytes
    _huge_latents(model, monkeypatch)
    res = encode_array(img, "RGB", 50, model)
    assert res.clipped == 0 and len(res.data) > 4 * len(plain.data)
    assert abs(len(res.data) * 8 - res.estimated_bits) < 0.01 * res.estimated_bits + 8 * 200
    decode_array(res.data, model)


def test_refinement_lowers_the_real_rate_distortion_cost(photos, model):
    """Encode-time refinement (vaezip/refine.py) minimises lambda * MSE + bpp over the latents: measured with
    real coding (file bytes, decoded pixels) the cost goes down; the ordinary decoder reads the file; the
    same call gives the same bytes."""
    img = photos["coffee"][100:228, 200:392]
    lam = float(model.config.lam(rate_level(model, 60)))

    def cost(res):
        dec, _ = decode_array(res.data, model)
        mse = np.mean((dec.astype(np.float64) - img.astype(np.float64)) ** 2)  # on 0..255: lambda * 255^2 * MSE
        return lam * mse + len(res.data) * 8 / img.shape[0] / img.shape[1]

    plain = encode_array(img, "RGB", 60, model)
    refined = encode_array(img, "RGB", 60, model, refine=10)
    assert cost(refined) < cost(plain)
    assert encode_array(img, "RGB", 60, model, refine=10).data == refined.data
    with pytest.raises(ValueError):
        encode_array(img, "RGB", 60, model, refine=-1)
    limit = refine_max_pixels(model.config)  # refinement's memory grows with the pixels and the width N
    assert refine_max_pixels(dataclasses.replace(model.config, n=2 * model.config.n)) == limit // 2
    side = math.isqrt(limit) + 1
    with pytest.raises(ImageError, match="too large to refine"):
        encode_array(np.zeros((side, side, 3), dtype=np.uint8), "RGB", 60, model, refine=1)


def test_refine_through_the_public_api_loads_a_model_that_autograd_can_use():
    """The codec runs under inference mode; a model it loads itself must still hold ordinary tensors."""
    from vaezip.zoo.loader import load_model

    load_model.cache_clear()
    data = vaezip.compress(synthetic(32, 48), 50, refine=2)
    assert np.asarray(vaezip.decompress(data)).shape == (32, 48, 3)


def test_decompression_bomb_limit(model):
    data = encode_array(synthetic(64, 64), "RGB", 50, model).data
    with pytest.raises(FormatError, match="exceeds the limit"):
        vaezip.decompress(data, max_pixels=1000)


def test_tiled_transforms_give_the_same_file_and_image(photos, model, monkeypatch):
    """Beyond ENCODE_TILE / DECODE_TILE the transforms run in tiles; with the halos of nn/tiling.py the
    result is the one-piece result (here with tiles far smaller than the real ones)."""
    import vaezip.codec as codec

    img = photos["astronaut"]
    whole = encode_array(img, "RGB", 60, model)
    whole_img, _ = decode_array(whole.data, model)
    monkeypatch.setattr(codec, "ENCODE_TILE", 128)
    monkeypatch.setattr(codec, "DECODE_TILE", 4)
    tiled = encode_array(img, "RGB", 60, model)
    assert tiled.data == whole.data
    tiled_img, _ = decode_array(whole.data, model)
    assert np.abs(tiled_img.astype(int) - whole_img).max() <= 1
    assert (tiled_img != whole_img).mean() < 1e-3


def test_a_halo_below_the_receptive_radius_would_show(model):
    """The tiling test above can fail: with too small a halo the tiles disagree."""
    import torch

    from vaezip.nn.tiling import run_tiled

    y = torch.randn(1, model.config.m, 12, 12)
    g_s = model.network.g_s
    with torch.inference_mode():
        assert (run_tiled(g_s, y, 4, 4, up=16) - g_s(y)).abs().max() < 1e-4
        assert (run_tiled(g_s, y, 4, 1, up=16) - g_s(y)).abs().max() > 1e-3
