"""Posterior sparsity (appendix E.2) and example-specificity of a run's codes or a codes file's, beside the prior's
alpha; which dimensions are in use is the metrics' definition (metrics.dimension_use)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vsc_cli.common.errors import VscError
from vsc_cli.evaluation.verdict import verdict
from vsc_cli.trainers.report import memorisation
from vsc_cli.evaluation.codes import read_gamma, read_labels
from vsc_cli.evaluation.encoding import active_elements, encode_batches, reconstruction_error  # noqa: F401
from vsc_cli.evaluation.metrics import ALWAYS, THRESHOLD, USED, active_sets, dimension_use, specificity
from vsc_cli.evaluation import reports
from vsc_cli.evaluation.reports import Encoded
from vsc_cli.evaluation.truth import read_factors  # noqa: F401 - its home was here
from vsc_cli.trainers.run import Run


def sparsity_from_gamma(gamma: np.ndarray, alpha: float | None, threshold: float = THRESHOLD,
                        active: np.ndarray | None = None) -> dict:
    """Aggregate posterior sparsity (appendix E.2) and per-dimension rates from gamma (N, J).

    sparsity = mean gamma = the expected fraction of non-zero latent elements under q (the paper's measure,
    plotted against alpha in Fig. 8); selected = fraction of elements with gamma > threshold. Dimensions never,
    sometimes and always active: metrics.dimension_use of the active sets (`active`, default gamma > threshold):
    never = dead (active in fewer than 1% of images), always = always-on (in 95% or more); dimension_rates: each
    dimension's mean gamma.
    """
    gamma = np.asarray(gamma, dtype=np.float64)
    use = dimension_use(active_sets(gamma, threshold) if active is None else active)
    return {"alpha": alpha, "examples": int(gamma.shape[0]), "dim": int(gamma.shape[1]),
            "sparsity": float(gamma.mean()), "selected_fraction": float((gamma > threshold).mean()),
            "threshold": threshold, "active_per_example": float((gamma > threshold).sum(1).mean()),
            "dims_never": use["dims_dead"], "dims_sometimes": use["dims_used"] - use["dims_always_on"],
            "dims_always": use["dims_always_on"], "eps": USED, "always_from": ALWAYS,
            "dimension_rates": gamma.mean(0).tolist()}


def sparsity(source: Path, split: str = "test", data_dir=None, threshold: float = 0.5, progress: bool = False,
             **options) -> dict:
    """Sparsity and example-specificity of a codes file's <split>/gamma, or of a run directory's encoder on
    <split>, with the reports (reports.REPORTS) whose options are given:
    active: "gamma" (an element is active where gamma > threshold) or "nonzero" (where one exact draw is non-zero,
    nonzero_draws; run directories only); None: the family's own (`Posterior.active`).
    conditional (run directories of MNIST or Fashion-MNIST) adds Fig. 13's class retention.
    truth: a set with known factors (`vsc synth`'s .npz, run directories only) adds the scores of truth.py, on the
    split's rows of its `factors` and the codes E[z] = gamma mu. consistency (run directories only): the score of
    consistency.py on the same codes and active sets. A run directory's result also has the reconstruction error of
    its codes (reconstruction_error)."""
    return measure(source, split, data_dir, threshold, progress, **options)[0]


def measure(source: Path, split: str = "test", data_dir=None, threshold: float = 0.5, progress: bool = False,
            **options) -> tuple[dict, dict]:
    """sparsity()'s result and the reports that ran for it (name -> the option's value), for reports.table."""
    unknown = sorted(set(options) - {r.name for r in reports.REPORTS if r.option is not None})
    if unknown:
        raise TypeError(f"sparsity() got an unexpected keyword argument {unknown[0]!r}")
    source = Path(source)
    is_run = source.is_dir() or source.suffix == ".safetensors"
    if not is_run:
        for report in reports.REPORTS:
            if report.needs_run and report.option is not None and report.refuses(options.get(report.name)):
                raise VscError(report.refusal)
    if is_run:
        run = Run.open(source, data_dir=data_dir)
        model = run.model
        x = run.images(split)
        blocks = [(mu, g) for _, mu, _, g in encode_batches(model, x, 1000, progress)]
        gamma = np.concatenate([g for _, g in blocks])
        codes = np.concatenate([g * mu for mu, g in blocks])
        alpha = model.cfg.alpha if model.family.uses_alpha else 1.0
        labels = x.labels
        active = options.get("active") or model.family.active  # what "active" means for the family
    else:
        gamma, alpha = read_gamma(source, split)
        labels = read_labels(source, split)
        active, model, x, run, codes = "gamma", None, None, None, None
    on = active_elements(model, x, gamma, threshold, active)
    out = sparsity_from_gamma(gamma, alpha, threshold, on)
    out.update(specificity(on, labels, threshold))
    out["active"] = active
    encoded = Encoded(gamma, labels, on, split, threshold, run, x, codes)
    values = {**options, "active": active, "reconstruction": True}
    ran = {}
    for report in reports.REPORTS:
        value = values.get(report.name)
        if value is None or value is False or (report.needs_run and not is_run):
            continue
        out.update(report.compute(encoded, value))
        ran[report.name] = value
    out.update(source=str(source), split=split)
    if is_run:  # a collapsed or dense run is never reported without a word (verdict.py)
        out["verdict"] = verdict(run.cfg, out["active_mean"], out.get("reconstruction_error"), out.get("jaccard_all"))
        m = run.metrics or {}
        if (run.checkpoint is not None and run.checkpoint.name == "best.safetensors") or not m.get("best_iteration"):
            # metrics.json's numbers are those of the checkpoint opened here: its splits, side by side
            out["splits"] = {s: m.get(f"{s}_reconstruction_error") for s in ("train", "validation", "test")
                             if m.get(f"{s}_reconstruction_error") is not None}
            out["memorisation"] = memorisation(m, run.cfg)
    return out, ran
