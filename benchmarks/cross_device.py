"""Files decode anywhere: encode on one device, decode on another, compare symbols and pixels.

The entropy parameters are exact integer networks (Ballé et al. 2019, "Integer networks for data
compression with latent-variable models"), so a file written on a GPU must decode on a CPU to the same
symbols (the decoder checks them against the file's symbol CRC and refuses otherwise). The float synthesis
g_s may still round differently per device; this script measures how much.

    # on machine A (e.g. a CUDA box):   encode + decode there
    python benchmarks/cross_device.py run KODAK --out A
    # on machine B (e.g. this CPU):     the same, and decode A's files there
    python benchmarks/cross_device.py run KODAK --out B --foreign A
    # back on machine A's device kind, or anywhere: the comparison
    python benchmarks/cross_device.py compare A B --json benchmarks/results/cross-device.json

`compare` reports, for B's decode of A's files and vice versa (where present): whether every file decoded
(symbol CRC held), the largest pixel difference against the writing device's own decode, and whether the two
devices wrote byte-identical files for the same image.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from vaezip.bench.run import cpu_name
from vaezip.codec import decode_array, encode_array
from vaezip.errors import VaezipError
from vaezip.image import load_rgb_array
from vaezip.zoo import DEFAULT_MODEL
from vaezip.zoo.loader import load_model


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def _decode_to(path: Path, model, target: Path) -> dict:
    start = time.perf_counter()
    try:
        pixels, _ = decode_array(path.read_bytes(), model)
    except VaezipError as err:
        return {"ok": False, "error": str(err)}
    seconds = time.perf_counter() - start
    Image.fromarray(pixels).save(target)
    return {"ok": True, "decode_s": round(seconds, 4)}


@click.group()
def main():
    pass


@main.command()
@click.argument("images", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--foreign", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A run folder from another device whose files are decoded here too.")
@click.option("--device", default=None, help="cuda or cpu (default: cuda when present).")
@click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True)
@click.option("--qualities", default="0,50,100", show_default=True)
@click.option("--limit", type=int, default=None, help="Only the first N images.")
def run(images: Path, out: Path, foreign: Path | None, device: str | None, model_name: str, qualities: str,
        limit: int | None):
    """Encode and decode IMAGES on this device; decode --foreign files here."""
    model = load_model(model_name, device)
    dev = next(model.network.parameters()).device
    (out / "enc").mkdir(parents=True, exist_ok=True)
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".ppm"})[:limit]
    manifest = {"device": str(dev), "device_name": _device_name(dev), "torch": torch.__version__,
                "model": model_name, "files": {}, "foreign": {}}
    encode_array(load_rgb_array(paths[0]), "RGB", 50, model)  # warm-up (CUDA context, kernels)
    for path in paths:
        img = load_rgb_array(path)
        for q in (float(s) for s in qualities.split(",")):
            name = f"{path.stem}-q{q:g}"
            res = encode_array(img, "RGB", q, model)
            (out / "enc" / f"{name}.vz").write_bytes(res.data)
            entry = {"bytes": len(res.data), "sha256": hashlib.sha256(res.data).hexdigest(),
                     "encode_s": round(res.seconds, 4)}
            entry.update(_decode_to(out / "enc" / f"{name}.vz", model, out / "enc" / f"{name}.png"))
            manifest["files"][name] = entry
            print(name, entry, flush=True)
    if foreign is not None:
        (out / "foreign").mkdir(exist_ok=True)
        for path in sorted((foreign / "enc").glob("*.vz")):
            manifest["foreign"][path.stem] = _decode_to(path, model, out / "foreign" / f"{path.stem}.png")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _compare_decodes(written: Path, there: dict, there_dir: Path) -> dict:
    """`written`'s own decodes against another device's decodes of the same files (there_dir/<name>.png)."""
    ok = [n for n, e in there.items() if e["ok"]]
    max_diff, differing, total = 0, 0, 0
    for name in ok:
        a, b = _pixels(written / "enc" / f"{name}.png"), _pixels(there_dir / f"{name}.png")
        d = np.abs(a - b)
        max_diff, differing, total = max(max_diff, int(d.max())), differing + int((d > 0).sum()), total + d.size
    return {"files": len(there), "decoded": len(ok), "errors": sorted({e["error"] for e in there.values()
                                                                         if not e["ok"]}),
            "max_abs_pixel_diff": max_diff, "differing_values": differing, "values": total}


@main.command()
@click.argument("a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "json_out", type=click.Path(path_type=Path))
def compare(a: Path, b: Path, json_out: Path | None):
    """Compare two run folders A and B (B run with --foreign A, and/or A with --foreign B)."""
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    common = sorted(set(ma["files"]) & set(mb["files"]))
    same = [n for n in common if ma["files"][n]["sha256"] == mb["files"][n]["sha256"]]
    size_diff = [mb["files"][n]["bytes"] - ma["files"][n]["bytes"] for n in common]
    result = {
        "a": {k: ma[k] for k in ("device", "device_name", "torch", "model")},
        "b": {k: mb[k] for k in ("device", "device_name", "torch", "model")},
        "same_image_files": len(common), "byte_identical_files": len(same),
        "file_size_diff_bytes_b_minus_a": {"min": min(size_diff, default=0), "max": max(size_diff, default=0),
                                           "total": sum(size_diff)},
        "seconds": {side: {k: round(float(np.mean([e[k] for e in m["files"].values() if k in e])), 4)
                           for k in ("encode_s", "decode_s")} for side, m in (("a", ma), ("b", mb))},
    }
    if mb["foreign"] and (b / "foreign").is_dir():
        result["a_files_decoded_on_b"] = _compare_decodes(a, mb["foreign"], b / "foreign")
    if ma["foreign"] and (a / "foreign").is_dir():
        result["b_files_decoded_on_a"] = _compare_decodes(b, ma["foreign"], a / "foreign")
    text = json.dumps(result, indent=1)
    print(text)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
    failed = [k for k in ("a_files_decoded_on_b", "b_files_decoded_on_a")
              if k in result and result[k]["decoded"] != result[k]["files"]]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
