"""The training loop on a tiny model: runs, resumes exactly where it stopped, and exports a model that codes."""
from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vaezip.zoo import loader as zoo
from vaezip.cli import main
from vaezip.codec import decode_array, encode_array
from vaezip.errors import VaezipError
from vaezip.models import ModelConfig, build_model
from vaezip.errors import CheckpointError, DatasetError, DeviceError, DivergenceError, GrowError
from vaezip.training.checkpoint import load_checkpoint
from vaezip.training.config import TrainConfig, run_config
from vaezip.training.device import select_device
from vaezip.training.distributed import StopRequest, ValidationStopped
from vaezip.training.export import export
from vaezip.training.grow import can_grow, grow
from vaezip.training.loop import divergence, train
from vaezip.training.schedule import draw_levels, lr_at

from conftest import synthetic

TINY = ModelConfig(n=8, m=12, levels=3)


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for i in range(3):
        Image.fromarray(synthetic(80, 100, seed=i)).save(d / f"{i}.png")
    (d / "broken.jpg").write_bytes(b"nope")
    return d


def cfg(data_dir, run_dir, steps):
    return TrainConfig(data=str(data_dir), run_dir=str(run_dir), steps=steps, patch=64, batch=2,
                       warmup=2, log_every=2, save_every_s=0, device="cpu")  # bit-exact resume: CPU


def test_train_resume_export_and_code(data_dir, tmp_path):
    run = tmp_path / "run"
    train(cfg(data_dir, run, 4), TINY, log=lambda *_: None)
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 4
    train(cfg(data_dir, run, 6), TINY, log=lambda *_: None)
    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["step"] == 6
    log = [json.loads(l) for l in (run / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "step" in r] == [2, 4, 6]
    assert [(r["start"], r["config"]["steps"]) for r in log if "start" in r] == [(0, 4), (4, 6)]

    out = tmp_path / "tiny.npz"
    digest = export(run / "checkpoint.pt", out, "tiny-r1")
    assert len(digest) == 64
    model = zoo.load_file(out, "tiny-r1")
    assert model.config == TINY
    assert model.y_coder.escape and model.z_coder.escape  # exported models escape-code (entropy/coder.py)
    img = synthetic(33, 47)
    dec, _ = decode_array(encode_array(img, "RGB", 50, model).data, model)
    assert dec.shape == img.shape


def test_export_release_installs_the_weights_and_writes_the_manifest(data_dir, tmp_path):
    """vaezip export --release: the weights land beside the manifest, which records them (and keeps the former
    default installed); the same name cannot be released with other weights."""
    from vaezip import zoo as registry
    from vaezip.errors import ModelError
    from vaezip.training.export import release

    manifest = tmp_path / "zoo" / "manifest.json"
    (tmp_path / "zoo" / "weights").mkdir(parents=True)
    registry.write_manifest(registry.read_manifest(), manifest)
    train(cfg(data_dir, tmp_path / "run", 2), TINY, log=lambda *_: None)
    digest = export(tmp_path / "run" / "checkpoint.pt", tmp_path / "tiny.npz", "tiny-r9")
    entry = release(tmp_path / "tiny.npz", "default", manifest)
    assert entry.sha256 == digest and (tmp_path / "zoo" / "weights" / "tiny-r9.npz").read_bytes() == (
        tmp_path / "tiny.npz").read_bytes()
    after = registry.read_manifest(manifest)
    assert after["tiny-r9"].status == "default" and after[registry.DEFAULT_MODEL].status == "supported"
    assert "N=8 M=12, 3 rate levels" in after["tiny-r9"].description
    export(tmp_path / "run" / "checkpoint.pt", tmp_path / "raw.npz", "tiny-r9", use_ema=False)
    with pytest.raises(ModelError, match="released with other weights"):
        release(tmp_path / "raw.npz", "default", manifest)


def test_export_averages_branches_of_one_run(data_dir, tmp_path):
    """`vaezip export A B`: the weights are the mean of the branches', the file says so, and checkpoints of
    different architectures are refused with one line, no file written."""
    train(cfg(data_dir, tmp_path / "a", 4), TINY, log=lambda *_: None)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    train(replace(cfg(data_dir, tmp_path / "b", 6), seed=5), TINY, log=lambda *_: None)
    a, b = (load_checkpoint(tmp_path / r / "checkpoint.pt") for r in "ab")
    result = CliRunner().invoke(main, ["export", str(tmp_path / "a" / "checkpoint.pt"),
                                       str(tmp_path / "b" / "checkpoint.pt"), "-o", str(tmp_path / "soup.npz"),
                                       "--name", "tiny-soup", "--cpu-hours", "1.5"])
    assert result.exit_code == 0, result.output
    soup = zoo.load_file(tmp_path / "soup.npz")
    assert soup.meta["cpu_hours"] == 1.5 and soup.meta["step"] == 6
    assert [m["step"] for m in soup.meta["averaged"]] == [4, 6]
    weights = soup.network.state_dict()
    moved = 0
    for name, v in a["ema"].items():
        if v.is_floating_point():
            mean = ((v.double() + b["ema"][name].double()) / 2).half().float()
            assert torch.equal(weights[name].float(), mean), name
            moved += not torch.equal(v, b["ema"][name])
    assert moved  # the branches differ, so the average is neither of them

    train(cfg(data_dir, tmp_path / "c", 2), replace(TINY, n=10), log=lambda *_: None)
    result = CliRunner().invoke(main, ["export", str(tmp_path / "a" / "checkpoint.pt"),
                                       str(tmp_path / "c" / "checkpoint.pt"), "-o", str(tmp_path / "bad.npz"),
                                       "--name", "bad"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "different architectures" in result.output
    assert not (tmp_path / "bad.npz").exists()


def test_resumed_run_matches_an_uninterrupted_one(data_dir, tmp_path):
    train(cfg(data_dir, tmp_path / "a", 4), TINY, log=lambda *_: None)
    train(cfg(data_dir, tmp_path / "b", 2), TINY, log=lambda *_: None)
    train(cfg(data_dir, tmp_path / "b", 4), TINY, log=lambda *_: None)
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("gpus,processes,rank,expected", [
    (0, 1, 0, "cpu"), (1, 1, 0, "cuda:0"), (2, 2, 1, "cuda:1"), (1, 2, 1, "cpu"), (4, 2, 1, "cuda:1")])
def test_device_selection(monkeypatch, gpus, processes, rank, expected):
    """auto uses a GPU per process only when each process on the host gets its own; cuda insists."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    assert str(select_device("auto")) == expected
    assert str(select_device("cpu")) == "cpu"
    if expected == "cpu":
        with pytest.raises(DeviceError, match="GPU"):
            select_device("cuda")
    else:
        assert str(select_device("cuda")) == expected


def test_precision_choice(monkeypatch):
    from vaezip.training import device

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for native in (True, False):
        monkeypatch.setattr(device, "cpu_has_native_bf16", lambda native=native: native)
        assert device.use_bf16("auto", cpu) is native
        assert device.use_bf16("auto", cuda) and not device.use_bf16("fp32", cuda) and device.use_bf16("bf16", cpu)


def test_compiled_bfloat16_training_on_cpu(data_dir, tmp_path):
    """--compile under bf16 on the CPU: inductor's code narrows to 256-bit vectors (its AVX-512 bf16 code gave NaN
    gradients on an Emerald Rapids Xeon; at 256 bits the N=128 model trained 3x faster) and every step is finite."""
    from vaezip.training.device import compiled_vector_bits

    assert compiled_vector_bits(torch.device("cpu"), False) is None
    assert compiled_vector_bits(torch.device("cuda", 0), True) is None
    c = replace(cfg(data_dir, tmp_path / "run", 4), precision="bf16", compile=True)
    lines = []
    train(c, TINY, log=lines.append)
    assert any("torch.compile: 256-bit vectors" in line for line in lines)
    recs = [json.loads(l) for l in (tmp_path / "run" / "train.jsonl").read_text().splitlines() if '"step"' in l]
    assert [r["step"] for r in recs] == [2, 4] and not any("skipped" in r for r in recs)
    assert all(math.isfinite(r["loss"]) for r in recs)


def test_bfloat16_training_on_cpu(data_dir, tmp_path):
    """--precision bf16: the transforms under CPU autocast (AMX/AVX-512 BF16 make it ~2x faster here)."""
    c = cfg(data_dir, tmp_path / "run", 3)
    c.precision = "bf16"
    lines = []
    train(c, TINY, log=lines.append)
    assert any("bfloat16 autocast" in line for line in lines)
    recs = [json.loads(l) for l in (tmp_path / "run" / "train.jsonl").read_text().splitlines() if '"step"' in l]
    assert recs and all(math.isfinite(r["loss"]) for r in recs)
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck["step"] == 3 and all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())


def test_empty_folder_and_corrupt_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        train(cfg(tmp_path / "empty", tmp_path / "r", 2), TINY, log=lambda *_: None)
    assert not (tmp_path / "r").exists()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)


def test_validation_codes_for_real(data_dir, tmp_path):
    val = tmp_path / "val"
    val.mkdir()
    Image.fromarray(synthetic(64, 96, seed=9)).save(val / "v.png")
    c = cfg(data_dir, tmp_path / "run", 2)
    c.validate, c.validate_every_s, c.validate_qualities = str(val), 0.0, (20.0, 80.0)
    train(c, TINY, log=lambda *_: None)
    recs = [json.loads(l) for l in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    v = recs[-1]["validation"]
    assert set(v) == {"q20", "q80"}
    assert 0 < v["q20"]["bpp"] <= v["q80"]["bpp"] and v["q20"]["psnr_rgb"] > 5


def test_a_failing_validation_does_not_end_the_run(data_dir, tmp_path, monkeypatch):
    import vaezip.training.loop as loop

    def broken(*_):
        raise ValueError("Probability distribution not normalizable")

    monkeypatch.setattr(loop, "validate", broken)
    c = cfg(data_dir, tmp_path / "run", 4)
    c.validate, c.validate_every_s = str(data_dir), 0.0
    train(c, TINY, log=lambda *_: None)
    recs = [json.loads(l) for l in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    recs = [r for r in recs if "step" in r]
    assert [r["step"] for r in recs] == [2, 4] and "not normalizable" in recs[0]["validation_error"]


def _poisoned_loss(monkeypatch, bad_calls):
    """rd_loss whose loss (and so every gradient) is NaN on the given calls (0-based)."""
    import vaezip.training.loop as loop

    real, calls = loop.rd_loss, iter(range(10**6))

    def rd_loss(*args):
        loss, bpp, psnr = real(*args)
        return (loss * math.nan if next(calls) in bad_calls else loss), bpp, psnr

    monkeypatch.setattr(loop, "rd_loss", rd_loss)


def test_non_finite_steps_are_skipped_and_a_diverging_run_stops_unsaved(data_dir, tmp_path, monkeypatch):
    """A NaN gradient (seen with torch.compile under bfloat16 on an Intel AMX CPU) must not poison the weights:
    the step is skipped and counted; many in a row stop the run with a one-line error, the last checkpoint kept."""
    run = tmp_path / "run"
    _poisoned_loss(monkeypatch, {1, 2})
    train(cfg(data_dir, run, 6), TINY, log=lambda *_: None)
    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["step"] == 6
    assert all(torch.isfinite(v).all() for part in ("model", "ema") for v in ck[part].values())
    recs = [json.loads(l) for l in (run / "train.jsonl").read_text().splitlines() if '"step"' in l]
    assert [r.get("skipped", 0) for r in recs] == [1, 1, 0]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["psnr"]) for r in recs)

    _poisoned_loss(monkeypatch, set(range(10**6)))
    c = replace(cfg(data_dir, run, 20), max_nonfinite=3, compile=False)
    lines = []
    with pytest.raises(DivergenceError, match="3 steps in a row up to step 9 had a NaN"):
        train(c, TINY, log=lines.append)
    assert any(l.startswith("not saved at step 9: training diverged;") for l in lines)
    after = load_checkpoint(run / "checkpoint.pt")
    assert after["step"] < 9  # (a periodic save of step 8 holds the same weights: skipped steps change nothing)
    assert all(torch.equal(after[part][k], ck[part][k]) for part in ("model", "ema") for k in ck[part])
    assert "rerun with --precision fp32 or without --compile" in str(divergence(9, 3, replace(c, compile=True)))


#: `vaezip train` as two processes under torchrun (gloo on the CPU).
TORCHRUN_TRAIN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "vaezip",
                  "train"]


def _workers_said(output: str) -> str:
    """What a failed torchrun job's workers printed: their errors come first, torchrun's summary of the failure
    (a long traceback of its own) last."""
    return output[:3000] + "\n...\n" + output[-800:] if len(output) > 3800 else output


def test_two_processes_with_gloo_through_torchrun(data_dir, tmp_path):
    """Scale-out on PyTorch's own stack, for real: torchrun, DistributedDataParallel, gloo, two CPUs."""
    import os
    import subprocess

    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}  # an abort shows where
    proc = subprocess.run(
        [*TORCHRUN_TRAIN, str(data_dir), "--run-dir", str(run), "--steps", "3", "--batch", "2", "--patch", "64",
         "--channels", "8", "--latent-channels", "12", "--validate", str(tmp_path / "none"), "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, _workers_said(proc.stderr)
    assert "world size 2" in proc.stdout
    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["step"] == 3 and len(ck["rng"]) == 2
    assert ck["rng"][0]["numpy"] != ck["rng"][1]["numpy"]  # each process draws its own crops
    # Resuming with two processes restores both random streams and continues, here as local SGD, whose
    # last average falls on no multiple of --sync-every, and with rate levels drawn tilted.
    proc = subprocess.run(
        [*TORCHRUN_TRAIN, str(data_dir), "--run-dir", str(run), "--steps", "6", "--batch", "2", "--patch", "64",
         "--sync-every", "2", "--level-tilt", "6", "--validate", str(tmp_path / "none"), "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, _workers_said(proc.stderr)
    assert "resumed" in proc.stdout and "averaged every 2 steps" in proc.stdout
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 6
    starts = [json.loads(l) for l in (run / "train.jsonl").read_text().splitlines() if '"start"' in l]
    assert [s["config"]["level_tilt"] for s in starts] == [1.0, 6.0]


def test_a_distributed_run_that_fails_says_why_and_exits_1(data_dir, tmp_path):
    """An error after the process group is up (here a missing --init-from) ends each worker with its one-line
    message and status 1, not with a traceback or the SIGABRT of the interpreter's teardown."""
    import os
    import re
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.run(
        [*TORCHRUN_TRAIN, str(data_dir), "--run-dir", str(tmp_path / "ddp"), "--steps", "3", "--batch", "2", "--patch",
         "64", "--init-from", str(tmp_path / "missing.npz"), "--validate", str(tmp_path / "none"),
         "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=300)
    said = _workers_said(proc.stderr)
    assert proc.returncode == 1, said
    assert "vaezip: error: " in said and "missing.npz: no such weights file" in said, said
    # The first worker to fail leaves with 1; torchrun may stop the other with SIGTERM (-15) before it does.
    codes = set(re.findall(r"exitcode\s*:\s*(-?\d+)", proc.stderr))
    assert "1" in codes and codes <= {"1", "-15"}, said
    assert not (tmp_path / "ddp" / "checkpoint.pt").exists()


def _average_in_two_processes(rank: int, init: str, out: str) -> None:
    import os

    import torch.distributed as dist

    from vaezip.training.distributed import LocalSGD

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    ema = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 8, 8)).square().mean().backward()
    opt.step()  # Adam's moments exist from here on
    average = LocalSGD(model, ema, opt, 2)
    torch.manual_seed(rank)  # different weights, moments and moving averages on each process
    with torch.no_grad():
        for t in average.tensors():
            t.copy_(torch.rand_like(t))
    before = [t.clone() for t in average.tensors()]
    average()
    torch.save({"before": before, "after": average.tensors()}, f"{out}/{rank}.pt")
    dist.destroy_process_group()
    # Leave without the interpreter's finalization: under pytest, about one spawned process in 15 aborted
    # there ("terminate called without an active exception", no Python frame left on the stack), after
    # its work was done and saved. os._exit skips it; the saved file is closed already.
    os._exit(0)


def test_local_sgd_averages_every_part_of_the_state(tmp_path):
    """After an average, both processes hold the mean of their weights, buffers, moving averages and Adam
    moments (6 float tensors of the model and as many of the EMA: the convolution's weight and bias, the batch
    norm's affine parameters and running statistics; 2 x 4 moments)."""
    import torch.multiprocessing as mp

    mp.spawn(_average_in_two_processes, args=(f"file://{tmp_path}/store", str(tmp_path)), nprocs=2)
    a, b = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    assert len(a["after"]) == 2 * 6 + 8  # num_batches_tracked (an integer) is left alone
    for before_a, before_b, after_a, after_b in zip(a["before"], b["before"], a["after"], b["after"]):
        assert not torch.equal(before_a, before_b)
        assert torch.equal(after_a, after_b)
        torch.testing.assert_close(after_a, (before_a + before_b) / 2)


def test_a_distributed_run_stopped_on_one_rank_saves(data_dir, tmp_path):
    """SIGTERM to one worker of a torchrun job stops both processes at the same step, and they save
    together. A rank that left in the middle of a step used to leave the other waiting in a collective
    until torchrun killed both, unsaved."""
    import os
    import signal
    import subprocess
    from pathlib import Path

    if not Path(f"/proc/{os.getpid()}/environ").exists():
        pytest.skip("finds the workers through /proc")
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        [*TORCHRUN_TRAIN, str(data_dir), "--run-dir", str(run), "--steps", "1000000", "--batch", "2", "--patch", "64",
         "--channels", "8", "--latent-channels", "12", "--validate", str(tmp_path / "none"), "--device", "cpu"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:  # the first progress line: both processes are training
            if line.startswith("step "):
                break
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        rank1 = next(int(c) for c in children if b"\0RANK=1\0" in Path(f"/proc/{c}/environ").read_bytes())
        os.kill(rank1, signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0 and "saved" in out, _workers_said(out)
    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["step"] >= 100 and len(ck["rng"]) == 2


def test_stop_requests():
    """A single process exits at once (its finally clause saves); a distributed one sets a flag that the
    ranks combine, and cuts a running validation short."""
    single = StopRequest(immediate=True)
    with pytest.raises(SystemExit):
        single()
    ranked = StopRequest(immediate=False)
    ranked()
    assert ranked.requested
    ranked.validating = True
    with pytest.raises(ValidationStopped):
        ranked()


def test_a_new_run_can_start_from_exported_weights(data_dir, tmp_path):
    train(cfg(data_dir, tmp_path / "a", 2), TINY, log=lambda *_: None)
    export(tmp_path / "a" / "checkpoint.pt", tmp_path / "a.npz", "tiny-r1")
    c = cfg(data_dir, tmp_path / "b", 1)
    c.init_from, c.lr = str(tmp_path / "a.npz"), 1e-12  # a step that changes (almost) nothing
    train(c, TINY, log=lambda *_: None)
    start = zoo.load_file(tmp_path / "a.npz").network.state_dict()
    got = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert all(torch.allclose(got[k], start[k], atol=1e-6) for k in start)
    with pytest.raises(CheckpointError, match="differs"):
        c2 = cfg(data_dir, tmp_path / "c", 1)
        c2.init_from = str(tmp_path / "a.npz")
        train(c2, ModelConfig(n=8, m=16, levels=3), log=lambda *_: None)


def test_a_run_from_given_weights_takes_their_shape_unless_told_otherwise(data_dir, tmp_path):
    train(cfg(data_dir, tmp_path / "a", 1), replace(TINY, hyper_hidden=10), log=lambda *_: None)
    export(tmp_path / "a" / "checkpoint.pt", tmp_path / "a.npz", "tiny-r1")
    a = str(tmp_path / "a.npz")
    assert run_config() == ModelConfig() and run_config(n=32).n == 32
    assert run_config(a) == replace(TINY, hyper_hidden=10)
    assert run_config(a, m=20) == replace(TINY, m=20, hyper_hidden=10)
    assert run_config(a, n=16) == replace(TINY, n=16, z_channels=8, hyper_hidden=10)  # z keeps its width
    assert run_config(a, arch="msh-gain-cb").arch == "msh-gain-cb"
    assert run_config("msh64-r12") == zoo.load_model("msh64-r12").config  # M=192, h_s 96 wide: no options needed
    with pytest.raises(VaezipError, match="missing.npz"):
        run_config(str(tmp_path / "missing.npz"))


def test_growing_m_keeps_what_the_model_computes(data_dir, tmp_path):
    train(cfg(data_dir, tmp_path / "a", 2), TINY, log=lambda *_: None)
    export(tmp_path / "a" / "checkpoint.pt", tmp_path / "a.npz", "tiny-r1")
    small = zoo.load_file(tmp_path / "a.npz")
    wide = ModelConfig(n=8, m=20, levels=3, hyper_hidden=12)
    assert can_grow(TINY, wide)
    assert not can_grow(TINY, ModelConfig(n=8, m=20, levels=3))      # h_s would change width
    assert not can_grow(TINY, ModelConfig(n=16, m=20, levels=3, hyper_hidden=12))
    assert not can_grow(wide, TINY)                                  # shrinking
    grown = grow(small.network, wide).eval()
    x = torch.from_numpy(synthetic(64, 64)).permute(2, 0, 1)[None].float() / 255
    for t in (0.0, 2.0):
        t = torch.tensor([t])
        with torch.no_grad():
            torch.manual_seed(1)  # the same training noise for both (the old channels come first)
            a = small.network(x, t)
            torch.manual_seed(1)
            b = grown(x, t)
        assert torch.allclose(a.x_hat, b.x_hat, atol=1e-6)
        assert torch.allclose(a.z_likelihood, b.z_likelihood, atol=1e-6)
        assert torch.allclose(a.y_likelihood, b.y_likelihood[:, :12], atol=1e-6)
    # Real coding: the same image comes back, and the new channels cost next to nothing.
    img = synthetic(48, 72)
    before, after = encode_array(img, "RGB", 80, small), encode_array(img, "RGB", 80, zoo.freeze(grown, "w"))
    assert (decode_array(before.data, small)[0] == decode_array(after.data, zoo.freeze(grown, "w"))[0]).all()
    assert len(after.data) <= len(before.data) + 8
    with pytest.raises(GrowError, match="only the widths N and M"):
        grow(small.network, ModelConfig(n=16, m=12, levels=3))  # z would change width

    # Through the training loop: a run started from the small model trains the wide one, and its
    # CPU-hours count the small model's.
    c = cfg(data_dir, tmp_path / "b", 2)
    c.init_from = str(tmp_path / "a.npz")
    train(c, wide, log=lambda *_: None)
    ck = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert ModelConfig.from_dict(ck["model_config"]) == wide
    assert ck["cpu_seconds"] >= small.meta["cpu_hours"] * 3600


@pytest.mark.parametrize("target", [ModelConfig(n=16, m=12, levels=3, z_channels=8),
                                    ModelConfig(n=12, m=20, levels=3, z_channels=8, hyper_hidden=12)])
def test_growing_n_keeps_what_the_model_computes(target):
    torch.manual_seed(0)
    small = build_model(TINY).eval()
    with torch.no_grad():  # trained-looking GDN cross terms, so that zeroing the right block matters
        for p in small.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    assert can_grow(TINY, target) and not can_grow(target, TINY)
    grown = grow(small, target).eval()
    x = torch.from_numpy(synthetic(64, 64)).permute(2, 0, 1)[None].float() / 255
    for t in (0.0, 2.0):
        t = torch.tensor([t])
        with torch.no_grad():
            torch.manual_seed(1)
            a = small(x, t)
            torch.manual_seed(1)
            b = grown(x, t)
        assert torch.allclose(a.x_hat, b.x_hat, atol=1e-5)
        assert torch.allclose(a.z_likelihood, b.z_likelihood, atol=1e-6)
        assert torch.allclose(a.y_likelihood, b.y_likelihood[:, :12], atol=1e-6)
    # The new channels are alive: every weight that was zeroed gets a gradient.
    grown.train()
    out = grown(x, torch.tensor([1.0]))
    (out.x_hat - x).pow(2).mean().backward()
    assert float(grown.g_s[2].weight.grad[8:, :8].abs().sum()) > 0  # new -> old in g_s
    assert float(grown.g_a[2].weight.grad[:8, 8:].abs().sum()) > 0  # new -> old in g_a


def test_adding_levels_keeps_the_old_levels_and_extends_lambda_above():
    """--levels: the old levels keep their lambda and compute exactly what they did; the new gains continue
    the old progression (finer quantization above the old top level); other lambda spacings are refused."""
    source = replace(TINY, conditional=True)
    target = source.with_levels(5)
    assert target.levels == 5 and math.isclose(target.lambda_max, source.lambda_max ** 2 / source.lambda_min)
    assert torch.allclose(target.lam(torch.arange(3.0)), source.lam(torch.arange(3.0)))
    assert can_grow(source, target) and not can_grow(target, source)
    assert not can_grow(source, replace(target, lambda_max=source.lambda_max))  # a new spacing: old levels move
    torch.manual_seed(0)
    small = build_model(source).eval()
    with torch.no_grad():  # trained-looking modulation and gains that differ between channels
        for p in small.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    grown = grow(small, target).eval()
    x = torch.from_numpy(synthetic(64, 64)).permute(2, 0, 1)[None].float() / 255
    for t in (0.0, 1.5, 2.0):
        t = torch.tensor([t])
        with torch.no_grad():
            assert torch.equal(small.analyse(x, t)[0], grown.analyse(x, t)[0])
            y = small.analyse(x, t)[0]
            assert torch.equal(small.synthesise(y, t), grown.synthesise(y, t))
    step = small.gain.log_gain[2] - small.gain.log_gain[0]
    assert torch.allclose(grown.gain.log_gain[4] - grown.gain.log_gain[2], step, atol=1e-6)
    assert torch.equal(grown.g_a_levels[0].bias[4], small.g_a_levels[0].bias[2])
    assert (grown.gain.gain(torch.tensor([4.0])) > grown.gain.gain(torch.tensor([2.0]))).float().mean() > 0.9
    assert run_config(None, n=8, m=12, levels=5).lambda_max == ModelConfig(n=8, m=12).with_levels(5).lambda_max


def test_adding_level_modulation_keeps_what_the_model_computes_until_it_learns():
    torch.manual_seed(0)
    small = build_model(TINY).eval()
    target = replace(TINY, conditional=True)
    assert can_grow(TINY, target) and not can_grow(target, TINY)
    assert "conditional" not in TINY.to_dict() and ModelConfig.from_dict(target.to_dict()) == target
    grown = grow(small, target).eval()
    x = torch.from_numpy(synthetic(64, 64)).permute(2, 0, 1)[None].float() / 255
    t = torch.tensor([0.0, 0.7, 2.0])
    x3 = x.expand(3, -1, -1, -1)
    with torch.no_grad():
        assert torch.equal(small.synthesise(small.analyse(x3, t)[0], t), grown.synthesise(grown.analyse(x3, t)[0], t))
        for table in grown.g_a_levels.parameters():  # learned modulation: now g_a depends on the level
            table.copy_(torch.randn_like(table) * 0.3)
        y = grown.analyse(x3, t)[0] / grown.gain.gain(t)  # what g_a itself produced
        plain = small.analyse(x3, t)[0] / small.gain.gain(t)
    assert torch.allclose(plain[0], plain[2], atol=1e-5)  # without modulation one g_a serves every level
    assert not torch.allclose(y[0], y[2], atol=1e-3)
    # A level between two trained ones is interpolated, as the gains are: the log-scale and the bias halfway
    # between levels 0 and 1 are the means of theirs.
    mod = grown.g_a_levels[0]
    with torch.no_grad():
        bias = mod(torch.zeros(3, 8, 1, 1), torch.tensor([0.0, 0.5, 1.0]))
        log_scale = (mod(torch.ones(3, 8, 1, 1), torch.tensor([0.0, 0.5, 1.0])) - bias).log()
    for v in (bias, log_scale):
        assert torch.allclose(v[1], (v[0] + v[2]) / 2, atol=1e-6) and not torch.allclose(v[0], v[2])


def _train_and_export(data_dir, tmp_path, config, steps, learning):
    """Train a few steps, check that parameter ``learning`` moved from its zero start, export, load."""
    train(cfg(data_dir, tmp_path / "a", steps), config, log=lambda *_: None)
    ck = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    assert float(ck["model"][learning].abs().sum()) > 0
    export(tmp_path / "a" / "checkpoint.pt", tmp_path / "a.npz", "tiny-r1")
    model = zoo.load_file(tmp_path / "a.npz")
    assert model.config == config
    return model


def _codes_the_same_in_tiles(model, img, monkeypatch):
    """The file of the whole image again with tiny tiles, and its decoding within 1 of the whole one's."""
    import vaezip.codec as codec

    whole = encode_array(img, "RGB", 40, model)
    whole_img, _ = decode_array(whole.data, model)
    assert whole_img.shape == img.shape
    monkeypatch.setattr(codec, "ENCODE_TILE", 64)
    monkeypatch.setattr(codec, "DECODE_TILE", 2)
    assert encode_array(img, "RGB", 40, model).data == whole.data
    tiled_img, _ = decode_array(whole.data, model)
    assert np.abs(tiled_img.astype(int) - whole_img).max() <= 1


def test_a_conditional_model_trains_exports_and_codes_in_tiles(data_dir, tmp_path, monkeypatch):
    """Each tile is modulated for the image's level."""
    model = _train_and_export(data_dir, tmp_path, replace(TINY, conditional=True), 3, "g_s_levels.0.log_scale")
    _codes_the_same_in_tiles(model, synthetic(80, 112), monkeypatch)


def _perturb_blocks(model, scale=0.2):
    """Give every residual block's (zero-initialised) second convolution weights: the blocks then act."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".conv2." in name:
                p.copy_(torch.randn_like(p) * scale)


def test_adding_residual_blocks_keeps_what_the_model_computes_and_moves_the_layers_after_them():
    torch.manual_seed(0)
    one = replace(TINY, res_blocks=1)
    source = build_model(one).eval()
    _perturb_blocks(source)  # a trained block, which must survive the growth
    target = replace(one, res_blocks=2, n=12, z_channels=TINY.n, conditional=True)
    assert can_grow(one, target) and can_grow(TINY, one) and not can_grow(target, one)
    assert "res_blocks" not in TINY.to_dict() and ModelConfig.from_dict(target.to_dict()) == target
    grown = grow(source, target).eval()
    assert len(grown.g_a) == len(source.g_a) + 1 and len(grown.g_s) == len(source.g_s) + 1
    x = torch.from_numpy(synthetic(64, 64)).permute(2, 0, 1)[None].float().expand(2, -1, -1, -1) / 255
    t = torch.tensor([0.3, 1.6])
    with torch.no_grad():
        y, z = source.analyse(x, t)
        y2, z2 = grown.analyse(x, t)
        assert torch.allclose(y, y2[:, :TINY.m], atol=1e-5) and torch.allclose(z, z2, atol=1e-5)
        assert torch.allclose(source.synthesise(y, t), grown.synthesise(y2, t), atol=1e-5)
        _perturb_blocks(grown)  # the new block learns: g_a and g_s change
        assert not torch.allclose(source.synthesise(y, t), grown.synthesise(y2, t), atol=1e-3)


def test_a_model_with_residual_blocks_trains_exports_and_codes_in_tiles(data_dir, tmp_path, monkeypatch):
    """The blocks widen the transforms' receptive fields; the tiling halos grow with them, so tiled coding
    stays exact (and a halo one block short would not be)."""
    from vaezip.nn.tiling import run_tiled

    model = _train_and_export(data_dir, tmp_path, replace(TINY, res_blocks=2), 2, "g_s.2.conv2.weight")
    _perturb_blocks(model.network, 1.0)  # strong blocks, so that a short halo would show
    _codes_the_same_in_tiles(model, synthetic(96, 160), monkeypatch)
    net = model.network
    x = torch.rand(1, 3, 128, 192)
    with torch.no_grad():
        g_a = net.g_a(x)
        assert (run_tiled(net.g_a, x, 64, net.g_a_halo, down=16) - g_a).abs().max() < 1e-4
        assert (run_tiled(net.g_a, x, 64, net.g_a_halo - 16, down=16) - g_a).abs().max() > 1e-3


def test_learning_rate_schedules():
    cosine = TrainConfig(data="", run_dir="", steps=1000, warmup=10)
    wsd = TrainConfig(data="", run_dir="", steps=1000, warmup=10, decay_steps=200)
    assert lr_at(0, cosine) == pytest.approx(1e-4) and lr_at(9, wsd) == pytest.approx(1e-3)
    assert lr_at(500, cosine) < lr_at(100, cosine) and lr_at(1000, cosine) == pytest.approx(2e-5)
    assert lr_at(100, wsd) == lr_at(800, wsd) == pytest.approx(1e-3)       # stable
    assert lr_at(900, wsd) == pytest.approx(0.51e-3)                       # linear decay
    assert lr_at(1000, wsd) == lr_at(5000, wsd) == pytest.approx(2e-5)     # floor


def test_rate_levels_drawn_uniformly_or_tilted_toward_the_low_rates():
    levels, n = 8, 400_000
    uniform = draw_levels(np.random.default_rng(1), n, levels)
    assert uniform.dtype == np.float32
    # Tilt 1 is the plain uniform draw, value for value, so that runs without a tilt resume as before.
    assert np.array_equal(uniform, (np.random.default_rng(1).uniform(0, 1, n) * (levels - 1)).astype(np.float32))
    for tilt in (6.0, 0.5):
        t = draw_levels(np.random.default_rng(2), n, levels, tilt)
        assert t.min() >= 0 and t.max() <= levels - 1
        counts, _ = np.histogram(t, bins=7, range=(0, levels - 1))
        # Truncated exponential: the first and last of 7 bins (centres 1/14 and 13/14 of the range) differ by
        # tilt^(6/7) in density; their counts within 2 % of it (each holds >= 20,000 draws).
        assert counts[0] / counts[-1] == pytest.approx(tilt ** (6 / 7), rel=0.02)
        ratios = counts[:-1] / counts[1:]
        assert np.allclose(ratios, tilt ** (1 / 7), rtol=0.03)  # the same factor between neighbours


def test_a_context_model_trains_from_hyperprior_weights_and_exports(data_dir, tmp_path):
    train(cfg(data_dir, tmp_path / "a", 2), TINY, log=lambda *_: None)
    export(tmp_path / "a" / "checkpoint.pt", tmp_path / "a.npz", "tiny-r1")
    c = cfg(data_dir, tmp_path / "cb", 3)
    c.init_from = str(tmp_path / "a.npz")
    cb_config = ModelConfig(arch="msh-gain-cb", n=8, m=12, levels=3)
    train(c, cb_config, log=lambda *_: None)
    ck = load_checkpoint(tmp_path / "cb" / "checkpoint.pt")
    assert ck["model_config"]["arch"] == "msh-gain-cb"
    assert float(ck["model"]["entropy_parameters.2.weight"].abs().sum()) > 0  # the context is learning
    export(tmp_path / "cb" / "checkpoint.pt", tmp_path / "cb.npz", "tiny-cb-r1")
    model = zoo.load_file(tmp_path / "cb.npz")
    assert model.config == cb_config and model.exact.has_context
    img = synthetic(40, 56)
    dec, _ = decode_array(encode_array(img, "RGB", 30, model).data, model)
    assert dec.shape == img.shape


def test_crops_at_the_photos_own_scale_or_down_scaled(data_dir):
    from vaezip.training.data import CropSampler, image_files

    files = [f for f in image_files(data_dir) if f.suffix == ".png"]
    sources = [torch.from_numpy(synthetic(80, 100, seed=i)).permute(2, 0, 1).float() / 255 for i in range(3)]
    rng = np.random.default_rng(0)
    crops = CropSampler(files, 32, max_downscale=1.0).batch(6, rng)
    for crop in crops:  # each is a region of one photo, as is or flipped: no resampling
        found = False
        for src in sources:
            for c in (crop, crop.flip(2), crop.flip(1), crop.flip(1).flip(2)):
                windows = src.unfold(1, 32, 1).unfold(2, 32, 1)  # 3 x H' x W' x 32 x 32
                found |= bool((windows == c[:, None, None]).all(dim=(0, 3, 4)).any())
        assert found
    scaled = CropSampler(files, 32, max_downscale=2.0).batch(6, np.random.default_rng(0))
    assert not torch.equal(scaled, crops)  # down-scaled regions are resampled
