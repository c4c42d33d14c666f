"""Training crops from any folder of images, held decoded in memory (the corpus is small)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import DatasetError, VaezipError
from ..image import IMAGE_SUFFIXES, load_rgb_array


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; pass a folder of training images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DatasetError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


class CropSampler:
    """Random crops, each from a region up to ``max_downscale`` times larger down-scaled to the patch size
    (a random factor; the anti-aliased resampling washes out remaining JPEG artefacts, adds scale variety,
    and softens the crop; 1: crops at the photos' own scale), and random flips. Images smaller than a crop
    are skipped."""

    def __init__(self, files: list[Path], patch: int, max_downscale: float = 2.0, log=print):
        self.patch = patch
        self.max_downscale = max_downscale
        self.images: list[np.ndarray] = []
        skipped = []
        for f in files:
            try:
                a = load_rgb_array(f)
            except VaezipError as e:
                skipped.append(str(e))
                continue
            if min(a.shape[:2]) >= patch:
                self.images.append(a)
        if skipped:
            log(f"skipped {len(skipped)} unreadable images, first: {skipped[0]}")
        if not self.images:
            raise DatasetError(f"no usable training images of at least {patch}x{patch} pixels")
        # Sample images in proportion to their area so that large photos give more crops.
        areas = np.array([a.shape[0] * a.shape[1] for a in self.images], dtype=np.float64)
        self.weights = areas / areas.sum()

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, size: int, rng: np.random.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
        """``size`` crops on ``device``: only the 8-bit crops travel, the resampling runs there (on a GPU
        the CPU would otherwise be the bottleneck). The random draws do not depend on the device."""
        out = torch.empty(size, 3, self.patch, self.patch, device=device)
        for i in range(size):
            img = self.images[rng.choice(len(self.images), p=self.weights)]
            h, w = img.shape[:2]
            limit = min(h, w) / self.patch
            factor = float(rng.uniform(1.0, max(1.0, min(self.max_downscale, limit))))
            side = min(int(round(self.patch * factor)), h, w)
            top = int(rng.integers(0, h - side + 1))
            left = int(rng.integers(0, w - side + 1))
            crop = torch.from_numpy(np.array(img[top:top + side, left:left + side])).to(device)  # a copy
            crop = crop.permute(2, 0, 1).float().div_(255.0)
            if side != self.patch:
                crop = F.interpolate(crop[None], size=(self.patch, self.patch), mode="bilinear",
                                     antialias=True, align_corners=False)[0].clamp_(0, 1)
            if rng.random() < 0.5:
                crop = crop.flip(2)
            if rng.random() < 0.5:
                crop = crop.flip(1)
            out[i] = crop
        return out
