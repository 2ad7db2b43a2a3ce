"""Training configuration. A checkpoint carries this dataclass as a plain dict."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class TrainConfig:
    data: str = "fmnist"  # dataset: mnist | fmnist
    model: str = "vsc"  # vsc (spike-and-slab prior) | vae (Gaussian prior, the baseline)
    dim: int = 200  # latent dimensions J
    alpha: float = 0.5  # prior spike probability (eq. 4); ignored by the VAE
    hidden: tuple = (400,)  # hidden layer widths of encoder and decoder (paper D.1: one of 400)
    likelihood: str = "gaussian"  # gaussian (learned per-pixel mean and log-variance, A.1) | bernoulli
    normalisation: str = "unit"  # unit L2 norm per image (D.2) | 01 | none
    iterations: int = 20_000  # optimiser steps (the paper's limit, section 4.1)
    batch_size: int = 256  # images per step; the paper gives none (see README)
    lr: float = 1e-3  # Adam learning rate (paper D.1: between 0.001 and 0.01)
    c_start: float = 50.0  # sigmoid scale c at the first iteration (C.2)
    c_end: float = 200.0  # ... and at the last one, rising linearly per iteration
    min_logvar: float = -10.0  # soft floor on the decoder's log-variance (see model.py)
    seed: int = 0  # seeds the initial weights, the batch order and the noise
    train_size: int | None = None  # use only the first N training images (None: all 60,000)
    test_size: int | None = None  # evaluate on the first N test images (None: all 10,000)
    log_every: int = 100  # iterations between rows of log.csv
    checkpoint_every: int = 1000  # iterations between checkpoints
    backend: str = "auto"  # spike-and-slab op: torch | numba | cuda | auto (numba on CPU, cuda on GPU)
    dtype: str = "float32"  # float64 is slower; it makes runs of different backends agree to ~1e-10
    extra: dict = field(default_factory=dict)  # free-form, kept for forward compatibility

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["hidden"] = tuple(d.get("hidden", (400,)))
        return cls(**d)
