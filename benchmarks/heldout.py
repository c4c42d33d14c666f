"""The rate–distortion benchmark on photographs that neither training nor Kodak contain: the colour photos
that scikit-image ships (installed with the test extra; nothing is downloaded, nothing is committed).

    python benchmarks/heldout.py [--images DIR] [--out benchmarks/heldout] [vaezip bench options...]

The photos are written losslessly as PNG to DIR (default $VAEZIP_HELDOUT, else a temporary folder), then
``vaezip bench DIR`` runs every installed codec on them, exactly as on Kodak. Four photos are a small set:
read the result as a check that the shipped model generalises, not as a second headline figure.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: scikit-image's natural colour photographs (skimage.data, all in the package itself).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def write_photos(folder: Path) -> None:
    try:
        from PIL import Image
        from skimage import data
    except ImportError as e:
        raise SystemExit(f"the held-out photos come from scikit-image ({e.name} is missing): "
                         "pip install 'vaezip[test]'") from None
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default=os.environ.get("VAEZIP_HELDOUT"),
                    help="folder to write the photos to (default: $VAEZIP_HELDOUT, else a temporary folder)")
    ap.add_argument("--out", default="benchmarks/heldout")
    args, bench_args = ap.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.images) if args.images else Path(tmp) / "scikit-image-photos"
        write_photos(folder)
        cmd = [sys.executable, "-m", "vaezip", "bench", str(folder), "--out", args.out, *bench_args]
        sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
