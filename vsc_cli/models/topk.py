"""The top-k sparse autoencoder as a family of vsc's (Makhzani & Frey 2013, "k-Sparse Autoencoders"; Gao et al.
2024, "Scaling and evaluating sparse autoencoders"): the sparse coder most people reach for today, beside VSC.

The encoder's one head per element is a pre-activation a; the code keeps the k largest per image and passes them
through a ReLU:
    z_j = max(a_j, 0)   if a_j is among the k largest of the image's a,
    z_j = 0             otherwise,
so at most k elements are non-zero. The code is deterministic: q(z|x) is a point mass at z. As a distribution of
vsc's: mu = max(a, 0) (each element's value were it kept), log sigma^2 = -inf (no spread), gamma = 1 on the kept,
positive elements and 0 elsewhere, and the code E[z] = gamma mu = z. The gradient is the ReLU's on the kept
elements and 0 on the others (the selection is piecewise constant).

There is no prior and no KL: training maximises the reconstruction's log-likelihood alone (Gaussian, as the other
families, or Bernoulli), so "recon - KL" is the reconstruction term and bounds nothing. A prior sample is refused.

AuxK (Gao et al.; `--aux-k`, on by default): latents that fired in none of the last `--dead-after` training images
are dead; each step the dead latents' AUX_K largest pre-activations (through the ReLU) are added to the code and
asked to reconstruct what the code misses, with the loss ||x - dec(z + z_aux)||^2 / ||x - dec(z)||^2 weighted 1/32
(their normalised MSE of the residual; with a nonlinear decoder the residual is reconstructed through it, z held
fixed). The count of images since each latent fired is kept on the model (`since_fired`), so a resumed run goes on
exactly; under torchrun it counts rank 0's images (buffers are broadcast from rank 0).

Not built: BatchTopK (k per batch rather than per image).
"""
from __future__ import annotations

import math
from functools import cached_property

import torch
from torch.distributions import Distribution, constraints

from vsc_cli.common.errors import VscError
from vsc_cli.common.config import Int, setting
from vsc_cli.models.distributions import Posterior, register


class TopK(Posterior):
    """q(z|x): a point mass at the top-k code of the encoder's pre-activations (module docstring)."""

    heads = ("pre",)
    arg_constraints = {"pre": constraints.real}
    support = constraints.real
    has_rsample = True
    elbo_is_bound = False  # no KL: the objective is the reconstruction alone
    not_elbo_because = "an autoencoder has no KL"
    terms: dict = {}  # no KL
    objective_name = "reconstruction"
    title = "Top-k"
    settings = {
        "k": setting(10, "The number of latent elements kept per image.", Int(1, 1 << 20), "beyond the paper",
                     settable=True),
        "aux_k": setting(
            None, "AuxK (Gao et al. 2024): each step, the dead latents' AUX_K largest pre-activations reconstruct "
            "what the code misses, weighted 1/32, so that dead latents come back. 0 = off.", Int(0, 1 << 20),
            "beyond the paper", settable=True, shown_default="half of --dim"),
        "dead_after": setting(
            10_000, "A latent not active in this many training images in a row counts as dead (AuxK).", Int(1),
            "beyond the paper", settable=True),
    }
    # Gao et al.'s input handling: the encoder sees x minus the training mean (their pre-encoder bias) at unit scale
    # (they scale inputs to a fixed norm). Without it the mean image dominates every pre-activation and the same k
    # latents win for every image (the runs that show it: docs/results/features/README.md, "Top-k's input handling")
    own_defaults = {"centre": True, "encoder_scale": "data"}

    def __init__(self, pre, k: int):
        self.pre, self.k = pre, int(k)
        super().__init__(batch_shape=pre.shape, validate_args=False)

    @classmethod
    def from_heads(cls, heads, cfg):
        (pre,) = heads
        return cls(pre, cfg.k)

    @classmethod
    def make_prior(cls, cfg, pixels, posterior):
        return NoPrior((cfg.dim,))

    @classmethod
    def buffers(cls, cfg):
        return {"since_fired": torch.zeros(cfg.dim)} if aux_k(cfg) else {}

    @classmethod
    def training_terms(cls, cfg, mean=None, model=None):
        return [AuxK(model, aux_k(cfg), cfg.k, cfg.dead_after)] if aux_k(cfg) and model is not None else []

    def batch_terms(self):
        """gamma (which latents fired) and the pre-activations, for AuxK."""
        return {"gamma": self.gamma, "pre": self.pre}

    @classmethod
    def check(cls, cfg):
        if cfg.k > cfg.dim:
            return f"--k {cfg.k} is more than the {cfg.dim} latent dimensions (--dim)"
        return None

    @property
    def mu(self):
        return torch.relu(self.pre)

    @property
    def logvar(self):
        return torch.full_like(self.pre, -math.inf)  # a point mass: no spread

    @cached_property
    def kept(self):
        """(B, J) 0/1: the k largest pre-activations of each image (found once per distribution: the draw, gamma
        and the batch outputs all read it)."""
        idx = torch.topk(self.pre, min(self.k, self.pre.shape[-1]), dim=-1).indices
        return torch.zeros_like(self.pre).scatter(-1, idx, 1.0)

    @property
    def gamma(self):
        """P(z_j != 0 | x): 1 on the kept elements with a positive pre-activation, else 0."""
        return self.kept * (self.pre > 0).to(self.pre.dtype)

    @property
    def mean(self):
        return self.rsample()

    def rsample(self, sample_shape=torch.Size(), generator=None):
        """The code itself (no noise): the kept elements through the ReLU."""
        return self.kept * torch.relu(self.pre)


def aux_k(cfg) -> int:
    """AuxK's number of dead latents used per image: --aux-k, by default half the latent dimensions (0 = off)."""
    return cfg.dim // 2 if cfg.aux_k is None else cfg.aux_k


class AuxK:
    """Gao et al.'s auxiliary loss (module docstring), a training term (terms, step, x) -> a number."""

    WEIGHT = 1.0 / 32  # theirs

    def __init__(self, model, k_aux: int, k: int, dead_after: int):
        self.model, self.k_aux, self.k, self.dead_after = model, int(k_aux), int(k), int(dead_after)

    def __call__(self, terms: dict, step, x=None):
        pre, since = terms["pre"], self.model.since_fired
        with torch.no_grad():  # count the images since each latent last fired
            since.add_(pre.shape[0])
            since.masked_fill_((terms["gamma"] > 0).any(0), 0)
            dead = since >= self.dead_after
        n_dead = int(dead.sum())
        if n_dead == 0 or x is None:
            return 0.0
        masked = torch.where(dead, pre, torch.full_like(pre, -math.inf))
        idx = torch.topk(masked, min(self.k_aux, n_dead), dim=-1).indices
        z_aux = torch.zeros_like(pre).scatter(-1, idx, torch.relu(pre.gather(-1, idx)))
        z = TopK(pre, self.k).rsample().detach()
        decode = self.model.decoder.mean
        with torch.no_grad():
            missed = ((x - decode(z)) ** 2).sum(-1)
        aux = ((x - decode(z + z_aux)) ** 2).sum(-1)
        return self.WEIGHT * (aux / missed.clamp_min(1e-12)).mean()


class NoPrior(Distribution):
    """The top-k autoencoder's stand-in for p(z): there is none, so sampling from it is an error."""

    arg_constraints = {}
    support = constraints.real

    def __init__(self, shape=torch.Size()):
        super().__init__(batch_shape=torch.Size(shape), validate_args=False)

    def sample(self, sample_shape=torch.Size(), generator=None, dtype=torch.float32):
        raise VscError("a top-k autoencoder has no prior to sample from (--model topk); "
                       "decode codes of images instead (vsc figure codes / alter)")


@register(TopK, NoPrior)
def _topk(q: TopK, p: NoPrior, x, step, generator, backend):
    """The code (the same in training and evaluation) and no KL."""
    return q.rsample(), {}
