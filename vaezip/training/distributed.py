"""Several training processes as one run (torchrun): local SGD's averaging, and stopping them together."""
from __future__ import annotations

import os
import sys
import threading

import torch
import torch.distributed as dist


def distributed_launch() -> bool:
    """Whether this process is one of several that torchrun started (one training run over them all)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class ValidationStopped(Exception):
    """A stop request cut a running validation short (the run then stops and saves)."""


class StopRequest:
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
            raise ValidationStopped("stopped by a signal")


class LocalSGD:
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
