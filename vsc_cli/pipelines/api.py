"""vsc's Python API: a trained run in a notebook.

    import vsc_cli as vsc

    run = vsc.load("runs/fmnist-vsc-d200-a0.01-s0")      # refuses what `vsc encode` refuses
    x, labels = vsc.dataset(run, "test")                  # (N, 1, 28, 28) float32: its data, normalised as it was
    codes = run.encode(x[:16])                            # mu, logvar, gamma, code = gamma * mu  (torch)
    images = run.decode(codes.code)                       # (16, 1, 28, 28) decoder means
    samples = run.sample_conditional(x[:2], 8, seed=0)    # (2, 8, 1, 28, 28), Fig. 13
    run.config["alpha"], run.metrics["test_elbo"]

Tensors come out (on the run's device, under torch.no_grad); numpy arrays and tensors go in. Images are
(N, C, H, W), (N, H, W) for one channel, or flattened (N, C*H*W); they are taken as already normalised the
way the run was trained (unit L2 norm per image by default, paper D.2) unless `normalise=True`, which
applies the run's normalisation to raw pixel values (0-255). Errors are `VscError`, with the CLI's messages.
See docs/api.md.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from vsc_cli.trainers.run import Run as Opened, open_split
from vsc_cli.common.config import TrainConfig
from vsc_cli.common.registry import FAMILIES
from vsc_cli.common.errors import VscError
from vsc_cli.data.display import to_pixels
from vsc_cli.evaluation.encoding import Codes, encode_tensor

__all__ = ["Codes", "Run", "load", "dataset", "to_pixels", "train_config", "fit"]


class Run:
    """A trained model with its config, shape and metrics. Build it with `load`.

    Over the run reopened (trainers.run.Run, as `opened`): a checkpoint's state dict is also accepted."""

    def __init__(self, state: "dict | Opened", path: Path | None = None, device: str | torch.device = "cpu"):
        opened = state if isinstance(state, Opened) else Opened(state, path, torch.device(device))
        self.opened = opened
        self.device = torch.device(opened.device)
        self.model = opened.model
        self.path = opened.path
        self.iteration: int = opened.iteration
        self.pixels: int = opened.pixels
        cfg: TrainConfig = self.model.cfg
        self.config: dict = cfg.to_dict()
        self.shape: tuple = opened.shape
        self.metrics: dict | None = opened.metrics

    def __repr__(self) -> str:
        c = self.config
        alpha = f", alpha={c['alpha']:g}" if FAMILIES[c["model"]].uses_alpha else ""
        return (f"Run({str(self.path)!r}: {c['model']} on {c['data']}, dim={c['dim']}{alpha}, "
                f"iteration={self.iteration}, device={self.device})")

    @property
    def dim(self) -> int:
        return self.config["dim"]

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------------------- images in
    def normalise(self, images) -> torch.Tensor:
        """Raw pixel values (0-255), any accepted layout -> (N, pixels) as the run was trained on them."""
        from vsc_cli.data.datasets import normalise

        x = self._flat(images, "images")
        return torch.from_numpy(normalise(x.cpu().numpy(), self.config["normalisation"])).to(self.device, self._dtype)

    def dataset(self, split: str = "test", data_dir=None, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(images (N, C, H, W) float32, labels (N,) int64) of the set it was trained on, normalised and sized
        as it was trained on them (`dataset(run, split)`)."""
        return dataset(self, split, data_dir, limit=limit)

    def to_pixels(self, images) -> np.ndarray:
        """Images as the run sees them (decoded, reconstructed, sampled, or from `dataset`) -> uint8 pixels
        (N, H, W, C), ready for PIL.Image.fromarray (`to_pixels(images, run.config["normalisation"])`)."""
        return to_pixels(images, self.config["normalisation"], self.shape)

    def elements(self, split: str = "test", threshold: float = 0.5, progress: bool = False, truth=None,
                 consistency: bool = True) -> dict:
        """Every element's statistics over a split, as `vsc dashboard` shows them (numpy arrays of length J):
        rate, count, status (dead / used / always), mean_abs, positive, best_class, class_share, class_rates,
        cooccurs, consistency (NaN where not scored) and mean_change (j -> pixels); with truth (a vsc synth .npz),
        factor, factor_corr, factor_best, factor_best_corr and run_truth; and `top(j, n=8, sign=1)`, the split's indices of the images that switch element j on most
        strongly (sign -1: negative values; 0: most weakly), with `images` the split's (N, C, H, W) images."""
        from vsc_cli.evaluation.dashboard import encoded, scores, strongest

        x, codes, active, table = encoded(self.opened, split, threshold, progress)
        table = dict(table)
        table.update(scores(self.opened, codes, active, split, truth, consistency))
        table["top"] = lambda j, n=8, sign=1: strongest(codes, active, j, n, sign)
        table["images"] = x[:].reshape(len(x), *self.shape)
        table["codes"], table["active"] = codes, active
        return table

    def _flat(self, images, what: str) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        c, h, w = self.shape
        ok = (x.dim() == 2 and x.shape[1] == self.pixels) or tuple(x.shape[1:]) == (c, h, w) \
            or (c == 1 and tuple(x.shape[1:]) == (h, w))
        if x.dim() < 2 or not ok:
            raise VscError(f"{what} of shape {tuple(x.shape)} do not fit this run: give (N, {c}, {h}, {w})"
                           + (f", (N, {h}, {w})" if c == 1 else "") + f" or (N, {self.pixels})")
        if not (x.is_floating_point() or x.dtype == torch.uint8):
            x = x.double()
        return x.reshape(len(x), self.pixels)

    def _input(self, images, normalise: bool) -> torch.Tensor:
        if normalise:
            return self.normalise(images)
        x = self._flat(images, "images")
        if x.dtype == torch.uint8:
            raise VscError("uint8 images look like raw pixel values: pass normalise=True to apply the run's "
                           f"normalisation ({self.config['normalisation']})")
        return x.to(self.device, self._dtype)

    # ------------------------------------------------------------------------------- the model
    def encode(self, images, normalise: bool = False, batch_size: int = 1024) -> Codes:
        """Codes of N images: mu, logvar, gamma and code = gamma * mu, each (N, J)."""
        x = self._input(images, normalise)
        parts = [encode_tensor(self.model, x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        if not parts:
            empty = torch.zeros(0, self.dim, device=self.device, dtype=self._dtype)
            return Codes(empty, empty, empty, empty)
        return Codes(*(torch.cat([getattr(p, k) for p in parts]) for k in ("mu", "logvar", "gamma", "code")))

    def decode(self, z) -> torch.Tensor:
        """Images (N, C, H, W) decoded from codes z (N, J): the Gaussian means (or Bernoulli probabilities)."""
        z = torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z)
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise VscError(f"codes of shape {tuple(z.shape)} do not fit this run: give (N, {self.dim})")
        with torch.no_grad():
            return self.model.decoder.mean(z.to(self.device, self._dtype)).reshape(len(z), *self.shape)

    def reconstruct(self, images, normalise: bool = False) -> torch.Tensor:
        """decode(encode(images).code): the images through the deterministic code, (N, C, H, W)."""
        return self.decode(self.encode(images, normalise).code)

    def _generator(self, seed):
        return torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None

    def sample_prior(self, n: int, seed: int | None = None, return_codes: bool = False):
        """n images decoded from ancestral draws of the run's prior (model.sample_prior): eq. 4, N(0, 1) with
        probability alpha, else 0; or the prior the run learned (--prior pseudo-inputs). With return_codes,
        (images, z)."""
        z = self.model.sample_prior(n, self._generator(seed))
        images = self.decode(z)
        return (images, z.to(self.device, self._dtype)) if return_codes else images

    def sample_conditional(self, images, n: int, threshold: float = 0.5, normalise: bool = False,
                           seed: int | None = None, return_codes: bool = False):
        """Fig. 13: for each image, n draws of N(0, 1) along its active elements (gamma > threshold), 0 along the
        others, decoded: (N, n, C, H, W). With return_codes, (images, z) with z (N, n, J)."""
        if not 0 <= threshold < 1 or math.isnan(threshold):
            raise VscError(f"threshold {threshold} is not in [0, 1)")
        active = self.encode(images, normalise).active(threshold).cpu()
        g = self._generator(seed)
        z = torch.randn(len(active), n, self.dim, generator=g, dtype=torch.float64) * active[:, None, :]
        out = self.decode(z.reshape(-1, self.dim)).reshape(len(active), n, *self.shape)
        return (out, z.to(self.device, self._dtype)) if return_codes else out


def load(path, device: str | torch.device = "cpu") -> Run:
    """A trained run from its folder (or checkpoint file), refusing what the CLI refuses (VscError)."""
    opened = Opened.open(path, torch.device(device))
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise VscError(f"device {device}: no usable CUDA device here; use device='cpu'")
    return Run(opened)


def dataset(name, split: str = "test", data_dir=None, normalisation: str | None = None, limit: int | None = None,
            image_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, C, H, W) float32, labels (N,) int64) of a built-in dataset (mnist, fmnist, celeba) or of your
    own images (a path, as `vsc train --data`), normalised as `normalisation` ('unit', '01' or 'none' = 0-255;
    default 'unit'). Given a run (`load`'s) for `name`: the set it was trained on, at its normalisation and image
    size, unless given. Built-in datasets are read from data_dir ($VSC_DATA_DIR, ./data); fetch them with
    `vsc download`."""
    if isinstance(name, (Run, Opened)):
        opened = name.opened if isinstance(name, Run) else name
        if normalisation is None and image_size is None and data_dir in (None, opened.data_dir):
            images = opened.images(split, limit)  # the run's own view of its data, shape-checked
        else:
            cfg = opened.cfg
            images = open_split(opened.data, split, data_dir if data_dir is not None else opened.data_dir,
                                normalisation or cfg.normalisation, limit, image_size or cfg.image_size,
                                validation=(cfg.validation or 0.0) if opened.data_override is None else 0.0,
                                aspect=cfg.aspect or "stretch")
    else:
        images = open_split(name, split, data_dir, normalisation or "unit", limit, image_size)
    x = images[:]
    return x.reshape(len(x), *images.shape), np.asarray(images.labels, dtype=np.int64)


def train_config(recipe: str = "default", **settings) -> TrainConfig:
    """The config `vsc train` builds from the same settings (TrainConfig fields, e.g. data="fmnist", dim=200,
    alpha=0.01): vsc's default recipe unless recipe="paper", then the settings given (trainers.recipes.resolve)."""
    from vsc_cli.trainers.recipes import resolve

    return resolve(recipe, **settings)


def fit(cfg: TrainConfig, out, data_dir=None, device: str = "cpu", resume: bool = False,
        progress: bool = True) -> dict:
    """Train (or, resume=True, continue) the run `cfg` describes in folder `out`, as `vsc train` does; returns
    the test-set metrics. Build cfg with train_config, so that it means what the same settings mean to the CLI.
    (Named fit, not train: vsc_cli.trainers.train is the training module.)"""
    from vsc_cli.trainers.train import train as run_training

    return run_training(None if resume else cfg, Path(out), device=device, data_dir=data_dir, resume=resume,
                        progress=progress)
