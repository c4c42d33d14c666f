"""Encode/decode seconds and peak memory (RSS) of vaezip and classical codecs on CPU, one thread, at about
0.4, 2 and 12 megapixels. Each measurement runs in a fresh process, so its peak RSS is its own; the RSS of
a process that only imported the same modules is reported beside it.

    python benchmarks/speed.py [--source IMAGE] [--codecs vaezip,vaezip:msh64-r12,jpeg,heic]
                               [--out benchmarks/results/speed.json]

`vaezip` is the default model; `vaezip:NAME` measures the shipped model NAME.

The test images are a Kodak photo resized (Lanczos) to each size; --source defaults to kodim23.png in
$VAEZIP_KODAK (else ../shared/datasets/kodak).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

SIZES = {"0.4 MP": (768, 512), "2 MP": (1728, 1152), "12 MP": (4240, 2832)}


def worker(codec: str, op: str, path: str, quality: float) -> dict:
    """Run one operation and report its time and this process's peak RSS."""
    import io

    import numpy as np
    from PIL import Image

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    family, _, model_name = codec.partition(":")
    if family == "vaezip":
        import torch

        import vaezip
        from vaezip.codec import decode_array, encode_array
        torch.set_num_threads(1)
        model = vaezip.load_model(model_name or vaezip.DEFAULT_MODEL, "cpu")
        img = np.asarray(Image.open(path).convert("RGB"))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if op == "import":
            return {"peak_rss_mb": base / 1024, "model": model.name}
        data = encode_array(img, "RGB", quality, model).data if op == "decode" else None
        t0 = time.perf_counter()
        if op == "encode":
            data = encode_array(img, "RGB", quality, model).data
        else:
            decode_array(data, model)
        seconds = time.perf_counter() - t0
    else:
        if codec == "heic":
            import pillow_heif
            pillow_heif.register_heif_opener()
        fmt, kw = {"jpeg": ("JPEG", {"quality": 75, "subsampling": 2, "optimize": True}),
                   "heic": ("HEIF", {"quality": 50, "chroma": 420})}[codec]
        img = Image.open(path).convert("RGB")
        img.load()
        if op == "import":
            return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        buf = io.BytesIO()
        if op == "decode":
            img.save(buf, format=fmt, **kw)
        t0 = time.perf_counter()
        if op == "encode":
            img.save(buf, format=fmt, **kw)
        else:
            with Image.open(io.BytesIO(buf.getvalue())) as d:
                d.load()
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    kodak = os.environ.get("VAEZIP_KODAK", "../shared/datasets/kodak")
    ap.add_argument("--source", default=str(Path(kodak) / "kodim23.png"))
    ap.add_argument("--codecs", default="vaezip,jpeg,heic")
    ap.add_argument("--quality", type=float, default=75.0, help="vaezip quality")
    ap.add_argument("--out", default="benchmarks/results/speed.json")
    ap.add_argument("--workdir", default="/tmp/vaezip-speed")
    ap.add_argument("--worker", nargs=4, metavar=("CODEC", "OP", "PATH", "QUALITY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        codec, op, path, q = args.worker
        print(json.dumps(worker(codec, op, path, float(q))))
        return
    from PIL import Image

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = Image.open(args.source).convert("RGB")
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for label, size in SIZES.items():
        path = work / f"{size[0]}x{size[1]}.png"
        if not path.exists():
            src.resize(size, Image.Resampling.LANCZOS).save(path)
        for codec in args.codecs.split(","):
            row = {"size": label, "width": size[0], "height": size[1], "codec": codec}
            for op in ("import", "encode", "decode"):
                out = subprocess.run([sys.executable, __file__, "--worker", codec, op, str(path), str(args.quality)],
                                     capture_output=True, text=True, env=env, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if op == "import":
                    row["baseline_rss_mb"] = round(r["peak_rss_mb"], 1)
                    if "model" in r:
                        row["model"] = r["model"]
                else:
                    row[f"{op}_s"] = round(r["seconds"], 3)
                    row[f"{op}_peak_rss_mb"] = round(r["peak_rss_mb"], 1)
            rows.append(row)
            print(f"{label:>7} {codec:>16}: encode {row['encode_s']:.2f} s ({row['encode_peak_rss_mb']:.0f} MB), "
                  f"decode {row['decode_s']:.2f} s ({row['decode_peak_rss_mb']:.0f} MB), "
                  f"baseline {row['baseline_rss_mb']:.0f} MB", flush=True)
    from vaezip.bench.run import cpu_name  # only now: the workers' baseline memory stays without it

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": 1, "machine": platform.machine(), "cpu": cpu_name(),
                               "python": platform.python_version(),
                               "vaezip_quality": args.quality, "source": Path(args.source).name, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
