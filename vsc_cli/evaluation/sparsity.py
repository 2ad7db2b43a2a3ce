"""Posterior sparsity (appendix E.2) and example-specificity of a run's codes or a codes file's, beside the prior's
alpha; which dimensions are in use is the metrics' definition (metrics.dimension_use)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vsc_cli.common.errors import VscError
from vsc_cli.data.sources import open_images, own_split
from vsc_cli.evaluation.codes import read_gamma, read_labels
from vsc_cli.evaluation.encoding import active_elements, encode_batches
from vsc_cli.evaluation.metrics import ALWAYS, THRESHOLD, USED, active_sets, dimension_use, specificity
from vsc_cli.evaluation.consistency import consistency as consistency_of
from vsc_cli.evaluation.truth import truth_scores
from vsc_cli.trainers.checkpoint import build_model, load_checkpoint


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
             conditional: bool = False, active: str | None = None, truth: Path | None = None,
             consistency: bool = False) -> dict:
    """Sparsity and example-specificity of a codes file's <split>/gamma, or of a run directory's encoder on
    <split>; `conditional` (run directories of MNIST or Fashion-MNIST) adds Fig. 13's class retention.
    active: "gamma" (an element is active where gamma > threshold) or "nonzero" (where one exact draw is non-zero,
    nonzero_draws; run directories only); None: the family's own (`Posterior.active`).
    truth: a set with known factors (`vsc synth`'s .npz, run directories only) adds the scores of truth.py, on the
    split's rows of its `factors` and the codes E[z] = gamma mu. consistency (run directories only): the score of
    consistency.py on the same codes and active sets. A run directory's result also has the reconstruction error of
    its codes (reconstruction_error)."""
    source = Path(source)
    is_run = source.is_dir() or source.suffix == ".safetensors"
    if conditional and not is_run:
        raise VscError("--conditional needs a run folder (it decodes samples), not a codes file")
    if consistency and not is_run:
        raise VscError("--consistency needs a run folder (it decodes), not a codes file")
    if truth is not None and not is_run:
        raise VscError("--truth needs a run folder (it encodes the set's images), not a codes file")
    if is_run:
        state = load_checkpoint(source)
        model = build_model(state)
        x = open_images(model.cfg.data, split, data_dir, model.cfg.normalisation, image_size=model.cfg.image_size)
        blocks = [(mu, g) for _, mu, _, g in encode_batches(model, x, 1000, progress)]
        gamma = np.concatenate([g for _, g in blocks])
        codes = np.concatenate([g * mu for mu, g in blocks])
        alpha = model.cfg.alpha if model.family.uses_alpha else 1.0
        labels = x.labels
        active = active or model.family.active  # what "active" means for the family
    else:
        if active == "nonzero":
            raise VscError("active elements as non-zero draws need a run folder (it draws from the encoder)")
        gamma, alpha = read_gamma(source, split)
        labels = read_labels(source, split)
        active, model, x = "gamma", None, None
    on = active_elements(model, x, gamma, threshold, active)
    out = sparsity_from_gamma(gamma, alpha, threshold, on)
    out.update(specificity(on, labels, threshold))
    out["active"] = active
    if active == "nonzero":  # the rate of non-zero elements over the test draws, and the active set's count
        out.update(nonzero_rate=float(on.mean()), active_per_example=float(on.sum(1).mean()))
    if conditional:
        from vsc_cli.evaluation.metrics import conditional_retention_of

        out.update(conditional_retention_of(model, model.cfg.data, gamma, labels, data_dir, threshold=threshold))
    if is_run:
        out.update(reconstruction_error(model, x, codes, data_dir))
    if consistency:
        out.update(consistency_of(model, codes, on))
    if truth is not None:
        out.update(truth_scores(codes, on, read_factors(truth, split, len(codes))), truth=str(truth))
    out.update(source=str(source), split=split)
    return out


def reconstruction_error(model, x, codes: np.ndarray, data_dir=None, batch: int = 1000) -> dict:
    """How much of the images the codes keep: the summed squared error per image of the decoded code (the decoder's
    mean at E[z] = gamma mu), over that of the mean training image (1: no better than the mean image; 0: exact),
    with both errors. Codes of any family compare on the same scale, whatever their likelihood."""
    import torch

    cfg = model.cfg
    train = open_images(cfg.data, "train", data_dir, cfg.normalisation, image_size=cfg.image_size)
    total = np.zeros(int(np.prod(train.shape)), dtype=np.float64)
    for start in range(0, len(train), batch):  # the mean image, in blocks (CelebA's training images are large)
        total += train[np.arange(start, min(start + batch, len(train)))].sum(0, dtype=np.float64)
    mean_image = total / len(train)
    dtype = next(model.parameters()).dtype
    err_code = err_mean = 0.0
    with torch.no_grad():
        for start in range(0, len(codes), batch):
            rows = x[np.arange(start, min(start + batch, len(codes)))].astype(np.float64)
            recon = model.decoder.mean(torch.from_numpy(codes[start:start + len(rows)]).to(dtype)).double().numpy()
            err_code += float(((rows - recon) ** 2).sum())
            err_mean += float(((rows - mean_image) ** 2).sum())
    n = len(codes)
    return {"reconstruction_error": err_code / err_mean if err_mean > 0 else None,
            "reconstruction_sse": err_code / n, "mean_image_sse": err_mean / n}


def read_factors(path: Path, split: str, n: int) -> np.ndarray:
    """The `factors` of the split's rows of a set with known factors (own data's split: every tenth is a test
    image); VscError when the file has none or they do not fit the n images encoded."""
    try:
        with np.load(path) as f:
            if "factors" not in f.files:
                raise VscError(f"--truth {path}: no 'factors' array (make one with vsc synth)")
            factors = np.asarray(f["factors"], dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise VscError(f"--truth {path}: not a readable .npz file ({exc})") from None
    if factors.ndim != 2:
        raise VscError(f"--truth {path}: 'factors' must be (images, factors), not {factors.shape}")
    rows = own_split(len(factors), split)
    if len(rows) != n:
        raise VscError(f"--truth {path}: its {len(factors)} images give {len(rows)} {split} images, the run's data "
                       f"{n}; give the file the run was trained on")
    return factors[rows]
