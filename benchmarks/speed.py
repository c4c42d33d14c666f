"""Encode and decode seconds and peak memory of vaezip and other codecs at 0.4, 2, 12 and 50 megapixels, with
one thread and with every core, all in one run (so that the ratios hold even where the machine is busy).

    python benchmarks/speed.py [--sizes 0.4,2,12,50] [--codecs vaezip,vaezip:msh64-r12,heic,avif,jpegxl,compressai]
                               [--out benchmarks/results/speed.json]

Rows of codecs and sizes that a run does not measure are kept from the existing results file.

Every measurement runs in a fresh process, so its peak RSS (resident memory) is its own; a codec's file for
the decode runs is written by its encode run. ``vaezip`` is the default model, ``vaezip:NAME`` another one.
``compressai`` is CompressAI's mean-scale hyperprior with vaezip's default width (N=128, M=192; untrained
weights code as fast as trained ones), if CompressAI is importable: ``pip install --no-deps compressai
einops tqdm`` (its dataset modules' dependencies are stubbed here). It runs on the whole image, as CompressAI
does; at 50 MP that would need tens of GB, so it is left out there.

The test images are a Kodak photo resized (Lanczos) to each size; --source defaults to kodim23.png in
$VAEZIP_KODAK (else ../shared/datasets/kodak). quality 75 for vaezip, quality 50 for HEIC, AVIF and JPEG XL.
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

SIZES = {"0.4": (768, 512), "2": (1728, 1152), "12": (4240, 2832), "50": (8192, 6144)}
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _StubImports:
    """Importing CompressAI's models without the dependencies of its dataset and point-cloud modules."""

    STUBBED = {"torch_geometric", "torchvision", "pandas", "h5py", "plyfile", "pointops", "open3d"}

    def find_spec(self, name, path, target=None):
        import importlib.machinery

        if name.split(".")[0] in self.STUBBED:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        from unittest import mock

        module = mock.MagicMock(name=spec.name)
        module.__path__, module.__spec__ = [], spec
        return module

    def exec_module(self, module):
        pass


def _vaezip(model_name: str, threads: int):
    import numpy as np
    import torch

    import vaezip
    from vaezip.codec import decode_array, encode_array
    from vaezip.runtime import keep_freed_memory

    keep_freed_memory()  # as the command line does
    torch.set_num_threads(threads)
    model = vaezip.load_model(model_name or vaezip.DEFAULT_MODEL, "cpu")
    return (lambda img: encode_array(np.asarray(img.convert("RGB")), "RGB", 75, model, workers=threads).data,
            lambda data: decode_array(data, model, workers=threads)[0])


def _compressai(threads: int):
    import pickle

    import numpy as np
    import torch

    sys.meta_path.insert(0, _StubImports())
    from compressai.models import MeanScaleHyperprior

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = MeanScaleHyperprior(128, 192).eval()
    net.update(force=True)

    def encode(img):
        x = torch.from_numpy(np.asarray(img.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        h, w = x.shape[-2:]
        x = torch.nn.functional.pad(x, (0, -w % 64, 0, -h % 64), mode="replicate")
        with torch.no_grad():
            out = net.compress(x)
        return pickle.dumps((out["strings"], out["shape"], h, w))

    def decode(data):
        strings, shape, h, w = pickle.loads(data)
        with torch.no_grad():
            return net.decompress(strings, shape)["x_hat"][..., :h, :w].clamp(0, 1).mul(255).round().byte()

    return encode, decode


def _pillow(codec: str, threads: int):
    import io

    from PIL import Image

    if codec == "heic":
        import pillow_heif

        pillow_heif.register_heif_opener()
        pillow_heif.options.DECODE_THREADS = threads
        fmt, options = "HEIF", {"quality": 50, "chroma": 420, "enc_params": {"x265:pools": str(threads)}}
    elif codec == "avif":
        fmt, options = "AVIF", {"quality": 50, "subsampling": "4:2:0", "speed": 6, "max_threads": threads}
    else:
        from pillow_jxl import JpegXLImagePlugin

        JpegXLImagePlugin.DECODE_THREADS = threads
        fmt, options = "JXL", {"quality": 50, "effort": 7, "num_threads": threads}

    def encode(img):
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format=fmt, **options)
        return buf.getvalue()

    def decode(data):
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im

    return encode, decode


def worker(codec: str, op: str, path: str, threads: int) -> dict:
    """One encode or decode in this process: its seconds and this process's peak RSS."""
    from PIL import Image

    family, _, name = codec.partition(":")
    encode, decode = (_vaezip(name, threads) if family == "vaezip" else _compressai(threads)
                      if family == "compressai" else _pillow(codec, threads))
    img = Image.open(path)
    img.load()
    coded = Path(f"{path}.{codec.replace(':', '-')}.{threads}")
    start = time.perf_counter()
    if op == "encode":
        data = encode(img)
        seconds = time.perf_counter() - start
        coded.write_bytes(data)
    else:
        data = coded.read_bytes()
        start = time.perf_counter()
        decode(data)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mb": _peak_mb(), "bytes": len(data)}


def codecs_order(codec: str) -> int:
    """The default model first, then other vaezip models, then the other codecs in a fixed order."""
    order = ["vaezip", "vaezip:", "heic", "avif", "jpegxl", "compressai"]
    family = "vaezip:" if codec.startswith("vaezip:") else codec
    return order.index(family) if family in order else len(order)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    kodak = os.environ.get("VAEZIP_KODAK", "../shared/datasets/kodak")
    ap.add_argument("--source", default=str(Path(kodak) / "kodim23.png"))
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--codecs", default="vaezip,vaezip:msh64-r12,heic,avif,jpegxl,compressai")
    ap.add_argument("--out", default="benchmarks/results/speed.json")
    ap.add_argument("--workdir", default="/tmp/vaezip-speed")
    ap.add_argument("--worker", nargs=4, metavar=("CODEC", "OP", "PATH", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        codec, op, path, threads = args.worker
        print(json.dumps(worker(codec, op, path, int(threads))))
        return
    from PIL import Image

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = Image.open(args.source).convert("RGB")
    rows = []
    for size in args.sizes.split(","):
        width, height = SIZES[size]
        path = work / f"{width}x{height}.png"
        if not path.exists():
            src.resize((width, height), Image.Resampling.LANCZOS).save(path)
        for codec in args.codecs.split(","):
            for threads in sorted({1, CORES}):
                row = {"megapixels": float(size), "width": width, "height": height, "codec": codec, "threads": threads}
                if codec == "compressai" and width * height > 20_000_000:
                    row["skipped"] = "whole-image transforms: tens of GB at this size"
                    rows.append(row)
                    continue
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                for op in ("encode", "decode"):
                    proc = subprocess.run([sys.executable, __file__, "--worker", codec, op, str(path), str(threads)],
                                          capture_output=True, text=True, env=env)
                    if proc.returncode:
                        row["skipped"] = proc.stderr.strip().splitlines()[-1][:200] if proc.stderr else "failed"
                        break
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    row[f"{op}_s"] = round(r["seconds"], 3)
                    row[f"{op}_peak_rss_mb"] = round(r["peak_rss_mb"])
                    row["bytes"] = r["bytes"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    from vaezip.bench.run import cpu_name

    out = Path(args.out)
    if out.exists():  # the rows of codecs and sizes not measured now stay
        measured = {(r["codec"], r["megapixels"]) for r in rows}
        rows = [r for r in json.loads(out.read_text())["rows"] if (r["codec"], r["megapixels"]) not in measured] + rows
        rows.sort(key=lambda r: (r["megapixels"], codecs_order(r["codec"]), r["threads"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu_name(), "cores": CORES, "machine": platform.machine(),
                               "python": platform.python_version(), "source": Path(args.source).name,
                               "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
