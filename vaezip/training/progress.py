"""What a run reports while it trains: a progress bar on a terminal, log lines otherwise."""
from __future__ import annotations

import sys


class Progress:
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
