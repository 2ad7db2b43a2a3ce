"""What a family is: a posterior class (q(z|x)), its prior, and the registered pair that gives a training draw and
its KL. The model, the training loop and the evaluation ask these classes; none of them names a family.

A family's posterior class (a subclass of `Posterior`) says:
  heads           the encoder's outputs per latent element, in order (mu, logvar, and any of its own)
  from_heads      how those outputs become q(z|x) (a distribution holding parameters only)
  make_prior      its p(z) for a run's config
  active          what makes an element active in the codes' statistics: "gamma" (P(z_j != 0) above a
                  threshold) or "nonzero" (non-zero in an exact draw)
  terms           its KL terms and their names in vsc train's report; objective_name: what recon less them is called
  elbo_is_bound   whether recon - KL is an ELBO; uses_alpha: whether eq. 4's alpha is one of its settings;
  takes_recipe    whether recipes fill in its settings; settings: its own settings (config.setting fields:
                  `vsc train --help` lists them under its title, and only its runs take them); check: what
                  else it refuses
  own_defaults    its own values of shared settings not given (over the recipe's)
  init_encoder, training_terms, batch_terms: its starting values, its terms of the loss, its per-batch outputs
and `common.registry.FAMILIES` maps the `--model` value to the class.

`draw_and_kl(q, p, x, step, generator, backend)` looks up the pair's function by the two types (as
torch.distributions' `register_kl`, with the sample added, so that the paper's pair runs as one fused kernel: the
sample of eq. 24 and the KL of eq. 9 in one pass over memory). Each pair function returns (z, terms) with
the family's KL terms per image (B,) (`Posterior.terms`: the VSC's kl_slab and kl_spike, the VAE's kl_slab), and
any further named terms of that pair, which the prior declares (`penalties`, `other_elbos`: models/vae.py; a
learned prior's rate term). x is the image q is of (a learned prior may weigh its components by it); backend is the compute
backend of the fused ops.

The step (schedule.py) says how to draw: its c (eq. 24's sigmoid scale; inf = the exact draw of eq. 25), its
slab scale (spike pre-training) and its alpha, which stands in for the prior's alpha in the KL while a recipe
anneals it (evaluation's Step.evaluation uses the run's own alpha, so reported ELBOs are the model's).
"""
from __future__ import annotations

import torch
from torch.distributions import Distribution

_PAIRS: dict = {}


def register(q_type, p_type):
    """Decorator: fn(q, p, x, step, generator, backend) -> (z, terms) is the pair (q_type, p_type)'s draw and KL."""
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


def draw_and_kl(q, p, x, step, generator=None, backend: str = "torch"):
    """A training (or, with Step.evaluation's step, evaluation) draw z ~ q and the KL terms of q against p:
    (z, terms)."""
    return pair(q, p)(q, p, x, step, generator, backend)


class Posterior(Distribution):
    """The base of a family's q(z|x): the defaults of everything the model and the evaluation ask of a family."""

    heads = ("mu", "logvar")  # the encoder's outputs per latent element, in order
    elbo_is_bound = True  # recon - KL of this family is the ELBO (a lower bound on log p(x))
    not_elbo_because = ""  # why not, where it is not: a few words for vsc train's report
    # what the objective is made of: recon less these terms of the pair's (name -> how vsc train's report calls
    # it), and what the objective is called there. The default: eq. 11's (a family written before families named
    # their terms returns these two); a family returns only its own (log.csv and metrics.json write 0 for a fixed
    # column it lacks)
    terms: dict = {"kl_slab": "slab KL", "kl_spike": "spike KL"}
    objective_name = "ELBO"
    active = "gamma"  # an element is active when P(z_j != 0) exceeds a threshold ("nonzero": in an exact draw)
    uses_alpha = False  # eq. 4's alpha is a setting of this family (run names, metrics, codes files)
    takes_recipe = False  # recipes fill in its settings; a family without them trains with the paper's
    title = ""  # its name in `vsc train --help`'s heading of its settings (the --model value when empty)
    settings: dict = {}  # its own settings: name -> config.setting(...); a run of another family has none of them
    own_defaults: dict = {}  # shared setting -> the value this family trains with when the setting is not given

    @classmethod
    def from_heads(cls, heads: tuple, cfg) -> "Posterior":
        """q(z|x) from the encoder's outputs (one (B, J) tensor per entry of `heads`) and the run's config."""
        raise NotImplementedError

    @classmethod
    def make_prior(cls, cfg, pixels: int, posterior) -> Distribution:
        """p(z) of a run (`posterior`: the model's x -> q(z|x), for priors learned through the encoder)."""
        raise NotImplementedError

    @classmethod
    def init_encoder(cls, layer: torch.nn.Linear, cfg) -> None:
        """Starting values of the encoder's last layer, whose outputs are `heads` in order; the default: torch's."""

    @classmethod
    def training_terms(cls, cfg, mean=None, model=None) -> list:
        """The family's terms of the training loss beyond the ELBO: callables (terms, step, x) -> a number (mean:
        how a batch statistic is averaged over processes under torchrun, None in one process; model: the model
        being trained)."""
        return []

    @classmethod
    def buffers(cls, cfg) -> dict:
        """State the family keeps on the model between steps (saved with it, so a resumed run goes on exactly)."""
        return {}

    @classmethod
    def check(cls, cfg) -> str | None:
        """Why cfg makes no sense for this family, or None (another family's settings it cannot even hold)."""
        return None

    def batch_terms(self) -> dict:
        """Outputs of a batch beside the per-image ELBO terms (e.g. the (B, J) spike probabilities)."""
        return {}

    def active_fraction(self, z) -> torch.Tensor:
        """The expected fraction of non-zero elements per image: the mean of gamma = P(z_j != 0)."""
        return self.gamma.mean(-1)
