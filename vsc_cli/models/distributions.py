"""q(z|x) and p(z) as distribution objects, and the registered pairs that give a training draw and its KL.

A model's encoder output becomes a posterior (`VAE.posterior(x)`), its `prior` is a distribution, and
`draw_and_kl(q, p, step, generator)` looks up the pair's function by their types (as torch.distributions'
`register_kl`, with the sample added, so that the paper's pair runs as one fused kernel: the sample of eq. 24
and the KL of eq. 9 in one pass over memory). Each pair function returns (z, terms) with terms["kl_slab"] and
terms["kl_spike"] per image (B,), and any further named terms of that pair (a learned prior's rate term).

Posteriors:  Normal (the VAE), SpikeSlabPosterior (eq. 5, vsc_kernels.SpikeSlab), Thresholded (thresholded.py);
             each says whether recon - KL is an ELBO (`elbo_is_bound`).
Priors:      StandardNormal (the VAE), SpikeSlabPrior (eq. 4, vsc_kernels), PseudoInputPrior (priors.py).
A new family is one class and one registered pair; the model, the trainer and the evaluation know none of them.

The step (schedule.py) says how to draw: its c (eq. 24's sigmoid scale; inf = the exact draw of eq. 25), its
slab scale lambda (spike pre-training) and its alpha, which stands in for the prior's alpha in the KL while a
recipe anneals it (evaluation's Step.evaluation uses the run's own alpha, so reported ELBOs are the model's).
"""
from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, constraints

from vsc_kernels import SpikeSlab, SpikeSlabPrior, spike_slab, spike_slab_sample_scaled

_PAIRS: dict = {}


def register(q_type, p_type):
    """Decorator: fn(q, p, step, generator) -> (z, terms) is the pair (q_type, p_type)'s draw and KL."""
    def decorate(fn):
        _PAIRS[q_type, p_type] = fn
        return fn
    return decorate


def pair(q, p):
    """The registered function of the most specific pair of (type(q), type(p)) classes."""
    for qt in type(q).__mro__:
        for pt in type(p).__mro__:
            if (qt, pt) in _PAIRS:
                return _PAIRS[qt, pt]
    raise NotImplementedError(f"no draw and KL registered for {type(q).__name__} against {type(p).__name__}")


def draw_and_kl(q, p, step, generator=None):
    """A training (or, with Step.evaluation's step, evaluation) draw z ~ q and the KL terms of q against p:
    (z, terms)."""
    return pair(q, p)(q, p, step, generator)


class Normal(Distribution):
    """The VAE's q(z|x) = N(mu, sigma^2) per element, parameterised as the encoder outputs it (mu, log sigma^2)."""

    arg_constraints = {"mu": constraints.real, "logvar": constraints.real}
    support = constraints.real
    has_rsample = True
    elbo_is_bound = True  # recon - KL of this family is the ELBO (a lower bound on log p(x))

    def __init__(self, mu, logvar):
        self.mu, self.logvar = mu, logvar
        super().__init__(batch_shape=mu.shape, validate_args=False)

    @property
    def mean(self):
        return self.mu

    @property
    def gamma(self):
        """P(z_j != 0): 1."""
        return torch.ones_like(self.mu)

    def active_fraction(self, z=None):
        """The expected fraction of non-zero elements per image: 1 (every element of a Gaussian draw)."""
        return torch.ones(self.mu.shape[:-1], dtype=self.mu.dtype, device=self.mu.device)


class StandardNormal(SpikeSlabPrior):
    """The VAE's prior N(0, 1): eq. 4 at alpha = 1 (so it samples as SpikeSlabPrior does)."""

    def __init__(self, shape=torch.Size()):
        super().__init__(1.0, shape)


class SpikeSlabPosterior(SpikeSlab):
    """The paper's q(z|x) (eq. 5) as the model builds it: vsc_kernels.SpikeSlab, and the fused op's backend."""

    elbo_is_bound = True

    def __init__(self, mu, logvar, v, backend: str = "torch"):
        super().__init__(mu, logvar, v, validate_args=False)
        self.backend = backend

    def active_fraction(self, z=None):
        """E[fraction of non-zero elements] per image: the mean spike probability gamma (appendix E.2)."""
        return self.gamma.mean(-1)


@register(Normal, StandardNormal)
def _normal_standard(q: Normal, p, step, generator):
    """z = mu + sigma eps; KL(N(mu, sigma^2) || N(0, 1)) summed over elements (eq. 21), no spike term."""
    eps = torch.randn(q.mu.shape, dtype=q.mu.dtype, device=q.mu.device, generator=generator)
    z = q.mu + torch.exp(0.5 * q.logvar) * eps
    kl_slab = 0.5 * (q.mu * q.mu + torch.exp(q.logvar) - 1.0 - q.logvar).sum(-1)
    return z, {"kl_slab": kl_slab, "kl_spike": torch.zeros_like(kl_slab)}


@register(SpikeSlab, SpikeSlabPrior)
def _spike_slab_paper(q: SpikeSlab, p: SpikeSlabPrior, step, generator):
    """The paper's pair, one fused kernel (vsc_kernels.spike_slab): z of eq. 24 (eq. 25 when step.exact) and
    eq. 9's two KL terms at the step's alpha. During spike pre-training (lambda < 1) the sample is replaced by
    the slab-scaled one; the KL never depends on lambda."""
    eps = torch.randn(q.mu.shape, dtype=q.mu.dtype, device=q.mu.device, generator=generator)
    eta = torch.rand(q.mu.shape, dtype=q.mu.dtype, device=q.mu.device, generator=generator)
    # q.v is eq. 12's v, or log gamma itself for the sigmoid spike (min(log gamma, 0) leaves it unchanged)
    z, kl_slab, kl_spike = spike_slab(q.mu, q.logvar, q.v, eps, eta, math.inf if step.exact else step.c,
                                      step.alpha, backend=getattr(q, "backend", "torch"))  # a plain SpikeSlab: torch
    if step.lam < 1.0 and not step.exact:
        z = spike_slab_sample_scaled(q.mu, q.logvar, q.log_gamma, eps, eta, step.c, step.lam)
    return z, {"kl_slab": kl_slab, "kl_spike": kl_spike}
