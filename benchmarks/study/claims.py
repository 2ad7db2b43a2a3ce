"""The paper's claims for each sweep, judged on the measured points: held, partly held, not held.

Each claim has a fixed numerical test, written next to it, so a report states the same verdict for the
same numbers; the evidence string gives the numbers the verdict rests on. A claim is "not measured" while
a point it needs is unfinished (or its numbers are not finite), and "not applicable" when the grid lacks
what it needs (no VAE in the grid, no alpha 1, ...). Thresholds that are not the paper's own are the
issue's goals (#14) or marked as our choice.

The claims are data: CLAIMS is a table of `Claim(grid, claim, test, applies, needs, judge)`, one row per claim;
`judge()` walks it (not applicable / not measured / the verdict). A new claim is one row and its judging function.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

HELD, PARTLY, NOT_HELD = "held", "partly held", "not held"
UNMEASURED, NA = "not measured", "not applicable"
FALL = 0.01  # a curve "falls" when its last point is >= 1% below its peak (our choice; Fig. 2's VAE drops ~10%)
SPARSITY_TOL = 0.05  # Fig. 8 "follows the prior": |sparsity - alpha| <= 0.05 for alpha >= 0.2 (our goal for the paper's sweeps)
ACCURACY_GOAL = {"mnist": 94.0, "fmnist": 82.0}  # VSC alpha 0.01, 200 dims, 5,000 labels (our goals for the paper's sweeps)
JACCARD_GOAL = 0.30  # example-specific codes: two images of different classes share <= 30% of active elements


@dataclass
class Verdict:
    claim: str  # what the paper (or the issue) says
    test: str  # the numerical test applied
    status: str  # HELD | PARTLY | NOT_HELD | UNMEASURED | NA
    evidence: str  # the numbers, or why there is no verdict


def _key(r: dict) -> str:
    return "vae" if r["model"] == "vae" else f"vsc:{r['alpha']:g}"


def _name(key: str) -> str:
    return "VAE" if key == "vae" else f"VSC alpha {key[4:]}"


def _acc(r: dict, labelled: int | None = None):
    """(labelled-set size, mean test accuracy %) for `labelled` labels, by default the largest size measured;
    None when that size was not measured."""
    accs = {a["labelled"]: a for a in r["accuracy"]}
    n = max(accs) if labelled is None else labelled
    return (n, 100 * accs[n]["accuracy_mean"]) if n in accs else None


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _fall(values: list[float]) -> float:
    """How far the last value lies below the peak, as a fraction of the peak's magnitude."""
    peak = max(values)
    return (peak - values[-1]) / abs(peak) if peak else 0.0


def _pairs(xs, ys, fmt) -> str:
    return ", ".join(f"{x:g}: {format(y, fmt)}" for x, y in zip(xs, ys))


@dataclass
class Sweep:
    """What a claim reads: the sweep's axes (the full grid, finished or not) and its finished points."""
    grid: str
    data: str
    results: list
    dims: list = None
    alphas: list = None
    models: list = None

    def __post_init__(self):
        self.series = {k: sorted((r for r in self.results if _key(r) == k), key=lambda r: r["dim"])
                       for k in (self.models or [])}
        self.at = {r["alpha"]: r for r in self.results}

    # --- the dims grid
    @property
    def vscs(self):
        return [k for k in self.models if k != "vae"]

    def missing(self, keys):
        """None when every point of these models is finished, else the reason."""
        gaps = [f"{_name(k)} at {[d for d in self.dims if d not in {r['dim'] for r in self.series[k]}]}"
                for k in keys if [r["dim"] for r in self.series[k]] != self.dims]
        return f"unfinished: {'; '.join(gaps)}" if gaps else None

    def elbos(self, k):
        return [r["test_elbo"] for r in self.series[k]]

    def accs(self, k):
        return [_acc(r)[1] for r in self.series[k]]

    def unfinished_elbos(self, keys):
        """missing(keys), else the models whose ELBOs are not finite, else None."""
        bad = [_name(k) for k in keys if not _finite(*self.elbos(k))]
        return self.missing(keys) or (f"non-finite values for {', '.join(bad)}" if bad else None)

    def big(self):
        return [d for d in self.dims if d >= 64]

    def by_dim(self, k):
        return {r["dim"]: r for r in self.series[k]}

    # --- the alpha grid
    def unfinished(self, needed):
        gaps = [a for a in needed if a not in self.at]
        return f"unfinished: alpha {', '.join(f'{a:g}' for a in gaps)}" if gaps else None

    # --- both: the VSC alpha 0.01, 200-dimension point
    @property
    def has_point(self):
        return 200 in self.dims and "vsc:0.01" in self.models if self.grid == "dims" else 0.01 in self.alphas

    @property
    def point(self):
        if self.grid == "dims":
            return next((r for r in self.series.get("vsc:0.01", []) if r["dim"] == 200), None)
        return self.at.get(0.01)


@dataclass(frozen=True)
class Claim:
    """One claim as data: which grid it is judged on, what it says, its numerical test, what the grid must
    contain (`applies`: None, or why the claim does not apply), which points must be finished (`needs`: None,
    or why it is not measured yet) and the verdict on the numbers (`judge`: (status, evidence))."""
    grid: str  # "dims", "alpha" or "both"
    claim: object  # str, or Sweep -> str when it names the dataset's goal
    test: str
    applies: object  # Sweep -> str | None
    needs: object  # Sweep -> str | None
    judge: object  # Sweep -> (status, evidence)


def _levels(values, ok, partly=True):
    return HELD if len(ok) == len(values) else PARTLY if ok and partly else NOT_HELD


def _vae_peaks(s):
    e = s.elbos("vae")
    k = e.index(max(e))
    ok = 0 < k < len(e) - 1 and _fall(e) >= FALL
    return HELD if ok else NOT_HELD, f"VAE ELBO {_pairs(s.dims, e, '.0f')}; peak at {s.dims[k]} dims, last " \
                                     f"{100 * _fall(e):.1f}% below it"


def _vsc_level(s):
    falls = {k: _fall(s.elbos(k)) for k in s.vscs}
    level = [k for k, f in falls.items() if f < FALL]
    return _levels(falls, level), "; ".join(f"{_name(k)}: last {100 * f:.1f}% below its peak" for k, f in falls.items())


def _vsc_lower(s):
    best_vae = max(s.elbos("vae"))
    best = {k: max(s.elbos(k)) for k in s.vscs}
    lower = [k for k, b in best.items() if b < best_vae]
    return _levels(best, lower), f"VAE {best_vae:.0f}; " + "; ".join(f"{_name(k)} {b:.0f}" for k, b in best.items())


def _classify_from_64(s):
    have = {k: s.by_dim(k) for k in ("vae", "vsc:0.01")}
    big = s.big()
    n = _acc(have["vae"][big[0]])[0]
    wins = [d for d in big if _acc(have["vsc:0.01"][d])[1] >= _acc(have["vae"][d])[1]]
    return _levels(big, wins), f"{n:,} labels: " + "; ".join(
        f"{d}: VSC {_acc(have['vsc:0.01'][d])[1]:.1f} vs VAE {_acc(have['vae'][d])[1]:.1f}" for d in big)


def _best_vsc(s):
    best_vsc, best_vae = max(s.accs("vsc:0.01")), max(s.accs("vae"))
    return HELD if best_vsc >= best_vae else NOT_HELD, f"VSC best {best_vsc:.1f}, VAE best {best_vae:.1f}"


def _vae_acc_falls(s):
    a = s.accs("vae")
    return HELD if max(a) - a[-1] >= 1.0 else NOT_HELD, f"VAE accuracy {_pairs(s.dims, a, '.1f')}"


def _large(s):
    return [a for a in s.alphas if 0.2 <= a < 1]


def _follows(s):
    large = _large(s)
    close = [a for a in large if abs(s.at[a]["sparsity"] - a) <= SPARSITY_TOL]
    return _levels(large, close), ", ".join(f"{a:g}: {s.at[a]['sparsity']:.3f}" for a in large)


def _departs(s):
    low = s.alphas[0]
    v = s.at[low]["sparsity"]
    return HELD if v > low + SPARSITY_TOL else NOT_HELD, f"alpha {low:g}: sparsity {v:.3f}"


def _elbo_peak(s):
    elbo = [s.at[a]["test_elbo"] for a in s.alphas]
    k = elbo.index(max(elbo))
    status = HELD if 0 < k < len(s.alphas) - 1 else PARTLY if k == 0 else NOT_HELD
    return status, f"test ELBO {_pairs(s.alphas, elbo, '.0f')}; peak at alpha {s.alphas[k]:g}"


def _efficient(s):
    low, one = ({a["labelled"]: a for a in s.at[x]["accuracy"]} for x in (s.alphas[0], 1.0))
    sizes = sorted(set(low) & set(one))
    parts, better = [], 0
    for n in sizes:
        gain = low[n]["accuracy_mean"] - one[n]["accuracy_mean"]
        better += gain > max(low[n]["accuracy_std"], one[n]["accuracy_std"])
        parts.append(f"{n} labels: {100 * low[n]['accuracy_mean']:.1f} at alpha {s.alphas[0]:g} vs "
                     f"{100 * one[n]['accuracy_mean']:.1f} at 1")
    status = UNMEASURED if not sizes else HELD if better == len(sizes) else PARTLY if better else NOT_HELD
    return status, "; ".join(parts) or "no labelled-set size measured at both"


def _goal(s):
    r, goal = s.point, ACCURACY_GOAL[s.data]
    if _acc(r, 5000) is None:
        return NA, "5,000 labels were not among the labelled-set sizes"
    value = _acc(r, 5000)[1]
    return HELD if value >= goal else NOT_HELD, f"{value:.1f}%"


def _specific(s):
    r = s.point
    if not _finite(r.get("jaccard_different_class")):
        return UNMEASURED, ("no Jaccard between classes (no two images with active elements in different classes, "
                            "or an older result)")
    diff, same = r["jaccard_different_class"], r.get("jaccard_same_class")
    ok = diff <= JACCARD_GOAL and (not _finite(same) or diff < same)
    within = f"{same:.2f} within" if _finite(same) else "no same-class pair"
    return HELD if ok else NOT_HELD, (f"Jaccard {diff:.2f} between classes, {within}; {r['active_mean']:.1f} active "
                                      f"elements per image of {r['dims_used']} used")


def _few(s):
    return "needs >= 3 dimensions" if len(s.dims) < 3 else None


def _pair(s):
    return all(k in s.models for k in ("vae", "vsc:0.01"))


ABSENT = "the grid has no VSC alpha 0.01 point at 200 dimensions"
CLAIMS = [
    Claim("dims", "Fig. 2: the VAE's test ELBO peaks at a moderate dimension and falls for larger latent spaces.",
          f"the VAE's ELBO peaks strictly inside the grid and its last point is >= {FALL:.0%} below the peak",
          lambda s: "no VAE in this grid" if "vae" not in s.models else _few(s),
          lambda s: s.unfinished_elbos(["vae"]), _vae_peaks),
    Claim("dims", "Fig. 2: the VSC's ELBO stays level as the latent space grows.",
          f"every VSC model's last point is < {FALL:.0%} below its peak (partly: some models)",
          lambda s: "no VSC model in this grid" if not s.vscs else _few(s),
          lambda s: s.unfinished_elbos(s.vscs), _vsc_level),
    Claim("dims", "Fig. 2: the VSC reaches a lower maximum ELBO than the VAE.",
          "every VSC model's best ELBO over the dimensions is below the VAE's best (partly: some models)",
          lambda s: "needs the VAE and a VSC model in the grid" if "vae" not in s.models or not s.vscs else None,
          lambda s: s.unfinished_elbos(s.models), _vsc_lower),
    Claim("dims", "Fig. 3: with alpha 0.01 the VSC's codes classify at or above the VAE's at every dimension from "
          "64 up.", "mean test accuracy with the largest labelled set: VSC alpha 0.01 >= VAE at each dimension >= 64 "
          "(partly: at some)",
          lambda s: None if _pair(s) and s.big() else "needs the VAE, VSC alpha 0.01 and dimensions >= 64 in the grid",
          lambda s: (lambda gaps: f"unfinished: {', '.join(gaps)}" if gaps else None)(
              [f"{_name(k)} at {d}" for k in ("vae", "vsc:0.01") for d in s.big() if d not in s.by_dim(k)]),
          _classify_from_64),
    Claim("dims", "Fig. 3: the VSC (alpha 0.01) marginally outperforms the best VAE.",
          "the best mean accuracy of VSC alpha 0.01 over the dimensions >= the VAE's best",
          lambda s: None if _pair(s) else "needs the VAE and VSC alpha 0.01 in the grid",
          lambda s: s.missing(["vae", "vsc:0.01"]), _best_vsc),
    Claim("dims", "Fig. 3: the VAE's accuracy falls when its latent space is too large.",
          "the VAE's accuracy at the largest dimension is >= 1 point below its best",
          lambda s: "no VAE in this grid" if "vae" not in s.models else _few(s),
          lambda s: s.missing(["vae"]), _vae_acc_falls),
    Claim("alpha", "Fig. 8: for larger alpha the posterior sparsity follows the prior alpha.",
          f"abs(sparsity - alpha) <= {SPARSITY_TOL} at every alpha from 0.2 below 1 (at 1 it is 1 by construction; "
          "partly: at some)",
          lambda s: None if _large(s) else "no alpha in [0.2, 1) in this grid",
          lambda s: s.unfinished(_large(s)), _follows),
    Claim("alpha", "Fig. 8: at low alpha the posterior sparsity departs above the prior (the encoder needs some "
          "elements).", f"at the smallest alpha, sparsity > alpha + {SPARSITY_TOL}",
          lambda s: None if s.alphas and s.alphas[0] < 0.2 else "no alpha below 0.2 in this grid",
          lambda s: s.unfinished(s.alphas[:1]), _departs),
    Claim("alpha", "Fig. 10: a sparser prior (alpha from 1 toward 0) raises the ELBO, until at very low alpha it "
          "falls.", "the test ELBO's peak lies strictly between the smallest alpha and 1 (partly: it rises from "
          "alpha 1 but peaks at the smallest alpha)",
          lambda s: None if 1.0 in s.alphas and len(s.alphas) >= 3 else "needs alpha 1 and >= 3 alphas in the grid",
          lambda s: s.unfinished(s.alphas) or (None if _finite(*(s.at[a]["test_elbo"] for a in s.alphas))
                                               else "non-finite test ELBO"), _elbo_peak),
    Claim("alpha", "Fig. 11: as alpha decreases the codes become more efficient for classification.",
          "for each labelled-set size, the accuracy at the smallest alpha exceeds that at alpha 1 by more than the "
          "larger of their two standard deviations over classifier draws (partly: for some sizes)",
          lambda s: None if 1.0 in s.alphas and s.alphas[0] != 1.0 else "needs alpha 1 and a smaller alpha in the grid",
          lambda s: s.unfinished([s.alphas[0], 1.0]), _efficient),
    Claim("both", lambda s: f"Our goal: VSC alpha 0.01 at 200 dims reaches >= {ACCURACY_GOAL[s.data]:g}% "
          "with 5,000 labels.", "mean test accuracy with 5,000 labels >= the goal",
          lambda s: None if s.has_point else ABSENT,
          lambda s: None if s.point is not None else "unfinished: the point", _goal),
    Claim("both", "Sec. 4.3: each image switches on its own few elements; different images use different subsets.",
          f"VSC alpha 0.01, 200 dims: mean Jaccard of two images' active sets <= {JACCARD_GOAL} between classes, and "
          "lower than within a class",
          lambda s: None if s.has_point else ABSENT,
          lambda s: None if s.point is not None else "unfinished: the point", _specific),
]


def judge(grid: str, data: str, results: list[dict], dims=None, alphas=None, models=None) -> list[Verdict]:
    """The verdicts of CLAIMS for one sweep. dims / alphas / models ("vae", "vsc:0.01", ...): the grid's full
    axes, so that a claim needing an unfinished point is "not measured"; by default the measured ones."""
    if grid == "dims":
        s = Sweep(grid, data, results, dims=sorted(dims or {r["dim"] for r in results}),
                  models=list(models or dict.fromkeys(_key(r) for r in results)))
    else:
        s = Sweep(grid, data, results, dims=[], alphas=sorted(alphas or {r["alpha"] for r in results}), models=[])
    out = []
    for c in CLAIMS:
        if c.grid not in (grid, "both") or (c.grid == "both" and data not in ACCURACY_GOAL and c.judge is _goal):
            continue
        claim = c.claim(s) if callable(c.claim) else c.claim
        why = c.applies(s)
        if why:
            out.append(Verdict(claim, c.test, NA, why))
            continue
        why = c.needs(s)
        out.append(Verdict(claim, c.test, UNMEASURED, why) if why else Verdict(claim, c.test, *c.judge(s)))
    return out


def markdown(verdicts: list[Verdict]) -> list[str]:
    """The verdicts as a markdown table."""
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731  (a bar would end the cell)
    lines = ["| claim | test | verdict | numbers |", "|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| {cell(v.claim)} | {cell(v.test)} | **{v.status}** | {cell(v.evidence)} |")
    return lines
