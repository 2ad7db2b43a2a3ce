"""Priors beyond the paper's. The paper's (eq. 4, alpha N(0,1) + (1 - alpha) delta(0) per element) lives in
the fused kernels; this module holds the learned one of the authors' later version.

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
    """weights = "selection": the authors' model above. weights = "posterior" (not in either paper): the same
    components as a proper mixture prior with equal weights 1/K, and the KL bounded by
        KL(q || sum_k p_k / K) <= -log sum_k exp(-KL(q || p_k)) / K
    (Jensen with the optimal responsibilities r_k ∝ exp(-KL(q || p_k)), which also replace w_k(x) in the
    rate term). An image then pays for the component that fits it best, so components compete for images."""

    def __init__(self, pixels: int, K: int, dim: int, alpha: float, sharpness: float, weights: str = "selection"):
        super().__init__()
        self.dim, self.alpha, self.sharpness, self.mode = dim, alpha, sharpness, weights
        bound = math.sqrt(6.0 / (K + pixels))  # Xavier-uniform, as the authors' code
        self.u = nn.Parameter(torch.empty(K, pixels).uniform_(-bound, bound))
        if weights == "selection":
            self.select = nn.Linear(pixels, K)
            nn.init.xavier_uniform_(self.select.weight)
            nn.init.zeros_(self.select.bias)

    def bind(self, encode, log_gamma):
        """The components are the model's own encoder applied to the pseudo-inputs: keep its encode (x ->
        mu, logvar, v) and log gamma (v -> log gamma) as plain attributes, so that the model is not
        registered as a submodule of its prior."""
        self.__dict__["_encode"], self.__dict__["_log_gamma"] = encode, log_gamma
        return self

    def weights(self, x):
        """(B, K) selection weights w_k(x), each row summing to 1 (weights = "selection")."""
        s = torch.sigmoid(self.select(x))
        return s / s.sum(-1, keepdim=True)

    def components(self):
        """(mu_p, logvar_p, log gamma_p, log(1 - gamma_p)), each (K, J), from the pseudo-inputs."""
        mu_p, logvar_p, v_p = self._encode(self.u)
        a = self.sharpness * (torch.exp(self._log_gamma(v_p)) - 0.5)
        return mu_p, logvar_p, F.logsigmoid(a), F.logsigmoid(-a)

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size(), generator=None, dtype=torch.float64):
        """n ancestral draws of the learned prior: a component k chosen with weight 1/K (the mixture's weights
        with weights = "posterior"; with "selection" the authors' weights depend on an image, and with none
        given every pseudo-input is equally likely), then per element z = Bern(gamma_pk) * N(mu_pk, sigma_pk^2)."""
        (n,) = sample_shape
        mu_p, logvar_p, lg_p, _ = self.components()
        mu_p, logvar_p, gamma_p = mu_p.cpu().to(dtype), logvar_p.cpu().to(dtype), torch.exp(lg_p).cpu().to(dtype)
        k = torch.randint(len(mu_p), (n,), generator=generator)
        on = torch.rand(n, self.dim, generator=generator, dtype=dtype) < gamma_p[k]
        eps = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        return on.to(dtype) * (mu_p[k] + torch.exp(0.5 * logvar_p[k]) * eps)

    def kl(self, x, q: SpikeSlab, alpha: float | None = None):
        """Per image (B,) of q(z|x): the weighted slab and spike KLs, and the rate term
        J KL(Bern(g(x)) || Bern(alpha)) (alpha: this one instead of the prior's own, when annealed)."""
        mu_p, logvar_p, lg_p, l1m_p = self.components()
        slab, spike = kl_spike_slab(q.mu[:, None], q.logvar[:, None], q.log_gamma[:, None],
                                    mu_p[None], logvar_p[None], lg_p[None], l1m_p[None])  # (B, K, J)
        if self.mode == "selection":
            w = self.weights(x)
            kl_slab = torch.einsum("bk,bkj->b", w, slab)
            kl_spike = torch.einsum("bk,bkj->b", w, spike)
        else:
            slab_k = slab.sum(-1)
            kl_k = slab_k + spike.sum(-1)  # (B, K): KL(q || p_k)
            w = torch.softmax(-kl_k, dim=-1)  # the responsibilities r_k
            total = math.log(kl_k.shape[1]) - torch.logsumexp(-kl_k, dim=-1)
            kl_slab = (w * slab_k).sum(-1)  # reported split of the bound: its slab part, and the rest
            kl_spike = total - kl_slab
        rate = (w @ torch.exp(lg_p)).mean(-1)  # g(x): the prior's mean spike rate for this image
        return kl_slab, kl_spike, self.dim * kl_bernoulli(rate, self.alpha if alpha is None else alpha)


@register(SpikeSlab, PseudoInputPrior)
def _spike_slab_pseudo_inputs(q: SpikeSlab, p: PseudoInputPrior, step, generator):
    """The sample and the paper prior's KL from the fused pair (kept as kl_paper, so that recipes compare),
    then the KL terms against the learned prior and its rate term. q.x is the image q was encoded from."""
    z, paper = draw_and_kl(q, SpikeSlabPrior(step.alpha), step, generator)
    kl_slab, kl_spike, kl_rate = p.kl(q.x, q, step.alpha)
    return z, {"kl_slab": kl_slab, "kl_spike": kl_spike, "kl_rate": kl_rate,
               "kl_paper": paper["kl_slab"] + paper["kl_spike"]}
