"""Images with known factors, made by vsc from a seed, to measure whether code elements are features (`vsc synth`).

Each set is one uncompressed .npz that `vsc train --data FILE --normalise 01` reads like any own data (every tenth
image is a test image), holding `images` (N, side, side) float32 in [0, 1], `labels` (N,) and the truth beside them:
`factors` (N, K), the true sparse codes, and for the linear set its `dictionary` (K, side * side).

sparse-linear   x = D s + noise (Olshausen & Field 1996; Fallah & Rozell's dictionary experiment): K unit-norm
                random atoms of side x side pixels, `active` of the K on per image with N(0, 1) values ("signed")
                or |N(0, 1)| ("nonnegative": what a ReLU family such as top-k can express), Gaussian pixel noise;
                then one affine map for the whole set into [0, 1] (which keeps x linear in s). Labels: -1.
manifolds       a union of manifolds: `classes` classes, each with its own `per_class` of the K = classes x
                per_class factors, N(0, 1) values on those alone; x = S(W2 tanh(W1 s + b1) + b2), a fixed random
                network with 64 hidden units. Labels: the class. An example-specific sparse code switches on its
                class's factors only.
"""
from __future__ import annotations

import numpy as np

KINDS = ("sparse-linear", "manifolds")
HIDDEN = 64  # the manifolds' generator's hidden units


def sparse_linear(images: int = 20_000, factors: int = 100, active: int = 5, side: int = 28, values: str = "signed",
                  noise: float = 0.01, seed: int = 0) -> dict:
    """The sparse linear set (module docstring) as arrays: images, labels, factors, dictionary."""
    if not 1 <= active <= factors:
        raise ValueError(f"active elements per image must be in 1..{factors}, not {active}")
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((factors, side * side)).astype(np.float32)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    on = np.argsort(rng.random((images, factors)), axis=1)[:, :active]  # `active` distinct factors per image
    v = rng.standard_normal((images, active)).astype(np.float32)
    s = np.zeros((images, factors), np.float32)
    np.put_along_axis(s, on, np.abs(v) if values == "nonnegative" else v, axis=1)
    x = s @ D + np.float32(noise) * rng.standard_normal((images, side * side), dtype=np.float32)
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / max(hi - lo, 1e-12)
    return {"images": x.reshape(images, side, side).astype(np.float32), "labels": np.full(images, -1, np.int64),
            "factors": s, "dictionary": D}


def manifolds(images: int = 20_000, classes: int = 10, per_class: int = 3, side: int = 28, seed: int = 0) -> dict:
    """The union of manifolds (module docstring) as arrays: images, labels, factors."""
    rng = np.random.default_rng(seed)
    K = classes * per_class
    W1 = rng.standard_normal((K, HIDDEN)).astype(np.float32)
    b1 = 0.1 * rng.standard_normal(HIDDEN).astype(np.float32)
    W2 = (rng.standard_normal((HIDDEN, side * side)) / np.sqrt(HIDDEN)).astype(np.float32)
    b2 = rng.standard_normal(side * side).astype(np.float32)
    labels = rng.integers(0, classes, images)
    s = np.zeros((images, K), np.float32)
    cols = labels[:, None] * per_class + np.arange(per_class)[None, :]  # each class's own factors
    np.put_along_axis(s, cols, rng.standard_normal((images, per_class)).astype(np.float32), axis=1)
    x = 1.0 / (1.0 + np.exp(-(np.tanh(s @ W1 + b1) @ W2 + b2)))
    return {"images": x.reshape(images, side, side).astype(np.float32), "labels": labels.astype(np.int64),
            "factors": s}


def make(kind: str, **sizes) -> dict:
    """One of KINDS with its sizes (the keyword arguments of sparse_linear / manifolds)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose {', '.join(KINDS)}")
    return sparse_linear(**sizes) if kind == "sparse-linear" else manifolds(**sizes)
