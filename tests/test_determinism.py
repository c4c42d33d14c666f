"""Files decode anywhere: the entropy parameters are exact integers, whatever the float path does."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from vaezip.codec import decode_array, encode_array, entropy_parameters, rate_level
from vaezip.entropy.parameters import exact_exp, quantized_gain

from conftest import psnr, synthetic


def test_exact_h_s_does_not_depend_on_summation_order(model):
    """Permuting the input channels (and the weights with them) changes the order of every sum; an exact
    integer evaluation gives identical results, a float32 one would not in general."""
    rng = np.random.default_rng(0)
    z = torch.from_numpy(rng.integers(-20, 20, (1, model.config.hyper_width, 5, 7))).double()
    gain = quantized_gain(model.network.hyper_gain.log_inverse_gain.detach().numpy(), model.config.level_code(5000))
    ref = model.exact.hyper(z, gain)
    perm = torch.from_numpy(rng.permutation(model.config.hyper_width))
    kind, first, w, b = model.exact.h_s.layers[0]
    model.exact.h_s.layers[0] = (kind, first, w[:, perm], b)
    try:
        out = model.exact.hyper(z[:, perm], gain[perm.numpy()])
    finally:
        model.exact.h_s.layers[0] = (kind, first, w, b)
    assert torch.equal(out, ref)
    assert torch.equal(out, torch.round(out)) and out.abs().max() < 2**53


@pytest.mark.parametrize("quality", [0, 75, 100])
def test_exact_h_s_follows_the_float_network(model, photos, quality):
    """On the z of a real photo the fixed-point h_s (weights to 2^-16, activations and the hyper gain
    to 2^-12) gives the float network's means to within a tenth of a quantization step everywhere and a
    few ten-thousandths on average. (Shipped models since msh64-r11 reach 0.045-0.065 at the worst of
    the astronaut's ~200,000 means and 0.0002 on average; benchmarks/exact_cost.py measures the rate this
    costs: a few thousandths of a percent.)"""
    from vaezip.tensors import to_tensor

    t = rate_level(model, quality)
    with torch.no_grad():
        _, z = model.network.analyse(to_tensor(photos["astronaut"]), t)
    z = torch.round(z)
    mean_exact, _ = entropy_parameters(model, z, quality)
    mean_float, _ = model.network.hyper_parameters(z, t)
    assert (mean_exact - mean_float).abs().max() < 0.1
    assert (mean_exact - mean_float).abs().mean() < 0.002


def test_exact_exp_is_accurate():
    for x in np.linspace(-30, 30, 1001):
        assert abs(exact_exp(float(x)) / np.exp(x) - 1) < 1e-13


def test_perturbed_synthesis_still_decodes_the_same_symbols(model, monkeypatch):
    """The decoder's float path (synthesis) computed in float64 with noise: symbols and checksums hold."""
    img = synthetic(96, 80, seed=5)
    data = encode_array(img, "RGB", 70, model).data
    ref, _ = decode_array(data, model)
    net = model.network
    synthesise = net.synthesise

    def noisy_float64(y_hat, t, tile=None):
        net.double()
        try:
            x = y_hat.double() * (1 + 1e-6 * torch.randn_like(y_hat.double()))
            return synthesise(x, t.double(), tile).float()  # the model's own synthesis, modulation included
        finally:
            net.float()

    monkeypatch.setattr(net, "synthesise", noisy_float64)
    out, _ = decode_array(data, model)  # raises DecodeMismatchError if any symbol differed
    monkeypatch.setattr(net, "synthesise", synthesise)
    assert psnr(ref, out) > 40


def test_decode_in_another_process_with_another_thread_count(model, tmp_path):
    img = synthetic(130, 70, seed=6)
    torch.set_num_threads(1)
    data = encode_array(img, "RGB", 40, model).data
    (tmp_path / "a.vz").write_bytes(data)
    script = textwrap.dedent(f"""
        import torch, numpy as np
        torch.set_num_threads(2)
        import vaezip
        out = np.asarray(vaezip.decompress(open({str(tmp_path / 'a.vz')!r}, 'rb').read()))
        np.save({str(tmp_path / 'out.npy')!r}, out)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    here, _ = decode_array(data, model)
    there = np.load(tmp_path / "out.npy")
    assert there.shape == here.shape
    assert np.abs(there.astype(int) - here).max() <= 1  # pixels may differ in the last float bit only


_CODE_IN_A_PROCESS = """
import hashlib, sys
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from vaezip.codec import decode_array, encode_array
from vaezip.zoo import FAST_MODEL
from vaezip.zoo.loader import load_model
img = np.load(sys.argv[3])
model = load_model(FAST_MODEL, "cpu")
data = encode_array(img, "RGB", 70, model, workers=int(sys.argv[2])).data
pixels, _ = decode_array(data, model, workers=int(sys.argv[2]))
print(hashlib.sha256(data).hexdigest(), hashlib.sha256(pixels.tobytes()).hexdigest())
"""


def test_one_input_gives_one_file_and_one_picture_on_any_thread_count(tmp_path):
    """Separate processes with 1 or 2 torch threads and 1 or 2 tile workers write byte-identical files and
    decode identical pixels: tiles are computed on one thread each, on a grid set by the image size alone
    (nn/tiling.py), and h_a too runs on one thread."""
    import subprocess
    import sys

    from vaezip.nn.tiling import tile_grid

    from conftest import synthetic

    img = synthetic(320, 560, seed=3)
    assert len(tile_grid(320, 576, 1024, 32, 16)) == 2  # more than one tile: the workers share the image
    np.save(tmp_path / "img.npy", img)
    results = {subprocess.run([sys.executable, "-c", _CODE_IN_A_PROCESS, threads, workers, str(tmp_path / "img.npy")],
                              capture_output=True, text=True, check=True).stdout
               for threads, workers in (("1", "1"), ("2", "2"), ("2", "1"), ("1", "2"))}
    assert len(results) == 1, results


def test_the_exact_hyper_synthesis_in_stripes_is_the_whole_one(model, monkeypatch):
    """Decoders compute h_s in stripes of z rows (bounded memory); with the halo of codec.py the integers are
    those of the whole image, and a halo one row short would change them."""
    import vaezip.codec as codec

    rng = np.random.default_rng(2)
    z = torch.from_numpy(rng.integers(-6, 7, (1, model.config.hyper_width, 13, 5))).double()
    mean_q, idx = codec._split(model, codec.hyper_output(model, z, 60))
    monkeypatch.setattr(codec, "HYPER_STRIPE", 3)
    mean, striped_idx = codec._striped_parameters(model, z, 60)
    assert torch.equal(striped_idx.long(), idx) and torch.equal(mean, codec._dequantize(mean_q))
    monkeypatch.setattr(codec, "HYPER_HALO", 1)
    short, short_idx = codec._striped_parameters(model, z, 60)
    assert not (torch.equal(short, mean) and torch.equal(short_idx, striped_idx))
