"""Encoder, decoder and ELBO of the VSC (paper section 3, appendix A) and of the plain VAE baseline."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vsc_kernels import (SpikeSlabPrior, gaussian_loglik, log_gamma_from_v, log_gamma_sigmoid, spike_slab,
                         spike_slab_sample_scaled)

from .config import TrainConfig

LOG_2PI = math.log(2 * math.pi)


def mlp(sizes) -> nn.Sequential:
    """Fully connected layers with ReLU between them (none after the last)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """p(x|z): an MLP giving the per-pixel mean and log-variance of a Gaussian (A.1), or Bernoulli logits.

    The Gaussian's log-variance has a soft floor, min_logvar + softplus(raw - min_logvar): pixels
    that are zero in every image (MNIST's border) otherwise let the variance go to 0 and the
    likelihood to +infinity. With -10 the floor is a standard deviation of 0.0067, small beside
    unit-norm pixel values (up to about 0.15).
    """

    def __init__(self, dim: int, hidden, pixels: int, likelihood: str, min_logvar: float,
                 logvar_init: float | None = None, backend: str = "torch"):
        super().__init__()
        self.likelihood, self.min_logvar, self.backend = likelihood, min_logvar, backend
        outputs = 2 * pixels if likelihood == "gaussian" else pixels
        self.net = mlp([dim, *hidden, outputs])
        if likelihood == "gaussian" and logvar_init is not None:
            # start the log-variance near logvar_init instead of about 0 (sigma = 1, far above unit-norm
            # pixels of ~0.02, which makes the reconstruction gradient tiny beside the KL's early on)
            target = torch.tensor(max(float(logvar_init) - min_logvar, 1e-3))
            with torch.no_grad():
                self.net[-1].bias[pixels:] = min_logvar + torch.log(torch.expm1(target))

    def forward(self, z):
        out = self.net(z)
        if self.likelihood == "gaussian":
            mean, raw = out.chunk(2, dim=-1)
            return mean, self.min_logvar + F.softplus(raw - self.min_logvar)
        return out, None

    def log_likelihood(self, x, z):
        """log p(x|z) summed over pixels, per image."""
        if self.likelihood == "gaussian":
            # one fused pass over the (B, 2P) output for the value and its gradient (vsc_kernels.gaussian_loglik;
            # backend "torch" is the plain expression -0.5 sum(log 2 pi + logvar + (x - mean)^2 exp(-logvar)))
            out = self.net(z)
            backend = self.backend if out.dtype in (torch.float32, torch.float64) else "torch"
            return gaussian_loglik(out, x.to(out.dtype), self.min_logvar, backend=backend)
        mean, _ = self(z)
        return -F.binary_cross_entropy_with_logits(mean, x, reduction="none").sum(-1)

    def mean(self, z):
        """The decoded image: the Gaussian mean, or the Bernoulli probabilities."""
        mean, _ = self(z)
        return mean if self.likelihood == "gaussian" else torch.sigmoid(mean)


class VAE(nn.Module):
    """The family's shared harness; `model='vae'` is the standard VAE, `model='vsc'` the sparse one.

    One encoder network outputs mu, log sigma^2 and (VSC only) v, with log gamma = min(v, 0) (eq. 12),
    or -softplus(-v) (cfg.spike = "sigmoid"). cfg.prior = "pseudo-inputs" (the authors' UAI 2019 model) or
    "pseudo-mixture" swaps eq. 4's prior for a learned one (priors.py).
    """

    def __init__(self, cfg: TrainConfig, pixels: int):
        super().__init__()
        self.cfg, self.pixels = cfg, pixels
        self.sparse = cfg.model == "vsc"
        heads = 3 if self.sparse else 2
        self.encoder = mlp([pixels, *cfg.hidden, heads * cfg.dim])
        if self.sparse and cfg.gamma_init is not None:
            # log gamma = min(v, 0) has zero gradient wherever v > 0: an element that starts there sits at
            # gamma = 1 until its v drifts below 0 by chance. Starting v at log(gamma_init) < 0 (and its
            # weights small) puts every element where its spike probability can learn.
            with torch.no_grad():
                g = cfg.gamma_init  # v with gamma(v) = gamma_init
                self.encoder[-1].bias[2 * cfg.dim:] = math.log(g) if cfg.spike == "min" else math.log(g / (1 - g))
                self.encoder[-1].weight[2 * cfg.dim:] *= 0.1
        init = cfg.logvar_init if isinstance(cfg.logvar_init, (int, float)) else None
        self.decoder = Decoder(cfg.dim, cfg.hidden, pixels, cfg.likelihood, cfg.min_logvar, init, cfg.backend)
        if cfg.centre:  # the encoder sees x - x_mean (set from the training images when training starts)
            self.register_buffer("x_mean", torch.zeros(pixels))
        self.prior = None  # None: the paper's spike-and-slab prior (eq. 4), inside the fused op
        if self.sparse and cfg.prior in ("pseudo-inputs", "pseudo-mixture"):
            from .priors import PseudoInputPrior

            self.prior = PseudoInputPrior(pixels, cfg.pseudo_inputs, cfg.dim, cfg.alpha, cfg.prior_sharpness,
                                          "selection" if cfg.prior == "pseudo-inputs" else "posterior")

    @torch.no_grad()
    def sample_prior(self, n: int, generator=None) -> torch.Tensor:
        """n ancestral draws z ~ p(z), (n, J) float64 on the CPU: the learned prior's when the run has one,
        else eq. 4 (the VAE's N(0, 1) is eq. 4 at alpha = 1). The API and `vsc figure prior` draw here."""
        if self.prior is not None:
            return self.prior.sample(n, self.encode, self.log_gamma, generator)
        return SpikeSlabPrior(self.cfg.alpha if self.sparse else 1.0, (self.cfg.dim,)).sample(
            (n,), generator=generator, dtype=torch.float64)

    def encode(self, x):
        """Returns (mu, logvar, v); v is None for the VAE (gamma = 1). With cfg.centre the network sees x minus
        the training mean: when the mean image dominates the spread, elements otherwise split into always-on
        ones (aligned with the mean) and dead ones. cfg.encoder_scale then multiplies it."""
        if self.cfg.centre:
            x = x - self.x_mean
        if isinstance(self.cfg.encoder_scale, (int, float)):  # resolved from "data" when training starts
            x = x * self.cfg.encoder_scale
        out = self.encoder(x)
        if self.sparse:
            return out.chunk(3, dim=-1)
        mu, logvar = out.chunk(2, dim=-1)
        return mu, logvar, None

    def log_gamma(self, v):
        """log gamma from the encoder's v: eq. 12 (min(v, 0)), or -softplus(-v) with cfg.spike = 'sigmoid'."""
        return log_gamma_sigmoid(v) if self.cfg.spike == "sigmoid" else log_gamma_from_v(v)

    def gamma(self, v):
        return torch.exp(self.log_gamma(v))

    def forward(self, x, c: float, generator=None, hard: bool = False, lam: float = 1.0, alpha: float | None = None):
        """The ELBO terms (elbo_terms); DistributedDataParallel synchronises gradients through forward."""
        return self.elbo_terms(x, c, generator, hard, lam, alpha)

    def elbo_terms(self, x, c: float, generator=None, hard: bool = False, lam: float = 1.0,
                   alpha: float | None = None):
        """One-sample ELBO estimate (eq. 11), per image, as named terms.

        Returns a dict of (B,) tensors: recon = log p(x|z), kl_slab, kl_spike, elbo, and `active`,
        the expected fraction of non-zero latent elements (mean gamma; 1 for the VAE), and for the VSC
        `gamma`, the (B, J) spike probabilities (the one entry that is not per image).
        `hard=True` draws the spike exactly (the step T of eq. 25, c = infinity) instead of the
        relaxed sigmoid: the estimate is then of the true ELBO of q in eq. 5; evaluation uses it.
        `lam` < 1 scales the sample's slab parameters (spike pre-training, lambda_schedule); the KL never.
        `alpha` overrides cfg.alpha in the KL (alpha annealing, alpha_schedule); evaluation never passes it.
        With the pseudo-input prior, the KLs are against it, `kl_rate` is its average-rate term and
        `objective` = elbo - kl_rate is what training maximises; `elbo_paper_prior` is always the ELBO
        of the same q and decoder under the paper's prior (eq. 4), so that recipes compare.
        """
        mu, logvar, v = self.encode(x)
        eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device, generator=generator)
        kl_paper = kl_rate = None
        if self.sparse:
            eta = torch.rand(mu.shape, dtype=mu.dtype, device=mu.device, generator=generator)
            # the op takes log gamma in place of v: min(., 0) (eq. 12) leaves a log gamma <= 0 unchanged
            lg = self.log_gamma(v)
            z, kl_slab, kl_spike = spike_slab(mu, logvar, v if self.cfg.spike == "min" else lg, eps, eta,
                                              math.inf if hard else c,
                                              self.cfg.alpha if alpha is None else alpha, backend=self.cfg.backend)
            if lam < 1.0 and not hard:  # pre-training: the op's KLs stand, its z is replaced
                z = spike_slab_sample_scaled(mu, logvar, lg, eps, eta, c, lam)
            gamma = torch.exp(lg)
            active = gamma.mean(-1)
            if self.prior is not None:  # a learned prior: the op's KLs are the paper prior's, kept for comparison
                kl_paper = kl_slab + kl_spike
                kl_slab, kl_spike, kl_rate = self.prior.kl(x, mu, logvar, lg, self.encode, self.log_gamma, alpha)
        else:
            gamma = None
            z = mu + torch.exp(0.5 * logvar) * eps
            kl_slab = 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).sum(-1)
            kl_spike = torch.zeros_like(kl_slab)
            active = torch.ones_like(kl_slab)
        recon = self.decoder.log_likelihood(x, z)
        terms = {"elbo": recon - kl_slab - kl_spike, "recon": recon, "kl_slab": kl_slab,
                 "kl_spike": kl_spike, "active": active}
        if gamma is not None:  # (B, J), for training terms on the batch's rates (regularisers.py); not logged
            terms["gamma"] = gamma
        if kl_rate is not None:
            terms.update(elbo_paper_prior=recon - kl_paper, kl_rate=kl_rate, objective=terms["elbo"] - kl_rate)
        return terms
