"""Example-specificity of sparse codes: does each image switch on its *own* few elements? (paper 4.2-4.3)

A small dense code passes the paper's sparsity measure (mean gamma near alpha) while every image uses
the same handful of elements. These numbers tell the two apart, all at one threshold on gamma (an
element is *active* in an image when gamma > threshold):

  active per image      mean and 5/50/95th percentiles of the count of active elements
  dims used             dimensions active in at least `used` (1%) of the images
  dims always / dead    active in >= `always` (95%) of the images / in fewer than `used` (1%): the
                        coefficient-collapse counts of Fallah & Rozell (ICML 2022)
  Jaccard               |A_i & A_k| / |A_i | A_k| of two images' active sets, averaged over every pair
                        of images of different classes and of the same class (1 for two empty sets:
                        they are the same set). Exact over all pairs of up to `max_images` images (a
                        seeded random subset beyond that), which is the expectation for a random pair.
  class retention       Fig. 13's claim: of conditional samples (N(0,1) along an image's active
                        elements, 0 elsewhere), decoded, the fraction that a classifier trained on real
                        images assigns to the source image's class (`conditional_retention`).
"""
from __future__ import annotations

import numpy as np

THRESHOLD = 0.5  # gamma above which an element is active: the same everywhere codes are reported
USED = 0.01  # a dimension is used when active in at least this fraction of images, dead below it
ALWAYS = 0.95  # ... and always-on from this fraction up
JACCARD_MAX_IMAGES = 10_000  # all pairs of up to this many images (10,000 x 10,000 in blocks: ~1 s)


def active_sets(gamma: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """(N, J) boolean: element j is active in image i."""
    gamma = np.asarray(gamma)
    if gamma.ndim != 2:
        raise ValueError(f"gamma must be (images, dimensions), got shape {gamma.shape}")
    return gamma > threshold


def dimension_use(active: np.ndarray, used: float = USED, always: float = ALWAYS) -> dict:
    """Which dimensions are in use, from (N, J) active sets: the one definition every report of vsc uses. A
    dimension's rate is the fraction of images it is active in; it is used from `used` up (dead below it) and
    always-on from `always` up."""
    rate = np.asarray(active).mean(0)
    return {"dims_used": int((rate >= used).sum()), "dims_always_on": int((rate >= always).sum()),
            "dims_dead": int((rate < used).sum())}


def mean_jaccard(active: np.ndarray, labels: np.ndarray | None = None, block: int = 1024) -> dict:
    """Mean Jaccard similarity of the active sets over all unordered pairs of distinct images:
    {"all", "different_class", "same_class"} (None where there is no such pair, or no labels)."""
    a = np.ascontiguousarray(active, dtype=np.float32)  # counts up to 2^24 are exact in float32
    n = len(a)
    k = a.sum(1, dtype=np.float64)
    has_labels = labels is not None and len(labels) == n and (np.asarray(labels) >= 0).all()
    y = np.asarray(labels) if has_labels else np.zeros(n, np.int64)
    sums = {"all": 0.0, "same": 0.0, "diff": 0.0}
    counts = {"all": 0, "same": 0, "diff": 0}
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        inter = (a[i0:i1] @ a.T).astype(np.float64)  # (b, n) |A_i & A_k|, exact
        union = k[i0:i1, None] + k[None, :] - inter
        jac = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        upper = np.arange(n)[None, :] > np.arange(i0, i1)[:, None]  # each pair once, no self-pairs
        same = (y[i0:i1, None] == y[None, :]) & upper
        diff = (y[i0:i1, None] != y[None, :]) & upper
        for key, mask in (("all", upper), ("same", same), ("diff", diff)):
            sums[key] += float(jac[mask].sum(dtype=np.float64))
            counts[key] += int(mask.sum())

    def mean(key):
        return sums[key] / counts[key] if counts[key] else None

    return {"all": mean("all"), "different_class": mean("diff") if has_labels else None,
            "same_class": mean("same") if has_labels else None}


def specificity(gamma: np.ndarray, labels: np.ndarray | None = None, threshold: float = THRESHOLD,
                used: float = USED, always: float = ALWAYS, max_images: int = JACCARD_MAX_IMAGES,
                seed: int = 0) -> dict:
    """The example-specificity numbers of the module docstring from gamma (N, J) and optional labels
    (N,) (negative labels, as CelebA's -1, mean none)."""
    active = active_sets(gamma, threshold)
    n, dim = active.shape
    if n == 0:
        raise ValueError("no images to measure")
    per_image = active.sum(1)
    p5, p50, p95 = np.percentile(per_image, [5, 50, 95])
    pick = np.arange(n)
    if n > max_images:  # a seeded subset, sorted so the result does not depend on the draw's order
        pick = np.sort(np.random.default_rng(seed).choice(n, max_images, replace=False))
    jac = mean_jaccard(active[pick], None if labels is None else np.asarray(labels)[pick])
    return {
        "threshold": threshold,
        "active_mean": float(per_image.mean()), "active_p5": float(p5), "active_p50": float(p50),
        "active_p95": float(p95),
        **dimension_use(active, used, always), "used_fraction": used, "always_fraction": always,
        "jaccard_all": jac["all"], "jaccard_different_class": jac["different_class"],
        "jaccard_same_class": jac["same_class"], "jaccard_images": int(len(pick)),
    }


# The numbers above as (key, label) rows, in the order tables and CSVs show them.
ROWS = (
    ("active_mean", "active elements per image, mean"),
    ("active_p5", "active elements per image, 5th percentile"),
    ("active_p50", "active elements per image, median"),
    ("active_p95", "active elements per image, 95th percentile"),
    ("dims_used", "dimensions used by >= 1% of images"),
    ("dims_always_on", "dimensions always on (>= 95% of images)"),
    ("dims_dead", "dimensions dead (< 1% of images)"),
    ("jaccard_different_class", "mean Jaccard of active sets, different classes"),
    ("jaccard_same_class", "mean Jaccard of active sets, same class"),
    ("jaccard_all", "mean Jaccard of active sets, all pairs"),
)


# ------------------------------------------------------------------------------ Fig. 13's claim
def train_image_classifier(x: np.ndarray, y: np.ndarray, classes: int, seed: int = 0, epochs: int = 3,
                           hidden: int = 256, batch: int = 128):
    """A small MLP (pixels -> hidden -> classes) trained on real images with Adam; returns predict(x).

    It only has to tell the classes apart on images like the decoder's output, so a few epochs do.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64))
    scale = float(xt.std()) or 1.0  # unit-norm pixels are ~0.03: bring them to ~1 for the default init
    net = torch.nn.Sequential(torch.nn.Linear(xt.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(batch):
            loss = torch.nn.functional.cross_entropy(net(xt[idx] / scale), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    @torch.no_grad()
    def predict(xn):
        xn = torch.as_tensor(np.asarray(xn, np.float32))
        return torch.cat([net(b / scale).argmax(1) for b in xn.split(4096)]).numpy()

    return predict


def element_values(model, x: np.ndarray, threshold: float = THRESHOLD, batch: int = 2000) -> list[np.ndarray]:
    """Per latent element, the values mu_j of the images in x (the training set) that switch it on
    (gamma_j > threshold): the data's own distribution of each element's value."""
    import torch

    param = next(model.parameters())
    mus, actives = [], []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = torch.from_numpy(np.asarray(x[start:start + batch], np.float32)).to(param.device, param.dtype)
            q = model.posterior(xb)
            mus.append(q.mu.float().cpu().numpy())
            actives.append((q.gamma > threshold).cpu().numpy())
    mu, active = np.concatenate(mus), np.concatenate(actives)
    return [mu[active[:, j], j] for j in range(mu.shape[1])]


def conditional_retention(model, gamma: np.ndarray, labels: np.ndarray, predict, samples: int = 10,
                          threshold: float = THRESHOLD, seed: int = 0, values: list | None = None) -> float:
    """Fraction of conditional samples (N(0,1) along each image's active elements, 0 elsewhere; paper
    E.5, Fig. 13), decoded to the decoder's mean, that `predict` assigns to the source image's class.

    values (element_values): draw each active element's value from the training images that use that
    element instead of N(0, 1) (independently per element; N(0, 1) for an element no training image uses).
    This asks whether the *subspace* keeps the class, not whether N(0, 1) lands where the decoder was trained."""
    import torch

    active = active_sets(gamma, threshold)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    dtype = next(model.parameters()).dtype
    hits = 0
    with torch.no_grad():
        for start in range(0, len(active), 500):
            a = active[start:start + 500]
            if values is None:
                z = rng.standard_normal((len(a), samples, a.shape[1])).astype(np.float32) * a[:, None, :]
            else:
                z = np.zeros((len(a), samples, a.shape[1]), np.float32)
                for j in np.flatnonzero(a.any(0)):
                    rows = np.flatnonzero(a[:, j])
                    pool = values[j]
                    z[rows, :, j] = (rng.choice(pool, size=(len(rows), samples)) if len(pool)
                                     else rng.standard_normal((len(rows), samples)))
            images = model.decoder.mean(torch.from_numpy(z.reshape(-1, a.shape[1])).to(dtype)).float().numpy()
            hits += int((predict(images) == np.repeat(labels[start:start + 500], samples)).sum())
    return hits / (len(active) * samples)


def conditional_retention_of(run, gamma, labels, images: int = 1000, samples: int = 10, seed: int = 0,
                             threshold: float = THRESHOLD) -> dict:
    """Fig. 13's number for a trained run (trainers.run.Run): conditional samples of `images` test images (a seeded
    subset), classified by an MLP trained on the real training images (its own test accuracy beside)."""
    from vsc_cli.data.datasets import canonical
    from vsc_cli.common.errors import VscError

    model, data = run.model, run.data
    if canonical(data) not in ("mnist", "fmnist"):
        raise VscError(f"the conditional-sample check needs class labels: {data} has none (use mnist or fmnist)")
    train, test = run.images("train"), run.images("test")
    x_train, y_train, x_test, y_test = train[:], train.labels, test[:], test.labels
    classes = int(y_train.max()) + 1
    predict = train_image_classifier(x_train, y_train, classes, seed=seed)
    pick = np.sort(np.random.default_rng(seed).choice(len(gamma), min(images, len(gamma)), replace=False))
    kept = conditional_retention(model, gamma[pick], np.asarray(labels)[pick], predict, samples, threshold, seed)
    values = element_values(model, x_train, threshold)
    kept_data = conditional_retention(model, gamma[pick], np.asarray(labels)[pick], predict, samples, threshold,
                                      seed, values=values)
    return {"conditional_retention": kept, "conditional_retention_data": kept_data,
            "image_classifier_accuracy": float((predict(x_test) == y_test).mean())}
