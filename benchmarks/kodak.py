"""vaezip on Kodak: bpp from the file size, PSNR-RGB from the decoded file, seconds, and the file's
overhead over the model's estimated bits, at several qualities.

    python benchmarks/kodak.py [--kodak DIR] [--model NAME] [--out benchmarks/results/kodak-vaezip.json]

DIR defaults to $VAEZIP_KODAK, else ../shared/datasets/kodak. One thread, CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import vaezip
from vaezip.metrics import psnr
from vaezip.bench.run import cpu_name
from vaezip.codec import decode_array, encode_array
from vaezip.image import load


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kodak", default=os.environ.get("VAEZIP_KODAK", "../shared/datasets/kodak"))
    ap.add_argument("--model", default=vaezip.DEFAULT_MODEL)
    ap.add_argument("--weights", help="a weights file to measure instead of a shipped model")
    ap.add_argument("--qualities", default="0,25,50,75,100")
    ap.add_argument("--out", default="benchmarks/results/kodak-vaezip.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = (vaezip.load_model(args.weights) if args.weights else vaezip.load_model(args.model, "cpu"))
    files = sorted(Path(args.kodak).glob("kodim*.png"))
    if not files:
        raise SystemExit(f"no kodim*.png in {args.kodak}; pass --kodak or set VAEZIP_KODAK")
    rows = []
    for q in [float(v) for v in args.qualities.split(",")]:
        per = []
        for f in files:
            img, mode = load(f)
            res = encode_array(img, mode, q, model)
            t0 = time.perf_counter()
            out, header = decode_array(res.data, model)
            dec_s = time.perf_counter() - t0
            payload_bits = (len(res.data) - header.header_bytes) * 8
            per.append({"image": f.name, "bytes": len(res.data), "bpp": res.bpp, "psnr_rgb": psnr(img, out),
                        "estimated_bits": res.estimated_bits, "payload_bits": payload_bits,
                        "header_bytes": header.header_bytes, "encode_s": res.seconds, "decode_s": dec_s})
        mean = {k: float(np.mean([p[k] for p in per])) for k in ("bpp", "psnr_rgb", "encode_s", "decode_s", "header_bytes")}
        mean["payload_over_estimate_pct"] = float(100 * (sum(p["payload_bits"] for p in per) /
                                                         sum(p["estimated_bits"] for p in per) - 1))
        rows.append({"quality": q, "mean": mean, "images": per})
        print(f"q {q:5.1f}: {mean['bpp']:.4f} bpp, {mean['psnr_rgb']:.2f} dB, enc {mean['encode_s']:.2f} s, "
              f"dec {mean['decode_s']:.2f} s, payload vs estimate {mean['payload_over_estimate_pct']:+.3f} %, "
              f"header {mean['header_bytes']:.0f} B", flush=True)
    result = {"model": model.name, "weights_sha256_16": model.weights_hash.hex(), "model_meta": model.meta,
              "vaezip": vaezip.__version__, "torch": torch.__version__, "threads": 1,
              "cpu": cpu_name(), "images": len(files), "results": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
