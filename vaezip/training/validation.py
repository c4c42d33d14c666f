"""Validation during training: the EMA weights coded for real (the path of vaezip compress / decompress)."""
from __future__ import annotations

import copy

import numpy as np

from ..metrics import psnr as psnr_rgb
from ..models import MeanScaleHyperprior
from .data import image_files


def code_folder(model, folder: str, qualities, max_images: int | None = 24) -> dict:
    """Real entropy coding of the images of a folder with a coding model (zoo.LoadedModel): per quality,
    each image's bpp from the bytes and PSNR-RGB from the decoded pixels, and how many latent values the
    coder had to clip (only weights without escape coding clip, codec.EncodeResult). ``max_images``: the
    first so many images, None for all."""
    from ..codec import decode_array, encode_array
    from ..image import load

    files = image_files(folder)[:max_images]
    out = {f"q{q:g}": {"files": [f.name for f in files], "bpp": [], "psnr_rgb": [], "clipped": 0}
           for q in qualities}
    for f in files:
        img, mode = load(f)
        for q in qualities:
            res = encode_array(img, mode, q, model)
            dec, _ = decode_array(res.data, model)
            entry = out[f"q{q:g}"]
            entry["bpp"].append(res.bpp)
            entry["psnr_rgb"].append(psnr_rgb(img, dec))
            entry["clipped"] += res.clipped
    return out


def validate(ema: MeanScaleHyperprior, folder: str, qualities, max_images: int = 24) -> dict:
    """The EMA weights on a validation folder, coded for real (``code_folder``): mean bpp and PSNR-RGB
    per quality (the same path as `vaezip compress` / `decompress`)."""
    from ..zoo.loader import freeze

    return folder_means(code_folder(freeze(copy.deepcopy(ema).float().cpu(), "validation"), folder, qualities,
                                    max_images))


def folder_means(per_image: dict) -> dict:
    """Mean bpp and PSNR-RGB per quality of a ``code_folder`` result."""
    return {k: {"bpp": float(np.mean(v["bpp"])), "psnr_rgb": float(np.mean(v["psnr_rgb"]))}
            for k, v in per_image.items()}
