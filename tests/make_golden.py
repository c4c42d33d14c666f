"""Writes the golden files of a model (default: the default model): tests/data/golden-<model>.vz and the
.png it decodes to.

    python tests/make_golden.py [MODEL]

Run once when a new model starts shipping (never to make a failing golden test pass: a golden file that
stops decoding means old files stopped decoding)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

import vaezip
from vaezip.codec import decode_array, encode_array

HERE = Path(__file__).parent / "data"


def source() -> np.ndarray:
    """A small deterministic test card: gradients, edges and texture (no external image)."""
    h, w = 72, 104
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 100 * np.sin(xx / 7) * np.cos(yy / 11)
    g = np.where((xx // 13 + yy // 13) % 2 == 0, 200.0, 60.0)
    b = 255 * xx / w * (yy / h)
    return np.clip(np.stack([r, g, b], axis=2), 0, 255).round().astype(np.uint8)


def main() -> None:
    model = vaezip.load_model(sys.argv[1] if len(sys.argv) > 1 else vaezip.DEFAULT_MODEL, "cpu")
    data = encode_array(source(), "RGB", 60, model).data
    pixels, _ = decode_array(data, model)
    HERE.mkdir(exist_ok=True)
    (HERE / f"golden-{model.name}.vz").write_bytes(data)
    Image.fromarray(pixels).save(HERE / f"golden-{model.name}.png")
    print(f"wrote golden-{model.name}.vz ({len(data)} bytes) and its .png")


if __name__ == "__main__":
    main()
