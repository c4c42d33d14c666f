"""The resumable training loop of the variable-rate model.

Recipe (chosen at equal CPU time, see ../shared/notes/cpu-training.md and benchmarks/): Adam at 1e-3
with a short warm-up and cosine decay, rounded latents (straight-through) into the decoders and noise
for the rate, random crops of the whole corpus, rate level t drawn per sample (uniformly, or tilted
toward the low rates: ``level_tilt``, draw_levels), gradient clipping (a step with a non-finite gradient is
skipped), and an exponential moving average of the weights, which is what gets exported and validated.

Scale-out uses PyTorch's own stack: started by ``torchrun --nproc_per_node K``, every process trains a
DistributedDataParallel replica on its own crops (NCCL on GPUs, gloo on CPUs); rank 0 logs, validates and
saves. With ``sync_every`` H > 1 the processes instead take H steps each on their own and then average
their weights, moving averages and Adam moments (local SGD; Stich 2019, "Local SGD converges fast and
communicates little"; Lin et al. 2020, "Don't use large mini-batches, use local SGD"): one collective
every H steps instead of every step, which pays most where the processes talk over a network; on our
2-core CPUs it gained ~7 % images/s (benchmarks/README.md). On GPUs and on CPUs with native bfloat16
(AMX, AVX-512 BF16) the transforms run under bfloat16 autocast, twice the steps per CPU-hour here; the
entropy maths stays in float32.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..errors import VaezipError
from ..models import MeanScaleHyperprior, ModelConfig, build_model
from .data import CropSampler, image_files


class CheckpointError(VaezipError):
    pass


class DeviceError(VaezipError):
    pass


class DivergenceError(VaezipError):
    """Training produced non-finite losses or gradients for too many steps in a row."""


@dataclass
class TrainConfig:
    data: str
    run_dir: str
    steps: int = 250_000
    patch: int = 128
    max_downscale: float = 2.0           # crops are down-scaled by a random factor in [1, this] (data.py)
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 500
    decay_steps: int = 0                 # > 0: constant rate, then a linear decay over the last steps
    clip: float = 1.0
    ema: float = 0.999
    seed: int = 0
    threads: int = 1
    save_every_s: float = 300.0
    log_every: int = 100
    validate: str | None = None          # folder of validation images (never the training data)
    validate_every_s: float = 3600.0     # wall-clock seconds between validations
    validate_qualities: tuple[float, ...] = (10.0, 50.0, 90.0)
    compile: bool = False                # torch.compile the training step (about +23 % on our CPUs)
    init_from: str | None = None         # a weights file or shipped model name to start a new run from
    device: str = "auto"                 # auto, cpu or cuda
    precision: str = "auto"              # auto, fp32 or bf16 (autocast of the transforms), see use_bf16
    sync_every: int = 1                  # distributed: 1 = DDP (gradients averaged every step); H > 1 = local SGD
    level_tilt: float = 1.0              # density of the rate level at its lowest over at its highest (1: uniform)
    max_nonfinite: int = 50              # steps in a row with a NaN/inf gradient (each skipped) before the run stops


def _divergence(step: int, count: int, cfg: TrainConfig) -> DivergenceError:
    hint = ("; torch.compile under bfloat16 has produced NaN gradients on some CPUs (Intel AMX, see "
            "benchmarks/README.md): rerun with --precision fp32 or without --compile"
            if cfg.compile else "; lower --lr, or try --precision fp32")
    return DivergenceError(f"training diverged: {count} steps in a row up to step {step} had a NaN or infinite "
                           f"loss or gradient (each was skipped: the weights are still those of the last finite "
                           f"step){hint}")


def select_device(name: str = "auto") -> torch.device:
    """This process's device: its own GPU (LOCAL_RANK under torchrun) when every process on this host has
    one, else the CPU. ``cuda`` insists on a GPU, ``cpu`` never uses one."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    gpus = torch.cuda.device_count() if name != "cpu" else 0
    if name == "cuda" and gpus < processes:
        raise DeviceError(f"--device cuda: {processes} process(es) on this host but {gpus} GPU(s) visible; "
                          "start at most one process per GPU, or use --device cpu")
    if gpus and gpus >= processes:
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """AMX or AVX-512 BF16 (Intel Sapphire Rapids and later, AMD Zen 4 and later), as Linux reports them."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", flags))


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether the transforms train under bfloat16 autocast: ``auto`` on GPUs, and on CPUs with native bf16.

    On this project's Xeon (AMX) a bf16 step of N=64, M=192 runs at 35 images per CPU-second against 17 in
    float32, with the training loss on identical batches within 0.1 % and Kodak at equal CPU time no worse
    (benchmarks/README.md); without native bf16 it is many times slower (../shared/notes/cpu-training.md:
    20x on Zen 3). The likelihoods always stay float32 (entropy/priors.py, float32_only).
    """
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or cpu_has_native_bf16()


def compiled_vector_bits(device: torch.device, bf16: bool) -> int | None:
    """The SIMD width for torch.compile's generated CPU code (inductor's ``cpp.simdlen``), None: its own choice.

    Under bfloat16 on the CPU: 256 bits (AVX2). On an Intel Xeon (Emerald Rapids, AMX) with torch 2.13, the
    default AVX-512 code gave NaN gradients in g_a on every step of the N=128 model. At 256 bits the gradients
    are finite and close to eager bf16's (cosine 0.98; eager bf16 against float32: 0.49, as roundings of y flip),
    at 12 images/s for one single-thread process (256-px crops, batch 8) against 3.9 compiled in float32 and
    3.6 eager in bf16 (benchmarks/README.md).
    """
    return 256 if bf16 and device.type == "cpu" else None


def set_compiled_vector_bits(device: torch.device, bf16: bool) -> int | None:
    """Give torch.compile's CPU code the width of compiled_vector_bits (None restores inductor's own); returns it."""
    import torch._inductor.config as inductor

    inductor.cpp.simdlen = bits = compiled_vector_bits(device, bf16)
    return bits


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then either a cosine decay over the whole run or, with ``decay_steps`` > 0, a
    warmup-stable-decay schedule: constant until the last ``decay_steps`` steps, then a linear decay.

    The second lets a run that has no planned end go on at a constant rate while short decayed branches
    (copies of its checkpoint resumed with a larger --steps) give the weights to export; a branch decayed
    over the last 10–20 % of its steps matches a cosine schedule of the same length (Hägele et al. 2024,
    "Scaling laws and compute-optimal training beyond fixed training durations"; Hu et al. 2024, MiniCPM).
    """
    floor = 0.02
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.decay_steps > 0:
        frac = min(1.0, max(0.0, (step - (cfg.steps - cfg.decay_steps)) / cfg.decay_steps))
        return cfg.lr * (1 - (1 - floor) * frac)
    frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def draw_levels(rng: np.random.Generator, count: int, levels: int, tilt: float = 1.0) -> np.ndarray:
    """Rate levels t in [0, levels - 1] for one batch (float32), one uniform draw each.

    ``tilt`` 1 draws t uniformly. Otherwise t has the truncated exponential density that is ``tilt`` times
    higher at t = 0 than at the top. Why tilt: BD-rate, the figure the model is judged by, weighs a
    relative change of rate equally at every quality, but the loss (rate + lambda * distortion) gives the same
    relative saving at the top level, where the rate is ~6x that of level 0, ~6x the weight. A tilt equal to
    that ratio of rates makes each level's share of the gradient match its share of BD-rate.
    """
    u = rng.uniform(0.0, 1.0, count)
    if tilt == 1.0:
        frac = u
    else:
        c = math.log(tilt)  # density of frac proportional to exp(-c * frac) on [0, 1], by inverting its CDF
        frac = -np.log1p(u * math.expm1(-c)) / c
    return (frac * (levels - 1)).astype(np.float32)


def rd_loss(model, x: torch.Tensor, t: torch.Tensor, lam: torch.Tensor):
    """Per-sample lambda * 255^2 * MSE + bpp, averaged; also returns mean bpp and PSNR for logging."""
    out = model(x, t)
    pixels = x.shape[-2] * x.shape[-1]
    bits = -(out.y_likelihood.log2().sum(dim=(1, 2, 3)) + out.z_likelihood.log2().sum(dim=(1, 2, 3)))
    bpp = bits / pixels
    mse = (out.x_hat.float() - x).pow(2).mean(dim=(1, 2, 3))
    loss = (lam * 255**2 * mse + bpp).mean()
    psnr = (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean()
    return loss, bpp.mean(), psnr


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:  # torch raises many types for a damaged zip/pickle
        raise CheckpointError(f"{path}: not a readable vaezip checkpoint ({e.__class__.__name__}); "
                              "pass the checkpoint.pt of a training run") from None


def code_folder(model, folder: str, qualities, max_images: int | None = 24) -> dict:
    """Real entropy coding of the images of a folder with a coding model (zoo.LoadedModel): per quality,
    each image's bpp from the bytes and PSNR-RGB from the decoded pixels, and how many latent values the
    coder had to clip (only weights without escape coding clip, codec.EncodeResult). ``max_images``: the
    first so many images, None for all."""
    from ..bench.metrics import psnr as psnr_rgb
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
    from ..zoo import freeze

    return folder_means(code_folder(freeze(copy.deepcopy(ema).float().cpu(), "validation"), folder, qualities,
                                    max_images))


def folder_means(per_image: dict) -> dict:
    """Mean bpp and PSNR-RGB per quality of a ``code_folder`` result."""
    return {k: {"bpp": float(np.mean(v["bpp"])), "psnr_rgb": float(np.mean(v["psnr_rgb"]))}
            for k, v in per_image.items()}


class _Progress:
    """A one-line progress display on a terminal; plain log lines otherwise (nohup, CI)."""

    def __init__(self, log, total: int):
        self.log, self.total = log, total
        self.tty = log is print and sys.stderr.isatty()

    def __call__(self, step: int, text: str) -> None:
        if self.tty:
            frac = step / self.total
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r[{bar:<30}] {step}/{self.total} {text}")
            sys.stderr.flush()
        else:
            self.log(f"step {step} {text}")


class _ValidationStopped(Exception):
    """A stop request cut a running validation short (the run then stops and saves)."""


class _StopRequest:
    """What SIGTERM (``kill``, or torchrun passing a stop on) does to a training run.

    A single process exits at once, through the loop's ``finally`` clause, which saves. The processes of a
    distributed run must stop together: saving gathers every rank's random state, and a rank that left in
    the middle of a step would leave the others waiting in a collective until torchrun kills them all, so
    that nothing is saved. There the signal only sets a flag, which the ranks combine after every step;
    a validation running on rank 0 is cut short, since torchrun waits only 30 s before it kills."""

    def __init__(self, immediate: bool):
        self.immediate = immediate
        self.requested = False
        self.validating = False

    def __call__(self, *_):
        self.requested = True
        if self.immediate:
            sys.exit(143)
        if self.validating:
            raise _ValidationStopped("stopped by a signal")


class _LocalSGD:
    """Averages the state of the processes of a local-SGD run (``sync_every`` > 1): weights and buffers,
    the moving average and Adam's moments, in one all-reduce, so that after each average every process
    holds the same state, as DDP's processes always do; checkpoints are taken only then.

    Adam's moments are averaged too (Wang et al. 2020, "SlowMo", and Douillard et al. 2023, "DiLoCo",
    discuss the variants); its step counters agree anyway. The flat buffer is float32, as the state is."""

    def __init__(self, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer, world: int):
        self.model, self.ema, self.opt, self.world = model, ema, opt, world

    def tensors(self) -> list[torch.Tensor]:
        out = [t for m in (self.model, self.ema) for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()]
        for p in self.model.parameters():
            state = self.opt.state.get(p, {})
            out += [state[k] for k in ("exp_avg", "exp_avg_sq") if k in state]
        return out

    @torch.no_grad()
    def __call__(self) -> None:
        tensors = self.tensors()
        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _load_start(init_from: str):
    from ..zoo import REGISTRY, load_file, load_model

    return load_model(init_from, "cpu") if init_from in REGISTRY else load_file(init_from)


def run_config(init_from: str | None = None, **given) -> ModelConfig:
    """The model config of a new run: the options given (None: not given) over the defaults, or, with
    ``init_from``, over that model's own config, so that continuing a model needs no repeated shape options.
    A wider N or M keeps the given model's z and h_s widths, the parts that growing does not widen."""
    given = {key: value for key, value in given.items() if value is not None}
    levels = given.pop("levels", None)
    if not init_from:
        config = ModelConfig(**given)
        return config if levels is None else config.with_levels(levels)
    base = _load_start(init_from).config
    if levels is not None:
        base = base.with_levels(levels)
    if given.get("n", base.n) != base.n:
        given.setdefault("z_channels", base.hyper_width)
    if given.get("m", base.m) != base.m:
        given.setdefault("hyper_hidden", base.hyper_hidden or base.m)
    return replace(base, **given)


def distributed_launch() -> bool:
    """Whether this process is one of several that torchrun started (one training run over them all)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _shape(config: ModelConfig) -> str:
    """``msh-gain, N=64, M=192[, conditional][, K residual blocks]``: what a run's log says about a model's shape."""
    return (f"{config.arch}, N={config.n}, M={config.m}" + (", conditional" if config.conditional else "")
            + (f", {config.res_blocks} residual block{'s' * (config.res_blocks > 1)}" if config.res_blocks else ""))


def train(cfg: TrainConfig, model_config: ModelConfig = ModelConfig(), log=print) -> None:
    files = image_files(cfg.data)  # a bad data folder is reported before anything is written
    torch.set_num_threads(cfg.threads)
    distributed = distributed_launch()
    device = select_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    main_process = rank == 0
    if not main_process:
        log = lambda *_: None  # noqa: E731
    run = Path(cfg.run_dir)
    ckpt_path = run / "checkpoint.pt"
    if main_process:
        run.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    ck = load_checkpoint(ckpt_path) if ckpt_path.exists() else None
    if ck is not None:
        model_config = ModelConfig.from_dict(ck["model_config"])
    model = build_model(model_config).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, cpu_s = 0, 0.0
    rng = np.random.default_rng([cfg.seed, rank])
    torch.manual_seed(cfg.seed * 1000 + rank)
    last_validation = time.monotonic()
    if ck is not None:
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        step, cpu_s = ck["step"], ck["cpu_seconds"]
        states = ck["rng"]
        if len(states) == world:
            rng.bit_generator.state = json.loads(states[rank]["numpy"])
            torch.set_rng_state(states[rank]["torch"])
            if device.type == "cuda" and "cuda" in states[rank]:
                torch.cuda.set_rng_state(states[rank]["cuda"], device)
        else:
            log(f"checkpoint has RNG states of {len(states)} processes, this run has {world}: fresh streams")
        log(f"resumed {ckpt_path} at step {step} ({cpu_s / 3600:.2f} CPU-h)")
    elif cfg.init_from:
        from .grow import can_grow, grow

        start = _load_start(cfg.init_from)
        source = start.network
        if start.config != model.config:
            if not can_grow(start.config, model.config):
                raise CheckpointError(f"{cfg.init_from}: its model config {start.config} differs from this "
                                      f"run's {model.config}; only N and M can grow, and a context, --conditional, --res-blocks or --levels be added")
            source = grow(source, model.config, seed=cfg.seed)
            log(f"grew {start.name} ({_shape(start.config)}) into {_shape(model.config)}")
        model.load_state_dict(source.state_dict())
        ema.load_state_dict(source.state_dict())
        cpu_s = float(start.meta.get("cpu_hours", 0.0)) * 3600  # CPU-hours count from the very start
        log(f"started from the weights of {start.name} ({start.meta.get('step', '?')} steps, "
            f"{start.meta.get('cpu_hours', '?')} CPU-h, counted in this run's CPU-hours)")
    if ck is None and main_process:
        (run / "train_config.json").write_text(json.dumps({"train": asdict(cfg), "model": model_config.to_dict()},
                                                          indent=1))
    net = model
    local_sgd = _LocalSGD(model, ema, opt, world) if distributed and cfg.sync_every > 1 else None
    if distributed and not local_sgd:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    bf16 = use_bf16(cfg.precision, device)
    if cfg.compile:
        bits = set_compiled_vector_bits(device, bf16)
        if bits:
            log(f"torch.compile: {bits}-bit vectors in the generated CPU code (see compiled_vector_bits)")
        net = torch.compile(net)
    sampler = CropSampler(files, cfg.patch, cfg.max_downscale, log=log)
    log(f"{len(sampler)} training images from {cfg.data}; device {device}, {cfg.threads} thread(s), "
        f"{'bfloat16 autocast' if bf16 else 'float32'}, "
        f"world size {world}, batch {cfg.batch} per process"
        + (f", weights averaged every {cfg.sync_every} steps (local SGD)" if local_sgd else ""))

    def save():
        states = [{"numpy": json.dumps(rng.bit_generator.state), "torch": torch.get_rng_state()}]
        if device.type == "cuda":  # the training noise is drawn on the GPU
            states[0]["cuda"] = torch.cuda.get_rng_state(device)
        if distributed:
            gathered = [None] * world
            dist.all_gather_object(gathered, states[0])
            states = gathered
        if main_process:
            _atomic_save({
                "model_config": model.config.to_dict(), "model": model.state_dict(), "ema": ema.state_dict(),
                "optimizer": opt.state_dict(), "step": step, "cpu_seconds": cpu_s, "rng": states,
            }, ckpt_path)

    log_file = open(run / "train.jsonl", "a") if main_process else None
    if log_file:  # what this (re)start was asked for: a resumed run may change e.g. its schedule
        log_file.write(json.dumps({"start": step, "config": asdict(cfg), "world_size": world}) + "\n")
        log_file.flush()
    last_save = time.monotonic()
    acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0, "skipped": 0}
    bad_run, diverged = 0, False  # non-finite steps in a row; whether the run stops for them
    t_log, cpu_log = time.monotonic(), time.process_time()
    progress = _Progress(log, cfg.steps)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    model.train()
    # `kill` (SIGTERM) ends the run like Ctrl-C: it saves (see _StopRequest).
    stop = _StopRequest(immediate=not distributed)
    previous = signal.signal(signal.SIGTERM, stop) if _main_thread() else None
    if previous is not None and distributed:
        # Restart system calls that the signal interrupts: a gloo or NCCL call failing with EINTR in the middle
        # of a collective would end the run unsaved instead of at the agreed step (Python installs handlers
        # without SA_RESTART).
        signal.siginterrupt(signal.SIGTERM, False)
    agreed = not distributed  # a distributed run saves at the end only when its processes stopped together
    try:
        while step < cfg.steps:
            lr = lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            x = sampler.batch(cfg.batch, rng, device)
            t = torch.from_numpy(draw_levels(rng, cfg.batch, model.config.levels, cfg.level_tilt)).to(device)
            with amp:
                loss, bpp, psnr = rd_loss(net, x, t, model.config.lam(t))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            # A non-finite gradient (under DDP the same on every rank) is skipped, as mixed-precision loss
            # scaling does, so one bad batch cannot poison the weights, Adam's moments or the EMA.
            finite = bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(loss.detach()))
            if finite:
                opt.step()
                decay = min(cfg.ema, (1 + step) / (10 + step))  # warm-up, so the init is soon forgotten
                with torch.no_grad():
                    for pe, pm in zip(ema.parameters(), model.parameters()):
                        pe.lerp_(pm, 1 - decay)
                for k, v in (("loss", loss), ("bpp", bpp), ("psnr", psnr)):
                    acc[k] += float(v.detach())
                acc["n"] += 1
                bad_run = 0
            else:
                acc["skipped"] += 1
                bad_run += 1
            step += 1
            diverged = bad_run >= cfg.max_nonfinite
            if diverged and not distributed:
                agreed = False  # nothing to save: the skipped steps changed nothing
                raise _divergence(step, bad_run, cfg)
            log_step = step % cfg.log_every == 0 or step == cfg.steps
            synced = not local_sgd or step % cfg.sync_every == 0
            if local_sgd and synced:
                local_sgd()
            save_due = (log_step if not local_sgd else synced) and time.monotonic() - last_save > cfg.save_every_s
            if distributed and synced:  # any rank's clock decides the saves, any rank's signal the stop
                flags = torch.tensor([float(stop.requested), float(save_due), float(diverged)], device=device)
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                if flags[2]:  # every rank stops with the error, none saves: the last checkpoint stands
                    agreed, diverged = False, True
                    raise _divergence(step, bad_run, cfg)
                if flags[0]:
                    break
                save_due = bool(flags[1])
            if log_step:
                now, cpu_now = time.monotonic(), time.process_time()
                cpu_s += (cpu_now - cpu_log) * world  # CPU time of all processes, assumed alike
                done = max(1, acc["n"])
                rec = {"step": step, "cpu_hours": round(cpu_s / 3600, 4), "lr": lr,
                       "loss": acc["loss"] / done, "bpp": acc["bpp"] / done, "psnr": acc["psnr"] / done,
                       "images_per_s": world * cfg.batch * (acc["n"] + acc["skipped"]) / (now - t_log),
                       "time": time.time()}
                if acc["skipped"]:
                    rec["skipped"] = acc["skipped"]
                if main_process and cfg.validate and now - last_validation > cfg.validate_every_s:
                    last_validation = time.monotonic()
                    try:
                        stop.validating = True
                        rec["validation"] = validate(ema, cfg.validate, cfg.validate_qualities)
                    except _ValidationStopped:
                        log(f"validation at step {step} cut short: the run stops")
                    except Exception as e:  # monitoring must never end a training run
                        rec["validation_error"] = f"{e.__class__.__name__}: {e}"
                        log(f"validation at step {step} failed ({rec['validation_error']}); training goes on")
                    else:
                        log(f"validation at step {step}: " + ", ".join(
                            f"{k}: {v['bpp']:.3f} bpp {v['psnr_rgb']:.2f} dB" for k, v in rec["validation"].items()))
                    finally:
                        stop.validating = False
                if log_file:
                    log_file.write(json.dumps(rec) + "\n")
                    log_file.flush()
                progress(step, f"loss {rec['loss']:.4f} bpp {rec['bpp']:.3f} psnr {rec['psnr']:.2f} "
                               f"lr {lr:.2e} {rec['images_per_s']:.1f} img/s {rec['cpu_hours']:.2f} CPU-h"
                               + (f" ({acc['skipped']} non-finite steps skipped)" if acc["skipped"] else ""))
                acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0, "skipped": 0}
                t_log, cpu_log = time.monotonic(), time.process_time()
            if save_due:
                save()
                last_save = time.monotonic()
        agreed = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        cpu_s += (time.process_time() - cpu_log) * world  # the steps since the last log line count too
        if agreed:
            if local_sgd and step % cfg.sync_every:  # ended between two averages
                local_sgd()
            save()
            log(f"saved {ckpt_path} at step {step}")
        elif diverged:
            log(f"not saved at step {step}: training diverged"
                + (f"; {ckpt_path} holds the last save" if ckpt_path.exists() else ""))
        else:  # an error on one rank: the others are not saving with it, and the last save stands
            log(f"not saved at step {step}: the processes did not stop together")
        if log_file:
            log_file.close()
        if distributed and agreed:
            dist.destroy_process_group()
