"""Images with known factors, made by vsc from a seed, to measure whether code elements are features (`vsc synth`).

Each set is one uncompressed .npz that `vsc train --data FILE --normalise 01` reads like any own data (every tenth
image is a test image), holding `images` (N, side, side) float32 in [0, 1], `labels` (N,) and the truth beside them:
`factors` (N, K), the true sparse codes, and for the linear set its `dictionary` (K, side * side).

sparse-linear   x = D s + noise (Olshausen & Field 1996; Fallah & Rozell's dictionary experiment): K unit-norm
                random atoms of side x side pixels, `active` of the K on per image with N(0, 1) values ("signed")
                or |N(0, 1)| ("nonnegative": what a ReLU family such as top-k can express), Gaussian pixel noise;
                then one affine map for the whole set into [0, 1] (which keeps x linear in s). Labels: -1.
patches         natural-image patches, the classic sparse-coding workload (Olshausen & Field 1996; scikit-learn's
                dictionary-learning examples): `images` side x side patches cut at random places from photographs
                (by default ten that scikit-image ships; or every image of a folder), each turned grey (ITU-R 601
                luma), its mean removed, optionally ZCA-whitened over the set, then one affine map for the whole
                set into [0, 1] (which keeps the patches' linear structure; `offset` is where 0 went). No factors:
                a dictionary is what is learned. Labels: the photograph's index; `positions` (N, 3): the
                photograph, row and column each patch was cut at; `photos`: their names.
manifolds       a union of manifolds: `classes` classes, each with its own `per_class` of the K = classes x
                per_class factors, N(0, 1) values on those alone; x = S(W2 tanh(W1 s + b1) + b2), a fixed random
                network with 64 hidden units. Labels: the class. An example-specific sparse code switches on its
                class's factors only.
"""
from __future__ import annotations

import numpy as np

KINDS = ("sparse-linear", "manifolds", "patches")
# the photographs scikit-image ships in its wheel (skimage/data), the default source of `patches`: natural scenes,
# faces, animals, objects and textures; no drawings, text or synthetic images
SKIMAGE_PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "grass.png",
                  "gravel.png", "moon.png", "rocket.jpg", "motorcycle_left.png")
ZCA_EPS = 0.01  # ZCA's regulariser, as a fraction of the mean eigenvalue (keeps the noisiest directions bounded)
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


def grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) pixels of 0..255 -> (H, W) float64 in [0, 1]: ITU-R 601 luma for colour, the first
    channel's value for grey (an alpha channel is ignored)."""
    x = np.asarray(rgb, dtype=np.float64) / 255.0
    if x.ndim == 2:
        return x
    if x.shape[2] >= 3:
        return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    return x[..., 0]


def read_photos(folder=None) -> list:
    """[(name, (H, W) grey in [0, 1])]: scikit-image's SKIMAGE_PHOTOS, or every image file of `folder` (sorted by
    name). VscError when scikit-image is missing or the folder has no readable image."""
    from pathlib import Path

    from PIL import Image

    from vsc_cli.common.errors import VscError
    from vsc_cli.data.sources import IMAGE_SUFFIXES

    if folder is None:
        try:
            import skimage
        except ImportError:
            raise VscError("patches are cut from the photographs scikit-image ships: pip install scikit-image, or "
                           "give --from FOLDER (a folder of your own photographs)") from None
        root = Path(skimage.__file__).parent / "data"
        files = [root / name for name in SKIMAGE_PHOTOS]
    else:
        root = Path(folder)
        if not root.is_dir():
            raise VscError(f"--from {folder}: not a folder")
        files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    photos = []
    for path in files:
        try:
            with Image.open(path) as im:  # any mode (palette, grey, alpha) as RGB, then its luma
                photos.append((path.name, grey(np.asarray(im.convert("RGB")))))
        except (OSError, ValueError) as exc:
            raise VscError(f"{path}: not a readable image ({exc})") from None
    if not photos:
        raise VscError(f"--from {folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return photos


def patches(images: int = 60_000, side: int = 12, whiten: str = "none", seed: int = 0, photos=None,
            folder=None) -> dict:
    """The natural-image patches (module docstring) as arrays: images, labels, positions, photos, offset, scale.
    photos: [(name, (H, W) grey)] to cut from (read_photos(folder) when None)."""
    from vsc_cli.common.errors import VscError

    if whiten not in ("none", "zca"):
        raise ValueError(f"whiten must be none or zca, not {whiten!r}")
    photos = read_photos(folder) if photos is None else photos
    small = [name for name, p in photos if min(p.shape) < side]
    if small:
        raise VscError(f"{small[0]}: smaller than a {side}x{side} patch")
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(photos), images)
    room = np.array([[p.shape[0] - side + 1, p.shape[1] - side + 1] for _, p in photos])
    rows = np.floor(rng.random(images) * room[which, 0]).astype(np.int64)
    cols = np.floor(rng.random(images) * room[which, 1]).astype(np.int64)
    x = np.empty((images, side * side), np.float64)
    for i in range(len(photos)):  # photo by photo: each patch a view of its photograph
        at = np.flatnonzero(which == i)
        if not len(at):
            continue
        windows = np.lib.stride_tricks.sliding_window_view(photos[i][1], (side, side))
        x[at] = windows[rows[at], cols[at]].reshape(len(at), -1)
    x -= x.mean(1, keepdims=True)  # each patch's mean (its brightness) removed
    if whiten == "zca":  # decorrelate the pixels over the set, as Olshausen & Field's 1/f filter does in spirit
        cov = x.T @ x / len(x)
        lam, U = np.linalg.eigh(cov)
        lam = np.maximum(lam, 0.0)
        x = x @ (U / np.sqrt(lam + ZCA_EPS * lam.mean())) @ U.T
    lo, hi = float(x.min()), float(x.max())
    scale = 1.0 / max(hi - lo, 1e-12)
    x = (x - lo) * scale
    return {"images": x.reshape(images, side, side).astype(np.float32), "labels": which.astype(np.int64),
            "positions": np.stack([which, rows, cols], 1).astype(np.int64),
            "photos": np.array([name for name, _ in photos]), "offset": np.float64(-lo * scale),
            "scale": np.float64(scale)}


def make(kind: str, **sizes) -> dict:
    """One of KINDS with its sizes (the keyword arguments of sparse_linear / manifolds / patches)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose {', '.join(KINDS)}")
    return {"sparse-linear": sparse_linear, "manifolds": manifolds, "patches": patches}[kind](**sizes)
