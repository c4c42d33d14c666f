"""Thin click commands: parse, call the API, print one line per file. Errors: one line, exit status 1."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import click

from . import image as vzimage
from .errors import InputError, OutputError, VaezipError


def _fail(message: str) -> None:
    click.echo(f"vaezip: error: {message}", err=True)


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write data to path via a temporary file in the same folder: the destination is either untouched
    or complete. Without ``force`` an existing file is never replaced (checked race-free by link)."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{folder}: output folder does not exist; create it or choose another -o")
    if not force and path.exists():
        raise OutputError(f"{path} exists; pass --force to overwrite it")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputError(f"{path} exists; pass --force to overwrite it") from None
            except OSError:  # file systems without hard links: fall back to a checked rename
                if path.exists():
                    raise OutputError(f"{path} exists; pass --force to overwrite it") from None
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check_not_input(src: Path, dst: Path) -> None:
    if dst.exists() and src.exists() and os.path.samefile(src, dst):
        raise OutputError(f"{dst} is the input file; choose another -o")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


def _run_each(inputs: tuple[Path, ...], output: Path | None, job) -> None:
    """Run job(input, output) for each input; continue past failures and exit 1 if any failed."""
    if output is not None and len(inputs) > 1:
        _fail("-o/--output needs exactly one input; leave it out to write beside each input")
        sys.exit(1)
    failed = 0
    for src in inputs:
        try:
            job(src, output)
        except VaezipError as e:
            _fail(str(e))
            failed += 1
        except BrokenPipeError:
            raise  # the reader went away (`vaezip info *.vz | head -1`): click ends quietly
        except OSError as e:
            _fail(f"{src}: {e.strerror or e}")
            failed += 1
    if len(inputs) > 1:
        click.echo(f"{len(inputs) - failed} of {len(inputs)} files done" + (f", {failed} failed" if failed else ""))
    if failed:
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vaezip")
def main() -> None:
    """vaezip: a learned image codec."""


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-q", "--quality", type=click.FloatRange(0, 100), default=None,
              help="0..100, higher is better (default 75).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file (default: input with .vz).")
@click.option("-m", "--model", default=None,
              help="Model: an installed one (see `vaezip models`) or a weights file (.npz) from vaezip export.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--verify", is_flag=True, help="Decode each result and check it before anything is written.")
@click.option("--refine", type=click.IntRange(0, 1000), default=0, show_default=True, metavar="STEPS",
              help="Refine the latents for this image with STEPS optimizer steps: smaller files at the same "
                   "quality for much slower encoding (20: about 20 s and 0.3 GB more per 0.4 MP on one core). "
                   "Decoding is unchanged.")
@click.option("-j", "--threads", type=click.IntRange(1), default=None,
              help="Cores to use (default: all). The output is the same for any number.")
@click.option("--max-bytes", type=click.IntRange(1), default=None,
              help="Instead of -q: the highest quality whose file is at most this many bytes (about 10 encodes).")
@click.option("--target-bpp", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Instead of -q: the highest quality whose file is at most this many bits per pixel.")
@click.option("--target-psnr", type=click.FloatRange(min=0, min_open=True), default=None, metavar="DB",
              help="Instead of -q: the lowest quality whose decoded image reaches this PSNR-RGB (about 10 "
                   "encodes and decodes).")
def compress(inputs, quality, output, model, force, verify, refine, threads, max_bytes, target_bpp, target_psnr):
    """Compress images to .vz files."""
    from .codec import decode_array, encode_array
    from .format import DEFAULT_QUALITY
    from .runtime import keep_freed_memory
    from .zoo import DEFAULT_MODEL
    from .zoo.loader import load_model

    keep_freed_memory()
    targets = [name for name, value in (("-q", quality), ("--max-bytes", max_bytes), ("--target-bpp", target_bpp),
                                        ("--target-psnr", target_psnr)) if value is not None]
    if len(targets) > 1:
        _fail(f"{' and '.join(targets)} both set the quality; give one of them")
        sys.exit(2)
    quality = DEFAULT_QUALITY if quality is None else quality
    try:
        loaded = load_model(model or DEFAULT_MODEL)
    except VaezipError as e:
        _fail(str(e))
        sys.exit(1)

    def encode(array, mode):
        """(result, quality used, a note on the target) for the quality or target asked for."""
        from .target import encode_to_psnr, encode_to_size

        options = {"refine": refine, "workers": threads}
        if max_bytes or target_bpp:
            budget = max_bytes or int(target_bpp * array.shape[0] * array.shape[1] / 8)
            found = encode_to_size(array, mode, loaded, budget, **options)
            return found.result, found.quality, ""
        if target_psnr:
            found = encode_to_psnr(array, mode, loaded, target_psnr, **options)
            note = "" if found.reached else f" (quality 100 reaches only {found.psnr:.2f} dB)"
            return found.result, found.quality, f", {found.psnr:.2f} dB{note}"
        return encode_array(array, mode, quality, loaded, **options), quality, ""

    def job(src: Path, out: Path | None):
        dst = out or src.with_suffix(".vz")
        _check_not_input(src, dst)
        if not force and dst.exists():
            raise OutputError(f"{dst} exists; pass --force to overwrite it")
        array, mode = vzimage.load(src)
        start = time.perf_counter()
        res, used, note = encode(array, mode)
        seconds = time.perf_counter() - start
        if verify:  # raises DecodeMismatchError if the symbols do not come back
            decoded, _ = decode_array(res.data, loaded, workers=threads)
            if decoded.shape != array.shape:
                raise OutputError(f"{src}: verification failed (decoded {decoded.shape}); nothing written")
        write_atomic(dst, res.data, force)
        click.echo(f"{src} -> {dst}: {len(res.data):,} bytes, {res.bpp:.4f} bpp, "
                   f"{res.width}x{res.height}, q {used:g}{note}, {seconds:.2f} s")
        if res.clipped:
            click.echo(f"warning: {src}: {res.clipped} latent values exceeded model {loaded.name}'s coding range and "
                       "were clipped; the image may show local errors there (a lower quality may avoid it)", err=True)

    _run_each(inputs, output, job)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output image; its extension picks the format (default: input with .png).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--max-pixels", type=click.IntRange(1), default=vzimage.MAX_PIXELS, show_default=True,
              help="Refuse files that declare a larger image (decompression-bomb limit).")
@click.option("-m", "--model", default=None,
              help="Weights to decode with, for a file whose model is not installed: a weights file (.npz) or a "
                   "model name looked up in $VAEZIP_MODEL_PATH.")
@click.option("-j", "--threads", type=click.IntRange(1), default=None,
              help="Cores to use (default: all). The image is the same for any number.")
def decompress(inputs, output, force, max_pixels, model, threads):
    """Decompress .vz files to images (PNG unless -o names another format)."""
    from .codec import decode_array
    from .format import read_header
    from .runtime import keep_freed_memory

    keep_freed_memory()

    def job(src: Path, out: Path | None):
        data = _read(src)
        read_header(data, max_pixels)  # a foreign or damaged input is reported before anything else
        dst = out or src.with_suffix(".png")
        vzimage.output_format(dst)
        _check_not_input(src, dst)
        if not force and dst.exists():
            raise OutputError(f"{dst} exists; pass --force to overwrite it")
        start = time.perf_counter()
        array, header = decode_array(data, model, max_pixels=max_pixels, workers=threads)
        encoded = vzimage.save(vzimage.to_image(array, header.mode), dst)
        seconds = time.perf_counter() - start
        write_atomic(dst, encoded, force)
        click.echo(f"{src} -> {dst}: {header.width}x{header.height} {header.mode}, {len(data):,} bytes, "
                   f"{header.bpp:.4f} bpp, {seconds:.2f} s")

    _run_each(inputs, output, job)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
def info(inputs):
    """Show the header of .vz files (no network is built)."""
    from .format import read_header
    from .format.container import SECTION_NAMES

    def job(src: Path, _out):
        h = read_header(_read(src))
        sections = ", ".join(f"{SECTION_NAMES[k]} {n:,} B" for k, n in zip(h.section_kinds, h.section_lengths))
        click.echo(f"{src}: vz v{h.version}, model {h.model} ({h.weights_hash.hex()[:12]}), "
                   f"{h.width}x{h.height} {h.mode}, quality {h.quality:g}, {h.file_bytes:,} bytes, "
                   f"{h.bpp:.4f} bpp, sections: {sections}")

    _run_each(inputs, None, job)


@main.command()
def models():
    """List the installed models, the default first (no network is loaded)."""
    from .zoo import REGISTRY

    rows = [("model", "status", "size", "BD-rate vs HEIC: Kodak / photos", "speed")]
    for e in REGISTRY.values():
        if e.installed:
            bd = [e.figures.get(dataset, {}).get("bd_rate_vs_heic") for dataset in ("kodak", "photos")]
            speed = e.figures.get("relative_speed")
            rows.append((e.name, e.status, f"{e.file_bytes / 1e6:.1f} MB",
                         " / ".join("-" if v is None else f"{v:+.1f} %" for v in bd),
                         "-" if speed is None else f"{speed:.1f}x"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    archived = sum(e.status == "archived" for e in REGISTRY.values())
    click.echo(f"{archived} archived models decode with their weights file (-m PATH.npz): see docs/models.md")


@main.command()
@click.argument("data", type=click.Path(path_type=Path),
                default=lambda: os.environ.get("VAEZIP_TRAIN_DATA", "../shared/datasets/train"))
@click.option("--run-dir", type=click.Path(path_type=Path), required=True,
              help="Folder for checkpoint.pt and train.jsonl; an existing run is resumed.")
@click.option("--steps", type=click.IntRange(1), default=250_000, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--patch", type=click.IntRange(64), default=128, show_default=True)
@click.option("--max-downscale", type=click.FloatRange(min=1.0), default=2.0, show_default=True,
              help="Each crop comes from a region up to this factor larger, down-scaled (1: crops at the photos' "
                   "own scale).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--decay-steps", type=click.IntRange(0), default=0, show_default=True,
              help="0: cosine decay over --steps. K > 0: constant rate, then a linear decay over the last K steps "
                   "(resume a copy of a run with a larger --steps to decay a branch for export).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--sync-every", type=click.IntRange(1), default=1, show_default=True,
              help="Under torchrun: 1 averages the gradients every step (DistributedDataParallel); H > 1 lets each "
                   "process take H steps on its own, then averages the weights (local SGD: one collective per H "
                   "steps).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--level-tilt", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="How much more often the lowest rate level is drawn than the highest (1: uniform). BD-rate weighs "
                   "each level's relative rate alike; a tilt near the ratio of the top rate to the lowest (~6) "
                   "makes the loss do so too.")
@click.option("--channels", "n", type=click.IntRange(4), default=None,
              help="N, width of the transforms (default: 64, or the --init-from model's; larger grows it).")
@click.option("--latent-channels", "m", type=click.IntRange(4), default=None,
              help="M, channels of y (default: 96, or the --init-from model's; larger grows it).")
@click.option("--hyper-channels", "hyper_hidden", type=click.IntRange(4), default=None,
              help="Width of the hyper-synthesis hidden layers (default: M, or the --init-from model's).")
@click.option("--z-channels", "z_channels", type=click.IntRange(4), default=None,
              help="Channels of z and width of h_a (default: N, or the --init-from model's).")
@click.option("--context", type=click.Choice(["none", "checkerboard"]), default=None,
              help="Context model of new runs (default: none, or the --init-from model's): checkerboard (He et "
                   "al. 2021) codes y in two passes, the second conditioned on the first (on msh64's latents it "
                   "saved only ~1 %, see benchmarks/README.md); with --init-from it is added to the given model.")
@click.option("--conditional", is_flag=True, default=None,
              help="Modulate the hidden channels of g_a and g_s per rate level (Choi et al. 2019); with "
                   "--init-from it is added to the given model, starting as the identity.")
@click.option("--levels", type=click.IntRange(min=2), default=None,
              help="Rate levels (8 by default); with --init-from, more levels extend the model's range above its "
                   "top quality at the same lambda spacing.")
@click.option("--res-blocks", type=click.IntRange(min=0), default=None,
              help="Residual blocks at 1/8 resolution in g_a and in g_s (Cheng et al. 2020; default: 0, or the "
                   "--init-from model's); with --init-from, more blocks are added to the given model as the "
                   "identity.")
@click.option("--validate", "validate_dir", type=click.Path(path_type=Path),
              default=lambda: os.environ.get("VAEZIP_KODAK", "../shared/datasets/kodak"),
              help="Folder coded for real every --validate-every seconds (monitoring only; never tune on it).")
@click.option("--validate-every", type=click.FloatRange(min=1), default=3600, show_default=True)
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the training step (faster; needs a C++ compiler on CPU).")
@click.option("--init-from", help="Start a new run from a weights file or shipped model (e.g. msh64-r1).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: a GPU per process when there are enough (bfloat16 autocast there), else the CPU.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="bf16: the transforms under bfloat16 autocast (the likelihoods stay float32); auto: bf16 on "
                   "GPUs and on CPUs with native bf16 (AMX, AVX-512 BF16), else fp32.")
def train(data, run_dir, steps, batch, patch, max_downscale, lr, decay_steps, threads, sync_every, seed, level_tilt,
          n, m, hyper_hidden, z_channels, context, conditional, levels, res_blocks, validate_dir, validate_every,
          compile_,
          init_from, device, precision):
    """Train (or resume training) the variable-rate model on a folder of images.

    Multi-process (CPUs with gloo, GPUs with NCCL): torchrun --nproc_per_node K -m vaezip train ...
    """
    from .training.config import TrainConfig, run_config
    from .training.distributed import distributed_launch
    from .training.loop import train as run_training

    validate_dir = str(validate_dir) if validate_dir and Path(validate_dir).is_dir() else None
    cfg = TrainConfig(data=str(data), run_dir=str(run_dir), steps=steps, batch=batch, patch=patch,
                      max_downscale=max_downscale, lr=lr, decay_steps=decay_steps, threads=threads,
                      sync_every=sync_every, seed=seed, level_tilt=level_tilt, validate=validate_dir,
                      validate_every_s=validate_every, compile=compile_, init_from=init_from, device=device,
                      precision=precision)
    try:
        arch = {"checkerboard": "msh-gain-cb", "none": "msh-gain", None: None}[context]
        model_config = run_config(init_from, arch=arch, n=n, m=m, hyper_hidden=hyper_hidden, z_channels=z_channels,
                                  conditional=conditional or None, res_blocks=res_blocks, levels=levels)
        run_training(cfg, model_config, log=click.echo)
    except VaezipError as e:
        _fail(str(e))
        status = 1
    else:
        status = 0
    if distributed_launch():
        # The run is saved (or failed) and its process group destroyed. The interpreter's own teardown then
        # aborts in about one run of ten on torch 2.13 with gloo ("terminate called without an active
        # exception", no Python frame left: a C++ thread destroyed unjoined), which would turn either status
        # into SIGABRT. Nothing is left to finalise, so the worker leaves at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    if status:
        sys.exit(status)


@main.command()
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Weights file (.npz).")
@click.option("--name", required=True, help="Model name to record in the file, e.g. msh64-r4.")
@click.option("--raw", is_flag=True, help="Export the raw weights instead of their moving average.")
@click.option("--cpu-hours", type=click.FloatRange(min=0), default=None,
              help="Training CPU-hours to record (default: the checkpoint's own). For an average of branches, "
                   "the CPU-hours they took together, their shared trunk counted once.")
@click.option("--release", type=click.Choice(["default", "fast", "supported"]), default=None,
              help="Also install the weights in this package as a release with this status (zoo/manifest.json).")
def export(checkpoints, output, name, raw, cpu_hours, release):
    """Export a training checkpoint to a weights file with frozen coding tables.

    Several checkpoints, decayed branches of one training run, are averaged weight by weight first
    (a model soup)."""
    from .training.export import export as run_export
    from .training.export import release as run_release

    try:
        digest = run_export(checkpoints, output, name, use_ema=not raw, cpu_hours=cpu_hours)
        click.echo(f"{output}: sha256 {digest}")
        if release:
            entry = run_release(output, release)
            click.echo(f"released {entry.name} as {entry.status} (vaezip/zoo/manifest.json)")
    except VaezipError as e:
        _fail(str(e))
        sys.exit(1)


@main.command()
@click.argument("images", type=click.Path(path_type=Path),
                default=lambda: os.environ.get("VAEZIP_KODAK", "../shared/datasets/kodak"))
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True,
              help="Folder for one <curve>.json per codec, summary.md, rd.png and the per-image cache (a rerun "
                   "resumes); its other curves are summarised too.")
@click.option("--codecs", default=",".join(("jpeg", "webp", "jpeg2000", "avif", "heic", "jpegxl", "vaezip")),
              show_default=True, help="Comma-separated codecs to run.")
@click.option("--anchor", default="heic", show_default=True, help="Codec the Bjøntegaard deltas are taken against.")
@click.option("--reference", type=click.Path(exists=True, path_type=Path),
              help="JSON of published curves to plot and compare (benchmarks/reference/compressai-kodak.json).")
@click.option("--model", default=None, help="vaezip model to measure (default: the default model).")
@click.option("--weights", type=click.Path(exists=True, path_type=Path), help="Measure an exported weights file instead.")
@click.option("--refine", type=click.IntRange(1, 1000), default=20, show_default=True, metavar="STEPS",
              help="Refinement steps of the vaezip-refine codec (add it to --codecs; slow).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N images.")
def bench(images, out, codecs, anchor, reference, model, weights, refine, limit):
    """Rate–distortion benchmark of vaezip and the classical codecs on a folder of images."""
    try:
        from .bench.codecs import FACTORIES
        from .bench.run import BenchConfig, run
    except ImportError as e:
        _fail(f"the benchmark needs the bench extra ({e.name} is missing): pip install 'vaezip[bench]'")
        sys.exit(1)
    keys = tuple(k.strip() for k in codecs.split(",") if k.strip())
    unknown = [k for k in keys if k not in FACTORIES]
    if unknown:
        _fail(f"unknown codec {unknown[0]!r}; choose from {', '.join(FACTORIES)}")
        sys.exit(1)
    if not Path(images).is_dir():
        _fail(f"{images}: not a folder of images; pass one or set VAEZIP_KODAK")
        sys.exit(1)
    cfg = BenchConfig(images=str(images), out=str(out), codecs=keys, anchor=anchor,
                      reference=str(reference) if reference else None, vaezip_model=model,
                      vaezip_weights=str(weights) if weights else None, vaezip_refine=refine, limit=limit)
    try:
        result = run(cfg, log=click.echo, progress=lambda **kw: click.progressbar(**kw, file=sys.stderr))
    except (VaezipError, FileNotFoundError) as e:
        _fail(str(e))
        sys.exit(1)
    from .bench.run import markdown

    click.echo(markdown(result))
    click.echo(f"wrote the curves, {out / 'summary.md'} and {out / 'rd.png'} in {out}")


if __name__ == "__main__":
    main()
