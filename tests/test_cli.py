"""The command line through click's CliRunner: outputs, summaries, and errors that lose nothing."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from vaezip.cli import main
from vaezip.models import MeanScaleHyperprior

from conftest import synthetic


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(synthetic(70, 90)).save("photo.png")
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, list(args))


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [l for l in result.output.splitlines() if l.startswith("vaezip: error:")]
    assert len(lines) >= 1
    return lines[0]


def test_compress_info_decompress(workdir):
    r = run("compress", "photo.png")
    assert r.exit_code == 0, r.output
    assert "photo.vz" in r.output and "bpp" in r.output and " s" in r.output
    r = run("info", "photo.vz")
    assert r.exit_code == 0 and "90x70" in r.output and "quality 75" in r.output
    Path("photo.png").rename("orig.png")
    r = run("decompress", "photo.vz")
    assert r.exit_code == 0, r.output
    assert Image.open("photo.png").size == (90, 70)


@pytest.fixture(scope="module")
def clamping_weights(tmp_path_factory) -> str:
    """The fast model's weights as the archived msh64-r1 .. r4 were written: without escape coding."""
    from vaezip.entropy.coder import Coder
    from vaezip.zoo.loader import load_model, save_file

    m = load_model("msh64-r12", "cpu")
    path = tmp_path_factory.mktemp("weights") / "clamping.npz"
    save_file(path, m.network, Coder(m.z_coder.table, False), Coder(m.y_coder.table, False), m.scale_thresholds,
              {**m.meta, "name": "clamping-test"})
    return str(path)


def test_compress_warns_when_latents_are_clipped(workdir, monkeypatch, clamping_weights):
    """Weights without escape coding clamp latents beyond their tables and warn; the default model escape-codes
    them (no warning). Any weights file works with -m, and decodes with the same -m."""
    r = run("compress", "photo.png", "-o", "ok.vz", "-m", clamping_weights)
    assert r.exit_code == 0 and "warning" not in r.output
    assert "model clamping-test" in run("info", "ok.vz").output
    msg = one_line_error(run("decompress", "ok.vz", "-o", "ok.png"))
    assert "unknown model 'clamping-test'" in msg and "-m PATH.npz" in msg and not Path("ok.png").exists()
    assert run("decompress", "ok.vz", "-o", "ok.png", "-m", clamping_weights).exit_code == 0
    real = MeanScaleHyperprior.latents
    monkeypatch.setattr(MeanScaleHyperprior, "latents", lambda *a, **k: tuple(v * 1000 for v in real(*a, **k)))
    r = run("compress", "photo.png", "-o", "clipped.vz", "-m", clamping_weights)
    assert r.exit_code == 0 and "latent values exceeded" in r.output and Path("clipped.vz").exists()
    r = run("compress", "photo.png", "-o", "escaped.vz")
    assert r.exit_code == 0 and "warning" not in r.output and Path("escaped.vz").exists()


def test_refine_option(workdir):
    r = run("compress", "photo.png", "-o", "refined.vz", "--refine", "3")
    assert r.exit_code == 0, r.output
    assert run("decompress", "refined.vz", "-o", "refined.png").exit_code == 0
    assert Image.open("refined.png").size == (90, 70)
    r = run("compress", "photo.png", "-o", "bad.vz", "--refine", "-1")
    assert r.exit_code == 2 and not Path("bad.vz").exists()


def test_quality_and_output_options(workdir):
    assert run("compress", "photo.png", "-q", "10", "-o", "low.vz", "--verify").exit_code == 0
    assert run("compress", "photo.png", "-q", "90", "-o", "high.vz").exit_code == 0
    assert Path("low.vz").stat().st_size < Path("high.vz").stat().st_size
    r = run("decompress", "high.vz", "-o", "out.jpg")
    assert r.exit_code == 0 and Image.open("out.jpg").format == "JPEG"


def test_no_overwrite_without_force(workdir):
    Path("photo.vz").write_bytes(b"precious")
    msg = one_line_error(run("compress", "photo.png"))
    assert "--force" in msg
    assert Path("photo.vz").read_bytes() == b"precious"
    assert run("compress", "photo.png", "--force").exit_code == 0
    assert Path("photo.vz").read_bytes()[:3] == b"\x89VZ"


def test_decompress_never_overwrites_the_original_image(workdir):
    assert run("compress", "photo.png").exit_code == 0
    before = Path("photo.png").read_bytes()
    msg = one_line_error(run("decompress", "photo.vz"))
    assert "exists" in msg and Path("photo.png").read_bytes() == before


@pytest.mark.parametrize("content,expect", [
    (b"", "not a .vz file|truncated"),
    (b"GIF89a" + bytes(100), "not a .vz file"),
])
def test_foreign_and_empty_vz_files(workdir, content, expect):
    Path("bad.vz").write_bytes(content)
    msg = one_line_error(run("decompress", "bad.vz"))
    assert __import__("re").search(expect, msg)
    assert not Path("bad.png").exists()


def test_truncated_vz_leaves_no_output(workdir):
    assert run("compress", "photo.png").exit_code == 0
    data = Path("photo.vz").read_bytes()
    Path("cut.vz").write_bytes(data[: len(data) // 2])
    assert "truncated" in one_line_error(run("decompress", "cut.vz"))
    assert sorted(p.name for p in Path(".").iterdir()) == ["cut.vz", "photo.png", "photo.vz"]


def test_unreadable_image(workdir):
    Path("fake.png").write_bytes(b"not an image at all")
    msg = one_line_error(run("compress", "fake.png"))
    assert "fake.png" in msg and not Path("fake.vz").exists()
    assert "no such file" in one_line_error(run("compress", "missing.png"))


def test_several_files_continue_past_a_bad_one(workdir):
    Image.fromarray(synthetic(40, 40, seed=1)).save("b.png")
    Path("bad.png").write_bytes(b"junk")
    r = run("compress", "photo.png", "bad.png", "b.png")
    assert r.exit_code == 1
    assert Path("photo.vz").exists() and Path("b.vz").exists() and not Path("bad.vz").exists()
    assert "2 of 3 files done, 1 failed" in r.output


def test_output_with_several_inputs_is_refused(workdir):
    one_line_error(run("compress", "photo.png", "photo.png", "-o", "x.vz"))


def test_quality_out_of_range(workdir):
    r = run("compress", "photo.png", "-q", "150")
    assert r.exit_code == 2 and not Path("photo.vz").exists()


def test_models_is_a_short_table_default_first(workdir):
    from vaezip.zoo import DEFAULT_MODEL, FAST_MODEL

    r = run("models")
    lines = r.output.splitlines()
    assert r.exit_code == 0 and len(lines) <= 8, r.output
    assert lines[1].split()[:2] == [DEFAULT_MODEL, "default"] and lines[2].split()[:2] == [FAST_MODEL, "fast"]
    assert "archived" in lines[-1] and "docs/models.md" in lines[-1]


def test_grayscale_file_round_trip(workdir):
    Image.fromarray(synthetic(50, 60)[:, :, 0]).save("g.png")
    assert run("compress", "g.png").exit_code == 0
    assert run("decompress", "g.vz", "-o", "g2.png").exit_code == 0
    assert Image.open("g2.png").mode == "L"


def test_vz_written_with_other_weights_is_named(workdir):
    import struct
    import zlib

    from vaezip.format import read_header
    assert run("compress", "photo.png").exit_code == 0
    data = bytearray(Path("photo.vz").read_bytes())
    h = read_header(bytes(data))
    at = 21 + len(h.model)
    data[at] ^= 1  # another weights hash, header CRC fixed up
    data[h.header_bytes - 4:h.header_bytes] = struct.pack("<I", zlib.crc32(bytes(data[:h.header_bytes - 4])))
    Path("other.vz").write_bytes(bytes(data))
    msg = one_line_error(run("decompress", "other.vz"))
    other = bytes([h.weights_hash[0] ^ 1]) + h.weights_hash[1:]
    assert h.model in msg and f"weights {other.hex()[:12]}" in msg and "-m PATH.npz" in msg


def test_unknown_output_extension(workdir):
    assert run("compress", "photo.png").exit_code == 0
    assert ".png" in one_line_error(run("decompress", "photo.vz", "-o", "out.xyz"))
    assert not Path("out.xyz").exists()


def test_exif_orientation_is_applied(workdir):
    img = Image.fromarray(synthetic(30, 50))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save("rot.jpg", exif=exif, quality=95)
    assert run("compress", "rot.jpg").exit_code == 0
    assert run("decompress", "rot.vz").exit_code == 0
    assert Image.open("rot.png").size == (30, 50)


def test_unknown_model_is_one_line(workdir):
    msg = one_line_error(run("compress", "photo.png", "-m", "no-such-model"))
    assert "vaezip models" in msg and not Path("photo.vz").exists()


def test_a_reader_that_stops_early_ends_the_listing_quietly(tmp_path):
    """`vaezip info *.vz | head -1`: no "Broken pipe" message per remaining file."""
    import shutil
    import subprocess
    import sys

    golden = sorted((Path(__file__).parent / "data").glob("golden-*.vz"))[0]
    for i in range(400):
        shutil.copy(golden, tmp_path / f"f{i:03d}.vz")
    proc = subprocess.run(f"{sys.executable} -m vaezip info {tmp_path}/*.vz | head -1", shell=True,
                          capture_output=True, text=True)
    assert proc.stdout.count("\n") == 1 and "f000.vz" in proc.stdout
    assert "Broken pipe" not in proc.stderr and proc.stderr == ""


def test_size_and_quality_targets(workdir):
    """--max-bytes / --target-bpp: the highest quality that fits; --target-psnr: the lowest that reaches it."""
    from vaezip import read_info
    from vaezip.image import load
    from vaezip.metrics import psnr

    Image.fromarray(synthetic(96, 128, seed=5)).save("big.png")
    assert run("compress", "big.png", "-o", "q100.vz", "-q", "100").exit_code == 0
    assert run("compress", "big.png", "-o", "q0.vz", "-q", "0").exit_code == 0
    small, large = Path("q0.vz").stat().st_size, Path("q100.vz").stat().st_size
    budget = (small + large) // 2
    r = run("compress", "big.png", "-o", "fit.vz", "--max-bytes", str(budget))
    assert r.exit_code == 0, r.output
    fit = Path("fit.vz").stat().st_size
    assert fit <= budget and 0 < read_info(Path("fit.vz")).quality < 100
    above = read_info(Path("fit.vz")).quality + 0.2
    assert run("compress", "big.png", "-o", "above.vz", "-q", f"{above:.2f}").exit_code == 0
    assert Path("above.vz").stat().st_size > budget * 0.98  # close to the largest that fits
    assert run("compress", "big.png", "-o", "bpp.vz", "--target-bpp", "0.5").exit_code == 0
    assert Path("bpp.vz").stat().st_size * 8 <= 0.5 * 96 * 128
    assert "quality 0 needs" in one_line_error(run("compress", "big.png", "-o", "no.vz", "--max-bytes", "10"))
    assert not Path("no.vz").exists()
    r = run("compress", "big.png", "-o", "p.vz", "--target-psnr", "30")
    assert r.exit_code == 0 and "dB" in r.output
    assert run("decompress", "p.vz", "-o", "p.png").exit_code == 0
    assert psnr(load("big.png")[0], load("p.png")[0]) >= 30
    assert run("compress", "big.png", "-q", "50", "--max-bytes", "100").exit_code == 2
