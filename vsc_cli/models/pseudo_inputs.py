"""Learned spike-and-slab priors (`--prior pseudo-inputs` / `pseudo-mixture`), beyond the paper's eq. 4.

PseudoInputPrior: the prior of the authors' UAI 2019 code (ftonolini45/Variational_Sparse_Coding,
models/vae_ss_ss_vamp_ept_sp.py), a different model from the ICLR 2018 paper's. K learned pseudo-images u_k
pass through the same encoder and give spike-and-slab components (mu_pk, sigma_pk^2, gamma_pk), with the
spike probabilities sharpened towards 0/1: gamma_pk = S(nu (gamma(u_k) - 1/2)). A selection network gives
each image x weights w_k(x) = s_k / sum_k s_k, s = S(W x + b). The image's KL is the weighted expectation
of the per-component KLs (an upper bound on the KL to the mixture, by convexity):
    KL(x) = sum_k w_k(x) sum_j [gamma_j KL(N(mu_j, sigma_j^2) || N(mu_pkj, sigma_pkj^2)) + KL(Bern(gamma_j) || Bern(gamma_pkj))]
and alpha only sets the *average* rate, through J KL(Bern(g(x)) || Bern(alpha)) with
g(x) = mean_j sum_k w_k(x) gamma_pkj (the "rate" term, added to the training loss). Switching an element
on then costs little for an image whose similar pseudo-inputs use it.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vsc_kernels import SpikeSlab, SpikeSlabPrior, kl_bernoulli, kl_spike_slab

from vsc_cli.models.distributions import draw_and_kl, register


class PseudoInputPrior(nn.Module):
    """The authors' prior above: each image's KL weighs the components by the selection network's w_k(x)."""

    # how the pair's terms beyond the family's enter (models/vae.py): the rate term is subtracted from the ELBO in
    # what training maximises; and recon - kl_paper is the ELBO of the same q and decoder under the paper's prior
    penalties = ("kl_rate",)
    other_elbos = {"elbo_paper_prior": "kl_paper"}

    def __init__(self, pixels: int, K: int, dim: int, alpha: float, sharpness: float):
        super().__init__()
        self.dim, self.alpha, self.sharpness = dim, alpha, sharpness
        bound = math.sqrt(6.0 / (K + pixels))  # Xavier-uniform, as the authors' code
        self.u = nn.Parameter(torch.empty(K, pixels).uniform_(-bound, bound))
        self._init_weights(pixels, K)

    def _init_weights(self, pixels: int, K: int):
        self.select = nn.Linear(pixels, K)
        nn.init.xavier_uniform_(self.select.weight)
        nn.init.zeros_(self.select.bias)

    @classmethod
    def from_config(cls, cfg, pixels: int, posterior):
        return cls(pixels, cfg.pseudo_inputs, cfg.dim, cfg.alpha, cfg.prior_sharpness).bind(posterior)

    def bind(self, posterior):
        """The components are the model's own posterior of the pseudo-inputs: keep its x -> q(z|x) as a plain
        attribute, so that the model is not registered as a submodule of its prior."""
        self.__dict__["_posterior"] = posterior
        return self

    def components(self):
        """(mu_p, logvar_p, log gamma_p, log(1 - gamma_p)), each (K, J), from the pseudo-inputs."""
        q = self._posterior(self.u)
        a = self.sharpness * (q.gamma - 0.5)
        return q.mu, q.logvar, F.logsigmoid(a), F.logsigmoid(-a)

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size(), generator=None, dtype=torch.float64):
        """n ancestral draws of the learned prior: a component k chosen with weight 1/K (the mixture's weights
        for PseudoMixturePrior; the authors' weights depend on an image, and with none given every pseudo-input is
        equally likely), then per element z = Bern(gamma_pk) * N(mu_pk, sigma_pk^2)."""
        (n,) = sample_shape
        mu_p, logvar_p, lg_p, _ = self.components()
        mu_p, logvar_p, gamma_p = mu_p.cpu().to(dtype), logvar_p.cpu().to(dtype), torch.exp(lg_p).cpu().to(dtype)
        k = torch.randint(len(mu_p), (n,), generator=generator)
        on = torch.rand(n, self.dim, generator=generator, dtype=dtype) < gamma_p[k]
        eps = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        return on.to(dtype) * (mu_p[k] + torch.exp(0.5 * logvar_p[k]) * eps)

    def combine(self, x, slab, spike):
        """Per image: the (B, K) weights of the components and the slab and spike KLs, from the per-component
        (B, K, J) ones: the selection weights w_k(x) = s_k / sum_k s_k, s = S(W x + b)."""
        s = torch.sigmoid(self.select(x))
        w = s / s.sum(-1, keepdim=True)
        return w, torch.einsum("bk,bkj->b", w, slab), torch.einsum("bk,bkj->b", w, spike)

    def kl(self, x, q: SpikeSlab, alpha: float | None = None):
        """Per image (B,) of q(z|x): the weighted slab and spike KLs, and the rate term
        J KL(Bern(g(x)) || Bern(alpha)) (alpha: this one instead of the prior's own, when annealed)."""
        mu_p, logvar_p, lg_p, l1m_p = self.components()
        slab, spike = kl_spike_slab(q.mu[:, None], q.logvar[:, None], q.log_gamma[:, None],
                                    mu_p[None], logvar_p[None], lg_p[None], l1m_p[None])  # (B, K, J)
        w, kl_slab, kl_spike = self.combine(x, slab, spike)
        rate = (w @ torch.exp(lg_p)).mean(-1)  # g(x): the prior's mean spike rate for this image
        return kl_slab, kl_spike, self.dim * kl_bernoulli(rate, self.alpha if alpha is None else alpha)


class PseudoMixturePrior(PseudoInputPrior):
    """Not in either paper: the same components as a proper mixture prior with equal weights 1/K, and the KL
    bounded by
        KL(q || sum_k p_k / K) <= -log sum_k exp(-KL(q || p_k)) / K
    (Jensen with the optimal responsibilities r_k ∝ exp(-KL(q || p_k)), which also replace w_k(x) in the rate
    term). An image then pays for the component that fits it best, so components compete for images."""

    def _init_weights(self, pixels: int, K: int):  # no selection network
        pass

    def combine(self, x, slab, spike):
        slab_k = slab.sum(-1)
        kl_k = slab_k + spike.sum(-1)  # (B, K): KL(q || p_k)
        w = torch.softmax(-kl_k, dim=-1)  # the responsibilities r_k
        total = math.log(kl_k.shape[1]) - torch.logsumexp(-kl_k, dim=-1)
        kl_slab = (w * slab_k).sum(-1)  # reported split of the bound: its slab part, and the rest
        return w, kl_slab, total - kl_slab


@register(SpikeSlab, PseudoInputPrior)
def _spike_slab_pseudo_inputs(q: SpikeSlab, p: PseudoInputPrior, x, step, generator, backend):
    """The sample and the paper prior's KL from the fused pair (kept as kl_paper, so that recipes compare),
    then the KL terms against the learned prior and its rate term."""
    z, paper = draw_and_kl(q, SpikeSlabPrior(step.alpha), x, step, generator, backend)
    kl_slab, kl_spike, kl_rate = p.kl(x, q, step.alpha)
    return z, {"kl_slab": kl_slab, "kl_spike": kl_spike, "kl_rate": kl_rate,
               "kl_paper": paper["kl_slab"] + paper["kl_spike"]}
