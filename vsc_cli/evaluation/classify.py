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


def classify(path: Path, features: str = "code", labelled=(5000,), repeats: int = 5, seed: int = 0,
             progress: bool = False) -> dict:
    """The paper's protocol: a linear softmax classifier on `labelled` random training codes, scored
    on the whole test split; repeated with different draws, mean and std reported per size."""
    x_train, y_train = read_features(path, "train", features)
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
            "seed": seed, "results": rows}
