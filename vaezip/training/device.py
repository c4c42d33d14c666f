"""Where and in what precision a training process runs: its device, bfloat16 autocast, torch.compile's vectors."""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..errors import DeviceError


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
