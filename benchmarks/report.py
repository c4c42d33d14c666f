"""The figures the README quotes from a `vaezip bench` run, computed rather than read off by hand.

    python benchmarks/report.py [OUT ...] [--codec vaezip] [--anchor heic] [--previous OUT_OF_PREVIOUS_MODEL]

OUT is a `vaezip bench --out` folder (default benchmarks/kodak and benchmarks/heldout). For the test codec
(vaezip) it prints, from that folder's results.json and cache.jsonl:

* BD-rate (PSNR-RGB) directly against every other codec, from the mean curves;
* with ``--previous``, against the test codec's curve in another run (the previous model's folder);
* per image against the anchor: BD-rate between the two codecs' own curves on that image;
* the gap by setting: how many more bits than the anchor each test point needs at its own PSNR (the
  anchor's log-rate interpolated, piecewise cubic, at that PSNR; blank outside the anchor's range).

Nothing is measured here; the bench run is the measurement.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vaezip.bench.bd import bd_quality, bd_rate, rate_at_quality


def _rates_psnrs(points) -> tuple[list[float], list[float]]:
    return [p["bpp"] for p in points], [p["psnr"] for p in points]


def per_image_curves(out: Path, codec_id: str) -> dict[str, tuple[list[float], list[float]]]:
    """image -> (bpp, PSNR) of every setting of ``codec_id`` cached in OUT/cache.jsonl."""
    rows: dict[str, dict[float, tuple[float, float]]] = {}
    for line in (out / "cache.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by an interrupted run
        if r.get("codec") == codec_id and "image" in r:
            rows.setdefault(r["image"], {})[float(r["setting"])] = (r["bpp"], r["psnr"])
    return {image: ([v[0] for v in by.values()], [v[1] for v in by.values()]) for image, by in rows.items()}


def gap_by_setting(anchor_points, test_points) -> list[tuple[float, float]]:
    """(setting, percent more bits than the anchor at the test point's PSNR) for each test point."""
    rates, psnrs = _rates_psnrs(anchor_points)
    return [(p["setting"], (p["bpp"] / rate_at_quality(rates, psnrs, p["psnr"]) - 1) * 100)
            for p in sorted(test_points, key=lambda p: p["setting"])]


def report(out: Path, codec: str, anchor: str, previous: Path | None) -> str:
    result = json.loads((out / "results.json").read_text())
    curves = result["curves"]
    if codec not in curves or anchor not in curves:
        raise SystemExit(f"{out}: results.json has no curve for {codec if codec not in curves else anchor}")
    test = curves[codec]
    r_t, q_t = _rates_psnrs(test["points"])
    lines = [f"## {out} ({result['image_count']} images): {test['name']} ({test['version']})", "",
             "BD-rate (PSNR-RGB) of the mean curves against each codec:"]
    for key, c in curves.items():
        if key != codec:
            r_a, q_a = _rates_psnrs(c["points"])
            lines.append(f"- {c['name']}: {bd_rate(r_a, q_a, r_t, q_t):+.1f} % "
                         f"({bd_quality(r_a, q_a, r_t, q_t):+.3f} dB)")
    if previous is not None:
        prev = json.loads((previous / "results.json").read_text())["curves"].get(codec)
        if prev is None:
            raise SystemExit(f"{previous}: results.json has no curve for {codec}")
        r_a, q_a = _rates_psnrs(prev["points"])
        lines.append(f"- {prev['name']} ({previous}): {bd_rate(r_a, q_a, r_t, q_t):+.2f} % "
                     f"({bd_quality(r_a, q_a, r_t, q_t):+.3f} dB)")

    mine, theirs = per_image_curves(out, test["id"]), per_image_curves(out, curves[anchor]["id"])
    per_image = sorted((bd_rate(*theirs[image], *mine[image]), image) for image in mine if image in theirs)
    lines += ["", f"Per image against {curves[anchor]['name']} (BD-rate, PSNR-RGB), best first:"]
    lines += [f"- {Path(image).stem}: {value:+.1f} %" for value, image in per_image]
    below = sum(value < 0 for value, _ in per_image)
    lines.append(f"({below} of {len(per_image)} need fewer bits than {curves[anchor]['name']})")

    lines += ["", f"More bits than {curves[anchor]['name']} at each setting's PSNR (mean curves):"]
    lines += [f"- q{setting:g}: {gap:+.1f} %" for setting, gap in gap_by_setting(curves[anchor]["points"],
                                                                                 test["points"])]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outs", nargs="*", type=Path, default=[Path("benchmarks/kodak"), Path("benchmarks/heldout")])
    ap.add_argument("--codec", default="vaezip", help="the codec under test (a key of results.json's curves)")
    ap.add_argument("--anchor", default="heic")
    ap.add_argument("--previous", type=Path, action="append", default=[],
                    help="bench folder of the previous model, one per OUT in the same order")
    args = ap.parse_args()
    if args.previous and len(args.previous) != len(args.outs):
        ap.error(f"give --previous once per bench folder ({len(args.outs)}), or not at all")
    previous = args.previous or [None] * len(args.outs)
    print("\n\n".join(report(out, args.codec, args.anchor, prev) for out, prev in zip(args.outs, previous)))


if __name__ == "__main__":
    main()
