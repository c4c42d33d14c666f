"""The resumable training loop of the variable-rate model.

Recipe (chosen at equal CPU time, see ../shared/notes/cpu-training.md and benchmarks/): Adam at 1e-3
with a short warm-up and cosine decay, rounded latents (straight-through) into the decoders and noise
for the rate, random crops of the whole corpus, rate level t drawn uniformly per sample, gradient
clipping, and an exponential moving average of the weights, which is what gets exported.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import VaezipError
from ..models import MeanScaleHyperprior, ModelConfig
from .data import CropSampler, image_files


class CheckpointError(VaezipError):
    pass


@dataclass
class TrainConfig:
    data: str
    run_dir: str
    steps: int = 250_000
    patch: int = 128
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 500
    clip: float = 1.0
    ema: float = 0.999
    seed: int = 0
    threads: int = 1
    save_every_s: float = 300.0
    log_every: int = 100


def device_auto() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))


def rd_loss(model: MeanScaleHyperprior, x: torch.Tensor, t: torch.Tensor):
    """Per-sample lambda * 255^2 * MSE + bpp, averaged; also returns mean bpp and PSNR for logging."""
    out = model(x, t)
    pixels = x.shape[-2] * x.shape[-1]
    bits = -(out.y_likelihood.log2().sum(dim=(1, 2, 3)) + out.z_likelihood.log2().sum(dim=(1, 2, 3)))
    bpp = bits / pixels
    mse = (out.x_hat - x).pow(2).mean(dim=(1, 2, 3))
    lam = model.config.lam(t)
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


def train(cfg: TrainConfig, model_config: ModelConfig = ModelConfig(), log=print) -> None:
    torch.set_num_threads(cfg.threads)
    device = device_auto()
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ckpt_path = run / "checkpoint.pt"

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = MeanScaleHyperprior(model_config).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, cpu_s = 0, 0.0

    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        model_config = ModelConfig.from_dict(ck["model_config"])
        if model_config != model.config:
            model = MeanScaleHyperprior(model_config).to(device)
            ema = copy.deepcopy(model).requires_grad_(False)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        step, cpu_s = ck["step"], ck["cpu_seconds"]
        rng.bit_generator.state = json.loads(ck["numpy_rng"])
        torch.set_rng_state(ck["torch_rng"])
        log(f"resumed {ckpt_path} at step {step} ({cpu_s / 3600:.2f} CPU-h)")
    else:
        (run / "train_config.json").write_text(json.dumps({"train": asdict(cfg), "model": model_config.to_dict()}, indent=1))

    files = image_files(cfg.data)
    sampler = CropSampler(files, cfg.patch, log=log)
    log(f"{len(sampler)} training images from {cfg.data}; device {device}, {cfg.threads} thread(s)")

    def save():
        _atomic_save({
            "model_config": model.config.to_dict(),
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
            "step": step, "cpu_seconds": cpu_s,
            "numpy_rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state(),
        }, ckpt_path)

    log_file = open(run / "train.jsonl", "a")
    last_save = time.monotonic()
    acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
    t_log, cpu_log = time.monotonic(), time.process_time()
    model.train()
    try:
        while step < cfg.steps:
            lr = lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            x = sampler.batch(cfg.batch, rng).to(device)
            t = torch.from_numpy(rng.uniform(0, model.config.levels - 1, cfg.batch).astype(np.float32)).to(device)
            loss, bpp, psnr = rd_loss(model, x, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            decay = min(cfg.ema, (1 + step) / (10 + step))  # warm-up, so the init is soon forgotten
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - decay)
            step += 1
            for k, v in (("loss", loss), ("bpp", bpp), ("psnr", psnr)):
                acc[k] += float(v.detach())
            acc["n"] += 1
            if step % cfg.log_every == 0:
                now, cpu_now = time.monotonic(), time.process_time()
                cpu_s += cpu_now - cpu_log
                rec = {"step": step, "cpu_hours": round(cpu_s / 3600, 4), "lr": lr,
                       "loss": acc["loss"] / acc["n"], "bpp": acc["bpp"] / acc["n"], "psnr": acc["psnr"] / acc["n"],
                       "images_per_s": cfg.batch * acc["n"] / (now - t_log), "time": time.time()}
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
                log(f"step {step} loss {rec['loss']:.4f} bpp {rec['bpp']:.3f} psnr {rec['psnr']:.2f} "
                    f"lr {lr:.2e} {rec['images_per_s']:.1f} img/s {rec['cpu_hours']:.2f} CPU-h")
                acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
                t_log, cpu_log = now, cpu_now
                if now - last_save > cfg.save_every_s:
                    save()
                    last_save = now
    finally:
        save()
        log_file.close()
        log(f"saved {ckpt_path} at step {step}")
