"""Training throughput on this CPU: images/s of one training step (forward, backward, Adam) for the
shipped architecture and its alternatives.

    python benchmarks/train_speed.py [--steps 20] [--out benchmarks/results/train-speed.json]

Rate–distortion per CPU-hour decides between them, not images/s alone (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vaezip.bench.run import cpu_name
from vaezip.models import ModelConfig, build_model
from vaezip.models import rd_loss
from vaezip.training.device import set_compiled_vector_bits

VARIANTS = [
    {"name": "shipped: N64 M96, 128 px, batch 8", "n": 64, "m": 96, "patch": 128, "batch": 8},
    {"name": "batch 4", "n": 64, "m": 96, "patch": 128, "batch": 4},
    {"name": "batch 16", "n": 64, "m": 96, "patch": 128, "batch": 16},
    {"name": "256 px, batch 4", "n": 64, "m": 96, "patch": 256, "batch": 4},
    {"name": "channels_last", "n": 64, "m": 96, "patch": 128, "batch": 8, "channels_last": True},
    {"name": "2 threads", "n": 64, "m": 96, "patch": 128, "batch": 8, "threads": 2},
    {"name": "torch.compile", "n": 64, "m": 96, "patch": 128, "batch": 8, "compile": True},
    {"name": "N96 M144", "n": 96, "m": 144, "patch": 128, "batch": 8},
    {"name": "N128 M192", "n": 128, "m": 192, "patch": 128, "batch": 8},
    {"name": "N64 M192 (msh64-r2)", "n": 64, "m": 192, "hyper_hidden": 96, "patch": 128, "batch": 8},
    {"name": "N64 M192 checkerboard", "n": 64, "m": 192, "hyper_hidden": 96, "arch": "msh-gain-cb",
     "patch": 128, "batch": 8},
    {"name": "N96 M192 checkerboard, z 64", "n": 96, "m": 192, "hyper_hidden": 96, "z_channels": 64,
     "arch": "msh-gain-cb", "patch": 128, "batch": 8},
    # bfloat16 autocast (--precision bf16) pays only on CPUs with native bf16 (AMX, AVX-512 BF16).
    {"name": "N64 M192, compile, fp32", "n": 64, "m": 192, "hyper_hidden": 96, "patch": 128, "batch": 8,
     "compile": True},
    {"name": "N64 M192, compile, bf16", "n": 64, "m": 192, "hyper_hidden": 96, "patch": 128, "batch": 8,
     "compile": True, "bf16": True},
    {"name": "N96 M192 z 64, compile, bf16", "n": 96, "m": 192, "hyper_hidden": 96, "z_channels": 64,
     "patch": 128, "batch": 8, "compile": True, "bf16": True},
    {"name": "N128 M192 z 64, compile, bf16", "n": 128, "m": 192, "hyper_hidden": 96, "z_channels": 64,
     "patch": 128, "batch": 8, "compile": True, "bf16": True},
    # oneDNN's bf16 kernels (AMX) prefer channels-last activations.
    {"name": "N64 M192, compile, bf16, channels_last", "n": 64, "m": 192, "hyper_hidden": 96, "patch": 128,
     "batch": 8, "compile": True, "bf16": True, "channels_last": True},
    {"name": "N128 M192 z 64, compile, bf16, channels_last", "n": 128, "m": 192, "hyper_hidden": 96,
     "z_channels": 64, "patch": 128, "batch": 8, "compile": True, "bf16": True, "channels_last": True},
    # The main line since msh64-r9 (256-px crops, 4 per process), and with per-level modulation (--conditional).
    {"name": "N64 M192 256 px b4, compile, bf16", "n": 64, "m": 192, "hyper_hidden": 96, "patch": 256,
     "batch": 4, "compile": True, "bf16": True},
    {"name": "N64 M192 256 px b4, compile, bf16, conditional", "n": 64, "m": 192, "hyper_hidden": 96,
     "patch": 256, "batch": 4, "compile": True, "bf16": True, "conditional": True},
]


def measure(v: dict, steps: int) -> float:
    torch.set_num_threads(v.get("threads", 1))
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=v.get("arch", "msh-gain"), n=v["n"], m=v["m"],
                                    hyper_hidden=v.get("hyper_hidden"), z_channels=v.get("z_channels"),
                                    conditional=v.get("conditional", False)))
    fmt = torch.channels_last if v.get("channels_last") else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    if v.get("compile"):  # the vector width `vaezip train` gives the generated code
        set_compiled_vector_bits(torch.device("cpu"), v.get("bf16", False))
    step_model = torch.compile(model) if v.get("compile") else model
    compile_start = time.perf_counter()
    x = torch.rand(v["batch"], 3, v["patch"], v["patch"]).to(memory_format=fmt)
    t = torch.rand(v["batch"]) * (model.config.levels - 1)
    lam = model.config.lam(t)
    for i in range(steps + 3):
        if i == 3:
            start, cpu_start = time.perf_counter(), time.process_time()
            v["warmup_s"] = round(start - compile_start, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v.get("bf16", False)):
            loss, _, _ = rd_loss(step_model(x, t), x, lam)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Per CPU-second of this process (what a CPU-hour budget buys), robust to other work on the machine.
    return v["batch"] * steps / (time.process_time() - cpu_start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results/train-speed.json")
    ap.add_argument("--only", help="measure only the variants whose name contains this text (merged into --out)")
    args = ap.parse_args()
    out = Path(args.out)
    previous = json.loads(out.read_text())["rows"] if args.only and out.exists() else []
    rows = []
    for v in VARIANTS:
        if args.only and args.only not in v["name"]:
            rows += [r for r in previous if r["name"] == v["name"]]
            continue
        ips = measure(v, args.steps)
        rows.append({**v, "images_per_s": round(ips, 2), "megapixels_per_s": round(ips * v["patch"] ** 2 / 1e6, 3)})
        print(f"{v['name']:>36}: {ips:6.2f} images/s, {rows[-1]['megapixels_per_s']:.3f} MP/s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "torch": torch.__version__, "cpu": cpu_name(), "rows": rows},
                              indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
