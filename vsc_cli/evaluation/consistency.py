"""Does an element do the same thing wherever it is on? A consistency score that needs no labels (`vsc sparsity RUN
--consistency`): for an element active in at least 1% of the images, add delta to it in each image where it is
active (up to `max_images` of them, drawn with a seed) and decode; the pixel changes dec(z + delta e_j) - dec(z) of
different images are compared by their cosine similarity, and the element's score is the median over pairs. A
feature changes the same pixels the same way wherever it is on (1); an element whose effect depends on the rest of
the code scores lower. delta is the spread (standard deviation) of the element's active values, so that every
family's scale gets a like step (1 when they do not spread). The run's score: the median over those elements.
"""
from __future__ import annotations

import numpy as np
import torch

from vsc_cli.evaluation.metrics import USED


def pair_cosines(changes: np.ndarray) -> np.ndarray:
    """The cosine similarities of every pair of distinct rows of (n, P) changes (a row of zeros: similarity 0)."""
    norm = np.linalg.norm(changes, axis=1, keepdims=True)
    unit = np.where(norm > 0, changes / np.where(norm > 0, norm, 1.0), 0.0)
    sim = unit @ unit.T
    return sim[np.triu_indices(len(changes), 1)]


@torch.no_grad()
def consistency(model, codes: np.ndarray, active: np.ndarray, max_images: int = 100, seed: int = 0,
                mean_change: bool = False) -> dict:
    """The module docstring's scores from codes (N, J) E[z] and their active sets (N, J) under model.decoder;
    mean_change: also each scored element's mean pixel change over its images (`consistency_mean_change`, j -> (P,)),
    as `vsc dashboard` draws it."""
    param = next(model.parameters())
    rng = np.random.default_rng(seed)
    rate = active.mean(0)
    scores, means = {}, {}
    base = None  # dec(z) of every image, decoded once (each element then decodes only its stepped codes)
    for j in np.flatnonzero(rate >= USED):
        on = np.flatnonzero(active[:, j])
        if len(on) < 2:
            continue
        pick = np.sort(rng.choice(on, min(max_images, len(on)), replace=False))
        z = torch.from_numpy(codes[pick]).to(param.device, param.dtype)
        spread = float(np.std(codes[on, j]))
        step = torch.zeros_like(z)
        step[:, j] = spread if spread > 0 else 1.0
        if base is None:
            base = torch.cat([model.decoder.mean(torch.from_numpy(codes[i:i + 1000]).to(param.device, param.dtype))
                              for i in range(0, len(codes), 1000)])
        change = (model.decoder.mean(z + step) - base[torch.from_numpy(pick)]).double().cpu().numpy()
        scores[int(j)] = float(np.median(pair_cosines(change)))
        if mean_change:
            means[int(j)] = change.mean(0)
    values = np.array(list(scores.values()))
    order = sorted(scores, key=lambda j: -scores[j])
    return {"consistency": float(np.median(values)) if len(values) else None, "consistency_elements": len(values),
            "consistency_best": order[:5], "consistency_worst": order[::-1][:5],
            "consistency_per_element": {str(j): scores[j] for j in order},
            **({"consistency_mean_change": means} if mean_change else {})}
