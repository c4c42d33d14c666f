"""Every figure and table the README and docs quote, regenerated from the stored benchmark results.

    python benchmarks/report.py [--results benchmarks/results] [--model NAME] [--check]

``benchmarks/results/<dataset>/<curve>.json`` are what ``vaezip bench`` measured (one file per codec, one per
vaezip model; each holds every image at every setting). From them this script writes, and nothing else does:

* ``benchmarks/results/<dataset>/summary.md`` and ``rd.png``: every curve against HEIC;
* ``docs/results.md``: per dataset, the default model against every codec (BD-rate over the range both cover
  and that range), its per-quality table (bpp, PSNR, seconds, and how many more bits than HEIC it needs at
  that PSNR), its per-image BD-rates, and every installed model side by side;
* the blocks between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in README.md (the headline table, the
  speed table from ``benchmarks/results/speed.json``) and
  docs/models.md (the installed models' figures, the archived models);
* the measured figures of each installed model in ``vaezip/zoo/manifest.json`` (``vaezip models`` shows them).

``--check`` writes nothing and fails if any of those would change (the figures quoted are the stored ones).
Nothing is measured here; the bench runs are the measurement.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from vaezip import zoo
from vaezip.bench.bd import bd_quality, bd_rate, rate_at_quality
from vaezip.bench.run import load_curves, markdown, plot, summarise

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = {"kodak": ROOT / "benchmarks" / "reference" / "compressai-kodak.json"}
DATASETS = {"kodak": "Kodak (24 images, 768x512)", "photos": "photos/ (12 modern photographs, about 1.1 MP)"}
CLASSICAL = ("heic", "avif", "jpegxl", "webp", "jpeg2000", "jpeg")

def replace_block(text: str, name: str, content: str) -> str:
    """``text`` with what stands between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` replaced."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text or end not in text:
        raise SystemExit(f"no {begin} ... {end} block to fill")
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{content}\n{end}{rest.split(end, 1)[1]}"


def _xy(points) -> tuple[list[float], list[float]]:
    return [p["bpp"] for p in points], [p["psnr"] for p in points]


def psnr_range(a, b) -> tuple[float, float]:
    """The PSNR range both curves cover (the range a BD-rate averages over)."""
    return max(min(p["psnr"] for p in a), min(p["psnr"] for p in b)), min(max(p["psnr"] for p in a),
                                                                              max(p["psnr"] for p in b))


def bd(anchor_points, test_points) -> float:
    return bd_rate(*_xy(anchor_points), *_xy(test_points))


def gap_by_setting(anchor_points, test_points) -> list[tuple[dict, float]]:
    """(test point, percent more bits than the anchor at the test point's PSNR; NaN beyond the anchor's range)."""
    rates, psnrs = _xy(anchor_points)
    return [(p, (p["bpp"] / rate_at_quality(rates, psnrs, p["psnr"]) - 1) * 100)
            for p in sorted(test_points, key=lambda p: p["setting"])]


def per_image_bd(anchor: dict, test: dict) -> list[tuple[float, str]]:
    """(BD-rate of the test codec against the anchor on that image's own curves, image), best first."""
    out = []
    for image, points in test["per_image"].items():
        theirs = anchor["per_image"].get(image)
        if theirs:
            out.append((bd(theirs, points), image))
    return sorted(out)


def _pct(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:+.1f} %"


def dataset_section(name: str, curves: dict, model: str, reference: dict) -> tuple[list[str], dict]:
    """docs/results.md's section of one dataset, and the default model's headline figures on it."""
    test, anchor = curves[model], curves["heic"]
    lines = [f"## {DATASETS.get(name, name)}", "",
             f"`{test['name']}`, {test['version']}; bpp from the file sizes, PSNR-RGB from the decoded files, "
             f"seconds on one thread of {test['cpu']}.", "",
             f"BD-rate of {model} against each codec (PSNR-RGB; negative: fewer bits), over the PSNR range both "
             "curves cover:", "", "| codec | BD-rate | BD-PSNR | PSNR range (dB) | version |", "|---|---|---|---|---|"]
    headline = {}
    others = [k for k in CLASSICAL if k in curves] + [k for k in curves if k not in CLASSICAL and k != model]
    for key in others:
        c = curves[key]
        value = bd(c["points"], test["points"])
        lo, hi = psnr_range(c["points"], test["points"])
        headline[key] = value
        lines.append(f"| {c['name']} | {_pct(value)} | {bd_quality(*_xy(c['points']), *_xy(test['points'])):+.2f} dB | "
                     f"{lo:.1f}–{hi:.1f} | {c['version']} |")
    for key, v in reference.items():
        value = bd_rate(v["bpp"], v["psnr"], *_xy(test["points"]))
        ours = [p["psnr"] for p in test["points"]]
        lo, hi = max(min(v["psnr"]), min(ours)), min(max(v["psnr"]), max(ours))
        headline[f"ref:{key}"] = value
        lines.append(f"| {key} (published) | {_pct(value)} | "
                     f"{bd_quality(v['bpp'], v['psnr'], *_xy(test['points'])):+.2f} dB | {lo:.1f}–{hi:.1f} | "
                     "CompressAI's published curve |")
    lines += ["", f"By quality: the mean over the images, and how many more bits than HEIC {model} needs at "
              "that PSNR (– beyond HEIC's range):", "",
              "| quality | bpp | PSNR-RGB (dB) | encode s | decode s | against HEIC |", "|---|---|---|---|---|---|"]
    for p, gap in gap_by_setting(anchor["points"], test["points"]):
        lines.append(f"| {p['setting']:g} | {p['bpp']:.3f} | {p['psnr']:.2f} | {p['encode_s']:.2f} | "
                     f"{p['decode_s']:.2f} | {_pct(gap)} |")
    images = per_image_bd(anchor, test)
    below = sum(v < 0 for v, _ in images)
    lines += ["", f"Per image against HEIC (BD-rate on each image's own curves), best first; {below} of "
              f"{len(images)} need fewer bits than HEIC:", "",
              ", ".join(f"{Path(i).stem} {_pct(v)}" for v, i in images), ""]
    return lines, headline


def models_section(by_dataset: dict[str, dict]) -> tuple[list[str], dict]:
    """Every installed model side by side, and the figures the manifest records for each."""
    lines = ["## Installed models", "", "| model | status | " + " | ".join(
        f"BD-rate vs HEIC, {d}" for d in by_dataset) + " | encode + decode s per Kodak image |",
             "|---|---|" + "---|" * len(by_dataset) + "---|"]
    figures = {}
    default_time = None
    for entry in (e for e in zoo.REGISTRY.values() if e.installed):
        row, fig = [], {}
        for dataset, curves in by_dataset.items():
            c = curves.get(entry.name)
            value = bd(curves["heic"]["points"], c["points"]) if c and "heic" in curves else math.nan
            row.append(_pct(value))
            if math.isfinite(value):
                fig[dataset] = {"bd_rate_vs_heic": round(value, 2)}
        kodak = by_dataset.get("kodak", {}).get(entry.name)
        seconds = (sum(p["encode_s"] + p["decode_s"] for p in kodak["points"]) / len(kodak["points"])
                   if kodak else math.nan)
        if entry.status == "default":
            default_time = seconds
        fig["seconds_per_kodak_image"] = round(seconds, 3) if math.isfinite(seconds) else None
        figures[entry.name] = fig
        lines.append(f"| {entry.name} | {entry.status} | " + " | ".join(row)
                     + (f" | {seconds:.2f} |" if math.isfinite(seconds) else " | – |"))
    for fig in figures.values():
        s = fig.pop("seconds_per_kodak_image")
        if s and default_time:
            fig["relative_speed"] = round(default_time / s, 2)
    return lines + [""], figures


def speed_section(path: Path) -> tuple[list[str], str]:
    """docs/results.md's speed section from benchmarks/speed.py's results, and the README's short table."""
    if not path.exists():
        return [], "(no speed results: run `python benchmarks/speed.py`)"
    data = json.loads(path.read_text())
    rows = [r for r in data["rows"] if "encode_s" in r]
    names = {"vaezip": f"vaezip {zoo.DEFAULT_MODEL}", "vaezip:" + zoo.FAST_MODEL: f"vaezip {zoo.FAST_MODEL}",
             "heic": "HEIC", "avif": "AVIF", "jpegxl": "JPEG XL", "compressai": "CompressAI mbt2018-mean N=128 M=192"}
    lines = ["## Speed", "", f"Seconds and peak resident memory per image, {data['cpu']}, {data['cores']} cores; each "
             "measurement in a fresh process (`python benchmarks/speed.py`). vaezip at quality 75, the others at 50.",
             "", "| MP | codec | threads | encode s | decode s | encode MB | decode MB |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['megapixels']:g} | {names.get(r['codec'], r['codec'])} | {r['threads']} | "
                     f"{r['encode_s']:.2f} | {r['decode_s']:.2f} | {r['encode_peak_rss_mb']} | "
                     f"{r['decode_peak_rss_mb']} |")
    lines += [f"| {r['megapixels']:g} | {names.get(r['codec'], r['codec'])} | {r['threads']} | {r['skipped']} | | | |"
              for r in data["rows"] if "skipped" in r]
    ours = {(r["megapixels"], r["threads"]): r for r in rows if r["codec"] == "vaezip"}
    theirs = {(r["megapixels"], r["threads"]): r for r in rows if r["codec"] == "compressai"}
    ratios = [f"{mp:g} MP, {th} thread{'s' * (th > 1)}: {theirs[mp, th]['encode_s'] / r['encode_s']:.1f}x / "
              f"{theirs[mp, th]['decode_s'] / r['decode_s']:.1f}x"
              for (mp, th), r in ours.items() if (mp, th) in theirs]
    if ratios:
        lines += ["", "vaezip's speed over CompressAI's same architecture (encode / decode): "
                  + "; ".join(ratios) + "."]
    top = max(data["cores"], 1)
    short = ["| image | threads | encode s | decode s | peak MB |", "|---|---|---|---|---|"]
    short += [f"| {r['megapixels']:g} MP | {r['threads']} | {r['encode_s']:.1f} | {r['decode_s']:.1f} | "
              f"{max(r['encode_peak_rss_mb'], r['decode_peak_rss_mb'])} |"
              for r in rows if r["codec"] == "vaezip" and r["threads"] in (1, top)]
    return lines + [""], "\n".join(short)


def readme_block(headlines: dict[str, dict], model: str) -> str:
    names = {"heic": "HEIC", "avif": "AVIF", "jpegxl": "JPEG XL", "webp": "WebP", "jpeg2000": "JPEG 2000",
             "jpeg": "JPEG", "ref:mbt2018-mean": "mbt2018-mean (CompressAI, published)"}
    datasets = list(headlines)
    lines = [f"| {model} against | " + " | ".join(DATASETS.get(d, d).split(" (")[0] for d in datasets) + " |",
             "|---|" + "---|" * len(datasets)]
    for key, label in names.items():
        if any(key in headlines[d] for d in datasets):
            lines.append(f"| {label} | " + " | ".join(_pct(headlines[d].get(key, math.nan)) for d in datasets) + " |")
    return "\n".join(lines)


def archived_table() -> str:
    rows = ["| model | CPU-hours | weights SHA-256 |", "|---|---|---|"]
    rows += [f"| {e.name} | {e.cpu_hours:.2f} | {e.sha256} |" for e in zoo.REGISTRY.values() if e.status == "archived"]
    return "\n".join(rows)


def build(results: Path, model: str) -> tuple[dict[Path, str], dict[str, dict]]:
    """Every generated text, by path, and the curves of each dataset (for the rd.png plots)."""
    by_dataset = {d.name: load_curves(d) for d in sorted(results.iterdir()) if d.is_dir() and any(d.glob("*.json"))}
    by_dataset = {k: v for k, v in by_dataset.items() if model in v and "heic" in v}
    if not by_dataset:
        raise SystemExit(f"{results}: no dataset folder has curves of both {model} and heic; run vaezip bench first")
    docs = ["# Results", "", "Generated by `python benchmarks/report.py` from `benchmarks/results/`; do not edit.",
            "Reproduce the measurements with the commands in benchmarks/README.md.", ""]
    headlines, out = {}, {}
    for name, curves in by_dataset.items():
        ref = summarise(curves, "heic", str(REFERENCES[name]) if name in REFERENCES else None)["reference"]
        section, headlines[name] = dataset_section(name, curves, model, ref)
        docs += section
        out[results / name / "summary.md"] = markdown(summarise(curves, "heic", str(REFERENCES.get(name, "")) or None))
    section, figures = models_section(by_dataset)
    docs += section
    speed, speed_short = speed_section(results / "speed.json")
    docs += speed
    out[ROOT / "docs" / "results.md"] = "\n".join(docs)
    readme = replace_block((ROOT / "README.md").read_text(), "results", readme_block(headlines, model))
    out[ROOT / "README.md"] = replace_block(readme, "speed", speed_short)
    cards = replace_block((ROOT / "docs" / "models.md").read_text(), "results", "\n".join(section[2:]).strip())
    out[ROOT / "docs" / "models.md"] = replace_block(cards, "archived", archived_table())
    entries = zoo.read_manifest()
    for name, fig in figures.items():
        entries[name] = zoo.ZooEntry(**{**entries[name].__dict__, "figures": fig})
    out[zoo.MANIFEST] = zoo.manifest_text(entries)
    return out, by_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--model", default=zoo.DEFAULT_MODEL, help="the model the README and docs quote")
    ap.add_argument("--check", action="store_true", help="write nothing; fail if a generated file is out of date")
    args = ap.parse_args()
    out, by_dataset = build(args.results, args.model)
    stale = [p for p, text in out.items() if not p.exists() or p.read_text() != text]
    if args.check:
        if stale:
            sys.exit("out of date (run python benchmarks/report.py): " + ", ".join(str(p) for p in stale))
        return
    for path, text in out.items():
        path.write_text(text)
    for name, curves in by_dataset.items():
        reference = str(REFERENCES[name]) if name in REFERENCES else None
        plot(summarise(curves, "heic", reference), args.results / name / "rd.png")
    print("wrote " + ", ".join(str(p.relative_to(ROOT)) for p in out) + " and the rd.png of "
          + ", ".join(by_dataset))


if __name__ == "__main__":
    main()
