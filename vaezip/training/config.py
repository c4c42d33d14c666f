"""What a training run is asked for: its options (TrainConfig) and the model config it trains (run_config)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..models import ModelConfig


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


def load_start(init_from: str):
    """The coding model a new run starts from: an installed model's name or a weights file."""
    from ..zoo.loader import load_model

    return load_model(init_from, "cpu")


def run_config(init_from: str | None = None, **given) -> ModelConfig:
    """The model config of a new run: the options given (None: not given) over the defaults, or, with
    ``init_from``, over that model's own config, so that continuing a model needs no repeated shape options.
    A wider N or M keeps the given model's z and h_s widths, the parts that growing does not widen."""
    given = {key: value for key, value in given.items() if value is not None}
    levels = given.pop("levels", None)
    if not init_from:
        config = ModelConfig(**given)
        return config if levels is None else config.with_levels(levels)
    base = load_start(init_from).config
    if levels is not None:
        base = base.with_levels(levels)
    if given.get("n", base.n) != base.n:
        given.setdefault("z_channels", base.hyper_width)
    if given.get("m", base.m) != base.m:
        given.setdefault("hyper_hidden", base.hyper_hidden or base.m)
    return replace(base, **given)


def describe_shape(config: ModelConfig) -> str:
    """``msh-gain, N=64, M=192[, conditional][, K residual blocks]``: what a run's log says about a model's shape."""
    return (f"{config.arch}, N={config.n}, M={config.m}" + (", conditional" if config.conditional else "")
            + (f", {config.res_blocks} residual block{'s' * (config.res_blocks > 1)}" if config.res_blocks else ""))
