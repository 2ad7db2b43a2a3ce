"""What a trained model makes of images: its codes (q(z|x)'s mu, logvar, gamma and the code E[z] = gamma mu),
in batches, and exact draws z ~ q(z|x) with what is measured on them (non-zero elements, reconstruction error)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vsc_cli.common.progress import tqdm
from vsc_cli.models.distributions import draw_and_kl
from vsc_cli.models.schedule import Step


@dataclass
class Codes:
    """The encoder's output for N images, each (N, J): q(z|x) of eq. 5 and its mean."""

    mu: torch.Tensor  # slab means
    logvar: torch.Tensor  # slab log-variances, log sigma^2
    gamma: torch.Tensor  # spike probabilities (eq. 12); all 1 for a VAE
    code: torch.Tensor  # gamma * mu = E_q[z], the deterministic sparse code (what `vsc encode` stores)

    def active(self, threshold: float = 0.5) -> torch.Tensor:
        """(N, J) bool: the elements each image switches on (gamma > threshold)."""
        return self.gamma > threshold

    def numpy(self) -> dict:
        """The four arrays as float32 numpy, keyed by name."""
        return {k: getattr(self, k).detach().cpu().float().numpy() for k in ("mu", "logvar", "gamma", "code")}

    def __len__(self) -> int:
        return len(self.mu)


def encode_tensor(model, x: torch.Tensor) -> Codes:
    """The model's codes of a (N, pixels) tensor already on its device and in its dtype (no grad)."""
    with torch.no_grad():
        q = model.posterior(x)  # gamma = P(z_j != 0 | x), and the code E[z] = gamma mu, for every family
        return Codes(q.mu, q.logvar, q.gamma, q.gamma * q.mu)


@torch.no_grad()
def encode_batches(model, x, batch_size: int, progress: bool = False, desc: str = "encoding"):
    """Yield (start, mu, logvar, gamma) float32 numpy blocks of at most batch_size rows."""
    model.eval()
    dtype = next(model.parameters()).dtype
    for start in tqdm(range(0, len(x), batch_size), desc=desc, disable=not progress, leave=False):
        c = encode_tensor(model, torch.from_numpy(x[start:start + batch_size]).to(dtype))
        yield start, c.mu.float().numpy(), c.logvar.float().numpy(), c.gamma.float().numpy()


@torch.no_grad()
def exact_draws(model, x, seed: int, batch_size: int = 1000):
    """Yield (images, z) per batch: one exact draw z ~ q(z|x) per image (Step.evaluation), from a generator seeded
    with `seed`, so that a measurement on the draws is reproducible."""
    model.eval()
    dtype = next(model.parameters()).dtype
    gen, step = torch.Generator().manual_seed(seed), Step.evaluation(model.cfg.alpha)
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[start:start + batch_size]).to(dtype)
        yield xb, draw_and_kl(model.posterior(xb), model.prior, xb, step, gen, model.cfg.backend)[0]


def active_elements(model, x, gamma: np.ndarray, threshold: float, active: str = "gamma") -> np.ndarray:
    """(N, J) bool: the elements active in each image, gamma > threshold, or (active "nonzero", a family whose
    elements are non-zero at random) non-zero in one exact draw per image (nonzero_draws)."""
    return nonzero_draws(model, x) > 0 if active == "nonzero" else np.asarray(gamma) > threshold


def nonzero_draws(model, x, batch_size: int = 1000, seed: int = 0) -> np.ndarray:
    """(N, J) float64 0/1: which elements of one exact draw z ~ q(z|x) per image are non-zero (seeded). For the
    thresholded family, whose elements are non-zero at random (|sigma eps| > lambda), this is what "active"
    means; for the spike-and-slab it is Bernoulli(gamma), close to gamma > 0.5 where gamma is near 0 or 1."""
    out = [(z != 0).double().numpy() for _, z in exact_draws(model, x, 20_000 + seed, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.cfg.dim))


def reconstruction_sse(model, x, seed: int = 0, batch: int = 1000) -> float:
    """Mean over images of the summed squared error ||x - decoder mean(z)||^2, z one exact draw of q(z|x): for
    unit-norm images the fraction of an image's energy the reconstruction misses (0 perfect, 1 a blank image)."""
    with torch.no_grad():
        total = sum(float(((xb - model.decoder.mean(z)) ** 2).sum())
                    for xb, z in exact_draws(model, x, 30_000 + seed, batch))
    return total / len(x)


def reconstruction_error(run, x, codes: np.ndarray, batch: int = 1000) -> dict:
    """How much of the images the codes keep: the summed squared error per image of the decoded code (the decoder's
    mean at E[z] = gamma mu), over that of the mean training image (1: no better than the mean image; 0: exact),
    with both errors (the mean image of the run's training images, trainers.run.Run). Codes of any family compare on
    the same scale, whatever their likelihood."""
    model = run.model
    train = run.images("train")
    total = np.zeros(int(np.prod(train.shape)), dtype=np.float64)
    for start in range(0, len(train), batch):  # the mean image, in blocks (CelebA's training images are large)
        total += train[np.arange(start, min(start + batch, len(train)))].sum(0, dtype=np.float64)
    mean_image = total / len(train)
    dtype = next(model.parameters()).dtype
    err_code = err_mean = 0.0
    with torch.no_grad():
        for start in range(0, len(codes), batch):
            rows = x[np.arange(start, min(start + batch, len(codes)))].astype(np.float64)
            recon = model.decoder.mean(torch.from_numpy(codes[start:start + len(rows)]).to(dtype)).double().numpy()
            err_code += float(((rows - recon) ** 2).sum())
            err_mean += float(((rows - mean_image) ** 2).sum())
    n = len(codes)
    return {"reconstruction_error": err_code / err_mean if err_mean > 0 else None,
            "reconstruction_sse": err_code / n, "mean_image_sse": err_mean / n}
