"""The benchmark engine: Bjøntegaard deltas on known cases, and a small real run that resumes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("scipy")
from vaezip.bench.bd import bd_quality, bd_rate  # noqa: E402

from conftest import synthetic  # noqa: E402

RATE = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
PSNR = np.array([26.0, 29.0, 31.5, 34.0, 36.0])


def test_ten_percent_less_rate_is_minus_ten_percent():
    assert bd_rate(RATE, PSNR, 0.9 * RATE, PSNR) == pytest.approx(-10.0, abs=1e-9)
    assert bd_rate(RATE, PSNR, 0.9 * RATE, PSNR, rate_range=(0.1, 1.5)) == pytest.approx(-10.0, abs=1e-9)


def test_bd_is_antisymmetric_and_zero_on_itself():
    assert bd_rate(RATE, PSNR, RATE, PSNR) == pytest.approx(0.0, abs=1e-12)
    up = bd_rate(RATE, PSNR, 1.25 * RATE, PSNR)
    assert up == pytest.approx(25.0, abs=1e-9)
    assert bd_rate(1.25 * RATE, PSNR, RATE, PSNR) == pytest.approx(-20.0, abs=1e-9)


def test_half_a_db_better_everywhere_is_plus_half_a_db():
    assert bd_quality(RATE, PSNR, RATE, PSNR + 0.5) == pytest.approx(0.5, abs=1e-9)


def test_disjoint_curves_have_no_bd():
    assert np.isnan(bd_rate(RATE, PSNR, RATE, PSNR + 100))


def test_small_run_writes_reports_and_resumes(tmp_path):
    from vaezip.bench.run import BenchConfig, run

    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(2):
        Image.fromarray(synthetic(96, 128, seed=i)).save(images / f"{i}.png")
    cfg = BenchConfig(images=str(images), out=str(tmp_path / "out"), codecs=("jpeg", "webp"), anchor="jpeg")
    result = run(cfg, log=lambda *_: None)
    assert set(result["curves"]) == {"jpeg", "webp"}
    jpeg = result["curves"]["jpeg"]
    assert len(jpeg["points"]) == len(jpeg["settings"]) and jpeg["peak_rss_mb"] > 0
    assert result["bd"]["jpeg"]["bd_rate_psnr"] == pytest.approx(0.0, abs=1e-9)
    bpps = [p["bpp"] for p in jpeg["points"]]
    assert bpps == sorted(bpps) and all(b > 0 for b in bpps)
    for name in ("jpeg.json", "webp.json", "summary.md", "rd.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert result["cpu"] and result["cpu"] in (tmp_path / "out" / "summary.md").read_text()  # timings need it
    stored = json.loads((tmp_path / "out" / "webp.json").read_text())
    assert set(stored["per_image"]) == {"0.png", "1.png"} and stored["dataset"] == "imgs"
    assert len(stored["per_image"]["0.png"]) == len(stored["settings"])
    records = (tmp_path / "out" / "cache.jsonl").read_text().splitlines()
    again = run(cfg, log=lambda *_: None)  # everything comes from the cache
    assert (tmp_path / "out" / "cache.jsonl").read_text().splitlines() == records
    assert json.dumps(again["curves"]["webp"]["points"]) == json.dumps(result["curves"]["webp"]["points"])
    assert again["curves"]["jpeg"]["peak_rss_mb"] == jpeg["peak_rss_mb"]


def test_a_missing_codec_is_skipped_with_a_note(monkeypatch, tmp_path):
    import os
    import queue

    from vaezip.bench import codecs, run as bench_run

    def missing():
        raise codecs.CodecUnavailable("pillow-heif is not installed")

    monkeypatch.setitem(codecs.FACTORIES, "heic", missing)
    q = queue.Queue()
    cfg = bench_run.BenchConfig(images=str(tmp_path), out=str(tmp_path / "out"), codecs=("heic",))
    bench_run._worker("heic", cfg, [], q, os.getppid())
    assert q.get_nowait() == ("unavailable", "pillow-heif is not installed")
    result = bench_run.summarise({})
    result["skipped"] = {"heic": "pillow-heif is not installed"}
    assert "| heic | skipped: pillow-heif is not installed |" in bench_run.markdown(result)


def test_vaezip_refine_is_a_curve_of_its_own():
    """The slow encoder (--refine) is benchmarked as its own codec, cached apart from the plain one."""
    from vaezip.bench import run as bench_run

    cfg = bench_run.BenchConfig(images=".", out=".", vaezip_refine=2)
    plain, refined = bench_run._build("vaezip", cfg), bench_run._build("vaezip-refine", cfg)
    assert refined.name == plain.name + " refine 2" and refined.version != plain.version
    assert refined.options["refine"] == 2 and "refine" not in plain.options
    img = synthetic(32, 48)
    assert refined.decode(refined.encode(img, 50)).shape == img.shape


def test_report_computes_the_quoted_figures():
    """benchmarks/report.py on curves whose test codec needs 10 % more bits than the anchor on one image and
    20 % fewer on the other, at the anchor's own PSNRs."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "report", Path(__file__).resolve().parents[1] / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)

    factor = {"a.png": 1.1, "b.png": 0.8}
    curves = {}
    for key, scale in (("heic", None), ("msh-test", factor)):
        per_image = {image: [{"setting": float(s), "psnr": float(q), "bpp": float(r) * (scale[image] if scale else 1.0),
                              "encode_s": 0.5, "decode_s": 0.25} for s, (r, q) in enumerate(zip(RATE, PSNR))]
                     for image in factor}
        points = [{"setting": float(s), "psnr": float(q), "encode_s": 0.5, "decode_s": 0.25,
                   "bpp": float(np.mean([per_image[i][s]["bpp"] for i in factor]))} for s, q in enumerate(PSNR)]
        curves[key] = {"name": key.upper(), "version": "1", "points": points, "per_image": per_image, "cpu": "x"}
    assert [(round(v, 6), i) for v, i in report.per_image_bd(curves["heic"], curves["msh-test"])] == [
        (-20.0, "b.png"), (10.0, "a.png")]  # best first
    lines, headline = report.dataset_section("kodak", curves, "msh-test", {})
    text = "\n".join(lines)
    assert headline["heic"] == pytest.approx(-5.0)  # the mean curve: 0.95 times the anchor's rate
    assert "| HEIC | -5.0 % |" in text and "1 of 2 need fewer bits" in text and "b -20.0 %, a +10.0 %" in text
    gaps = report.gap_by_setting(curves["heic"]["points"], curves["msh-test"]["points"])
    assert [g for _, g in gaps] == pytest.approx([-5.0] * len(RATE))
    assert "| 4 | 1.520 | 36.00 | 0.50 | 0.25 | -5.0 % |" in text


def test_the_quoted_figures_are_the_stored_results():
    """README.md, docs/ and the manifest's figures are what benchmarks/report.py makes of benchmarks/results/
    (run it after a bench run; nothing quoted is typed by hand)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "report", Path(__file__).resolve().parents[1] / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    texts, _ = report.build(report.ROOT / "benchmarks" / "results", report.zoo.DEFAULT_MODEL)
    stale = [str(path.relative_to(report.ROOT)) for path, text in texts.items() if path.read_text() != text]
    assert not stale, f"out of date, run python benchmarks/report.py: {stale}"
