"""Training configuration. A checkpoint carries it as one flat dict.

Each setting is declared once, by `setting(...)`: its default, its help (the sentence `vsc train --help` and
docs/training.md's table show), its kind (the values it may take: the check a checkpoint's config must pass, the
`--set KEY=VALUE` parser, the click option's type), its group in `vsc train --help`, and whether `--set` takes it
and whether recipes fill it in. The settings every run has are TrainConfig's fields; a family's or a network's own
settings are declared beside its class (its `settings` dict; the classes are found through common/registry.py's
VARIANTS), and a run holds those of its own family and network only, in `own`, read as attributes (`cfg.k`).
`SETTINGS` gathers both; cli/options.py builds the options from it; nothing else lists them.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields

from vsc_cli.common.registry import FAMILIES, NETWORKS, VARIANTS


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def split_list(text: str, convert) -> list:
    """'a,b,c' -> [convert('a'), ...], blanks around items ignored: every comma-separated option and setting
    (ValueError when an item does not convert)."""
    return [convert(item.strip()) for item in text.split(",")]


# Kinds: the values a setting may take. check() is what a checkpoint's config may hold, parse() reads
# `--set KEY=VALUE`'s text; cli/options.py maps each kind to a click type.
@dataclass(frozen=True)
class Choice:
    values: object  # a tuple, or a Registry (common/registry.py) whose names grow when a family is registered

    def check(self, v) -> bool:
        return v in self.values

    def parse(self, text: str):
        return text


@dataclass(frozen=True)
class Int:
    lo: int | None = None
    hi: int | None = None

    def check(self, v) -> bool:
        return _is_int(v) and (self.lo is None or v >= self.lo) and (self.hi is None or v <= self.hi)

    def parse(self, text: str):
        return int(text)


@dataclass(frozen=True)
class Float:
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def check(self, v) -> bool:
        if not is_number(v):
            return False
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return self.hi is None or (v < self.hi or (not self.hi_open and v == self.hi))

    def parse(self, text: str):
        return float(text)


@dataclass(frozen=True)
class DataOrNumber:
    """'data' (resolved from the training images when training starts; the checkpoint keeps the number) or a
    number (positive: in (0, inf))."""
    positive: bool = False

    def check(self, v) -> bool:
        return v == "data" or (is_number(v) and (not self.positive or 0 < v < math.inf))

    def parse(self, text: str):
        return text if text == "data" else float(text)


@dataclass(frozen=True)
class Flag:
    def check(self, v) -> bool:
        return isinstance(v, bool)

    def parse(self, text: str):
        return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text.lower()]


@dataclass(frozen=True)
class Text:
    def check(self, v) -> bool:
        return isinstance(v, str) and v != ""

    def parse(self, text: str):
        return text


@dataclass(frozen=True)
class Widths:
    def check(self, v) -> bool:
        return isinstance(v, (list, tuple)) and len(v) > 0 and all(_is_int(h) and h >= 1 for h in v)

    def parse(self, text: str):
        return tuple(split_list(text, int))


@dataclass(frozen=True)
class Shape:
    def check(self, v) -> bool:
        return isinstance(v, list) and len(v) == 3 and all(_is_int(s) and s >= 1 for s in v)

    def parse(self, text: str):
        raise ValueError("not a setting one gives")


C_START, C_END = 50.0, 200.0  # the sample's sigmoid scale c, raised linearly from C_START to C_END (appendix C.2)
GROUPS = ("data", "model", "training", "beyond the paper", "run")  # the sections of `vsc train --help`


def setting(default, help: str, kind, group: str = "model", *, settable: bool = False, recipe: bool = False,
            flag: str | None = None, option: bool = True, shown_default: str | None = None):
    """A setting and everything about it (a dataclass field: TrainConfig's, or an entry of a family's or network's
    `settings`). None is allowed exactly when it is the default.
    group: its section in `vsc train --help` (a family's or network's own setting is listed under its class's
    heading instead; "beyond the paper" ones there by name only, as in that section). settable: `vsc experiment
    --set KEY=VALUE` takes it. recipe: a recipe fills it in when not given (the default here is then the paper's
    value). flag: the option's name when not --FIELD-NAME. option: False for fields filled in by training, never
    given. shown_default: the default as `--help` and the docs say it."""
    assert group in GROUPS
    meta = {"help": help, "kind": kind, "group": group, "settable": settable, "recipe": recipe, "flag": flag,
            "option": option, "shown_default": shown_default}
    if isinstance(default, (list, dict, set)):  # mutable: one per instance (a tuple is shared safely)
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def default_of(f):
    """A setting's default value."""
    return f.default_factory() if f.default is MISSING else f.default


@dataclass(init=False)
class TrainConfig:
    """A run's settings: the fields every run has, and in `own` those of its family (`--model`) and network
    (`--network`, and a decoder-only `--decoder`), each read as an attribute. TrainConfig(**settings) takes either;
    a setting of another family or network is refused (VscError naming its owner)."""
    data: str = setting(
        "fmnist", "Dataset to train on: mnist, fmnist, celeba, or your own images: a folder (class sub-folders give "
        "labels), an .npy/.npz array or an HDF5 file with an 'images' dataset (docs/datasets.md); a path is stored "
        "absolute.", Text(), "data")
    image_size: int | None = setting(
        None, "Own data: resize every image to S x S pixels (needed when their sizes differ). CelebA: its side "
        "(the paper's 32; 64 with the conv network).", Int(1, 1 << 14), "data",
        shown_default="own data: their size; celeba: 64 with the conv network, else 32")
    image_shape: list | None = setting(
        None, "The images' (channels, height, width) (own data and the conv network), filled in when training starts.",
        Shape(), "data", option=False)
    model: str = setting(
        "vsc", FAMILIES.help() + ".", Choice(FAMILIES), "model")
    dim: int = setting(200, "Latent dimensions J.", Int(1, 1 << 20), "model")
    # 0.5 is the paper's recipe's (and a checkpoint's without the field); the default recipe gives 0.1 when not set
    alpha: float = setting(0.5, "Prior spike probability alpha, in (0, 1] (eq. 4; VSC only): the expected fraction "
                           "of elements on per image.", Float(0, 1, lo_open=True), "model",
                           shown_default="0.1 (the default recipe), 0.5 with --paper")
    network: str = setting(
        "mlp", "Encoder and decoder networks, for every family: " + NETWORKS.help(names=("mlp", "conv")) + ".",
        Choice(NETWORKS.tagged("decoder-only", present=False)), "model", settable=True,
        shown_default="conv for celeba and for own colour or 32-pixel-or-larger images, mlp otherwise and with --paper")
    decoder: str = setting(
        "mlp", "Decoder: mlp (the encoder's network mirrored: --network's fully connected or conv layers) or "
        "linear (x's mean = D z + b, a dictionary: classic sparse coding), for every family.",
        Choice(("mlp", *NETWORKS.tagged("decoder-only"))), "model", settable=True)
    likelihood: str = setting(
        "gaussian", "Decoder likelihood: Gaussian with learned per-pixel mean and log-variance (A.1), or Bernoulli.",
        Choice(("gaussian", "bernoulli")), "model", settable=True)
    normalisation: str = setting(
        "unit", "Image scaling: unit L2 norm per image (the paper, D.2), 01 (divide by 255) or none.",
        Choice(("unit", "01", "none")), "data", flag="--normalise")
    iterations: int = setting(20_000, "Optimiser steps (the paper's 20,000, section 4.1).", Int(1), "training")
    batch_size: int = setting(256, "Images per step (the paper gives none).", Int(1), "training", settable=True)
    lr: float = setting(
        1e-3, "Adam learning rate (paper D.1: 0.001 to 0.01; at 0.001 CelebA's 2x2000 network collapses to the "
        "mean face, even as a VAE).", Float(0, lo_open=True), "training", settable=True,
        shown_default="1e-4 for celeba's MLP, 1e-3 otherwise")
    min_logvar: float = setting(-10.0, "Soft floor on the Gaussian decoder's per-pixel log-variance.", Float(), "model")
    noise_std: float | None = setting(
        None, "The rate-distortion setting: fix the Gaussian decoder's noise to this standard deviation sigma_x (in "
        "the normalised pixels' units, every pixel alike) instead of learning a variance per pixel (A.1). The loss "
        "is then ||x - mean||^2 / (2 sigma_x^2) + KL, classical sparse coding's energy with lambda = 2 sigma_x^2 "
        "(a beta-VAE's beta): smaller keeps more detail with more elements on, larger gives sparser codes and "
        "more error (docs/model.md).", Float(0, lo_open=True), "beyond the paper", settable=True,
        shown_default="learned per pixel")
    logvar_init: float | str | None = setting(
        None, "Initial decoder log-variance: 'data' (log of the training images' mean per-pixel variance) or a "
        "number. Not in the paper.", DataOrNumber(), "beyond the paper", settable=True, recipe=True,
        shown_default="'data' (default-4 on, and the conv network), else PyTorch's init, about 0")
    encoder_scale: float | str | None = setting(
        None, "Multiply the encoder's input by this number, or 'data': 1 / the training images' mean per-pixel "
        "standard deviation (unit-norm pixels are ~0.02). None = 1.", DataOrNumber(positive=True),
        "beyond the paper", settable=True, recipe=True)
    kl_warmup: int = setting(
        0, "Iterations over which the KL's weight in the loss rises from 0 to 1 (Bowman et al. 2016); every "
        "reported ELBO is the true one. 0 = off.", Int(0), "beyond the paper", settable=True, recipe=True)
    centre: bool = setting(
        False, "Feed the encoder x minus the training images' mean (the decoder still outputs the image; the "
        "mean is saved with the model).", Flag(), "beyond the paper", settable=True, recipe=True)
    kl_weight: float = setting(
        1.0, "Weight of the KL in the training loss (a beta-VAE's beta; Fallah & Rozell use 0.01 beside a mean "
        "squared error). 1 = the ELBO; otherwise the objective is not one. Reported ELBOs always use 1.",
        Float(0, math.inf, lo_open=True, hi_open=True), "beyond the paper", settable=True)
    seed: int = setting(0, "Seeds the initial weights, the batch order and the noise.", Int(), "training",
                        settable=True)
    train_size: int | None = setting(
        None, "Use only the first N training images.", Int(1), "data", shown_default="all")
    test_size: int | None = setting(
        None, "Evaluate on only the first N test images.", Int(1), "data", shown_default="all")
    # None in a checkpoint (vsc before these settings) means what those runs did: no validation split, images stretched
    validation: float | None = setting(
        None, "Fraction of the training images held out as the validation split, spread evenly over them (0: "
        "none). Its ELBO, evaluated every --validate-every iterations, picks the best checkpoint (best.safetensors, "
        "which later commands use) and drives --patience; the test split is untouched.", Float(0, 0.5), "data",
        shown_default="0.1 for own data and celeba, 0 for mnist, fmnist and with --paper")
    aspect: str | None = setting(
        None, "How --image-size makes own images square: crop (the largest centred square, then resize: the "
        "aspect ratio is kept) or stretch (resize the whole image).", Choice(("crop", "stretch")), "data",
        shown_default="crop")
    patience: int | None = setting(
        None, "Stop early after this many validation evaluations in a row without a better validation ELBO "
        "(0: never). The best checkpoint is kept either way.", Int(0), "training",
        shown_default="5 with a validation split, else 0")
    weight_decay: float = setting(
        0.0, "Decoupled weight decay (AdamW) on every parameter; 0 = Adam, the paper's. Not in the paper.",
        Float(0), "beyond the paper", settable=True)
    flip: bool = setting(
        False, "Augment: flip each training image left-right with probability 1/2 at every step. Not in the paper.",
        Flag(), "beyond the paper", settable=True, shown_default="on for celeba and own colour images, else off")
    crop: int = setting(
        0, "Augment: shift each training image by up to this many pixels each way at every step (a random crop "
        "of the image padded with its edge pixels), then renormalise. 0 = off. Not in the paper.", Int(0),
        "beyond the paper", settable=True, shown_default="2 for celeba and own colour images, else 0")
    log_every: int = setting(100, "Iterations between rows of log.csv (averages of the ELBO terms).", Int(1), "run")
    validate_every: int = setting(
        1000, "Iterations between evaluations on the validation split (validation.csv: its ELBO and the codes' "
        "reconstruction error; reconstructions.png).", Int(1), "run")
    checkpoint_every: int = setting(1000, "Iterations between checkpoints.", Int(1), "run")
    # a slow run (a CelebA conv VSC on one core: ~23 min per 1,000 iterations) would otherwise lose up to that much
    # to a kill that gives no warning; Ctrl-C and SIGTERM write one anyway
    checkpoint_minutes: float = setting(10.0, "Also write a checkpoint after this many minutes of training since "
                                        "the last one (0: only every --checkpoint-every iterations).",
                                        Float(0), "run")
    backend: str = setting(
        "auto", "Spike-and-slab op: fused numba (CPU) or cuda kernels, or the pure-torch reference; auto = numba on "
        "the CPU, cuda with --device cuda.", Choice(("auto", "torch", "numba", "cuda")), "run")
    dtype: str = setting("float32", "Floating-point type of the model and data (float64: slower, for exact "
                         "comparisons).", Choice(("float32", "float64")), "run")
    # the family's and the network's own settings (their classes' `settings`), every one of them, by name
    own: dict = field(default_factory=dict, metadata={"option": False})

    def __init__(self, own: dict | None = None, **settings):
        from vsc_cli.common.errors import VscError

        for name, f in SHARED.items():
            setattr(self, name, settings.pop(name) if name in settings else default_of(f))
        given = {**(own or {}), **settings}
        mine = own_settings(self.model, self.network, self.decoder)
        for name in given:
            if name not in mine:
                raise VscError(foreign(name, self) if name in SETTINGS else
                               f"unknown setting {name!r}; the settings are those of `vsc train --help`")
        self.own = {name: given[name] if name in given else default_of(f) for name, f in mine.items()}
        for name, f in mine.items():  # layer widths are tuples in a config, lists in its dict (to_dict)
            if isinstance(f.metadata.get("kind"), Widths) and isinstance(self.own[name], list):
                self.own[name] = tuple(self.own[name])

    def __getattr__(self, name):  # only for names that are not fields: the family's and network's settings
        own = self.__dict__.get("own")
        if own is not None and name in own:
            return own[name]
        raise AttributeError(f"{name!r}: not a setting of --model {self.__dict__.get('model')} with --network "
                             f"{self.__dict__.get('network')}")

    def __contains__(self, name) -> bool:
        """Whether this run has the setting (every run has the shared ones; its variants' own ones)."""
        return name in SHARED or name in self.own

    def get(self, name: str, default=None):
        """The setting's value, or `default` where this run's family and network have no such setting."""
        return getattr(self, name) if name in self else default

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some settings changed (own ones too; a changed family or network keeps only what it has)."""
        d = {**{name: getattr(self, name) for name in SHARED}, **self.own, **changes}
        mine = own_settings(d.get("model", self.model), d.get("network", self.network),
                            d.get("decoder", self.decoder))
        return TrainConfig(**{k: v for k, v in d.items() if k in SHARED or k in mine or k in changes})

    def to_dict(self) -> dict:
        """The flat dict a checkpoint carries: every setting of this run, lists for tuples."""
        d = {name: getattr(self, name) for name in SHARED}
        d.update(self.own)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Rebuild from a checkpoint's dict, refusing values no `vsc train` could have written. Settings of other
        families and networks are dropped: earlier versions wrote every setting of every family."""
        from vsc_cli.common.errors import VscError

        if not isinstance(d, dict):
            raise VscError("config is not a mapping")
        d = dict(d)
        for key in ("model", "network", "decoder"):
            if key in d and not check(key, d[key]):
                raise VscError(f"config entry {key}={d[key]!r} is out of range or of the wrong type")
        mine = own_settings(d.get("model", SHARED["model"].default), d.get("network", SHARED["network"].default),
                            d.get("decoder", SHARED["decoder"].default))
        d = {k: v for k, v in d.items() if k in SHARED or k in mine}
        for name, value in d.items():
            if isinstance(SETTINGS[name].metadata.get("kind"), Widths):
                if not Widths().check(value):
                    raise VscError(f"config entry {name}={value!r} is not a list of layer widths")
                d[name] = tuple(value)
        cfg = cls(**d)
        for name, value in {**{n: getattr(cfg, n) for n in SHARED}, **cfg.own}.items():
            if not check(name, value):
                raise VscError(f"config entry {name}={value!r} is out of range or of the wrong type")
        return cfg


SHARED = {f.name: f for f in fields(TrainConfig) if f.name != "own"}  # the settings every run has, in order


def owner_label(registry, name: str) -> str:
    """How a variant is named in messages and `--help` headings: 'Top-k (--model topk)'."""
    cls = registry[name]
    return f"{getattr(cls, 'title', None) or name} (--{registry.setting} {name})"


def variants(model: str, network: str, decoder: str) -> list:
    """The (registry, name) of a run's classes that declare settings: its family, its network, and a decoder-only
    network named by --decoder."""
    out = [(FAMILIES, model), (NETWORKS, network)]
    if decoder in NETWORKS.tagged("decoder-only"):
        out.append((NETWORKS, decoder))
    return out


def own_settings(model: str, network: str, decoder: str = "mlp") -> dict:
    """name -> field of the settings a run of this family and network has beyond the shared ones."""
    from vsc_cli.common.errors import VscError

    out = {}
    for registry, name in variants(model, network, decoder):
        if name not in registry:
            choices = FAMILIES if registry is FAMILIES else NETWORKS.tagged("decoder-only", present=False)
            raise VscError(f"{registry.setting} {name!r}: choose {', '.join(choices)}")
        for key, f in _declared(registry[name]).items():
            out.setdefault(key, f)
    return out


def _declared(cls) -> dict:
    """A class's own settings, each field named (a field made by setting() outside a dataclass has no name)."""
    declared = getattr(cls, "settings", None) or {}
    for key, f in declared.items():
        f.name = key
    return declared


class _Settings(Mapping):
    """Every setting: the shared ones, then each registered family's and network's own, in table order; rebuilt
    when a table changes. Looking up a shared setting imports no family."""

    def __init__(self):
        self._table, self._owners, self._versions = None, None, None

    def _build(self):
        versions = tuple(r.version for r in VARIANTS)
        if self._table is None or versions != self._versions:
            table, owners = dict(SHARED), {}
            for registry in VARIANTS:
                for name in registry:
                    for key, f in _declared(registry[name]).items():
                        table.setdefault(key, f)
                        owners.setdefault(key, []).append((registry, name))
            self._table, self._owners, self._versions = table, owners, versions
        return self._table

    def __getitem__(self, name):
        if name in SHARED:
            return SHARED[name]
        return self._build()[name]

    def __iter__(self):
        return iter(self._build())

    def __len__(self):
        return len(self._build())

    def __contains__(self, name):
        return name in SHARED or name in self._build()

    def owners(self, name: str) -> list:
        """(registry, name) of each class that declares setting `name` (empty for a shared one)."""
        if name in SHARED:
            return []
        self._build()
        return list(self._owners.get(name, []))


SETTINGS = _Settings()  # every setting, shared ones first


def foreign(name: str, cfg) -> str:
    """The one-line refusal of a setting that belongs to another family or network than the run's."""
    owners = SETTINGS.owners(name)
    flag = SETTINGS[name].metadata["flag"] or "--" + name.replace("_", "-")
    whose = " and ".join(owner_label(r, n) for r, n in owners)
    return (f"{flag} is a setting of {whose}; this run is --model {cfg.model} with --network {cfg.network}, which "
            f"{'has' if len(owners) == 1 else 'have'} no {flag}")


def check(name: str, value) -> bool:
    """Whether `value` is one a run's config may hold for setting `name` (None exactly where it is the default)."""
    f = SETTINGS[name]
    return (value is None and f.default is None) or f.metadata["kind"].check(value)


class _Lazy:
    """A tuple computed on first use from SETTINGS (and again when a table changes), so importing this module
    imports no family."""

    def __init__(self, make):
        self._make = make

    def _items(self):
        return self._make()

    def __iter__(self):
        return iter(self._items())

    def __contains__(self, item):
        return item in self._items()

    def __len__(self):
        return len(self._items())

    def __getitem__(self, key):
        return self._items()[key]

    def __eq__(self, other):
        return tuple(self._items()) == tuple(other)

    def keys(self):  # for a dict-like one (PAPER_RECIPE)
        return self._items().keys()

    def items(self):
        return self._items().items()

    def get(self, key, default=None):
        return self._items().get(key, default)


SETTABLE = _Lazy(lambda: tuple(n for n, f in SETTINGS.items() if f.metadata["settable"]))  # `--set KEY=VALUE`


def parse_setting(key: str, text: str):
    """`--set KEY=VALUE`'s text -> the value, checked as a checkpoint's config would be (ValueError if not)."""
    text = text.strip()
    if text.lower() == "none" and SETTINGS[key].default is None:
        return None
    try:
        value = SETTINGS[key].metadata["kind"].parse(text)
    except (ValueError, KeyError):
        raise ValueError(f"{text!r} is not a valid value for {key}") from None
    if not check(key, value):
        raise ValueError(f"{text!r} is not a valid value for {key}")
    return value


def to_toml(cfg: TrainConfig) -> str:
    """The run's config as TOML, every setting it has (None as "none": TOML has no null), readable by from_toml:
    `vsc train --config RUN/config.toml` trains the same model again."""
    lines = ["# vsc train --config THIS_FILE trains this run again (same settings, same seed)"]
    for name, value in cfg.to_dict().items():
        if value is None:
            text = '"none"'
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
        elif isinstance(value, (list, tuple)):
            text = "[" + ", ".join(str(v) for v in value) + "]"
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{name} = {text}")
    return "\n".join(lines) + "\n"


def from_toml(text: str, where: str = "config file") -> dict:
    """A TOML file's settings, each checked as a checkpoint's config would be; VscError names the first bad one.
    Settings of other families than the file's own are kept here (a file of an earlier version lists every one);
    a new run keeps those its own family and network have (recipes.new_run_config)."""
    import tomllib

    from vsc_cli.common.errors import VscError

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise VscError(f"{where}: not TOML ({exc})") from None
    out = {}
    for key, value in raw.items():
        if key not in SETTINGS:
            raise VscError(f"{where}: unknown setting {key!r}; the settings are those of `vsc train --help`")
        kind = SETTINGS[key].metadata["kind"]
        if value == "none" and SETTINGS[key].default is None:
            value = None
        elif isinstance(kind, Widths) and isinstance(value, list):
            value = tuple(value)
        elif _is_int(value) and isinstance(kind, (Float, DataOrNumber)):
            value = float(value)  # TOML writes 3.0 as 3.0, but a person may write 3
        if not check(key, value):
            raise VscError(f"{where}: {key} = {value!r} is out of range or of the wrong type")
        out[key] = value
    return out


# The recipe fields' defaults are the paper's exact recipe (trainers/recipes.py fills them in for other recipes).
PAPER_RECIPE = _Lazy(lambda: {n: default_of(f) for n, f in SETTINGS.items() if f.metadata["recipe"]})
