"""The paper's classification test (4.2, E.4): a linear softmax classifier on labelled codes of a `vsc encode` file
(or any HDF5 file with train/ and test/ features and labels), scored on the whole test split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vsc_cli.common.errors import VscError
from vsc_cli.common.progress import tqdm
from vsc_cli.evaluation.codes import read_features


def train_linear(x, y, classes: int, l2: float = 1e-4, max_iter: int = 200):
    """Softmax regression (one fully connected layer) on standardised features, by L-BFGS.

    Standardising (the labelled set's mean and std) is an affine change of the inputs, so the
    classifier is still one linear layer on the codes; it only makes L-BFGS converge alike for
    codes of any scale. A small L2 penalty keeps the optimum finite on separable data.
    """
    x = torch.from_numpy(x).double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    xs = (x - mean) / std
    yt = torch.from_numpy(y)
    layer = torch.nn.Linear(x.shape[1], classes).double()
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.LBFGS(layer.parameters(), lr=1, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(xs), yt) + l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)

    @torch.no_grad()
    def predict(xn):
        return layer((torch.from_numpy(xn).double() - mean) / std).argmax(1).numpy()

    return predict


PAPER_LABELLED = 5000  # the paper's number of labelled training codes (4.2)


def classify(path: Path, features: str = "code", labelled=None, repeats: int = 5, seed: int = 0,
             progress: bool = False) -> dict:
    """The paper's protocol: a linear softmax classifier on `labelled` random training codes, scored
    on the whole test split; repeated with different draws, mean and std reported per size.
    labelled None: the paper's 5,000, or every training code where there are fewer (result "labelled_capped")."""
    x_train, y_train = read_features(path, "train", features)
    capped = labelled is None and len(x_train) < PAPER_LABELLED
    labelled = (min(PAPER_LABELLED, len(x_train)),) if labelled is None else labelled
    x_test, y_test = read_features(path, "test", features)
    if x_train.shape[1] != x_test.shape[1]:
        raise VscError(f"{path}: train features have {x_train.shape[1]} columns, test features {x_test.shape[1]}")
    classes = int(max(y_train.max(), y_test.max())) + 1
    rng = np.random.default_rng(seed)
    rows = []
    total = len(labelled) * repeats
    with tqdm(total=total, desc="classifying", disable=not progress, leave=False) as bar:
        for n in labelled:
            if n > len(x_train):
                raise VscError(f"--labelled {n} is more than the {len(x_train)} training codes in {path}")
            accs = []
            for _ in range(repeats):
                pick = rng.choice(len(x_train), n, replace=False)
                predict = train_linear(x_train[pick], y_train[pick], classes)
                accs.append(float((predict(x_test) == y_test).mean()))
                bar.update()
            rows.append({"labelled": n, "accuracy_mean": float(np.mean(accs)),
                         "accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                         "accuracies": accs})
    return {"file": str(path), "features": features, "test_examples": len(x_test), "repeats": repeats,
            "seed": seed, "results": rows, "labelled_capped": capped}


def select_elements(x_pos: np.ndarray, x_neg: np.ndarray, k: int) -> np.ndarray:
    """The k elements whose mean differs most between the positive and the negative codes (SAEBench's selection),
    by |mean difference|; ties broken by the lower index."""
    diff = np.abs(x_pos.mean(0, dtype=np.float64) - x_neg.mean(0, dtype=np.float64))
    return np.argsort(-diff, kind="stable")[:k]


def _balanced(y: np.ndarray, c: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Indices of every image of class c and as many drawn from the other classes, and their 0/1 targets."""
    pos = np.flatnonzero(y == c)
    neg = rng.choice(np.flatnonzero(y != c), min(len(pos), int((y != c).sum())), replace=False)
    return np.concatenate([pos, neg]), np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])


def sparse_probe(path: Path, features: str = "code", ks=(1, 2, 5), seed: int = 0, progress: bool = False) -> dict:
    """Sparse probing (SAEBench, Karvonen et al. 2025): for each class, one class against the rest on a balanced set
    (the class's images and as many of the others, drawn with `seed`), the k elements with the largest mean
    difference on the training codes, then a linear (logistic) probe on those k alone, scored on the balanced
    test set. An element that is the class's feature does well at k = 1. Accuracy per k, the mean over classes."""
    x_train, y_train = read_features(path, "train", features)
    x_test, y_test = read_features(path, "test", features)
    classes = sorted(set(y_train.tolist()))
    rng = np.random.default_rng(seed)
    per_k = {k: [] for k in ks}
    with tqdm(total=len(classes) * len(ks), desc="sparse probes", disable=not progress, leave=False) as bar:
        for c in classes:
            tr, t_tr = _balanced(y_train, c, rng)
            te, t_te = _balanced(y_test, c, rng)
            for k in ks:
                if k > x_train.shape[1]:
                    raise VscError(f"--sparse-probe {k} is more than the {x_train.shape[1]} elements of the codes")
                sel = select_elements(x_train[tr][t_tr == 1], x_train[tr][t_tr == 0], k)
                predict = train_linear(x_train[tr][:, sel], t_tr, 2)
                per_k[k].append(float((predict(x_test[te][:, sel]) == t_te).mean()))
                bar.update()
    return {"file": str(path), "features": features, "classes": len(classes), "seed": seed,
            "results": [{"k": k, "accuracy_mean": float(np.mean(v)), "per_class": v} for k, v in per_k.items()]}
