"""What changes during training, as one object: `step = schedule(iteration)` gives the sample's sigmoid scale c
(C.2), the slab scale lambda (spike pre-training), the prior's alpha (annealing) and the KL's weight (warm-up).
Evaluation uses `Step.exact(alpha)`: the exact draw, the run's alpha, the whole KL: the true ELBO.

The three schedules below are the definitions the tests check; Schedule only reads a run's config into them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from vsc_cli.common.config import C_END, C_START


def c_schedule(iteration: int, iterations: int, c_start: float = C_START, c_end: float = C_END,
               ramp: int | None = None) -> float:
    """Sigmoid scale c at 0-based `iteration`: linear from c_start (first) to c_end (last) (C.2); with `ramp`,
    linear over the first `ramp` iterations and c_end after, whatever the run's length."""
    iterations = iterations if ramp is None else ramp
    if iterations <= 1:
        return float(c_end)
    frac = min(max(iteration / (iterations - 1), 0.0), 1.0)
    return float(c_start + (c_end - c_start) * frac)


def lambda_schedule(iteration: int, pretrain: int, ramp: int) -> float:
    """Spike pre-training (the authors' UAI 2019 code): lambda at 0-based `iteration` is 0 for the first
    `pretrain` iterations, then rises linearly to 1 over `ramp` iterations, and stays at 1."""
    if iteration < pretrain:
        return 0.0
    if ramp <= 0:
        return 1.0
    return float(min(1.0, (iteration - pretrain + 1) / ramp))


def alpha_schedule(iteration: int, alpha: float, alpha_start: float | None, anneal: int, hold: int = 0) -> float:
    """Prior spike probability at 0-based `iteration` (not in the paper): alpha_start for the first `hold`
    iterations, then falling geometrically to `alpha` over `anneal` iterations, then `alpha`.
    Without alpha_start, always alpha."""
    if alpha_start is None or iteration >= hold + anneal:
        return float(alpha)
    if iteration < hold:
        return float(alpha_start)
    frac = (iteration - hold) / anneal
    return float(math.exp((1 - frac) * math.log(alpha_start) + frac * math.log(alpha)))


def kl_weight(iteration: int, warmup: int) -> float:
    """The KL's weight at 1-based `iteration` of a warm-up over `warmup` iterations: iteration / warmup, then 1."""
    return 1.0 if warmup <= 0 else min(1.0, iteration / warmup)


@dataclass(frozen=True)
class Step:
    c: float  # the sample's sigmoid scale (eq. 24); inf = the exact draw (eq. 25)
    slab_scale: float  # lambda, the sample's slab scale: 0 during spike pre-training, then 1
    alpha: float  # the prior's alpha in the KL terms
    kl_weight: float = 1.0  # the KL's weight in the loss (warm-up); every reported ELBO uses 1

    @property
    def exact(self) -> bool:
        return math.isinf(self.c)

    @classmethod
    def evaluation(cls, alpha: float) -> "Step":
        """The true ELBO of the model: exact spike draws, the run's alpha, the whole KL."""
        return cls(math.inf, 1.0, float(alpha), 1.0)


class Schedule:
    """A run's schedule: `schedule(it)` is the Step of 0-based iteration `it`."""

    def __init__(self, cfg):
        self.cfg = cfg

    @property
    def settled(self) -> int:
        """The first iteration (1-based count of iterations done) from which the objective no longer changes but
        for c: spike pre-training and its ramp over (lambda = 1), alpha annealed to the run's, the KL at full
        weight. Validation ELBOs before it are not compared (training.py: the best checkpoint, --patience): during
        pre-training the decoder has never seen a slab value, so the true ELBO means little yet."""
        get = self.cfg.get
        alpha_done = get("alpha_hold", 0) + get("alpha_anneal", 0) if get("alpha_start", None) is not None else 0
        return max(get("pretrain", 0) + get("pretrain_ramp", 0), alpha_done, self.cfg.kl_warmup)

    def __call__(self, it: int) -> Step:
        cfg = self.cfg
        # a family without a spike has none of its settings: the values that leave the step as the paper's
        get = cfg.get
        return Step(c=c_schedule(it, cfg.iterations, get("c_start", C_START), get("c_end", C_END),
                                     get("c_ramp", None)),
                    slab_scale=lambda_schedule(it, get("pretrain", 0), get("pretrain_ramp", 0)),
                    alpha=alpha_schedule(it, cfg.alpha, get("alpha_start", None), get("alpha_anneal", 0),
                                         get("alpha_hold", 0)),
                    kl_weight=kl_weight(it + 1, cfg.kl_warmup))
