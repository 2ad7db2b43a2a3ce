"""A run's log.csv: the averages of the ELBO terms over the last `log_every` iterations, one row each.

The file's columns are fixed (readers depend on them): the iteration, c, the term columns `TERM_COLUMNS` and the
training time. A family without one of the term columns (the VAE has no spike KL, the top-k autoencoder no KL)
writes 0 there; the family itself returns only its own terms (models/distributions.Posterior.terms)."""
from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import torch

from vsc_cli.common.safeio import atomic_write, atomic_write_text
from vsc_cli.trainers import dist

LOG = "log.csv"
# the per-image terms of log.csv's rows and of metrics.json's test_* numbers, in the files' order (active is
# reported there as test_sparsity)
TERM_COLUMNS = ("elbo", "recon", "kl_slab", "kl_spike", "active")
LOG_FIELDS = ["iteration", "c", *TERM_COLUMNS, "seconds"]


def complete_rows(path: Path) -> list[dict]:
    """Rows of log.csv, without a last line cut short by a kill (no newline, or a missing field)."""
    with open(path, newline="") as fh:
        text = fh.read()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    rows = []
    for row in csv.DictReader(text.splitlines()):
        if all(row.get(k) not in (None, "") for k in LOG_FIELDS):
            with contextlib.suppress(ValueError):
                row["iteration"] = int(row["iteration"])
                rows.append(row)
    return rows


class Log:
    """Averages of the ELBO terms over the last `log_every` iterations, appended to log.csv (path None: no file,
    as for a benchmark; on a torchrun rank other than 0 the rank only contributes its averages)."""

    def __init__(self, path: Path | None, resume_at: int | None, world=None, device="cpu"):
        self.path, self.world, self.device = path, world, device
        self._restored = False
        if path is None or (world is not None and not world.main):
            self.reset()
            return
        if resume_at is None or not path.exists():
            atomic_write_text(path, ",".join(LOG_FIELDS) + "\n")
        else:  # drop rows written after the checkpoint we resume from: they will be redone
            rows = [r for r in complete_rows(path) if r["iteration"] <= resume_at]

            def write(tmp):
                with open(tmp, "w", newline="") as fh:
                    w = csv.DictWriter(fh, LOG_FIELDS, lineterminator="\n")
                    w.writeheader()
                    w.writerows(rows)

            atomic_write(path, write)
        self.reset()

    def reset(self):
        self._keys, self._acc, self.count = None, None, 0

    # The window's sums stay on the model's device (float64, added in the order of the steps) so that a step does
    # not wait for five host copies; they are read only when a row or a checkpoint is written.
    @property
    def sums(self) -> dict:
        return {} if self._acc is None else dict(zip(self._keys, self._acc.tolist()))

    @sums.setter
    def sums(self, values: dict):  # a resumed window: later steps add to these exact numbers, as if never cut
        self._keys = sorted(values) or None
        self._acc = torch.tensor([float(values[k]) for k in self._keys], dtype=torch.float64,
                                 device=self.device) if values else None
        self._restored = bool(values)

    def add(self, terms: dict):
        if self._keys is None:  # the per-image terms ((B,) tensors); not gamma, which is (B, J)
            self._keys = sorted(k for k, v in terms.items() if v.dim() == 1)
        elif self._restored:  # a window from a checkpoint of an earlier version may hold a column this family does
            self._restored = False  # not return (a VAE's zero kl_spike): the file writes 0 there anyway
            if any(k not in terms for k in self._keys):
                self.sums = {k: v for k, v in self.sums.items() if k in terms}
                self._restored = False
        means = torch.stack([terms[k].detach().mean() for k in self._keys]).double()
        self._acc = means if self._acc is None else self._acc + means
        self.count += 1

    def window(self) -> dict:
        """The window's sums averaged over the ranks (every rank must call this: a collective)."""
        if self.world is None or not self.world.on or not self.sums:
            return dict(self.sums)
        keys = sorted(self.sums)
        mean = dist.all_mean(self.world, torch.tensor([self.sums[k] for k in keys], dtype=torch.float64), self.device)
        return dict(zip(keys, mean.tolist()))

    def running_elbo(self) -> float | None:
        """This process's mean ELBO over the window so far (for the progress bar before the first row)."""
        return self.sums["elbo"] / self.count if self.count and "elbo" in (self._keys or ()) else None

    def write(self, iteration: int, c: float, seconds: float) -> float | None:
        """Append the window's row; returns its mean ELBO (None on other ranks)."""
        sums = self.window()
        if self.world is not None and not self.world.main:
            self.reset()
            return None
        row = dict.fromkeys(TERM_COLUMNS, "0")  # the fixed columns of a term the family does not have
        row.update({k: f"{v / self.count:.6g}" for k, v in sums.items()})
        row.update(iteration=iteration, c=f"{c:.4g}", seconds=f"{seconds:.2f}")
        line = ",".join(str(row[k]) for k in LOG_FIELDS) + "\n"
        with open(self.path, "a") as fh:  # one short write: a kill leaves whole lines (or a cut last one)
            fh.write(line)
        elbo = sums["elbo"] / self.count if "elbo" in sums and self.count else None
        self.reset()
        return elbo
