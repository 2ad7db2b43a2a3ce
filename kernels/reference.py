"""Pure-torch reference of the spike-and-slab recognition model (paper section 3, appendices B, C).

This file is the contract: every compiled kernel (Numba CPU, numba.cuda) is tested against
`spike_slab_ref` for values and gradients. It is written for clarity, not speed.

Notation (paper): for one image i and latent element j
  mu, logvar   the slab's Gaussian N(mu, sigma^2), with logvar = log sigma^2
  v            the encoder's third output; log gamma = -ReLU(-v) = min(v, 0)     (eq. 12)
  gamma        the spike probability, P(z_j != 0)
  alpha        the prior spike probability                                       (eq. 4)
  eps ~ N(0,1), eta ~ U(0,1) the reparameterisation noise                         (eq. 24)
  c            the sigmoid's scale, raised from 50 to 200 during training        (C.2)

Numerical choices, each the only departure from the equations:
  * log gamma is min(v, 0) exactly, never log(exp(.)), so gamma*log(gamma) is finite for any v.
  * 1 - gamma is computed as -expm1(log gamma): exact even when gamma rounds to 1 in float32.
  * (1 - gamma) * log(1 - gamma) is taken as 0 at gamma == 1 (its limit), through a "double
    where" so that neither the value nor the gradient becomes NaN (0 * log 0, 0 * inf).
  * 1 - alpha is floored at ALPHA_FLOOR. Without it alpha = 1 makes the spike KL +inf for every
    gamma < 1 (the true value: q has mass at 0, the prior none). With it, alpha = 1 is a finite,
    very strong push towards gamma = 1, and at gamma = alpha = 1 the spike KL is exactly 0, so
    the KL is exactly the plain VAE's (the paper's remark after eq. 11).
"""
from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, constraints
from torch.distributions.kl import register_kl

ALPHA_FLOOR = 1e-6  # floor on (1 - alpha); only reached for alpha > 1 - 1e-6, i.e. alpha = 1


def log_gamma_from_v(v: torch.Tensor) -> torch.Tensor:
    """Eq. 12: log gamma = -ReLU(-v), i.e. min(v, 0); gamma is in (0, 1]."""
    return -torch.relu(-v)


def log_gamma_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """Not in the paper: log gamma = -softplus(-v), i.e. gamma = S(v). Like eq. 12 it is <= 0, but with no
    flat region: d log gamma / dv = 1 - gamma > 0 everywhere, so an element at gamma ~ 1 can still turn off."""
    return -torch.nn.functional.softplus(-v)


def spike_slab_sample_scaled(mu, logvar, log_gamma, eps, eta, c: float, lam: float):
    """Eq. 24 with the slab's parameters scaled by lambda (spike pre-training): z = S(c (eta - 1 + gamma)) *
    (lam mu + exp(lam logvar / 2) eps). At lam = 0 the slab is N(0, 1) noise, so the decoder learns from
    *which* elements are on; at lam = 1 it is eq. 24. The KL terms do not depend on lambda."""
    selection = torch.sigmoid(c * (eta - 1.0 + torch.exp(log_gamma)))
    return selection * (lam * mu + torch.exp(0.5 * lam * logvar) * eps)


def kl_slab(mu: torch.Tensor, logvar: torch.Tensor, variance: float = 1.0) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, variance)) per element (eq. 21 at variance 1, the paper's slab and the VAE's;
    the thresholded family's prior has another variance)."""
    if variance == 1.0:  # the same formula with log 1 = 0 and the division by 1 left out
        return 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar)
    return 0.5 * (math.log(variance) - logvar + (torch.exp(logvar) + mu * mu) / variance - 1.0)


def kl_bernoulli_logs(log_gamma, log_p, log1m_p, gamma=None):
    """KL(Bernoulli(gamma) || Bernoulli(p)) per element from log gamma (<= 0) and the prior's log p and log(1 - p)
    (numbers or tensors, each exact where it can be): the spike term of eq. 9. (1 - gamma) log(1 - gamma) is 0 at
    gamma = 1, through a double where. gamma: exp(log gamma) when the caller has it (one node for both of eq. 9's
    terms, so that their gradients meet before the exponential's, as eq. 9 written out does)."""
    gamma = torch.exp(log_gamma) if gamma is None else gamma
    one_m_gamma = -torch.expm1(log_gamma)
    positive = one_m_gamma > 0
    safe = torch.where(positive, one_m_gamma, torch.ones_like(one_m_gamma))
    inactive = torch.where(positive, safe * (torch.log(safe) - log1m_p), torch.zeros_like(safe))
    return gamma * (log_gamma - log_p) + inactive


def kl_spike(log_gamma: torch.Tensor, alpha: float) -> torch.Tensor:
    """KL(Bernoulli(gamma) || Bernoulli(alpha)) per element, the spike term of eq. 9 (1 - alpha floored)."""
    return kl_bernoulli_logs(log_gamma, math.log(alpha), math.log(max(1.0 - alpha, ALPHA_FLOOR)))


def kl_spike_slab(mu, logvar, log_gamma, mu_p, logvar_p, log_gamma_p, log1m_gamma_p):
    """Eq. 9 generalised to a prior with per-element spike-and-slab parameters (broadcasting):
        slab  = gamma KL(N(mu, sigma^2) || N(mu_p, sigma_p^2))
        spike = KL(Bern(gamma) || Bern(gamma_p))
    The paper's prior is mu_p = 0, logvar_p = 0, gamma_p = alpha (then slab, spike = kl_terms). The prior's
    log gamma_p and log(1 - gamma_p) are given separately, so that each can be exact (e.g. log-sigmoids);
    they may be tensors or numbers."""
    mu_p, logvar_p, log_gamma_p, log1m_gamma_p = (torch.as_tensor(t, dtype=mu.dtype, device=mu.device)
                                                  for t in (mu_p, logvar_p, log_gamma_p, log1m_gamma_p))
    gamma = torch.exp(log_gamma)
    slab = gamma * 0.5 * (logvar_p - logvar + (torch.exp(logvar) + (mu - mu_p) ** 2) * torch.exp(-logvar_p) - 1.0)
    return slab, kl_bernoulli_logs(log_gamma, log_gamma_p, log1m_gamma_p, gamma)


def kl_bernoulli(p: torch.Tensor, alpha: float) -> torch.Tensor:
    """KL(Bern(p) || Bern(alpha)) from probabilities p in [0, 1] that may be exactly 0 or 1 (rates averaged over
    images, the aggregate rate term): kl_bernoulli_logs needs log p, and a rate of exactly 0 has none. 0 log 0 = 0;
    1 - alpha floored as in kl_spike."""
    log1m_alpha = math.log(max(1.0 - alpha, ALPHA_FLOOR))
    on = torch.where(p > 0, p * (torch.log(torch.where(p > 0, p, torch.ones_like(p))) - math.log(alpha)),
                     torch.zeros_like(p))
    q = 1.0 - p
    off = torch.where(q > 0, q * (torch.log(torch.where(q > 0, q, torch.ones_like(q))) - log1m_alpha),
                      torch.zeros_like(q))
    return on + off


def spike_slab_ref(mu, logvar, v, eps, eta, c: float, alpha: float):
    """The fused operation, in plain torch: sparse sample and KL terms.

    Returns (z, kl_slab_rows, kl_spike_rows):
      z              (B, J)  eq. 24: S(c (eta - 1 + gamma)) * (mu + sigma * eps)
      kl_slab_rows   (B,)    sum_j gamma_j KL(N(mu_j, sigma_j^2) || N(0,1))    (eq. 9, first term)
      kl_spike_rows  (B,)    sum_j KL(Bern(gamma_j) || Bern(alpha))            (eq. 9, second term)
    Autograd gives the gradients with respect to mu, logvar and v.
    c = math.inf gives the exact draw: the step function T of eq. 25 in place of the sigmoid.
    """
    log_gamma = log_gamma_from_v(v)
    gamma = torch.exp(log_gamma)
    if math.isinf(c):
        selection = (eta - 1.0 + gamma >= 0).to(mu.dtype)
    else:
        selection = torch.sigmoid(c * (eta - 1.0 + gamma))
    z = selection * (mu + torch.exp(0.5 * logvar) * eps)
    slab = (gamma * kl_slab(mu, logvar)).sum(-1)
    spike = kl_spike(log_gamma, alpha).sum(-1)
    return z, slab, spike


class SpikeSlab(Distribution):
    """Recognition distribution q(z|x) of eq. 5: per element gamma N(mu, sigma^2) + (1-gamma) delta(0).

    Parameterised as the encoder outputs it: mu, logvar = log sigma^2 and v (log gamma = min(v, 0)).
    `rsample(c=...)` is the relaxed reparameterised draw of eq. 24 (c: the sigmoid's scale, C.2); `sample()` is an exact draw
    (the step function T of eq. 25, i.e. c -> infinity).
    """

    arg_constraints = {"mu": constraints.real, "logvar": constraints.real, "v": constraints.real}
    support = constraints.real
    has_rsample = True

    def __init__(self, mu, logvar, v, validate_args=None):
        self.mu, self.logvar, self.v = torch.broadcast_tensors(mu, logvar, v)
        super().__init__(batch_shape=self.mu.shape, validate_args=validate_args)

    @property
    def log_gamma(self):
        return log_gamma_from_v(self.v)

    @property
    def gamma(self):
        return torch.exp(self.log_gamma)

    @property
    def sigma(self):
        return torch.exp(0.5 * self.logvar)

    @property
    def mean(self):
        """E[z] = gamma * mu: the deterministic sparse code."""
        return self.gamma * self.mu

    def rsample(self, sample_shape=torch.Size(), *, c: float, generator=None):
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.mu.dtype, device=self.mu.device, generator=generator)
        eta = torch.rand(shape, dtype=self.mu.dtype, device=self.mu.device, generator=generator)
        selection = torch.sigmoid(c * (eta - 1.0 + self.gamma))
        return selection * (self.mu + self.sigma * eps)

    def sample(self, sample_shape=torch.Size(), generator=None):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            eps = torch.randn(shape, dtype=self.mu.dtype, device=self.mu.device, generator=generator)
            eta = torch.rand(shape, dtype=self.mu.dtype, device=self.mu.device, generator=generator)
            spike = (eta >= 1.0 - self.gamma).to(self.mu.dtype)  # T(eta - 1 + gamma), eq. 25
            return spike * (self.mu + self.sigma * eps)

    def log_prob(self, value):
        """Log density with respect to Lebesgue measure plus a unit point mass at 0."""
        at_zero = value == 0
        one_m_gamma = -torch.expm1(self.log_gamma)
        slab = self.log_gamma + torch.distributions.Normal(self.mu, self.sigma).log_prob(value)
        return torch.where(at_zero, torch.log(one_m_gamma), slab)


class SpikeSlabPrior(Distribution):
    """The prior p_s(z) of eq. 4: per element alpha N(0, 1) + (1 - alpha) delta(0)."""

    arg_constraints = {"alpha": constraints.half_open_interval(0.0, 1.0)}
    support = constraints.real

    def __init__(self, alpha: float, shape=torch.Size(), validate_args=None):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        super().__init__(batch_shape=torch.Size(shape), validate_args=False)

    def sample(self, sample_shape=torch.Size(), generator=None, dtype=torch.float32):
        """Ancestral draws: N(0, 1) with probability alpha, else 0 (alpha = 1: N(0, 1), the VAE's prior)."""
        shape = self._extended_shape(sample_shape)
        spike = torch.rand(shape, generator=generator, dtype=dtype) < self.alpha
        return spike.to(dtype) * torch.randn(shape, generator=generator, dtype=dtype)

    def log_prob(self, value):
        slab = math.log(self.alpha) + torch.distributions.Normal(0.0, 1.0).log_prob(value)
        return torch.where(value == 0, torch.full_like(value, math.log(max(1 - self.alpha, ALPHA_FLOOR))), slab)


def kl_terms(q: SpikeSlab, alpha: float):
    """Eq. 9 per element, as its two named terms: (gamma * KL_slab, KL_spike)."""
    return q.gamma * kl_slab(q.mu, q.logvar), kl_spike(q.log_gamma, alpha)


@register_kl(SpikeSlab, SpikeSlabPrior)
def _kl_spikeslab_prior(q: SpikeSlab, p: SpikeSlabPrior):
    slab, spike = kl_terms(q, p.alpha)
    return slab + spike
