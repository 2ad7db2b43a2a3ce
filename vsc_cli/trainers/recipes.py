"""Recipes: the settings beyond the paper that `vsc train` fills in when they are not given, as a table.

Each recipe is the one before it plus its changes; a change is a value, or a rule of the run's iterations and
alpha (`Fraction`, `BelowAlpha`). `--recipe`'s help, docs/recipes.md's table (`python docs/make_option_table.py
--write`) and `resolve` all read RECIPES. The dataclass defaults of TrainConfig are the paper's exact recipe
(config.PAPER_RECIPE): what `vsc train --paper` and (unless told otherwise) `vsc experiment` use, and what a
checkpoint of an older vsc without these fields means. A new default is a new numbered recipe and DEFAULT pointing
at it, so that results of the old one keep their meaning (a result records its recipe's number).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vsc_cli.common import config
from vsc_cli.common.config import PAPER_RECIPE, SETTINGS, SHARED, TrainConfig, is_number, own_settings
from vsc_cli.common.errors import VscError
from vsc_cli.common.registry import FAMILIES, NETWORKS


@dataclass(frozen=True)
class Fraction:
    """A number of iterations: this fraction of the run's (rounded)."""
    of_run: float

    def value(self, iterations: int, alpha: float):
        return int(round(self.of_run * iterations))

    def describe(self) -> str:
        return f"{self.of_run:g} x iterations"


@dataclass(frozen=True)
class Capped:
    """A number of iterations of its own: `iterations`, or `of_run` of a shorter run (rounded), so that a run
    longer than `iterations / of_run` is the shorter one continued, and a short try still leaves each phase."""
    iterations: int
    of_run: float

    def value(self, iterations: int, alpha: float):
        return min(self.iterations, int(round(self.of_run * iterations)))

    def describe(self) -> str:
        return f"{self.iterations:,} (or {self.of_run:g} x a shorter run's iterations)"


@dataclass(frozen=True)
class BelowAlpha:
    """`then` when the run's alpha is below `limit`, else `otherwise` (each a value or a Fraction)."""
    limit: float
    then: object
    otherwise: object

    def value(self, iterations: int, alpha: float):
        chosen = self.then if alpha < self.limit else self.otherwise
        return chosen.value(iterations, alpha) if hasattr(chosen, "value") else chosen

    def describe(self) -> str:
        return f"{_describe(self.then)} when alpha < {self.limit:g}, else {_describe(self.otherwise)}"


def _describe(v) -> str:
    return v.describe() if hasattr(v, "describe") else "none" if v is None else str(v)


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str  # what it is, in a few words: --recipe's help and the docs table
    based_on: str | None = None  # the recipe this one changes
    changes: dict = field(default_factory=dict)  # setting -> value or rule (Fraction, BelowAlpha)
    alpha: float | None = None  # the prior's alpha when --alpha is not given (None: the one it is based on's)


RECIPES = (
    Recipe("paper", "the paper's exact recipe"),
    # no dead zone in gamma, spike pre-training for the first 40% of the run with alpha held at 0.1, then the slab
    # ramped in and alpha brought down to the run's alpha (measured at 20,000 iterations: 8,000 + 4,000 ramp; alpha
    # held 8,000, then falling over 6,000; docs/recipes.md)
    Recipe("default-1", "the default of vsc 0.3.0: spike pre-training and alpha annealing", "paper", {
        "spike": "sigmoid", "prior": "spike-slab", "pretrain": Fraction(0.4), "pretrain_ramp": Fraction(0.2),
        "alpha_start": BelowAlpha(0.1, 0.1, None),  # only when the run's alpha is below 0.1: nothing to anneal
        "alpha_hold": BelowAlpha(0.1, Fraction(0.4), 0), "alpha_anneal": BelowAlpha(0.1, Fraction(0.3), 0)}),
    # the aggregate spike-rate term's target is 0.05 below alpha 0.05 (measured: more dimensions used than with
    # the annealed alpha as target), else the prior's alpha at each iteration
    Recipe("default-2", "default-1 plus the aggregate spike-rate term and centred encoder input", "default-1", {
        "rate_weight": 3.0, "centre": True, "rate_target": BelowAlpha(0.05, 0.05, None)}),
    # the same, with a sparse prior when --alpha is not given: alpha 0.5 switched half of all elements on (127 of
    # 200 per face on own photos); 0.1 was chosen on Fashion-MNIST, MNIST and photos (docs/results/default-alpha)
    Recipe("default-3", "default-2 with a sparse prior unless --alpha is given: alpha 0.1", "default-2", alpha=0.1),
    # default-3's phases at 5,000 iterations, in iterations of their own (at 20,000 default-3 pre-trained for
    # 8,000 and scored below its own 5,000-iteration run on a known-factor set), and the decoder's log-variance
    # started at the data's for every network (the conv network had it): without it the MLP's learned variance
    # explained natural patches and two known-factor sets as noise, no element on (docs/results/suite)
    Recipe("default-4", "default-3 with phases of fixed length and the decoder's variance started at the data's",
           "default-3", {
               "pretrain": Capped(2000, 0.4), "pretrain_ramp": Capped(1000, 0.2),
               "alpha_hold": BelowAlpha(0.1, Capped(2000, 0.4), 0), "alpha_anneal": BelowAlpha(0.1, Capped(1500, 0.3), 0),
               "c_ramp": Capped(5000, 1.0), "logvar_init": "data"}),
    # default-4 with the slab's magnitude in the spike, its gradient kept (one element for either sign of a
    # factor: the signed known-factor sets were learned as two one-signed elements per factor, and K = 200
    # collapsed), and a shorter spike pre-training (500 + ramp 500: the gated spike after 2,000 iterations of it
    # was on for images whose factor is 0; docs/results/suite)
    Recipe("default-5", "default-4 with the slab's magnitude in the spike and a shorter spike pre-training",
           "default-4", {
               "gate_magnitude": 2.0, "gate_gradient": True,
               "pretrain": Capped(500, 0.1), "pretrain_ramp": Capped(500, 0.1)}),
)
BY_NAME = {r.name: r for r in RECIPES}
DEFAULT = "default-4"  # what `--recipe default` (and vsc train without --paper) means
RECIPE_NAMES = ("paper", "default", *(r.name for r in RECIPES if r.name != "paper"))
PAPER_NETWORK = "mlp"  # the paper's network: what the paper's recipe always trains


def default_network(data: str, recipe: str, image_size=None, normalisation: str = "unit") -> str:
    """The network a run gets when --network is not given: the first of NETWORKS chosen for such data (its
    `chosen_for`: the conv network for photographs and own images of 32 pixels or more a side), else the paper's
    MLP, which the paper's recipe always gets (docs/training.md)."""
    from vsc_cli.data.sources import is_path, open_own

    if recipe == "paper":
        return PAPER_NETWORK
    shape = None
    if is_path(data):
        try:
            shape = tuple(open_own(data, image_size, normalisation).shape)
        except VscError:
            return PAPER_NETWORK  # unreadable: training says why
    for name in NETWORKS.tagged("decoder-only", present=False):
        if NETWORKS[name].chosen_for(data, shape):
            return name
    return PAPER_NETWORK


def recipe_help() -> str:
    """--recipe's help, from the table."""
    parts = [f"{r.name}: {r.summary}" for r in RECIPES if r.name != "paper"]
    return (f"The recipe that fills in the settings not given: default (= {DEFAULT}); "
            f"{'; '.join(parts)}; paper: the paper's exact one (docs/recipes.md).")


def recipe_name(recipe: str) -> str:
    """The numbered name of a recipe: "default" -> the default's default-N; "paper", "default-1", ... unchanged."""
    if recipe not in RECIPE_NAMES:
        raise VscError(f"recipe {recipe!r}: choose {', '.join(RECIPE_NAMES)}")
    return DEFAULT if recipe == "default" else recipe


def _chain(recipe: str) -> list[Recipe]:
    out, name = [], recipe_name(recipe)
    while name is not None:
        out.insert(0, BY_NAME[name])
        name = BY_NAME[name].based_on
    return out


def recipe_alpha(recipe: str) -> float:
    """The prior's alpha a recipe gives a run that does not set --alpha (the paper's recipe: TrainConfig's 0.5)."""
    alpha = SHARED["alpha"].default
    for r in _chain(recipe):
        alpha = r.alpha if r.alpha is not None else alpha
    return alpha


def recipe_settings(recipe: str, iterations: int, alpha: float) -> dict:
    """The recipe's values of every PAPER_RECIPE field, for a run of `iterations` at prior `alpha`."""
    out = dict(PAPER_RECIPE)
    for r in _chain(recipe):
        out.update({k: v.value(iterations, alpha) if hasattr(v, "value") else v for k, v in r.changes.items()})
    return out


def recipe_table() -> str:
    """docs/recipes.md's table: each recipe's changes to the one before (markdown)."""
    names = [r.name for r in RECIPES]
    lines = ["| recipe | based on | what it is | its changes |", "|---|---|---|---|"]
    for r in RECIPES:
        changes = [f"`{k}` = {_describe(v)}" for k, v in r.changes.items()]
        changes = ", ".join(changes + ([f"`alpha` = {r.alpha:g} when not given"] if r.alpha is not None else [])) or "-"
        lines.append(f"| {r.name}{' (default)' if r.name == DEFAULT else ''} | {r.based_on or '-'} | {r.summary} | "
                     f"{changes} |")
    assert names[0] == "paper"
    return "\n".join(lines) + "\n"


def resolve(recipe: str = "default", foreign: str = "refuse", **settings) -> TrainConfig:
    """The config of a run, as `vsc train` builds it: `settings` (the shared ones and the run's family's and
    network's own), and for every recipe field that settings do not give, the recipe's value for the run's
    iterations and alpha ("default": vsc's default recipe; "paper": the paper's exact one; a family without recipes,
    such as the VAE, always gets the paper's); then the network's defaults for the data set and the family's own.
    A setting of another family or network is refused (VscError naming its owner), or with foreign="drop" left
    out (a sweep's setting for the points that have it). `vsc train`, `vsc experiment` and the Python API
    (`vsc_cli.train_config`) all build configs here, so the same settings mean the same model everywhere.
    TrainConfig() alone is the paper's recipe."""
    recipe = recipe_name(recipe)
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise VscError(f"unknown setting {unknown[0]!r}; the settings are those of `vsc train --help`")
    data = settings.get("data", SHARED["data"].default)
    model = settings.get("model", SHARED["model"].default)
    if model not in FAMILIES:
        raise VscError(f"model {model!r}: choose {', '.join(FAMILIES)}")
    if "network" not in settings:
        network = default_network(data, recipe, settings.get("image_size"), settings.get("normalisation", "unit"))
        settings = {**settings, "network": network}
    mine = own_settings(model, settings["network"], settings.get("decoder", SHARED["decoder"].default))
    strangers = [k for k in settings if k not in SHARED and k not in mine]
    if strangers and foreign == "refuse":
        probe = TrainConfig(model=model, network=settings["network"])
        raise VscError(config.foreign(strangers[0], probe))
    settings = {k: v for k, v in settings.items() if k not in strangers}
    if "alpha" not in settings:  # the recipe's prior (default-3 on: a sparse one), where the family has alpha
        settings = {**settings, "alpha": recipe_alpha(recipe if FAMILIES[model].takes_recipe else "paper")}
    fixed_noise = settings.get("noise_std") is not None
    unstarted = {"logvar_init"} if fixed_noise else set()  # no learned decoder variance to start
    if fixed_noise:
        if settings.get("likelihood", "gaussian") != "gaussian":
            raise VscError("--noise-std fixes a Gaussian decoder's noise; the Bernoulli likelihood has none")
        if settings.get("logvar_init") is not None:
            raise VscError("--noise-std fixes the decoder's variance, so --logvar-init (the learned variance's "
                           "start) does not apply; give one of them")
    for name, value in NETWORKS[settings["network"]].defaults(data).items():  # the network's, per data set
        if settings.get(name) is None and name not in unstarted:
            settings = {**settings, name: value}
    settings = {**settings, **data_defaults(recipe, data, settings)}
    base = TrainConfig(**settings)
    family = FAMILIES[base.model]
    given = {**recipe_settings(recipe if family.takes_recipe else "paper", base.iterations, base.alpha),
             **family.own_defaults}
    cfg = base.replace(**{k: v for k, v in given.items() if k not in settings and k in base and k not in unstarted})
    problem = family.check(cfg)
    if problem:
        raise VscError(problem)
    return cfg


VALIDATION = 0.1  # own data and CelebA: a tenth of the training images, as large as the test split
PATIENCE = 5  # evaluations (5,000 iterations at --validate-every 1000) without a better validation ELBO
PHOTO_CROP = 2  # pixels of random shift for photographs (2,000 faces at 32 x 32: docs/results/own-photos)


def is_photo_set(data: str, image_size=None, normalisation: str = "unit") -> bool:
    """CelebA, or own colour images: photographs, which look the same mirrored or shifted by a pixel or two
    (unlike digits, letters or the grey known-factor sets)."""
    from vsc_cli.data.sources import is_path, open_own

    if str(data).lower() == "celeba":
        return True
    if not is_path(data):
        return False
    try:
        return open_own(data, image_size, normalisation).shape[0] == 3
    except VscError:
        return False  # unreadable: training says why


def data_defaults(recipe: str, data: str, settings: dict) -> dict:
    """The settings that depend on the data, when not given. Own data and CelebA (sets small enough to memorise)
    hold out VALIDATION of their training images and stop after PATIENCE evaluations without a better one;
    photographs (is_photo_set) are flipped and shifted by up to PHOTO_CROP pixels at every step; own images resized
    to a square keep their aspect ratio (centre crop). MNIST, Fashion-MNIST and the paper's recipe keep the
    paper's protocol: no validation split, no augmentation, all 20,000 iterations."""
    from vsc_cli.data.sources import is_path

    out = {}  # None (not set) is no validation split, patience or augmentation: the paper's protocol
    small = (is_path(data) or str(data).lower() == "celeba") and recipe != "paper"
    if settings.get("validation") is None and small:
        out["validation"] = VALIDATION
    if settings.get("patience") is None and out.get("validation", settings.get("validation")):
        out["patience"] = PATIENCE
    if settings.get("aspect") is None and is_path(data):
        out["aspect"] = "crop"
    if (settings.get("flip") is None or settings.get("crop") is None) and small:
        photo = is_photo_set(data, settings.get("image_size"), settings.get("normalisation", "unit"))
        if settings.get("flip") is None and photo:
            out["flip"] = True
        if settings.get("crop") is None and photo:
            out["crop"] = PHOTO_CROP
    return out


def same_setting(stored, wanted) -> bool:
    """Whether a run's stored setting is the one asked for: "data" (logvar_init, encoder_scale) is resolved to a
    number when training starts, and the checkpoint keeps the number, so any number stands for it."""
    if wanted == "data" and is_number(stored):
        return True
    return stored == wanted


def first_difference(stored, wanted: dict, ignore=("backend",)):
    """Is this the same run? The first setting of `wanted` that `stored` (a TrainConfig, or a dict of a finished
    result's settings) holds otherwise, as (name, stored value, wanted value); None when every one agrees. The
    backend changes speed, not the model, so it may differ."""
    for name, value in wanted.items():
        have = stored.get(name)
        if name not in ignore and not same_setting(have, value):
            return name, have, value
    return None


def new_run_config(recipe: str, options: dict, given: set, from_file: dict | None = None) -> TrainConfig:
    """The config of a new `vsc train` run: `options` holds every setting option's value (None where not given and
    the setting has a default), `given` the names typed on the command line, `from_file` the settings of a
    `--config` file. A recipe field counts only when given; the file's settings win over the options' defaults,
    the typed options over the file. A typed setting of another family or network than the run's is refused; the
    file's are dropped (a file written by an earlier version lists every family's settings)."""
    settings = {n: v for n, v in options.items() if (n not in PAPER_RECIPE and n != "alpha" or n in given)
                and not (v is None and (SETTINGS[n].default is not None or n not in SHARED))}
    if from_file is not None:
        from_file = {k: v for k, v in from_file.items() if k != "image_shape"}  # measured when training starts
        settings = {**settings, **from_file, **{n: v for n, v in settings.items() if n in given}}
        model = settings.get("model", SHARED["model"].default)
        network = settings.get("network")
        if model in FAMILIES and network is not None and network in NETWORKS:
            mine = own_settings(model, network, settings.get("decoder", SHARED["decoder"].default))
            settings = {k: v for k, v in settings.items() if k in SHARED or k in mine or k in given}
    return resolve(recipe, **settings)


def resumed_config(stored: TrainConfig, options: dict, given: set) -> TrainConfig:
    """The config a resumed run goes on with: its own; a setting given that differs is refused (VscError), except
    the backend, which changes speed, not the model, and is taken when given."""
    strangers = [n for n in given if n not in stored]
    if strangers:
        raise VscError(config.foreign(strangers[0], stored))
    diff = first_difference(stored, {n: options[n] for n in given})
    if diff:
        name, have, value = diff
        raise VscError(f"--{name.replace('_', '-')} {value} differs from the run being resumed ({have}); a resumed "
                       "run keeps its config")
    return stored.replace(backend=options["backend"]) if "backend" in given else stored
