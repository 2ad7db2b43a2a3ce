"""Progress that stays readable in a log file.

On a terminal, tqdm's bar as usual. When stderr is not a terminal (`vsc train > train.log 2>&1`, nohup,
Slurm, `vsc experiment`'s own runs), a redrawn bar would write one carriage-return fragment per update;
instead `tqdm(...)` here returns `PlainProgress`, which prints one short line every VSC_PROGRESS_SECONDS
(30 by default) and one when done: 20,000 iterations in 10 minutes leave about 20 lines.
"""
from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm as _tqdm

DEFAULT_SECONDS = 30.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("VSC_PROGRESS_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class PlainProgress:
    """The part of tqdm's interface vsc uses (iteration, update, set_postfix, write, close, `with`), as plain lines:
    `training 1200/20000 (6%) elbo=2601.3 c=59 | 2.10 it/s, 9:31 elapsed, 2:13:20 left`."""

    def __init__(self, iterable=None, desc: str = "", total=None, initial: int = 0, disable: bool = False,
                 unit: str = "it", unit_scale: bool = False, file=None, **_ignored):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # as tqdm: the iterable's length, whatever `initial` is
        self.total, self.n, self.start_n = total, initial, initial
        self.desc, self.disable, self.unit, self.unit_scale = desc, disable, unit, unit_scale
        self.file = file or sys.stderr
        self.postfix: dict = {}
        self.interval = _interval()
        self.t0 = self.last = time.monotonic()
        self.printed_n = None
        self.closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __len__(self):
        return self.total or 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self.last >= self.interval:
            self._line(now)

    @staticmethod
    def write(text: str, file=None, end: str = "\n") -> None:
        """A message line (tqdm.write's signature): plain lines need no clearing of a bar."""
        print(text, file=file or sys.stderr, end=end, flush=True)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        now = time.monotonic()
        # a last line for anything that printed along the way or ran for longer than one interval
        if not self.disable and self.printed_n != self.n and (self.printed_n is not None or now - self.t0 >= self.interval):
            self._line(now)

    def _amount(self, n) -> str:
        if self.unit == "B" and self.unit_scale:
            return f"{n / 1e6:.1f} MB"
        return f"{n:,}"

    def _line(self, now: float) -> None:
        self.last, self.printed_n = now, self.n
        elapsed = now - self.t0
        done = self.n - self.start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc} {self._amount(self.n)}" + (f"/{self._amount(self.total)}" if self.total else "")]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        speed = f"{rate / 1e6:.2f} MB/s" if self.unit == "B" and self.unit_scale else f"{rate:.2f} {self.unit}/s"
        tail = f"{speed}, {_clock(elapsed)} elapsed"
        if self.total and rate > 0 and self.n < self.total:
            tail += f", {_clock((self.total - self.n) / rate)} left"
        print(" ".join(parts) + " | " + tail, file=self.file, flush=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def tqdm(*args, **kwargs):
    """tqdm's bar on a terminal (or when disabled); plain lines at an interval otherwise."""
    if kwargs.get("disable") or _is_terminal(kwargs.get("file") or sys.stderr):
        return _tqdm(*args, **kwargs)
    return PlainProgress(*args, **kwargs)
