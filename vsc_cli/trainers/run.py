"""A trained run reopened: its checkpoint, config, model, image shape, data and metrics.json, in one place.

    run = Run.open("runs/fmnist-vsc-d200-a0.01-s0", data_dir="data")   # a run folder or its checkpoint file
    run.cfg, run.model, run.shape, run.metrics
    x = run.images("test")        # the split as the run was trained on it: its normalisation and image size

Every command and API call that works on a finished run (`vsc encode`, `vsc sparsity`, `vsc figure`, the sweeps'
evaluation, `vsc_cli.load`) opens it here; the data layer's one entry point, `data.sources.open_images`, is
called from here (`open_split`) and from the training data (trainers/data.py) only.

Nothing is read before it is asked for: `Run.open` reads the checkpoint, the model is built on first use (so that
a check of a half-trained run's config or generator costs no model), each split is read once and kept. The
dataset cache folder: `data_dir` if given, else $VSC_DATA_DIR, else the one the run was trained from (recorded in
its checkpoint), else ./data.
"""
from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

import numpy as np

from vsc_cli.common.config import TrainConfig
from vsc_cli.common.errors import VscError
from vsc_cli.trainers import checkpoint

__all__ = ["Run", "open_split"]


def open_split(data: str, split: str, data_dir=None, normalisation: str = "unit", limit: int | None = None,
               image_size: int | None = None, progress: bool = False, validation: float = 0.0,
               aspect: str = "stretch"):
    """The images (`data.sources.Images`) of `split` (train, validation, test) of a built-in set or a user's file or
    folder; validation: the fraction of the training images held out (sources.carve)."""
    from vsc_cli.data.sources import SPLITS, open_images

    if split not in SPLITS:
        raise VscError(f"split {split!r}: choose {', '.join(SPLITS)}")
    return open_images(data, split, data_dir, normalisation, limit=limit, image_size=image_size, progress=progress,
                       validation=validation, aspect=aspect)


class Run:
    """A trained run: `state` (the checkpoint's training-state dict), `path` (its folder), `checkpoint` (the file),
    `cfg` (TrainConfig, as stored), `model` (rebuilt on `device`, eval mode; its cfg may name the device's
    backend), `shape` (C, H, W), `images(split)` (its data: `data` if given, else the set it was trained on, with
    its normalisation and image size), `metrics` (metrics.json, None without one)."""

    def __init__(self, state: dict, path: Path | None = None, device="cpu", data: str | None = None, data_dir=None,
                 checkpoint_file: Path | None = None):
        self.state = state
        self.path = Path(path) if path is not None else None
        self.checkpoint = checkpoint_file
        self.device = device
        self.data_override = data
        recorded = state.get("data_dir")
        if data_dir is None and not os.environ.get("VSC_DATA_DIR") and recorded and Path(recorded).is_dir():
            data_dir = Path(recorded)
        self.data_dir = data_dir
        self._splits: dict = {}

    @classmethod
    def open(cls, path, device="cpu", data: str | None = None, data_dir=None, last: bool = False) -> "Run":
        """The run in folder `path` (or the checkpoint file `path`); VscError for what no command accepts.
        A folder opens at its best checkpoint by validation ELBO (best.safetensors) where it has one, at its last
        (checkpoint.safetensors) with last=True or without a validation split."""
        path = Path(path)
        file = checkpoint.checkpoint_path(path)
        if path.is_dir() and not last and (path / checkpoint.BEST).is_file():
            file = path / checkpoint.BEST
        state = checkpoint.load_checkpoint(file)
        return cls(state, path if path.is_dir() else path.parent, device, data, data_dir, file)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, iteration {self.iteration})"

    # ------------------------------------------------------------------------------- what it is
    @cached_property
    def cfg(self) -> TrainConfig:
        return TrainConfig.from_dict(self.state["config"])

    @property
    def iteration(self) -> int:
        return self.state["iteration"]

    @property
    def pixels(self) -> int:
        return self.state["pixels"]

    @cached_property
    def model(self):
        """The model the checkpoint describes, on `device`, in eval mode (checkpoint.build_model's checks)."""
        return checkpoint.build_model(self.state, self.device).eval()

    @cached_property
    def shape(self) -> tuple:
        """(channels, height, width) of its images."""
        from vsc_cli.data.datasets import image_shape

        cfg = self.cfg
        return tuple(cfg.image_shape) if cfg.image_shape else image_shape(cfg.data, self.pixels)

    @cached_property
    def metrics(self) -> dict | None:
        """metrics.json of its folder, None when there is none."""
        file = self.path / "metrics.json" if self.path is not None and self.path.is_dir() else None
        return json.loads(file.read_text()) if file is not None and file.is_file() else None

    # ------------------------------------------------------------------------------- its data
    @property
    def data(self) -> str:
        """The set its images come from: the one given to open (--data), else the one it was trained on."""
        return self.data_override or self.cfg.data

    def images(self, split: str, limit: int | None = None, progress: bool = False):
        """The split's images as the run sees them (`Images`, rows (N, pixels) float32, `.labels`), read once per
        (split, limit); VscError when they do not fit the run (another shape than it was trained on)."""
        key = (split, limit)
        if key not in self._splits:
            cfg = self.cfg
            own = self.data_override is None  # another set given to open has no validation split of the run's
            held = (cfg.validation or 0.0) if own else 0.0
            carved = held and split in ("train", "validation")  # carved from the first train_size images
            x = open_split(self.data, split, self.data_dir, cfg.normalisation, cfg.train_size if carved else limit,
                           cfg.image_size, progress, validation=held, aspect=cfg.aspect or "stretch")
            if carved and limit is not None and limit < len(x):
                x = x.subset(np.arange(limit))
            # the images must fit the model: the shape it recorded (or, for another set, the one it must have been)
            if (self.data_override or cfg.image_shape) and tuple(x.shape) != self.shape or x.pixels != self.pixels:
                raise VscError(f"{self.data} images are {'x'.join(map(str, x.shape))} (channels x height x width), "
                               f"the run was trained on {'x'.join(map(str, self.shape))}")
            self._splits[key] = x
        return self._splits[key]
