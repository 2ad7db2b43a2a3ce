"""Is a code element a feature? Scores of a run's codes against the true factors of a set with known ones (`vsc synth`;
`vsc sparsity RUN --truth FILE`), as the identifiability literature scores them:

  matching        each true factor k is matched to its own code element j(k) by the Hungarian method on |corr|
                  over the split's images (the matching that maximises the summed |correlation|)
  MCC             the mean |corr| of the matched pairs (1: every factor is one element, up to scale and sign)
  recovered       factors whose matched |corr| >= 0.9 (and >= 0.7)
  support F1      per image, the F1 of the true support {k: s_k != 0} against {k: element j(k) is active},
                  averaged over images (1 for two empty sets)
  L0 error        per image, |active elements - true non-zero factors|, averaged
  halves          signed factors only: MCC and recovered (>= 0.9) against the 2K one-signed halves max(s_k, 0) and
                  max(-s_k, 0), each matched to its own element: a code that keeps a factor's positive and negative
                  values in two elements scores low above and high here
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vsc_cli.common.errors import VscError
from vsc_cli.data.sources import own_split


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the assignment of minimal total cost, each row of the smaller side to its own column (the
    Hungarian method with potentials, O(n^2 m)); the same answer as scipy.optimize.linear_sum_assignment."""
    cost = np.asarray(cost, dtype=np.float64)
    transposed = cost.shape[0] > cost.shape[1]
    a = cost.T if transposed else cost
    n, m = a.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)  # p[j]: the row (1-based) assigned to column j; 0 = none
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv, used = np.full(m + 1, np.inf), np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            cur = a[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (cur < minv[1:])
            minv[1:][better], way[1:][better] = cur[better], j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:  # augment along the path
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    cols = np.flatnonzero(p[1:]) if n else np.zeros(0, np.int64)
    rows = p[1:][cols] - 1
    order = np.argsort(rows)
    rows, cols = rows[order], cols[order]
    return (cols, rows) if transposed else (rows, cols)


def abs_correlation(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(J, K) |Pearson correlation| of every code element with every factor over the images; 0 where either is
    constant (a dead element carries no factor)."""
    def standard(a):
        a = np.asarray(a, dtype=np.float64)
        a = a - a.mean(0)
        norm = np.sqrt((a * a).sum(0))
        return np.where(norm > 0, a / np.where(norm > 0, norm, 1.0), 0.0)

    return np.abs(standard(codes).T @ standard(factors))


def truth_scores(codes: np.ndarray, active: np.ndarray, factors: np.ndarray) -> dict:
    """The module docstring's scores of codes (N, J) and their active sets (N, J) against factors (N, K)."""
    corr = abs_correlation(codes, factors)  # (J, K)
    elements, matched = linear_sum_assignment(-corr)
    element_of = np.full(factors.shape[1], -1)
    element_of[matched] = elements
    score = corr[elements, matched]
    true_support = np.asarray(factors) != 0
    has = element_of >= 0
    predicted = np.zeros_like(true_support)
    predicted[:, has] = np.asarray(active, dtype=bool)[:, element_of[has]]
    both = (true_support & predicted).sum(1)
    size = true_support.sum(1) + predicted.sum(1)
    f1 = np.where(size > 0, 2.0 * both / np.maximum(size, 1), 1.0)
    l0 = np.abs(np.asarray(active, dtype=bool).sum(1) - true_support.sum(1))
    return {"truth_factors": int(factors.shape[1]), "truth_mcc": float(score.sum() / factors.shape[1]),
            "truth_recovered_09": int((score >= 0.9).sum()), "truth_recovered_07": int((score >= 0.7).sum()),
            "truth_support_f1": float(f1.mean()), "truth_l0_error": float(l0.mean()),
            "truth_matched_corr": [float(c) for c in corr[element_of[has], np.flatnonzero(has)]],
            **halves_scores(codes, factors)}


def halves_scores(codes: np.ndarray, factors: np.ndarray) -> dict:
    """MCC and recovered factors (>= 0.9) against the one-signed halves of signed factors (module docstring);
    nothing when no factor is ever negative."""
    factors = np.asarray(factors, dtype=np.float64)
    if not (factors < 0).any():
        return {}
    halves = np.concatenate([np.maximum(factors, 0), np.maximum(-factors, 0)], axis=1)
    corr = abs_correlation(codes, halves)
    elements, matched = linear_sum_assignment(-corr)
    score = corr[elements, matched]
    return {"truth_halves": int(halves.shape[1]), "truth_halves_mcc": float(score.sum() / halves.shape[1]),
            "truth_halves_recovered_09": int((score >= 0.9).sum())}


# (key, label) rows for `vsc sparsity --truth`'s table
ROWS = (
    ("truth_mcc", "MCC: mean |corr| of matched element and factor"),
    ("truth_recovered_09", "factors recovered, matched |corr| >= 0.9"),
    ("truth_recovered_07", "factors recovered, matched |corr| >= 0.7"),
    ("truth_support_f1", "support F1 per image, through the matching"),
    ("truth_l0_error", "|active elements - true factors| per image"),
    ("truth_halves_mcc", "signed factors: MCC against their one-signed halves"),
    ("truth_halves_recovered_09", "signed factors: halves recovered, matched |corr| >= 0.9"),
)


def run_factors(run, path: Path, split: str, n: int) -> np.ndarray:
    """read_factors for the n images of a run's split (trainers.run.Run): its validation split and train size, where
    the run's own data are encoded."""
    cfg = run.cfg
    held = (cfg.validation or 0.0) if run.data_override is None else 0.0
    return read_factors(path, split, n, held, cfg.train_size)


def read_factors(path: Path, split: str, n: int, validation: float = 0.0, train_size: int | None = None) -> np.ndarray:
    """The `factors` of the split's rows of a set with known factors (own data's split: every tenth is a test
    image; a run's validation split carved from its first train_size training images, sources.carve); VscError
    when the file has none or they do not fit the n images encoded."""
    try:
        f = np.load(path)
        if not isinstance(f, np.lib.npyio.NpzFile):  # an .npy file: one array, no names
            raise VscError(f"--truth {path}: one array, not an .npz file with a 'factors' array (make one with "
                           "vsc synth)")
        with f:
            if "factors" not in f.files:
                raise VscError(f"--truth {path}: no 'factors' array (make one with vsc synth)")
            factors = np.asarray(f["factors"], dtype=np.float64)
    except (OSError, ValueError) as exc:  # a text file, a pickle, a damaged archive
        why = "it holds pickled objects, which are never loaded" if "pickle" in str(exc) else str(exc)
        raise VscError(f"--truth {path}: not a readable .npz file ({why}); make one with vsc synth") from None
    if factors.ndim != 2:
        raise VscError(f"--truth {path}: 'factors' must be (images, factors), not {factors.shape}")
    rows = own_split(len(factors), "test" if split == "test" else "train")
    if split != "test" and validation:
        from vsc_cli.data.sources import pick_split

        rows = rows[:train_size] if train_size is not None else rows
        rows = rows[pick_split(len(rows), split, validation)]
    if len(rows) != n:
        raise VscError(f"--truth {path}: its {len(factors)} images give {len(rows)} {split} images, the run's data "
                       f"{n}; give the file the run was trained on")
    return factors[rows]
