"""The resumable training loop of the variable-rate model.

Recipe (chosen at equal CPU time, see docs/training.md): Adam with a short warm-up, then a constant rate
with a decayed branch for export (schedule.py), rounded latents (straight-through) into the decoders and
noise for the rate, random crops of the whole corpus (data.py), a rate level t drawn per sample
(schedule.draw_levels), gradient clipping (a step with a non-finite gradient is skipped), and an exponential
moving average of the weights, which is what gets exported and validated. The loss is models.rd_loss.

The pieces around the loop each have a module: options (config.py), device and precision (device.py),
schedules (schedule.py), checkpoints (checkpoint.py), validation (validation.py), progress (progress.py),
several processes as one run (distributed.py). Scale-out uses PyTorch's own stack: started by ``torchrun
--nproc_per_node K``, every process trains a DistributedDataParallel replica on its own crops (NCCL on
GPUs, gloo on CPUs), or, with ``sync_every`` > 1, takes that many steps on its own between averages (local
SGD); rank 0 logs, validates and saves.
"""
from __future__ import annotations

import copy
import json
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..errors import CheckpointError, DivergenceError
from ..models import MeanScaleHyperprior, ModelConfig, build_model, rd_loss
from .checkpoint import atomic_save, load_checkpoint
from .config import TrainConfig, describe_shape, load_start
from .data import CropSampler, image_files
from .device import select_device, set_compiled_vector_bits, use_bf16
from .distributed import LocalSGD, StopRequest, ValidationStopped, distributed_launch, main_thread
from .progress import Progress
from .schedule import draw_levels, lr_at
from .validation import validate


def divergence(step: int, count: int, cfg: TrainConfig) -> DivergenceError:
    hint = ("; torch.compile under bfloat16 has produced NaN gradients on some CPUs (Intel AMX, see "
            "docs/training.md): rerun with --precision fp32 or without --compile"
            if cfg.compile else "; lower --lr, or try --precision fp32")
    return DivergenceError(f"training diverged: {count} steps in a row up to step {step} had a NaN or infinite "
                           f"loss or gradient (each was skipped: the weights are still those of the last finite "
                           f"step){hint}")


@dataclass
class _Process:
    """This process's place in the run."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class _State:
    """Everything a checkpoint holds: the model, its moving average, Adam, the step, the CPU time and the
    random streams of every process."""

    model: MeanScaleHyperprior
    ema: MeanScaleHyperprior
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    step: int = 0
    cpu_s: float = 0.0
    sums: dict = field(default_factory=dict)  # the metrics since the last log line


def _join(cfg: TrainConfig) -> _Process:
    """Set threads and device, and join the process group when torchrun started several processes."""
    torch.set_num_threads(cfg.threads)
    device = select_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not distributed_launch():
        return _Process(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Process(device, dist.get_rank(), dist.get_world_size())


def _restore(state: _State, ck: dict, proc: _Process, log) -> None:
    state.model.load_state_dict(ck["model"])
    state.ema.load_state_dict(ck["ema"])
    state.opt.load_state_dict(ck["optimizer"])
    state.step, state.cpu_s = ck["step"], ck["cpu_seconds"]
    streams = ck["rng"]
    if len(streams) == proc.world:
        mine = streams[proc.rank]
        state.rng.bit_generator.state = json.loads(mine["numpy"])
        torch.set_rng_state(mine["torch"])
        if proc.device.type == "cuda" and "cuda" in mine:
            torch.cuda.set_rng_state(mine["cuda"], proc.device)
    else:
        log(f"checkpoint has RNG states of {len(streams)} processes, this run has {proc.world}: fresh streams")


def _start_from(state: _State, init_from: str, seed: int, log) -> None:
    """A new run's weights from a model (grown to this run's shape where it differs: grow.py)."""
    from .grow import can_grow, grow

    start = load_start(init_from)
    source, target = start.network, state.model.config
    if start.config != target:
        if not can_grow(start.config, target):
            raise CheckpointError(f"{init_from}: its model config {start.config} differs from this run's {target}; "
                                  "only N and M can grow, and a context, --conditional, --res-blocks or --levels "
                                  "be added")
        source = grow(source, target, seed=seed)
        log(f"grew {start.name} ({describe_shape(start.config)}) into {describe_shape(target)}")
    state.model.load_state_dict(source.state_dict())
    state.ema.load_state_dict(source.state_dict())
    state.cpu_s = float(start.meta.get("cpu_hours", 0.0)) * 3600  # CPU-hours count from the very start
    log(f"started from the weights of {start.name} ({start.meta.get('step', '?')} steps, "
        f"{start.meta.get('cpu_hours', '?')} CPU-h, counted in this run's CPU-hours)")


def _save(state: _State, proc: _Process, path: Path) -> None:
    """Every process's random streams gathered, rank 0 writes (atomically)."""
    streams = [{"numpy": json.dumps(state.rng.bit_generator.state), "torch": torch.get_rng_state()}]
    if proc.device.type == "cuda":  # the training noise is drawn on the GPU
        streams[0]["cuda"] = torch.cuda.get_rng_state(proc.device)
    if proc.distributed:
        gathered = [None] * proc.world
        dist.all_gather_object(gathered, streams[0])
        streams = gathered
    if proc.main:
        atomic_save({"model_config": state.model.config.to_dict(), "model": state.model.state_dict(),
                     "ema": state.ema.state_dict(), "optimizer": state.opt.state_dict(), "step": state.step,
                     "cpu_seconds": state.cpu_s, "rng": streams}, path)


def _step(state: _State, net, sampler: CropSampler, cfg: TrainConfig, proc: _Process, amp) -> tuple[float, bool]:
    """One optimizer step; returns (learning rate, whether it was finite). A step whose loss or gradient is
    not finite (under DDP the same on every rank) is skipped, as mixed-precision loss scaling does, so that one
    bad batch cannot poison the weights, Adam's moments or the moving average."""
    lr = lr_at(state.step, cfg)
    for g in state.opt.param_groups:
        g["lr"] = lr
    x = sampler.batch(cfg.batch, state.rng, proc.device)
    levels = state.model.config.levels
    t = torch.from_numpy(draw_levels(state.rng, cfg.batch, levels, cfg.level_tilt)).to(proc.device)
    with amp:
        loss, bpp, mse = rd_loss(net(x, t), x, state.model.config.lam(t))
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.clip)
    finite = bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(loss.detach()))
    sums = state.sums
    if finite:
        state.opt.step()
        decay = min(cfg.ema, (1 + state.step) / (10 + state.step))  # warm-up, so the init is soon forgotten
        with torch.no_grad():
            for pe, pm in zip(state.ema.parameters(), state.model.parameters()):
                pe.lerp_(pm, 1 - decay)
        psnr = (10 * torch.log10(1 / mse.detach().clamp_min(1e-10))).mean()
        for k, v in (("loss", loss), ("bpp", bpp.mean()), ("psnr", psnr)):
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        sums["n"] = sums.get("n", 0) + 1
    else:
        sums["skipped"] = sums.get("skipped", 0) + 1
    state.step += 1
    return lr, finite


def _record(state: _State, cfg: TrainConfig, proc: _Process, lr: float, seconds: float) -> dict:
    """The log line of the steps since the last one."""
    sums = state.sums
    done, skipped = max(1, sums.get("n", 0)), sums.get("skipped", 0)
    rec = {"step": state.step, "cpu_hours": round(state.cpu_s / 3600, 4), "lr": lr,
           "loss": sums.get("loss", 0.0) / done, "bpp": sums.get("bpp", 0.0) / done,
           "psnr": sums.get("psnr", 0.0) / done,
           "images_per_s": proc.world * cfg.batch * (sums.get("n", 0) + skipped) / seconds, "time": time.time()}
    if skipped:
        rec["skipped"] = skipped
    return rec


def _validate_into(rec: dict, state: _State, cfg: TrainConfig, stop: StopRequest, log) -> None:
    """Validation of the moving average, into the log record; it never ends a run, but a stop request may
    cut it short."""
    try:
        stop.validating = True
        rec["validation"] = validate(state.ema, cfg.validate, cfg.validate_qualities)
    except ValidationStopped:
        log(f"validation at step {state.step} cut short: the run stops")
    except Exception as e:  # monitoring must never end a training run
        rec["validation_error"] = f"{e.__class__.__name__}: {e}"
        log(f"validation at step {state.step} failed ({rec['validation_error']}); training goes on")
    else:
        log(f"validation at step {state.step}: " + ", ".join(
            f"{k}: {v['bpp']:.3f} bpp {v['psnr_rgb']:.2f} dB" for k, v in rec["validation"].items()))
    finally:
        stop.validating = False


def train(cfg: TrainConfig, model_config: ModelConfig = ModelConfig(), log=print) -> None:
    files = image_files(cfg.data)  # a bad data folder is reported before anything is written
    proc = _join(cfg)
    if not proc.main:
        log = lambda *_: None  # noqa: E731
    run = Path(cfg.run_dir)
    ckpt_path = run / "checkpoint.pt"
    if proc.main:
        run.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    ck = load_checkpoint(ckpt_path) if ckpt_path.exists() else None
    if ck is not None:
        model_config = ModelConfig.from_dict(ck["model_config"])
    model = build_model(model_config).to(proc.device)
    state = _State(model, copy.deepcopy(model).requires_grad_(False), torch.optim.Adam(model.parameters(), lr=cfg.lr),
                   np.random.default_rng([cfg.seed, proc.rank]))
    torch.manual_seed(cfg.seed * 1000 + proc.rank)
    if ck is not None:
        _restore(state, ck, proc, log)
        log(f"resumed {ckpt_path} at step {state.step} ({state.cpu_s / 3600:.2f} CPU-h)")
    elif cfg.init_from:
        _start_from(state, cfg.init_from, cfg.seed, log)
    if ck is None and proc.main:
        (run / "train_config.json").write_text(json.dumps({"train": asdict(cfg), "model": model_config.to_dict()},
                                                          indent=1))
    net = model
    local_sgd = LocalSGD(model, state.ema, state.opt, proc.world) if proc.distributed and cfg.sync_every > 1 else None
    if proc.distributed and not local_sgd:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[proc.device.index] if proc.device.type == "cuda" else None)
    bf16 = use_bf16(cfg.precision, proc.device)
    if cfg.compile:
        bits = set_compiled_vector_bits(proc.device, bf16)
        if bits:
            log(f"torch.compile: {bits}-bit vectors in the generated CPU code (see device.compiled_vector_bits)")
        net = torch.compile(net)
    sampler = CropSampler(files, cfg.patch, cfg.max_downscale, log=log)
    log(f"{len(sampler)} training images from {cfg.data}; device {proc.device}, {cfg.threads} thread(s), "
        f"{'bfloat16 autocast' if bf16 else 'float32'}, world size {proc.world}, batch {cfg.batch} per process"
        + (f", weights averaged every {cfg.sync_every} steps (local SGD)" if local_sgd else ""))

    log_file = open(run / "train.jsonl", "a") if proc.main else None
    if log_file:  # what this (re)start was asked for: a resumed run may change e.g. its schedule
        log_file.write(json.dumps({"start": state.step, "config": asdict(cfg), "world_size": proc.world}) + "\n")
        log_file.flush()
    last_save = last_validation = time.monotonic()
    bad_run, diverged = 0, False  # non-finite steps in a row; whether the run stops for them
    t_log, cpu_log = time.monotonic(), time.process_time()
    progress = Progress(log, cfg.steps)
    amp = torch.autocast(proc.device.type, dtype=torch.bfloat16, enabled=bf16)
    model.train()
    # `kill` (SIGTERM) ends the run like Ctrl-C: it saves (see distributed.StopRequest).
    stop = StopRequest(immediate=not proc.distributed)
    previous = signal.signal(signal.SIGTERM, stop) if main_thread() else None
    if previous is not None and proc.distributed:
        # Restart system calls that the signal interrupts: a gloo or NCCL call failing with EINTR in the middle
        # of a collective would end the run unsaved instead of at the agreed step (Python installs handlers
        # without SA_RESTART).
        signal.siginterrupt(signal.SIGTERM, False)
    agreed = not proc.distributed  # a distributed run saves at the end only when its processes stopped together
    try:
        while state.step < cfg.steps:
            lr, finite = _step(state, net, sampler, cfg, proc, amp)
            bad_run = 0 if finite else bad_run + 1
            diverged = bad_run >= cfg.max_nonfinite
            if diverged and not proc.distributed:
                agreed = False  # nothing to save: the skipped steps changed nothing
                raise divergence(state.step, bad_run, cfg)
            log_step = state.step % cfg.log_every == 0 or state.step == cfg.steps
            synced = not local_sgd or state.step % cfg.sync_every == 0
            if local_sgd and synced:
                local_sgd()
            save_due = (log_step if not local_sgd else synced) and time.monotonic() - last_save > cfg.save_every_s
            if proc.distributed and synced:  # any rank's clock decides the saves, any rank's signal the stop
                flags = torch.tensor([float(stop.requested), float(save_due), float(diverged)], device=proc.device)
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                if flags[2]:  # every rank stops with the error, none saves: the last checkpoint stands
                    agreed, diverged = False, True
                    raise divergence(state.step, bad_run, cfg)
                if flags[0]:
                    break
                save_due = bool(flags[1])
            if log_step:
                now, cpu_now = time.monotonic(), time.process_time()
                state.cpu_s += (cpu_now - cpu_log) * proc.world  # CPU time of all processes, assumed alike
                rec = _record(state, cfg, proc, lr, now - t_log)
                if proc.main and cfg.validate and now - last_validation > cfg.validate_every_s:
                    last_validation = time.monotonic()
                    _validate_into(rec, state, cfg, stop, log)
                if log_file:
                    log_file.write(json.dumps(rec) + "\n")
                    log_file.flush()
                skipped = state.sums.get("skipped", 0)
                progress(state.step, f"loss {rec['loss']:.4f} bpp {rec['bpp']:.3f} psnr {rec['psnr']:.2f} "
                                     f"lr {lr:.2e} {rec['images_per_s']:.1f} img/s {rec['cpu_hours']:.2f} CPU-h"
                                     + (f" ({skipped} non-finite steps skipped)" if skipped else ""))
                state.sums = {}
                t_log, cpu_log = time.monotonic(), time.process_time()
            if save_due:
                _save(state, proc, ckpt_path)
                last_save = time.monotonic()
        agreed = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        state.cpu_s += (time.process_time() - cpu_log) * proc.world  # the steps since the last log line count too
        if agreed:
            if local_sgd and state.step % cfg.sync_every:  # ended between two averages
                local_sgd()
            _save(state, proc, ckpt_path)
            log(f"saved {ckpt_path} at step {state.step}")
        elif diverged:
            log(f"not saved at step {state.step}: training diverged"
                + (f"; {ckpt_path} holds the last save" if ckpt_path.exists() else ""))
        else:  # an error on one rank: the others are not saving with it, and the last save stands
            log(f"not saved at step {state.step}: the processes did not stop together")
        if log_file:
            log_file.close()
        if proc.distributed and agreed:
            dist.destroy_process_group()
