"""When the training loop stops early or writes a checkpoint between its fixed ones: Ctrl-C (SIGINT) or a kill
(SIGTERM, as a scheduler or torchrun sends) during the loop, and the wall clock.

A signal only sets a flag; the loop reads it between two steps, so the checkpoint it writes holds a whole
iteration (a step cut in the middle of Adam's update could not be resumed bit for bit). A second Ctrl-C stops at
once, keeping the last checkpoint. Under torchrun every process must write the same checkpoint at the same
iteration (the save is a collective), so the flags are agreed between processes at every iteration."""
from __future__ import annotations

import signal
import threading
import time

import torch

from vsc_cli.common.errors import VscError
from vsc_cli.trainers import dist

NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class TrainingInterrupted(VscError):
    """The loop was stopped by a signal after writing a checkpoint; `exit_code` is the shell's 128 + signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + int(signum)


class Stops:
    """A context for the loop: `poll()` after each step says (signal number or None, whether a checkpoint is
    due by the clock). minutes: wall-clock minutes between checkpoints (0: none by the clock)."""

    def __init__(self, world, device, minutes: float):
        self.world, self.device = world, device
        self.every = minutes * 60.0 if minutes else None
        self.signum, self._previous, self.last = None, {}, time.monotonic()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
            for s in NAMES:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:  # the second Ctrl-C: now, not at the step's end
            raise KeyboardInterrupt
        self.signum = signum

    def checkpointed(self) -> None:
        """A checkpoint was just written: the clock starts again."""
        self.last = time.monotonic()

    def poll(self) -> tuple[int | None, bool]:
        due = self.every is not None and time.monotonic() - self.last >= self.every
        if not self.world.on:
            return self.signum, due
        # rank 0's clock decides; any rank's signal stops them all
        flags = torch.tensor([float(self.signum or 0), float(due and self.world.main)], dtype=torch.float64)
        got = dist.all_max(self.world, flags, self.device)
        return (int(got[0]) or None), bool(got[1])
