"""Training configuration. A checkpoint carries this dataclass as a plain dict.

Each setting is declared once, as a TrainConfig field: its default, its help (the sentence `vsc train --help`
and docs/training.md's table show), its kind (the values it may take: the check a checkpoint's config must pass,
the `--set KEY=VALUE` parser, the click option's type), its group in `vsc train --help`, and whether `--set`
takes it and whether recipes fill it in. cli.py builds the options from these fields; nothing else lists them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from vsc_cli.common.registry import FAMILIES, PRIORS


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def split_list(text: str, convert) -> list:
    """'a,b,c' -> [convert('a'), ...], blanks around items ignored: every comma-separated option and setting
    (ValueError when an item does not convert)."""
    return [convert(item.strip()) for item in text.split(",")]


# Kinds: the values a setting may take. check() is what a checkpoint's config may hold, parse() reads
# `--set KEY=VALUE`'s text; cli.py maps each kind to a click type.
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


def setting(default, help: str, kind, group: str, *, settable: bool = False, recipe: bool = False,
            flag: str | None = None, option: bool = True, shown_default: str | None = None):
    """A TrainConfig field and everything about it. None is allowed exactly when it is the default.
    settable: `vsc experiment --set KEY=VALUE` takes it. recipe: a recipe fills it in when not given (the
    default here is then the paper's value). flag: the option's name when not --FIELD-NAME. option: False for
    fields filled in by training, never given. shown_default: the default as `--help` and the docs say it."""
    assert group in GROUPS
    meta = {"help": help, "kind": kind, "group": group, "settable": settable, "recipe": recipe, "flag": flag,
            "option": option, "shown_default": shown_default}
    if isinstance(default, (list, dict, set)):  # mutable: one per instance (a tuple is shared safely)
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
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
    alpha: float = setting(0.5, "Prior spike probability alpha, in (0, 1] (eq. 4; VSC only).",
                           Float(0, 1, lo_open=True), "model")
    hidden: tuple = setting(
        (400,), "MLP network: hidden layer widths of encoder and decoder, e.g. 400 or 2000,2000 (paper D.1).", Widths(),
        "model",
        shown_default="2000,2000 for celeba, 400 otherwise")
    network: str = setting(
        "mlp", "Encoder and decoder networks, for every family: mlp (fully connected, the layers of --hidden: the "
        "paper's) or conv (strided 4x4 convolutions of --channels down to 4x4, then a linear layer to the heads; the "
        "decoder its mirror; images of at least 8x8, padded to powers of two).", Choice(("mlp", "conv")), "model",
        settable=True, shown_default="conv for celeba and for own colour or 32-pixel-or-larger images, mlp "
        "otherwise and with --paper")
    channels: tuple = setting(
        (32, 64, 128, 256), "Conv network: channels of its layers, from the image down (the last repeated when the "
        "image needs more layers).", Widths(), "model", settable=True, shown_default="32,64,128,256")
    decoder: str = setting(
        "mlp", "Decoder: mlp (the encoder's network mirrored: --network's fully connected or conv layers) or linear "
        "(x's mean = D z + b, a dictionary: classic sparse coding), for every family.", Choice(("mlp", "linear")),
        "model", settable=True)
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
    c_start: float = setting(C_START, "VSC: the sample's sigmoid scale c at the first iteration (eq. 24, C.2).",
                             Float(0, lo_open=True), "training", settable=True)
    c_end: float = setting(C_END, "VSC: c at the last iteration, reached linearly (C.2).",
                           Float(0, lo_open=True), "training", settable=True)
    min_logvar: float = setting(-10.0, "Soft floor on the Gaussian decoder's per-pixel log-variance.", Float(), "model")
    logvar_init: float | str | None = setting(
        None, "Initial decoder log-variance: 'data' (log of the training images' mean per-pixel variance) or a "
        "number. Not in the paper.", DataOrNumber(), "beyond the paper", settable=True,
        shown_default="'data' with the conv network, else PyTorch's init, about 0")
    gamma_init: float | None = setting(
        None, "VSC: start every spike probability near this value (with eq. 12 about half the elements otherwise "
        "start at gamma = 1 with zero gradient). Not in the paper.", Float(0, 1, lo_open=True, hi_open=True),
        "beyond the paper", settable=True, shown_default="PyTorch's init")
    spike: str = setting(
        "min", "VSC: log gamma from the encoder's v: min = min(v, 0) (eq. 12, the paper), sigmoid = -softplus(-v), "
        "which has no flat region.", Choice(("min", "sigmoid")), "beyond the paper", settable=True, recipe=True)
    pretrain: int = setting(
        0, "VSC: spike pre-training (the authors' UAI 2019 code): iterations whose sample uses lambda = 0, so the "
        "decoder sees only which elements are on.", Int(0), "beyond the paper", settable=True, recipe=True)
    pretrain_ramp: int = setting(
        0, "VSC: after --pretrain, iterations over which lambda rises linearly to 1.", Int(0), "beyond the paper",
        settable=True, recipe=True)
    alpha_start: float | None = setting(
        None, "VSC: anneal the prior's alpha: start here, fall geometrically to --alpha over --alpha-anneal "
        "iterations; every reported ELBO uses --alpha.", Float(0, 1, lo_open=True), "beyond the paper",
        settable=True, recipe=True)
    alpha_anneal: int = setting(0, "VSC: iterations of that fall.", Int(0), "beyond the paper", settable=True,
                                recipe=True)
    alpha_hold: int = setting(0, "VSC: iterations at --alpha-start before the fall.", Int(0), "beyond the paper",
                              settable=True, recipe=True)
    prior: str = setting(
        "spike-slab", "VSC: " + PRIORS.help(" = ") + ".",
        Choice(PRIORS), "beyond the paper", settable=True, recipe=True)
    pseudo_inputs: int = setting(10, "Learned priors: number of pseudo-images K.", Int(1, 1 << 16),
                                 "beyond the paper", settable=True)
    prior_sharpness: float = setting(
        10.0, "Learned priors: nu in gamma_p = S(nu (gamma - 1/2)), sharpening the pseudo-inputs' spikes.",
        Float(0, lo_open=True), "beyond the paper", settable=True)
    rate_weight: float = setting(
        0.0, "VSC: weight beta of the aggregate spike-rate term beta sum_j KL(Bern(gbar_j) || Bern(target)), gbar_j "
        "the batch's mean gamma of element j (regularisers.py): images switch on different elements. 0 = off.",
        Float(0, math.inf, hi_open=True), "beyond the paper", settable=True, recipe=True)
    rate_target: float | None = setting(
        None, "VSC: that term's target rate (None: the prior's alpha at each iteration).",
        Float(0, 1, lo_open=True, hi_open=True), "beyond the paper", settable=True, recipe=True)
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
    threshold: float = setting(
        0.52, "Thresholded: lambda; an element is zero when its noise |sigma eps| <= lambda (their Fashion-MNIST "
        "value 0.52).", Float(0, math.inf, hi_open=True), "beyond the paper", settable=True)
    k: int = setting(
        10, "Top-k: the number of latent elements kept per image.", Int(1, 1 << 20), "beyond the paper",
        settable=True)
    aux_k: int | None = setting(
        None, "Top-k: AuxK (Gao et al. 2024): each step, the dead latents' AUX_K largest pre-activations reconstruct "
        "what the code misses, weighted 1/32, so that dead latents come back. 0 = off.", Int(0, 1 << 20),
        "beyond the paper", settable=True, shown_default="half of --dim")
    dead_after: int = setting(
        10_000, "Top-k: a latent not active in this many training images in a row counts as dead (AuxK).", Int(1),
        "beyond the paper", settable=True)
    prior_variance: float = setting(
        0.1, "Thresholded: the variance of the Gaussian prior of the base sample (their spread 0.1).",
        Float(0, math.inf, lo_open=True, hi_open=True), "beyond the paper", settable=True)
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
    log_every: int = setting(100, "Iterations between rows of log.csv (averages of the ELBO terms).", Int(1), "run")
    checkpoint_every: int = setting(1000, "Iterations between checkpoints.", Int(1), "run")
    backend: str = setting(
        "auto", "Spike-and-slab op: fused numba (CPU) or cuda kernels, or the pure-torch reference; auto = numba on "
        "the CPU, cuda with --device cuda.", Choice(("auto", "torch", "numba", "cuda")), "run")
    dtype: str = setting("float32", "Floating-point type of the model and data (float64: slower, for exact "
                         "comparisons).", Choice(("float32", "float64")), "run")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"], d["channels"] = list(self.hidden), list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Rebuild from a checkpoint's dict, refusing values no `vsc train` could have written."""
        from vsc_cli.common.errors import VscError

        if not isinstance(d, dict):
            raise VscError("config is not a mapping")
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        hidden = d.get("hidden", [400])
        if not Widths().check(hidden):
            raise VscError(f"config entry hidden={hidden!r} is not a list of layer widths")
        d["hidden"] = tuple(hidden)
        if "channels" in d:
            if not Widths().check(d["channels"]):
                raise VscError(f"config entry channels={d['channels']!r} is not a list of layer widths")
            d["channels"] = tuple(d["channels"])
        cfg = cls(**d)
        for name in SETTINGS:
            if not check(name, getattr(cfg, name)):
                raise VscError(f"config entry {name}={getattr(cfg, name)!r} is out of range or of the wrong type")
        return cfg


SETTINGS = {f.name: f for f in fields(TrainConfig)}  # every setting, in declaration order


def check(name: str, value) -> bool:
    """Whether `value` is one a run's config may hold for setting `name` (None exactly where it is the default)."""
    f = SETTINGS[name]
    return (value is None and f.default is None) or f.metadata["kind"].check(value)


SETTABLE = tuple(n for n, f in SETTINGS.items() if f.metadata["settable"])  # `vsc experiment --set KEY=VALUE`


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
    """The run's config as TOML, every setting (None as "none": TOML has no null), readable by from_toml:
    `vsc train --config RUN/config.toml` trains the same model again."""
    lines = ["# vsc train --config THIS_FILE trains this run again (same settings, same seed)"]
    for name in SETTINGS:
        value = getattr(cfg, name)
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
    """A TOML file's settings, each checked as a checkpoint's config would be; VscError names the first bad one."""
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
        if value == "none" and SETTINGS[key].default is None:
            value = None
        elif key in ("hidden", "channels") and isinstance(value, list):
            value = tuple(value)
        elif _is_int(value) and isinstance(SETTINGS[key].metadata["kind"], (Float, DataOrNumber)):
            value = float(value)  # TOML writes 3.0 as 3.0, but a person may write 3
        if not check(key, value):
            raise VscError(f"{where}: {key} = {value!r} is out of range or of the wrong type")
        out[key] = value
    return out


# The recipe fields' defaults are the paper's exact recipe (trainers/recipes.py fills them in for other recipes).
PAPER_RECIPE = {n: f.default for n, f in SETTINGS.items() if f.metadata["recipe"]}
