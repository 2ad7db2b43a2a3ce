"""Encoder, decoder and ELBO of the VSC (paper section 3, appendix A) and of the plain VAE baseline."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vsc_kernels import SpikeSlab, SpikeSlabPrior, gaussian_loglik, log_gamma_from_v, log_gamma_sigmoid

from vsc_cli.common.config import TrainConfig
from vsc_cli.models.distributions import Normal, SpikeSlabPosterior, StandardNormal, draw_and_kl
from vsc_cli.models.schedule import Step
from vsc_cli.models.thresholded import Thresholded, ThresholdedPrior

LOG_2PI = math.log(2 * math.pi)
POSTERIORS = {"vae": Normal, "vsc": SpikeSlabPosterior, "thresholded": Thresholded}  # cfg.model -> q(z|x)


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
    """The family's shared harness; `model='vae'` is the standard VAE, `model='vsc'` the sparse one,
    `model='thresholded'` Fallah & Rozell's thresholded Gaussian (thresholded.py).

    One encoder network outputs mu, log sigma^2 and (VSC only) v, with log gamma = min(v, 0) (eq. 12),
    or -softplus(-v) (cfg.spike = "sigmoid"). cfg.prior = "pseudo-inputs" (the authors' UAI 2019 model) or
    "pseudo-mixture" swaps eq. 4's prior for a learned one (priors.py).
    """

    def __init__(self, cfg: TrainConfig, pixels: int):
        super().__init__()
        self.cfg, self.pixels = cfg, pixels
        self.sparse = cfg.model == "vsc"
        self.family = POSTERIORS[cfg.model]  # q(z|x)'s class: what the metrics may say of recon - KL
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
        # p(z), a distribution with its registered pair (distributions.py): the VAE's N(0, 1), eq. 4, or learned
        if cfg.model == "thresholded":
            self.prior = ThresholdedPrior(cfg.prior_variance, cfg.threshold, (cfg.dim,))
        elif not self.sparse:
            self.prior = StandardNormal((cfg.dim,))
        elif cfg.prior in ("pseudo-inputs", "pseudo-mixture"):
            from vsc_cli.models.pseudo_inputs import PseudoInputPrior

            self.prior = PseudoInputPrior(pixels, cfg.pseudo_inputs, cfg.dim, cfg.alpha, cfg.prior_sharpness,
                                          "selection" if cfg.prior == "pseudo-inputs" else "posterior")
            self.prior.bind(self.encode, self.log_gamma)
        else:
            self.prior = SpikeSlabPrior(cfg.alpha, (cfg.dim,))

    @torch.no_grad()
    def sample_prior(self, n: int, generator=None) -> torch.Tensor:
        """n ancestral draws z ~ p(z) of the run's prior (eq. 4; N(0, 1) for the VAE; the learned one of a
        pseudo-input run), (n, J) float64 on the CPU. The API and `vsc figure prior` draw here."""
        return self.prior.sample((n,), generator=generator, dtype=torch.float64)

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

    def posterior(self, x):
        """q(z|x) as a distribution (distributions.py): Normal for the VAE, SpikeSlab (eq. 5) for the VSC,
        Thresholded for the thresholded model. Each has mu, logvar, gamma (P(z_j != 0)) and mean (E[z])."""
        mu, logvar, v = self.encode(x)
        if self.family is Thresholded:
            q = Thresholded(mu, logvar, self.cfg.threshold)
        elif self.family is Normal:
            q = Normal(mu, logvar)
        else:  # SpikeSlab reads log gamma as min(v, 0) (eq. 12); the sigmoid spike's log gamma is <= 0 already
            q = SpikeSlabPosterior(mu, logvar, v if self.cfg.spike == "min" else self.log_gamma(v), self.cfg.backend)
        q.x = x  # the image q is of (a learned prior's KL may depend on it)
        return q

    def log_gamma(self, v):
        """log gamma from the encoder's v: eq. 12 (min(v, 0)), or -softplus(-v) with cfg.spike = 'sigmoid'."""
        return log_gamma_sigmoid(v) if self.cfg.spike == "sigmoid" else log_gamma_from_v(v)

    def gamma(self, v):
        return torch.exp(self.log_gamma(v))

    def forward(self, x, step: Step, generator=None):
        """The ELBO terms (elbo_terms); DistributedDataParallel synchronises gradients through forward."""
        return self.elbo_terms(x, step, generator)

    def elbo_terms(self, x, step: Step, generator=None):
        """One-sample ELBO estimate (eq. 11), per image, as named terms.

        Returns a dict of (B,) tensors: recon = log p(x|z), kl_slab, kl_spike, elbo, and `active`,
        the expected fraction of non-zero latent elements (mean gamma; 1 for the VAE), and for the VSC
        `gamma`, the (B, J) spike probabilities (the one entry that is not per image).
        step (schedule.py): how to draw (c, lambda) and the KL's alpha; Step.evaluation(alpha) gives the estimate of
        the true ELBO of q in eq. 5 (the exact spike draw of eq. 25); evaluation uses it.
        The draw and the KL come from the (posterior, prior) pair's registered function (distributions.py).
        A pair may add named terms: the pseudo-input prior adds `kl_rate` (its average-rate term) and `kl_paper`
        (the KL under the paper's prior), reported as `objective` = elbo - kl_rate, what training maximises,
        and `elbo_paper_prior`, the ELBO of the same q and decoder under eq. 4, so that recipes compare.
        """
        q = self.posterior(x)
        z, kl = draw_and_kl(q, self.prior, step, generator)
        recon = self.decoder.log_likelihood(x, z)
        terms = {"elbo": recon - kl["kl_slab"] - kl["kl_spike"], "recon": recon, "kl_slab": kl["kl_slab"],
                 "kl_spike": kl["kl_spike"], "active": q.active_fraction(z)}
        if isinstance(q, SpikeSlab):  # (B, J), for training terms on the batch's rates (regularisers.py)
            terms["gamma"] = q.gamma
        if "kl_rate" in kl:
            terms.update(elbo_paper_prior=recon - kl["kl_paper"], kl_rate=kl["kl_rate"],
                         objective=terms["elbo"] - kl["kl_rate"])
        return terms
