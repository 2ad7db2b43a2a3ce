"""The thresholded Gaussian posterior of Fallah & Rozell, "Variational Sparse Coding with Learned Thresholding"
(ICML 2022; their code kfallah/variational-sparse-coding, model/reparameterization.py and model/vi_encoder.py),
as a family of vsc's: a posterior, its prior and their registered pair (distributions.py).

The draw. A base sample z = mu + n with n = sigma * eps, eps ~ N(0, 1); the noise is soft-thresholded at lambda
and mu added back only where the result is non-zero:
    z = 0                              if |n| <= lambda
    z = mu + sign(n) (|n| - lambda)    otherwise,
so an element is exactly zero when |sigma eps| <= lambda, whatever mu is: the encoder switches an element off by
shrinking sigma below lambda, and P(z_j != 0 | x) = P(|eps| > lambda / sigma) = erfc(lambda / (sigma sqrt 2)),
which plays gamma's part (the specificity metrics, the codes' `gamma`; E[z] = gamma mu exactly, the noise's
shrunk part being symmetric).

The gradient: straight-through. Where z != 0 it is exact (dz/dmu = 1, dz/dsigma = eps); where z = 0 the true
derivative is 0 (z is locally constant) and the base sample's (1, eps) passes instead. Their code's estimator
differs on the non-zero elements: it adds the base's gradient to the thresholded sample's, so mu gets 2 there;
ours is the exact one, which equals theirs up to that factor.

The KL is the base's: KL(N(mu, sigma^2) || N(0, s)) per element, s the prior's variance (their spread_prior,
0.1), summed over elements. It is not the KL of the thresholded distribution (which has an atom at 0 that the
Gaussian prior lacks, so that one is infinite): recon - KL is not a bound on log p(x), whatever its weight.
Their runs weight it by 0.01 (Fashion-MNIST; 1e-4 CelebA) beside a per-pixel mean squared error; vsc's decoder
is a Gaussian with learned variance, so a weight of 1 (`--kl-weight`) is the natural counterpart here.

Not built: the learned threshold (lambda per image and element from a Gamma the encoder parameterises; their
Fashion-MNIST configs all fix lambda), the Laplacian base, and "max" sampling (K draws, only the best trained;
their reported errors are best-of-K, ours are of one draw).

The prior's `sample` pushes N(0, s) through the same threshold: the posterior of an image at mu = 0, sigma^2 = s.
"""
from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, constraints

from vsc_kernels import kl_slab

from vsc_cli.common.config import Float, setting
from vsc_cli.models.distributions import Posterior, register


def threshold_ref(mu, logvar, eps, threshold: float):
    """The forward value, plainly: 0 where |sigma eps| <= lambda, else mu + sign(n) (|n| - lambda)."""
    n = torch.exp(0.5 * logvar) * eps
    return torch.where(n.abs() > threshold, mu + torch.sign(n) * (n.abs() - threshold), torch.zeros_like(mu))


def threshold_sample(mu, logvar, eps, threshold: float):
    """The draw with the straight-through gradient: the value of threshold_ref, the gradient of mu + sigma eps."""
    base = mu + torch.exp(0.5 * logvar) * eps
    return base + (threshold_ref(mu.detach(), logvar.detach(), eps, threshold) - base.detach())


class Thresholded(Posterior):
    """q(z|x): the base N(mu, sigma^2) (mu, logvar = log sigma^2 as the encoder outputs them), thresholded at
    lambda (`threshold`)."""

    arg_constraints = {"mu": constraints.real, "logvar": constraints.real}
    support = constraints.real
    has_rsample = True
    elbo_is_bound = False  # its KL is the base Gaussian's: recon - KL bounds nothing (module docstring)
    not_elbo_because = "the KL is not the posterior's own"
    terms = {"kl_slab": "KL of the base Gaussian"}
    objective_name = "recon - KL"  # not an ELBO
    active = "nonzero"  # elements are non-zero at random (|sigma eps| > lambda): active = non-zero in a draw
    title = "Thresholded"
    settings = {
        "threshold": setting(
            0.52, "lambda; an element is zero when its noise |sigma eps| <= lambda (their Fashion-MNIST value 0.52).",
            Float(0, math.inf, hi_open=True), "beyond the paper", settable=True),
        "prior_variance": setting(
            0.1, "The variance of the Gaussian prior of the base sample (their spread 0.1).",
            Float(0, math.inf, lo_open=True, hi_open=True), "beyond the paper", settable=True),
    }

    def __init__(self, mu, logvar, threshold: float):
        self.mu, self.logvar, self.threshold = mu, logvar, float(threshold)
        super().__init__(batch_shape=mu.shape, validate_args=False)

    @classmethod
    def from_heads(cls, heads, cfg):
        mu, logvar = heads
        return cls(mu, logvar, cfg.threshold)

    @classmethod
    def make_prior(cls, cfg, pixels, posterior):
        return ThresholdedPrior(cfg.prior_variance, cfg.threshold, (cfg.dim,))

    @property
    def gamma(self):
        """P(z_j != 0 | x) = erfc(lambda / (sigma sqrt 2))."""
        return torch.special.erfc(self.threshold * torch.exp(-0.5 * self.logvar) / math.sqrt(2.0))

    @property
    def mean(self):
        """E[z] = gamma mu (the thresholded noise is symmetric): the deterministic code."""
        return self.gamma * self.mu

    def rsample(self, sample_shape=torch.Size(), generator=None):
        eps = torch.randn(self._extended_shape(sample_shape), dtype=self.mu.dtype, device=self.mu.device,
                          generator=generator)
        return threshold_sample(self.mu, self.logvar, eps, self.threshold)

    def active_fraction(self, z):
        """The fraction of non-zero elements of the draw z, per image (measured, not expected)."""
        return (z != 0).to(z.dtype).mean(-1)


class ThresholdedPrior(Distribution):
    """p(z): N(0, spread) per element (spread: the variance), through the same soft threshold (for sampling); its
    KL is the base's."""

    arg_constraints = {}
    support = constraints.real

    def __init__(self, variance: float, threshold: float, shape=torch.Size()):
        self.spread, self.threshold = float(variance), float(threshold)  # (Distribution has a `variance` property)
        super().__init__(batch_shape=torch.Size(shape), validate_args=False)

    def sample(self, sample_shape=torch.Size(), generator=None, dtype=torch.float32):
        eps = torch.randn(self._extended_shape(sample_shape), generator=generator, dtype=dtype)
        zero = torch.zeros((), dtype=dtype)
        return threshold_ref(zero, torch.full((), math.log(self.spread), dtype=dtype), eps, self.threshold)


@register(Thresholded, ThresholdedPrior)
def _thresholded(q: Thresholded, p: ThresholdedPrior, x, step, generator, backend):
    """One draw (the same at evaluation: the threshold has no relaxation to anneal) and the base's KL, reported
    as kl_slab (there is no separate spike term)."""
    z = q.rsample(generator=generator)
    kl = kl_slab(q.mu, q.logvar, p.spread).sum(-1)
    return z, {"kl_slab": kl}
