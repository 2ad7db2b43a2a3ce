"""The standard VAE's family: q(z|x) = N(mu, sigma^2) per element and the prior N(0, 1) (eq. 4 at alpha = 1)."""
from __future__ import annotations

import torch
from torch.distributions import constraints

from vsc_kernels import SpikeSlabPrior, kl_slab

from vsc_cli.models.distributions import Posterior, register


class Normal(Posterior):
    """The VAE's q(z|x) = N(mu, sigma^2) per element, parameterised as the encoder outputs it (mu, log sigma^2)."""

    arg_constraints = {"mu": constraints.real, "logvar": constraints.real}
    support = constraints.real
    has_rsample = True
    terms = {"kl_slab": "KL"}  # eq. 21 summed over elements: the Gaussian's one KL term
    title = "VAE"

    def __init__(self, mu, logvar):
        self.mu, self.logvar = mu, logvar
        super().__init__(batch_shape=mu.shape, validate_args=False)

    @classmethod
    def from_heads(cls, heads, cfg):
        return cls(*heads)

    @classmethod
    def make_prior(cls, cfg, pixels, posterior):
        return StandardNormal((cfg.dim,))

    @property
    def mean(self):
        return self.mu

    @property
    def gamma(self):
        """P(z_j != 0): 1."""
        return torch.ones_like(self.mu)

    def rsample(self, sample_shape=torch.Size(), generator=None):
        """z = mu + sigma eps."""
        eps = torch.randn(self._extended_shape(sample_shape), dtype=self.mu.dtype, device=self.mu.device,
                          generator=generator)
        return self.mu + torch.exp(0.5 * self.logvar) * eps

    def active_fraction(self, z=None):
        """Every element of a Gaussian draw is non-zero: 1 per image."""
        return torch.ones(self.mu.shape[:-1], dtype=self.mu.dtype, device=self.mu.device)


class StandardNormal(SpikeSlabPrior):
    """The VAE's prior N(0, 1): eq. 4 at alpha = 1 (so it samples as SpikeSlabPrior does)."""

    def __init__(self, shape=torch.Size()):
        super().__init__(1.0, shape)


@register(Normal, StandardNormal)
def _normal_standard(q: Normal, p, x, step, generator, backend):
    """z = mu + sigma eps; KL(N(mu, sigma^2) || N(0, 1)) summed over elements (eq. 21), no spike term."""
    z = q.rsample(generator=generator)
    kl = kl_slab(q.mu, q.logvar).sum(-1)
    return z, {"kl_slab": kl}
