"""Training configuration. A checkpoint carries this dataclass as a plain dict."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields


@dataclass
class TrainConfig:
    data: str = "fmnist"  # dataset: mnist | fmnist | celeba, or the absolute path of the user's own data
    image_size: int | None = None  # own data: resize every image to this many pixels square (None: as stored)
    image_shape: list | None = None  # own data: (channels, height, width), filled in when training starts
    model: str = "vsc"  # vsc (spike-and-slab prior) | vae (Gaussian prior, the baseline)
    dim: int = 200  # latent dimensions J
    alpha: float = 0.5  # prior spike probability (eq. 4); ignored by the VAE
    hidden: tuple = (400,)  # hidden layer widths of encoder and decoder (paper D.1: one of 400)
    likelihood: str = "gaussian"  # gaussian (learned per-pixel mean and log-variance, A.1) | bernoulli
    normalisation: str = "unit"  # unit L2 norm per image (D.2) | 01 | none
    iterations: int = 20_000  # optimiser steps (the paper's limit, section 4.1)
    batch_size: int = 256  # images per step; the paper gives none (docs/training.md)
    lr: float = 1e-3  # Adam learning rate (paper D.1: between 0.001 and 0.01)
    c_start: float = 50.0  # sigmoid scale c at the first iteration (C.2)
    c_end: float = 200.0  # ... and at the last one, rising linearly per iteration
    min_logvar: float = -10.0  # soft floor on the decoder's log-variance (see model.py)
    logvar_init: float | str | None = None  # decoder log-variance at the start: None = PyTorch's init (about 0);
    # "data" = log of the training images' mean per-pixel variance (resolved to a number when training starts)
    gamma_init: float | None = None  # VSC: start every spike probability near this value (None: PyTorch's init,
    # which gives v > 0, i.e. gamma = 1 with zero gradient, for about half the latent elements; see model.py)
    spike: str = "min"  # log gamma from the encoder's v: "min" = min(v, 0) (eq. 12); "sigmoid" = -softplus(-v),
    # i.e. gamma = S(v), with no flat region (not in the paper)
    pretrain: int = 0  # spike pre-training (the authors' UAI 2019 code, not the paper): iterations whose sample
    # uses lambda = 0 (z = selection * N(0,1) noise: the decoder sees only which elements are on); 0 = the paper
    pretrain_ramp: int = 0  # ... then lambda rises linearly to 1 over this many iterations
    alpha_start: float | None = None  # anneal the prior's alpha (not in the paper): from this value at the first
    # iteration, falling geometrically to alpha over alpha_anneal iterations (None: alpha throughout)
    alpha_anneal: int = 0  # ... iterations of that fall
    alpha_hold: int = 0  # ... which begins after this many iterations at alpha_start
    prior: str = "spike-slab"  # spike-slab: eq. 4 with alpha | pseudo-inputs: the UAI 2019 learned prior
    # (a different model from the ICLR paper's; see priors.py) | pseudo-mixture: its components as an equal-weight
    # mixture, KL by the log-sum-exp bound (in neither paper; priors.py)
    pseudo_inputs: int = 10  # pseudo-inputs: number of learned pseudo-images K (the authors' code: 10)
    prior_sharpness: float = 10.0  # pseudo-inputs: nu in gamma_p = S(nu (gamma - 1/2)) (the authors' code: 10)
    rate_weight: float = 0.0  # aggregate spike-rate regulariser (not in the paper; vsc_cli/regularisers.py):
    # beta in beta * sum_j KL(Bern(gbar_j) || Bern(target)), gbar_j the batch's mean gamma of element j; 0 = off
    rate_target: float | None = None  # ... its target rate (None: the prior's alpha at that iteration)
    encoder_scale: float | str | None = None  # multiply the encoder's input by this number (not in the paper):
    # "data" = 1 / the training images' mean per-pixel standard deviation, resolved to a number when training
    # starts, so that unit-norm pixels (~0.02) reach the first layer at about unit scale; None = 1
    kl_warmup: int = 0  # iterations over which the KL terms' weight in the loss rises linearly from 0 to 1 (a cure
    # of posterior collapse; Bowman et al. 2016, Sønderby et al. 2016; not in the paper): the loss is then not
    # the ELBO, every reported ELBO is; 0 = off
    centre: bool = False  # feed the encoder x minus the training images' mean (not in the paper; the decoder
    # still outputs the image); the mean is a buffer of the model, saved in its checkpoint
    seed: int = 0  # seeds the initial weights, the batch order and the noise
    train_size: int | None = None  # use only the first N training images (None: all 60,000)
    test_size: int | None = None  # evaluate on the first N test images (None: all 10,000)
    log_every: int = 100  # iterations between rows of log.csv
    checkpoint_every: int = 1000  # iterations between checkpoints
    backend: str = "auto"  # spike-and-slab op: torch | numba | cuda | auto (numba on CPU, cuda on GPU)
    dtype: str = "float32"  # float64 is slower; it makes runs of different backends agree to ~1e-10

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Rebuild from a checkpoint's dict, refusing values no `vsc train` could have written."""
        from .errors import VscError

        if not isinstance(d, dict):
            raise VscError("config is not a mapping")
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        hidden = d.get("hidden", [400])
        if not isinstance(hidden, (list, tuple)) or not hidden or not all(_is_int(h) and h >= 1 for h in hidden):
            raise VscError(f"config entry hidden={hidden!r} is not a list of layer widths")
        d["hidden"] = tuple(hidden)
        cfg = cls(**d)
        for name, ok in _CHECKS.items():
            if not ok(getattr(cfg, name)):
                raise VscError(f"config entry {name}={getattr(cfg, name)!r} is out of range or of the wrong type")
        return cfg


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


_CHECKS = {  # what a checkpoint's config may hold
    "data": lambda v: isinstance(v, str) and v != "",
    "image_size": lambda v: v is None or (_is_int(v) and 1 <= v <= 1 << 14),
    "image_shape": lambda v: v is None or (isinstance(v, list) and len(v) == 3
                                           and all(_is_int(s) and s >= 1 for s in v)),
    "model": lambda v: v in ("vsc", "vae"),
    "dim": lambda v: _is_int(v) and 1 <= v <= 1 << 20,
    "alpha": lambda v: _is_num(v) and 0 < v <= 1,
    "likelihood": lambda v: v in ("gaussian", "bernoulli"),
    "normalisation": lambda v: v in ("unit", "01", "none"),
    "iterations": lambda v: _is_int(v) and v >= 1,
    "batch_size": lambda v: _is_int(v) and v >= 1,
    "lr": lambda v: _is_num(v) and v > 0,
    "c_start": lambda v: _is_num(v) and v > 0,
    "c_end": lambda v: _is_num(v) and v > 0,
    "min_logvar": _is_num,
    "logvar_init": lambda v: v is None or v == "data" or _is_num(v),
    "gamma_init": lambda v: v is None or (_is_num(v) and 0 < v < 1),
    "spike": lambda v: v in ("min", "sigmoid"),
    "pretrain": lambda v: _is_int(v) and v >= 0,
    "pretrain_ramp": lambda v: _is_int(v) and v >= 0,
    "alpha_start": lambda v: v is None or (_is_num(v) and 0 < v <= 1),
    "alpha_anneal": lambda v: _is_int(v) and v >= 0,
    "alpha_hold": lambda v: _is_int(v) and v >= 0,
    "prior": lambda v: v in ("spike-slab", "pseudo-inputs", "pseudo-mixture"),
    "pseudo_inputs": lambda v: _is_int(v) and 1 <= v <= 1 << 16,
    "prior_sharpness": lambda v: _is_num(v) and v > 0,
    "rate_weight": lambda v: _is_num(v) and 0 <= v < math.inf,
    "rate_target": lambda v: v is None or (_is_num(v) and 0 < v < 1),
    "centre": lambda v: isinstance(v, bool),
    "kl_warmup": lambda v: _is_int(v) and v >= 0,
    "encoder_scale": lambda v: v is None or v == "data" or (_is_num(v) and 0 < v < math.inf),
    "seed": _is_int,
    "train_size": lambda v: v is None or (_is_int(v) and v >= 1),
    "test_size": lambda v: v is None or (_is_int(v) and v >= 1),
    "log_every": lambda v: _is_int(v) and v >= 1,
    "checkpoint_every": lambda v: _is_int(v) and v >= 1,
    "backend": lambda v: v in ("auto", "torch", "numba", "cuda"),
    "dtype": lambda v: v in ("float32", "float64"),
}


# Recipes: the TrainConfig fields beyond the paper that `vsc train` fills in when they are not given on the
# command line. The dataclass defaults above are the paper's exact recipe: what `vsc train --paper` and (unless
# told otherwise) `vsc experiment` use, and what a checkpoint of an older vsc without these fields means.
PAPER_RECIPE = {"spike": "min", "pretrain": 0, "pretrain_ramp": 0, "alpha_start": None, "alpha_hold": 0,
                "alpha_anneal": 0, "prior": "spike-slab",
                "rate_weight": 0.0, "rate_target": None, "centre": False, "kl_warmup": 0,
                "encoder_scale": None}
# vsc's default recipes, numbered: "default" is the newest, and a result made with an older one keeps its number
# (a sweep folder made with `--recipe default` before default-2 existed holds default-1's points; experiment.py).
# default-1 (docs/recipes.md, issue 14): no dead zone in gamma, spike pre-training for the first 40% of the run
# with alpha held at 0.1, then the slab ramped in and alpha brought down to the run's alpha. Phase lengths are
# fractions of the run's iterations (measured at 20,000: 8,000 + 4,000 ramp; alpha held 8,000, then falling
# over 6,000).
DEFAULT_RECIPE = {"spike": "sigmoid", "prior": "spike-slab"}
DEFAULT_PHASES = {"pretrain": 0.4, "pretrain_ramp": 0.2, "alpha_hold": 0.4, "alpha_anneal": 0.3}
DEFAULT_ALPHA_START = 0.1  # only when the run's alpha is below it; otherwise alpha is constant
# default-2 (issue 24, docs/recipes.md "Codes"): default-1 plus the aggregate spike-rate term (weight 3) and the
# encoder fed x minus the training mean. The term's target rate is 0.05 below alpha 0.05 (measured: more
# dimensions used than with the annealed alpha as target), else the prior's alpha at each iteration.
DEFAULT_2 = {"rate_weight": 3.0, "centre": True}
DEFAULT_2_RATE_TARGET = 0.05
DEFAULT = "default-2"  # what `--recipe default` (and vsc train without --paper) means today
RECIPE_NAMES = ("paper", "default", "default-1", "default-2")
DEFAULT_HIDDEN = {"celeba": (2000, 2000)}  # paper D.1: two 2000-unit layers for CelebA; one of 400 otherwise
# Adam's learning rate by dataset, in every recipe (paper D.1: chosen by the standard VAE's ELBO; 1e-3 otherwise).
# CelebA's 2x2000 network at 1e-3 (and at the paper's whole range, 1e-3 to 1e-2) collapses even as a plain VAE:
# KL 0.1 nats and the mean face by iteration 100; at 1e-4 it learns codes (docs/recipes.md "CelebA").
DEFAULT_LR = {"celeba": 1e-4}


def same_setting(stored, wanted) -> bool:
    """Whether a run's stored setting is the one asked for: "data" (logvar_init, encoder_scale) is resolved to a
    number when training starts, and the checkpoint keeps the number, so any number stands for it."""
    if wanted == "data" and _is_num(stored):
        return True
    return stored == wanted


def recipe_name(recipe: str) -> str:
    """The numbered name of a recipe: "default" -> today's default-N; "paper", "default-1", ... unchanged."""
    from .errors import VscError

    if recipe not in RECIPE_NAMES:
        raise VscError(f"recipe {recipe!r}: choose {', '.join(RECIPE_NAMES)}")
    return DEFAULT if recipe == "default" else recipe


def recipe_settings(recipe: str, iterations: int, alpha: float) -> dict:
    """The recipe's values of every PAPER_RECIPE field, for a run of `iterations` at prior `alpha`."""
    recipe = recipe_name(recipe)
    if recipe == "paper":
        return dict(PAPER_RECIPE)
    out = {**PAPER_RECIPE, **DEFAULT_RECIPE}
    out.update({k: int(round(f * iterations)) for k, f in DEFAULT_PHASES.items()})
    if alpha < DEFAULT_ALPHA_START:
        out["alpha_start"] = DEFAULT_ALPHA_START
    else:
        out.update(alpha_start=None, alpha_hold=0, alpha_anneal=0)
    if recipe == "default-2":
        out.update(DEFAULT_2, rate_target=DEFAULT_2_RATE_TARGET if alpha < DEFAULT_2_RATE_TARGET else None)
    return out


def resolve(recipe: str = "default", **settings) -> TrainConfig:
    """The config of a run, as `vsc train` builds it: `settings` (TrainConfig fields), and for every recipe
    field that settings do not give, the recipe's value for the run's iterations and alpha ("default": vsc's
    default recipe, today default-2; "default-1": the one before; "paper": the paper's exact one; a VAE always
    gets the paper's). `vsc train`, `vsc experiment` and the Python API (`vsc_cli.train_config`) all build configs here, so the same settings
    mean the same model everywhere. TrainConfig() alone is the paper's recipe (what an old checkpoint means)."""
    import dataclasses

    from .errors import VscError

    recipe = recipe_name(recipe)
    unknown = sorted(set(settings) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise VscError(f"unknown setting {unknown[0]!r}; the settings are TrainConfig's fields")
    data = settings.get("data", "fmnist")
    if "hidden" not in settings:  # paper D.1: two 2000-unit layers for CelebA, one of 400 otherwise
        settings = {**settings, "hidden": DEFAULT_HIDDEN.get(data, (400,))}
    if "lr" not in settings and data in DEFAULT_LR:
        settings = {**settings, "lr": DEFAULT_LR[data]}
    base = TrainConfig(**settings)
    given = recipe_settings("paper" if base.model == "vae" else recipe, base.iterations, base.alpha)
    return dataclasses.replace(base, **{k: v for k, v in given.items() if k not in settings})

