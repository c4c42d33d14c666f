"""Run codecs over a folder of images, cache every (codec, setting, image) record so an interrupted run
resumes, and store each codec's results as ``<out>/<curve>.json`` (every image at every setting, and the
mean over the images at each setting, as the field averages). Then compute Bjøntegaard deltas of every curve
stored there against an anchor, and write ``summary.md`` and an RD plot.

Each codec runs in a child process of its own, so that its peak resident memory can be reported.
"""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..image import IMAGE_SUFFIXES, load_rgb_array
from . import codecs as codec_registry
from .bd import bd_quality, bd_rate
from ..metrics import ms_ssim, psnr


def cpu_name() -> str:
    """The processor, for reading timings: /proc/cpuinfo's model name with its family and model numbers
    (names as bare as "AMD EPYC" cover CPUs twice as fast as each other), else what platform knows."""
    info: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    if "model name" in info:
        return f"{info['model name']} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
    return platform.processor() or platform.machine()


DEFAULT_CODECS = ("jpeg", "webp", "jpeg2000", "avif", "heic", "jpegxl", "vaezip")


@dataclass
class BenchConfig:
    images: str
    out: str
    codecs: tuple[str, ...] = DEFAULT_CODECS
    anchor: str = "heic"
    rate_range: tuple[float, float] = (0.1, 1.5)
    reference: str | None = None
    vaezip_model: str | None = None
    vaezip_weights: str | None = None
    vaezip_refine: int = 20  # steps of the vaezip-refine codec
    limit: int | None = None


def image_list(folder: str, limit: int | None = None) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return files[:limit] if limit else files


def _build(key: str, cfg: BenchConfig) -> codec_registry.Codec:
    if key in ("vaezip", "vaezip-refine"):
        return codec_registry.vaezip_codec(cfg.vaezip_model, cfg.vaezip_weights,
                                           cfg.vaezip_refine if key == "vaezip-refine" else 0)
    return codec_registry.FACTORIES[key]()


def _worker(key: str, cfg: BenchConfig, todo: list[tuple[float, str]], queue, parent: int) -> None:
    """Child process: run one codec over (setting, image) pairs, sending one record per pair. It stops
    when the parent is gone (an interrupted benchmark leaves nothing running)."""
    try:
        codec = _build(key, cfg)
    except codec_registry.CodecUnavailable as e:
        queue.put(("unavailable", str(e)))
        return
    queue.put(("codec", {"name": codec.name, "version": codec.version, "options": codec.options,
                         "settings": codec.settings}))
    images: dict[str, np.ndarray] = {}
    for setting, path in todo:
        if os.getppid() != parent:
            return
        if setting not in codec.settings:
            continue
        img = images.setdefault(path, load_rgb_array(path))
        t0 = time.perf_counter()
        data = codec.encode(img, setting)
        t1 = time.perf_counter()
        out = codec.decode(data)
        t2 = time.perf_counter()
        if out.shape != img.shape:
            raise RuntimeError(f"{codec.name} decoded {out.shape} for an image of {img.shape}")
        h, w = img.shape[:2]
        queue.put(("record", {"codec": key, "setting": setting, "image": Path(path).name, "bytes": len(data),
                              "bpp": 8 * len(data) / (h * w), "psnr": psnr(img, out), "ms_ssim": ms_ssim(img, out),
                              "encode_s": t1 - t0, "decode_s": t2 - t1}))
    queue.put(("done", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def _messages(ctx, key: str, cfg: BenchConfig, todo):
    """Start a worker and yield its messages until it is done; a worker that dies is an error."""
    import queue as queue_module

    q = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(key, cfg, todo, q, os.getpid()), daemon=True)
    proc.start()
    try:
        while True:
            try:
                kind, payload = q.get(timeout=2)
            except queue_module.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"benchmark worker for {key} died (exit code {proc.exitcode})") from None
                continue
            yield kind, payload
            if kind in ("done", "unavailable"):
                break
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()


def _load_cache(path: Path) -> tuple[dict, dict]:
    """Records by (codec id, setting, image), and the peak RSS of each codec id's last complete run."""
    cache, peak = {}, {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
                if "peak_rss_mb" in r:
                    peak[r["codec"]] = r["peak_rss_mb"]
                else:
                    cache[(r["codec"], float(r["setting"]), r["image"])] = r
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut short by an interruption
    return cache, peak


def curve_name(key: str, meta: dict) -> str:
    """The file a curve is stored in (``<out>/<name>.json``): the codec's key, or vaezip's model name."""
    if key.startswith("vaezip"):
        return meta["options"]["model"] + ("-refine" if key == "vaezip-refine" else "")
    return key


def run(cfg: BenchConfig, log=print, progress=None) -> dict:
    """Measure every codec of ``cfg`` on the images (resuming from ``<out>/cache.jsonl``), write one
    ``<out>/<curve>.json`` per codec, then summarise every curve stored in ``<out>``."""
    files = image_list(cfg.images, cfg.limit)
    if not files:
        raise FileNotFoundError(f"{cfg.images}: no images to benchmark")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_path = out / "cache.jsonl"
    cache, peak = _load_cache(cache_path)
    skipped = {}
    ctx = mp.get_context("spawn")
    with cache_path.open("a") as cache_file:
        for key in cfg.codecs:
            # A worker with nothing to do reports the codec's description, or why it is unavailable.
            messages = _messages(ctx, key, cfg, [])
            kind, meta = next(messages)
            messages.close()  # joins the worker
            if kind == "unavailable":
                skipped[key] = meta
                log(f"skipped {key}: {meta}")
                continue
            ident = meta["id"] = f"{key}|{meta['version']}"  # new weights or versions are measured anew
            todo = [(float(s), str(f)) for s in meta["settings"] for f in files
                    if (ident, float(s), f.name) not in cache]
            bar = progress(length=len(todo), label=f"{meta['name']:>16}") if progress and todo else None
            for kind, payload in _messages(ctx, key, cfg, todo) if todo else ():
                if kind == "done":
                    peak[ident] = payload
                    cache_file.write(json.dumps({"codec": ident, "peak_rss_mb": payload}) + "\n")
                    cache_file.flush()
                elif kind == "record":
                    payload["codec"] = ident
                    cache[(ident, payload["setting"], payload["image"])] = payload
                    cache_file.write(json.dumps(payload) + "\n")
                    cache_file.flush()
                    if bar:
                        bar.update(1)
            if bar:
                bar.render_finish()
            curve = measured_curve(key, meta, files, cache, peak.get(ident), cfg.images)
            (out / f"{curve_name(key, meta)}.json").write_text(json.dumps(curve, indent=1, allow_nan=True) + "\n")
    result = summarise(load_curves(out), cfg.anchor, cfg.reference, cfg.rate_range)
    result["skipped"] = skipped
    write_reports(result, out)
    return result


def _mean(values) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def _msssim_db(v: float) -> float:
    return -10 * math.log10(1 - v) if v < 1 else math.inf


METRICS = ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s")


def measured_curve(key: str, meta: dict, files, cache: dict, peak_rss_mb: float | None, images: str) -> dict:
    """One codec's results on a folder: every image at every setting, and the mean curve over the images
    (settings measured on every image only)."""
    names = [f.name for f in files]
    per_image = {n: [{"setting": s, **{m: cache[(meta["id"], float(s), n)][m] for m in METRICS}}
                     for s in meta["settings"] if (meta["id"], float(s), n) in cache] for n in names}
    points = []
    for s in meta["settings"]:
        recs = [cache.get((meta["id"], float(s), n)) for n in names]
        if all(r is not None for r in recs):
            points.append({"setting": s, **{m: _mean(r[m] for r in recs) for m in METRICS}})
    points.sort(key=lambda p: p["bpp"])
    return {"codec": key, **{k: v for k, v in meta.items() if k != "id"}, "dataset": Path(images).name,
            "image_count": len(names), "cpu": cpu_name(), "threads": 1, "python": platform.python_version(),
            "peak_rss_mb": peak_rss_mb, "points": points, "per_image": per_image}


def load_curves(folder: str | Path) -> dict[str, dict]:
    """name -> curve of every ``<name>.json`` a bench run stored in ``folder``."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))}


def _curve_xy(points) -> tuple[list, list, list]:
    return [p["bpp"] for p in points], [p["psnr"] for p in points], [_msssim_db(p["ms_ssim"]) for p in points]


def summarise(curves: dict[str, dict], anchor: str = "heic", reference: str | None = None,
              rate_range: tuple[float, float] = (0.1, 1.5)) -> dict:
    """BD-rates of every curve (and of published reference curves) against the anchor's: over the whole
    range both cover, within ``rate_range``, as BD-PSNR, and on MS-SSIM."""
    ref = json.loads(Path(reference).read_text())["curves"] if reference else {}
    bd = {}
    if anchor in curves:
        ar, ap, am = _curve_xy(curves[anchor]["points"])
        every = {k: _curve_xy(c["points"]) for k, c in curves.items()}
        every.update({f"ref:{k}": (v["bpp"], v["psnr"], [_msssim_db(x) for x in v["ms-ssim"]]) for k, v in ref.items()})
        for k, (r, p, m) in every.items():
            bd[k] = {"bd_rate_psnr": bd_rate(ar, ap, r, p), "bd_psnr_db": bd_quality(ar, ap, r, p),
                     "bd_rate_psnr_in_range": bd_rate(ar, ap, r, p, rate_range),
                     "bd_rate_ms_ssim": bd_rate(ar, am, r, m)}
    first = next(iter(curves.values()), {})
    return {"dataset": first.get("dataset"), "image_count": first.get("image_count"), "anchor": anchor,
            "rate_range_bpp": list(rate_range), "cpu": first.get("cpu"), "curves": curves, "skipped": {},
            "reference": ref, "reference_source": reference, "bd": bd}


def _fmt(v: float, spec: str) -> str:
    return "–" if v is None or not math.isfinite(v) else format(v, spec)


def markdown(result: dict) -> str:
    lo, hi = result["rate_range_bpp"]
    anchor = result["anchor"]
    lines = [f"Images: {result['image_count']} from `{result['dataset']}`; anchor: {anchor}; "
             "BD figures are negative where a codec needs fewer bits than the anchor; seconds on one thread of "
             f"{result.get('cpu', 'an unrecorded CPU')}.", "",
             f"| codec | BD-rate PSNR | BD-rate PSNR {lo}–{hi} bpp | BD-PSNR (dB) | BD-rate MS-SSIM | "
             "encode s | decode s | peak RSS MB | version and settings |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, c in result["curves"].items():
        b = result["bd"].get(key, {})
        lines.append(f"| {c['name']} | {_fmt(b.get('bd_rate_psnr'), '+.1f')} % | "
                     f"{_fmt(b.get('bd_rate_psnr_in_range'), '+.1f')} % | {_fmt(b.get('bd_psnr_db'), '+.2f')} | "
                     f"{_fmt(b.get('bd_rate_ms_ssim'), '+.1f')} % | {_fmt(_mean(p['encode_s'] for p in c['points']), '.3f')} | "
                     f"{_fmt(_mean(p['decode_s'] for p in c['points']), '.3f')} | {_fmt(c.get('peak_rss_mb'), '.0f')} | "
                     f"{c['version']}; {json.dumps(c['options'], sort_keys=True)} |")
    for key in result["reference"]:
        b = result["bd"].get(f"ref:{key}", {})
        lines.append(f"| {key} (published) | {_fmt(b.get('bd_rate_psnr'), '+.1f')} % | "
                     f"{_fmt(b.get('bd_rate_psnr_in_range'), '+.1f')} % | {_fmt(b.get('bd_psnr_db'), '+.2f')} | "
                     f"{_fmt(b.get('bd_rate_ms_ssim'), '+.1f')} % | | | | reference data |")
    for key, why in result["skipped"].items():
        lines.append(f"| {key} | skipped: {why} | | | | | | | |")
    lines += ["", "Mean per setting (bpp, PSNR-RGB dB, MS-SSIM):", ""]
    for c in result["curves"].values():
        pts = "; ".join(f"{p['setting']:g}: {p['bpp']:.3f} / {p['psnr']:.2f} / {_fmt(p['ms_ssim'], '.4f')}"
                        for p in c["points"])
        lines.append(f"- {c['name']}: {pts}")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for key, c in result["curves"].items():
        r = [p["bpp"] for p in c["points"]]
        style = dict(marker="o", ms=3, lw=2.2 if key.startswith("vaezip") else 1.2)
        axes[0].plot(r, [p["psnr"] for p in c["points"]], label=c["name"], **style)
        axes[1].plot(r, [_msssim_db(p["ms_ssim"]) for p in c["points"]], label=c["name"], **style)
    for key, v in result["reference"].items():
        axes[0].plot(v["bpp"], v["psnr"], ls="--", lw=1, label=f"{key} (published)")
        axes[1].plot(v["bpp"], [_msssim_db(x) for x in v["ms-ssim"]], ls="--", lw=1, label=f"{key} (published)")
    for ax, ylabel in zip(axes, ("PSNR-RGB (dB)", "MS-SSIM (dB, -10 log10(1 - MS-SSIM))")):
        ax.set_xlim(0, 3.0)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(22, 44)
    axes[1].set_ylim(6, 24)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Rate–distortion on {result['image_count']} images ({result['dataset']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(result: dict, out: Path) -> None:
    """``<out>/summary.md`` and ``<out>/rd.png`` from a summary."""
    (out / "summary.md").write_text(markdown(result))
    plot(result, out / "rd.png")
