"""Training terms beyond the ELBO (not in the paper): each is added to the loss, never to the reported ELBO.
The aggregate spike-rate term below, and the KL's weight in the loss (KLWeight: warm-up times beta).

The aggregate spike-rate term. Averaged over the data, the spike KL of eq. 9 splits ("ELBO surgery",
Hoffman & Johnson 2016; beta-TCVAE, Chen et al. 2018):
    E_x KL(q(s|x) || p(s)) = I(x; s) + TC(s) + sum_j KL(Bern(gbar_j) || Bern(alpha)),
with gbar_j = E_x gamma_j(x) the rate at which element j is on over the data. For a given number of active
elements per image the ELBO pays the same whether every image switches on one shared subset or each image
its own; weighting the last, dimension-wise term breaks the tie: an element on for every image costs
ln(1/alpha) per image, one that is on for a few images little. The term is

    R = beta * sum_j KL(Bern(gbar_j) || Bern(target)),   gbar_j = mean over the batch of gamma_j(x),

with target the prior's alpha at that iteration (or a fixed rate). Under torchrun gbar_j is the mean over
every process's batch, so the term is that of the whole batch (trainers.dist.global_mean).
"""
from __future__ import annotations

import torch

from vsc_kernels import kl_bernoulli

from vsc_cli.common.registry import FAMILIES


def rate_kl(gbar: torch.Tensor, target: float) -> torch.Tensor:
    """sum_j KL(Bern(gbar_j) || Bern(target)): the term above at the rates gbar (J,) (evaluation reports it over the
    whole test set)."""
    return kl_bernoulli(gbar, target).sum()


def aggregate_rate_kl(gamma: torch.Tensor, target: float, mean=None) -> torch.Tensor:
    """rate_kl of the batch's rates: gbar = gamma's mean over the batch for gamma of shape (B, J) (then
    `mean(gbar)`, e.g. global_mean, when the batch is spread over processes)."""
    gbar = gamma.mean(0)
    if mean is not None:
        gbar = mean(gbar)
    return rate_kl(gbar, target)


class AggregateRate:
    """The term R above as a callable of a step's ELBO terms (they carry the batch's (B, J) gamma)."""

    def __init__(self, weight: float, target: float | None = None, mean=None):
        self.weight, self.target, self.mean = float(weight), target, mean

    def __call__(self, terms: dict, step, x=None) -> torch.Tensor:
        target = step.alpha if self.target is None else self.target
        return self.weight * aggregate_rate_kl(terms["gamma"], target, self.mean)


def spike_entropy(gamma: torch.Tensor) -> torch.Tensor:
    """sum_j H(Bern(gamma_j)) per image, for gamma of shape (B, J): (B,). 1 - gamma is floored at 1e-6 inside the
    log, so that gamma = 1 (eq. 12's v > 0) has a finite gradient."""
    off = 1.0 - gamma
    return -(gamma * torch.log(gamma.clamp_min(1e-30)) + off * torch.log(off.clamp_min(1e-6))).sum(-1)


class DecisiveSpike:
    """The spike-entropy term w E_x sum_j H(Bern(gamma_j(x))) (not in the paper). Eq. 9's spike KL is
    KL(Bern(gamma) || Bern(alpha)) = -H(gamma) + gamma ln(1/alpha) + (1 - gamma) ln(1/(1 - alpha)): its -H rewards
    an uncertain spike, and an element whose gamma sits at alpha for every image pays no KL while carrying nothing
    (its slab at the prior, the decoder ignoring it): measured on natural patches, ~170 of 200 elements sit there
    (docs/results/suite). With w = 1 the entropy cancels and the spike's cost is linear in gamma, the
    ln((1 - alpha) / alpha) per element on of classical sparse coding's L0 penalty, so each image decides each
    element: on or off. Added to the loss only; the reported ELBO is the true one."""

    def __init__(self, weight: float):
        self.weight = float(weight)

    def __call__(self, terms: dict, step, x=None) -> torch.Tensor:
        return self.weight * spike_entropy(terms["gamma"]).mean()


class KLWeight:
    """The KL's weight in the loss: w beta, w = step.kl_weight (the warm-up, Bowman et al. 2016; schedule.py) and
    beta = cfg.kl_weight (a beta-VAE's; Fallah & Rozell weight their KL). The loss -(recon - w beta KL) is
    -ELBO - (1 - w beta) KL, so this term is -(1 - w beta) times the batch's mean KL (slab and spike of eq. 9, or
    the family's own). One term for both, so that their weights multiply. The reported ELBO stays the true one.
    terms: the family's KL terms (Posterior.terms)."""

    def __init__(self, beta: float = 1.0, terms=("kl_slab", "kl_spike")):
        self.beta, self.terms = float(beta), tuple(terms)

    def __call__(self, terms: dict, step, x=None):
        weight = step.kl_weight * self.beta
        if weight == 1.0:
            return 0.0
        if not self.terms:  # a family without a KL (the top-k autoencoder)
            return 0.0
        kl = terms[self.terms[0]]
        for k in self.terms[1:]:
            kl = kl + terms[k]
        return -(1.0 - weight) * kl.mean()


class Sum:
    def __init__(self, parts):
        self.parts = parts

    def __call__(self, terms, step, x=None):
        return sum(p(terms, step, x) for p in self.parts)


def penalty_of(cfg, family=None, mean=None, model=None):
    """The training terms `cfg` switches on, as one callable (terms, step, x) -> a number to add to the loss;
    None when there are none (the paper's recipe). The family's own come first (its `training_terms`: the
    spike-and-slab's aggregate rate term), then the KL's weight, which every family has. mean: how a batch's
    rates are averaged over processes under torchrun (trainers.dist.global_mean), None in one process; model: the
    model being trained, for a family's term that decodes (the top-k family's AuxK)."""
    family = FAMILIES[cfg.model] if family is None else family
    parts = list(family.training_terms(cfg, mean, model))
    if cfg.kl_warmup or cfg.kl_weight != 1.0:
        parts.append(KLWeight(cfg.kl_weight, family.terms))
    return None if not parts else parts[0] if len(parts) == 1 else Sum(parts)
