"""`vsc sparsity`'s additions as data: each report its option, what it needs, its JSON keys and its table rows.

`REPORTS` is the table, in the order the reports run (their JSON keys come in this order, and so do their rows,
but for those placed at the end). The command line builds one option per report that has one (cli/reports.py,
in `Option.place` order) and prints the sections `table(result, ran)` gives; `sparsity.measure` runs every report
whose option is given (`active` always, with the family's own meaning by default; a report without an option
wherever it can: `reconstruction`, for every run folder).

A report's `compute(encoded, value)` gets the codes (`Encoded`) and the option's value and returns its JSON keys;
its `rows(result, value)` are (label, value text) pairs. `needs` names the parts of `Encoded` it uses: one that
needs a run folder's parts (RUN_ONLY) is refused for a codes file with its `refusal`, when `refuses(value)`.

This module imports nothing heavy: the command line reads it to build its options.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

RUN_ONLY = ("run", "model", "images", "codes")  # what only a run folder has (a codes file has gamma and labels)


@dataclass(frozen=True)
class Option:
    """A report's command-line option: kind "flag", "choice" (of `choices`, default None) or "file" (an existing
    file); `place` orders the options in --help."""
    kind: str
    help: str
    place: int
    choices: tuple = ()


@dataclass
class Encoded:
    """What the reports are computed from: a run folder's (run, its model, the split's images, codes = gamma mu)
    or a codes file's (those None), the gamma, labels and active sets (N, J) of the split's images."""
    gamma: Any
    labels: Any
    active: Any
    split: str
    threshold: float
    run: Any = None
    images: Any = None
    codes: Any = None

    @property
    def model(self):
        return None if self.run is None else self.run.model


@dataclass(frozen=True)
class Report:
    name: str  # the option's name (--NAME) and sparsity()'s keyword
    option: Option | None
    needs: tuple  # the parts of Encoded it uses
    keys: tuple  # the JSON keys it may add (truth's halves: signed factors only)
    compute: Callable  # (Encoded, value) -> dict of `keys`
    rows: Callable  # (result, value) -> [(label, value text)]
    placement: str = "section"  # "specificity": after the specificity rows; "section": its own; "end": the last rows
    refusal: str = ""  # the error for a codes file (a report of RUN_ONLY needs)
    refuses: Callable = field(default=bool)  # value -> whether a codes file refuses it

    @property
    def needs_run(self) -> bool:
        return any(n in RUN_ONLY for n in self.needs)


def _f(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# ---------------------------------------------------------------------------------------------- the reports
def _active(enc: Encoded, value):
    if value != "nonzero":
        return {}
    # the rate of non-zero elements over the draws, and the active set's count
    return {"nonzero_rate": float(enc.active.mean()), "active_per_example": float(enc.active.sum(1).mean())}


def _active_rows(r, value):
    return [("rate of non-zero elements over the draws", f"{r['nonzero_rate']:.4f}")] if value == "nonzero" else []


def _conditional(enc: Encoded, value):
    from vsc_cli.evaluation.metrics import conditional_retention_of

    return conditional_retention_of(enc.run, enc.gamma, enc.labels, threshold=enc.threshold)


def _conditional_rows(r, value):
    return [("Fig. 13: conditional samples kept in their source's class", f"{r['conditional_retention']:.3f}"),
            ("  the same, values drawn from the training codes of each element",
             f"{r['conditional_retention_data']:.3f}"),
            ("  (the classifier's accuracy on real test images)", f"{r['image_classifier_accuracy']:.3f}")]


def _reconstruction(enc: Encoded, value):
    from vsc_cli.evaluation.encoding import reconstruction_error

    return reconstruction_error(enc.run, enc.images, enc.codes)


def _reconstruction_rows(r, value):
    if r.get("reconstruction_error") is None:  # the decoded codes against the mean image
        return []
    rows = [("reconstruction error of the codes / the mean training image's", f"{r['reconstruction_error']:.3f}")]
    if len(r.get("splits") or {}) > 1:  # metrics.json's, of the same checkpoint: memorisation shows as a gap
        rows.append(("  training / validation / test (metrics.json)",
                     " / ".join(f"{r['splits'][s]:.3f}" if s in r["splits"] else "-"
                                for s in ("train", "validation", "test"))))
    return rows


def _consistency(enc: Encoded, value):
    from vsc_cli.evaluation.consistency import consistency

    return consistency(enc.model, enc.codes, enc.active)


def _consistency_rows(r, value):
    return [(f"consistency: median cosine of an element's pixel changes ({r['consistency_elements']} elements used "
             "by >= 1% of images)", _f(r["consistency"], ".3f")),
            ("  most / least consistent elements",
             f"{','.join(map(str, r['consistency_best'][:3]))} / {','.join(map(str, r['consistency_worst'][:3]))}")]


def _truth(enc: Encoded, value):
    from vsc_cli.evaluation.truth import run_factors, truth_scores

    factors = run_factors(enc.run, value, enc.split, len(enc.codes))
    scores = truth_scores(enc.codes, enc.active, factors)
    return {**scores, "truth": str(value)}


def _truth_rows(r, value):
    from vsc_cli.evaluation.truth import ROWS

    out = []
    for key, label in ROWS:
        if key not in r:  # the halves' rows: signed factors only
            continue
        v, of = r[key], r["truth_halves" if key.startswith("truth_halves") else "truth_factors"]
        out.append((label, f"{v} of {of}" if isinstance(v, int) else f"{v:.3f}"))
    return out


REPORTS = (
    Report("active", Option(
        "choice", "What makes an element active in the specificity rows: gamma above --threshold, or non-zero in "
        "one exact draw per image (RUN_DIR only). Default: nonzero for a thresholded run, else gamma.", place=2,
        choices=("gamma", "nonzero")),
        needs=("model", "images"), keys=("nonzero_rate", "active_per_example"), compute=_active, rows=_active_rows,
        placement="specificity",
        refusal="active elements as non-zero draws need a run folder (it draws from the encoder)",
        refuses=lambda value: value == "nonzero"),
    Report("conditional", Option(
        "flag", "Also Fig. 13's check (RUN_DIR of mnist/fmnist only): the fraction of conditional samples of "
        "1,000 test images (10 each) that a classifier trained on real images puts in the source's class.", place=1),
        needs=("run", "gamma", "labels"),
        keys=("conditional_retention", "conditional_retention_data", "image_classifier_accuracy"),
        compute=_conditional, rows=_conditional_rows, placement="end",
        refusal="--conditional needs a run folder (it decodes samples), not a codes file"),
    Report("reconstruction", None,  # no option: every run folder's
           needs=("run", "images", "codes"), keys=("reconstruction_error", "reconstruction_sse", "mean_image_sse"),
           compute=_reconstruction, rows=_reconstruction_rows, placement="specificity"),
    Report("consistency", Option(
        "flag", "Also whether each element does the same thing wherever it is on (RUN_DIR only): the median cosine "
        "similarity of the pixel changes of a step in it, between images (docs/model.md).", place=4),
        needs=("model", "codes", "active"),
        keys=("consistency", "consistency_elements", "consistency_best", "consistency_worst",
              "consistency_per_element"),
        compute=_consistency, rows=_consistency_rows, placement="section",
        refusal="--consistency needs a run folder (it decodes), not a codes file"),
    Report("truth", Option(
        "file", "A set with known factors (vsc synth's .npz, the one RUN_DIR was trained on): adds how well code "
        "elements match the true factors (MCC, factors recovered, support F1; docs/model.md).", place=3),
        needs=("codes", "active", "split"),
        keys=("truth_factors", "truth_mcc", "truth_recovered_09", "truth_recovered_07", "truth_support_f1",
              "truth_l0_error", "truth_matched_corr", "truth_halves", "truth_halves_mcc", "truth_halves_recovered_09",
              "truth"),
        compute=_truth, rows=_truth_rows, placement="section",
        refusal="--truth needs a run folder (it encodes the set's images), not a codes file",
        refuses=lambda value: value is not None),
)
BY_NAME = {r.name: r for r in REPORTS}


def options() -> list[Report]:
    """The reports that have an option, in --help's order."""
    return sorted((r for r in REPORTS if r.option is not None), key=lambda r: r.option.place)


# ---------------------------------------------------------------------------------------------- the table
SPECIFICITY_HEAD = "active_mean"


def table(r: dict, ran: dict) -> dict:
    """`vsc sparsity`'s table of a result and the reports that ran for it (name -> value, sparsity.measure):
    {"title", "sections": [[(label, value text), ...], ...]}."""
    from vsc_cli.evaluation.metrics import ROWS as SPECIFICITY_ROWS

    threshold = r["threshold"]
    alpha = r["alpha"]
    first = [("prior alpha", "-" if alpha is None else f"{alpha:g}"),
             ("sparsity: mean gamma (expected fraction non-zero)", f"{r['sparsity']:.4f}"),
             (f"fraction with gamma > {threshold:g}", f"{r['selected_fraction']:.4f}"),
             (f"dimensions never active (in < {r['eps']:.0%} of images)", str(r["dims_never"])),
             ("dimensions sometimes active", str(r["dims_sometimes"])),
             (f"dimensions always active (in >= {r['always_from']:.0%} of images)", str(r["dims_always"]))]
    which = f"gamma > {threshold:g}" if r["active"] == "gamma" else "non-zero in a draw"
    specific = []  # example-specificity: does each image use its own elements? (metrics.py)
    for key, label in SPECIFICITY_ROWS:
        value = r[key]
        text = "-" if value is None else (f"{value:.3f}" if key.startswith("jaccard") else
                                          str(value) if isinstance(value, int) else f"{value:.1f}")
        specific.append((f"{label} ({which})" if key == SPECIFICITY_HEAD else label, text))
    sections, end = [first, specific], []
    for report in REPORTS:
        if report.name not in ran:
            continue
        rows = report.rows(r, ran[report.name])
        if report.placement == "specificity":
            specific.extend(rows)
        elif report.placement == "end":
            end.extend(rows)
        else:
            sections.append(rows)
    sections[-1].extend(end)
    return {"title": f"posterior sparsity of {r['source']} ({r['split']}, {r['examples']} images, {r['dim']} "
                     "dimensions)", "sections": sections}
