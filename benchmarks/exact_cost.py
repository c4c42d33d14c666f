"""What the device-independent (exact integer) entropy parameters cost in rate: on each image, the bits of
the y symbols under the exact integer networks (what vaezip codes) against the bits the float32 networks of
the same model would have needed (its means and scale indices, the same frozen tables), at several qualities.

    python benchmarks/exact_cost.py [--kodak DIR] [--weights FILE] [--out benchmarks/results/exact-cost.json]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

import vaezip
from vaezip.codec import _code_y, hyper_output, rate_level
from vaezip.entropy.parameters import ACT_BITS, scale_index_exact
from vaezip.image import load
from vaezip.tensors import pad, to_tensor
from vaezip.models.checkerboard import anchor_mask
from vaezip.models.hyperprior import STRIDE_Z


def float_parameters(net, y: torch.Tensor, z_sym: torch.Tensor, t: torch.Tensor):
    """The float32 network's (mean, scale) of y', context included: what coding would use without the
    exact integer networks."""
    h = net.hyper_synthesis(z_sym, t)
    if not hasattr(net, "context_prediction"):
        return h.chunk(2, dim=1)
    anchor = anchor_mask(*y.shape[2:])
    params_a = net.refine(h, None)
    mean_a = params_a[:, : net.config.m]
    y_anchor = torch.where(anchor, torch.round(y - mean_a) + mean_a, torch.zeros_like(y))
    return torch.where(anchor, params_a, net.refine(h, net.context_prediction(y_anchor))).chunk(2, dim=1)


@torch.inference_mode()
def y_bits(model, img: np.ndarray, quality: float) -> tuple[float, float]:
    t = rate_level(model, quality)
    y, z = model.network.analyse(pad(to_tensor(img), STRIDE_Z), t)
    idx_z = torch.arange(z.shape[1]).view(1, -1, 1, 1).expand(z.shape)
    z_sym = model.z_coder.clamp(torch.round(z), idx_z)
    coder = model.y_coder
    exact = 0.0

    def count(kind, mean, idx, where):  # the codec's own passes, counting instead of coding
        nonlocal exact
        r = coder.clamp(torch.round(y - mean), idx).to(torch.int64)
        sel = slice(None) if where is None else where.expand(r.shape).numpy()
        exact += coder.information_bits(r.numpy()[sel], idx.numpy()[sel])
        return r

    _code_y(model, hyper_output(model, z_sym, quality), count)
    mean_f, scale_f = float_parameters(model.network, y, z_sym, t)
    idx_f = scale_index_exact(torch.floor(scale_f.double() * 2**ACT_BITS), model.scale_thresholds)
    r = coder.clamp(torch.round(y - mean_f), idx_f)
    return exact, coder.information_bits(r.numpy().astype(np.int64), idx_f.numpy())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kodak", default=os.environ.get("VAEZIP_KODAK", "../shared/datasets/kodak"))
    ap.add_argument("--weights")
    ap.add_argument("--qualities", default="0,50,100")
    ap.add_argument("--out", default="benchmarks/results/exact-cost.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = vaezip.load_model(args.weights) if args.weights else vaezip.load_model(vaezip.DEFAULT_MODEL, "cpu")
    files = sorted(Path(args.kodak).glob("kodim*.png"))
    rows = []
    for q in (float(v) for v in args.qualities.split(",")):
        exact = floating = 0.0
        for f in files:
            e, fl = y_bits(model, load(f)[0], q)
            exact += e
            floating += fl
        rows.append({"quality": q, "y_bits_exact": exact, "y_bits_float": floating,
                     "cost_pct": 100 * (exact / floating - 1)})
        print(f"q {q:5.1f}: exact {exact / 8 / len(files):.0f} B/image, float {floating / 8 / len(files):.0f} B/image, "
              f"cost {rows[-1]['cost_pct']:+.4f} %", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": model.name, "images": len(files), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
