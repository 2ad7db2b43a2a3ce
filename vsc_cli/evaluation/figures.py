"""Pictures of the sparse codes: the paper's Figs. 7 (codes), 4 (alter), 5 (interpolate), 12 (prior), 13 (conditional),
and the most and least consistent elements (consistency.py): what a step in each does to several images.

The code of an image is the posterior mean E_q[z] = gamma * mu (see codes.py); "active" elements are
those with gamma > threshold. Decoded images are the decoder's mean. Images are unit-norm vectors
(paper D.2), so each tile is shown scaled by its own maximum (negatives clipped to 0): the shapes
are what matter, not the absolute scale.

The array functions (`alter_codes`, `interpolation_codes`, `conditional_codes`, `top_elements`) are separate from the drawing so the tests can check them exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vsc_cli.common.registry import FAMILIES
from vsc_cli.common.errors import VscError
from vsc_cli.common.safeio import atomic_write, check_writable_folder
from vsc_cli.data.display import tile

# torch, the model and the data are imported when a figure is drawn: the command line reads KINDS for its choices
CONSISTENCY_IMAGES = 2000  # the split's first images over which the consistency figure scores the elements
CELL = 1.1  # inches per image tile
TITLE = 0.7  # inches for the figure title (two lines) and the first row's labels
ACTIVE, INACTIVE, ALTERED = "tab:blue", "0.7", "tab:orange"


# ---------------------------------------------------------------------------------------- arrays
def top_elements(code: np.ndarray, gamma: np.ndarray, k: int, threshold: float = 0.5) -> np.ndarray:
    """Indices of the k active elements (gamma > threshold) with the largest |code|, largest first."""
    active = np.flatnonzero(gamma > threshold)
    order = active[np.argsort(-np.abs(code[active]), kind="stable")]
    return order[:k]


def alter_codes(code: np.ndarray, j: int, values: np.ndarray) -> np.ndarray:
    """len(values) copies of `code` with element j set to each value, all other elements unchanged."""
    out = np.repeat(code[None, :], len(values), axis=0).astype(np.float32)
    out[:, j] = values
    return out


def interpolation_codes(code_from: np.ndarray, code_to: np.ndarray, j: int, steps: int) -> np.ndarray:
    """`code_from` with element j moved linearly from its own value to code_to[j] in `steps` steps."""
    return alter_codes(code_from, j, np.linspace(code_from[j], code_to[j], steps))


def conditional_codes(gamma: np.ndarray, n: int, rng: np.random.Generator, threshold: float = 0.5) -> np.ndarray:
    """n draws from the prior's Gaussian N(0, 1) along the dimensions the encoding activates
    (gamma > threshold), exactly 0 along all others (paper appendix E.5, Fig. 13)."""
    z = rng.standard_normal((n, len(gamma))).astype(np.float32)
    z[:, gamma <= threshold] = 0.0
    return z


# ---------------------------------------------------------------------------------------- model
@dataclass
class Loaded:
    """What a figure shows: a reopened run (trainers.run.Run) and the split its images come from."""
    run: object
    split: str
    x: object  # the split's images: `Images` (rows (N, pixels) float32 by index) or an empty array

    @property
    def model(self):
        return self.run.model

    @property
    def shape(self) -> tuple:  # (channels, height, width)
        return self.run.shape

    @property
    def labels(self) -> np.ndarray:
        return self.x.labels if hasattr(self.x, "labels") else np.zeros(0, np.int64)

    @property
    def title(self) -> str:
        cfg, run = self.model.cfg, self.run
        alpha = f", alpha {cfg.alpha:g}" if FAMILIES[cfg.model].uses_alpha else ""
        return f"{cfg.model.upper()} on {Path(cfg.data).name}, {cfg.dim} dims{alpha}, {run.iteration} iterations"

    def label(self, i: int) -> str:
        """An image's label: its split and index."""
        return f"{self.split} #{i}"


def load(run_dir: Path, data_dir=None, split: str = "test", need_data: bool = True) -> Loaded:
    from vsc_cli.trainers.run import Run

    run = Run.open(run_dir, data_dir=data_dir)
    run.model  # noqa: B018 - refuse a checkpoint that does not fit its config before reading data
    # own data are read image by image as the figure asks for them
    x = run.images(split) if need_data else np.zeros((0, run.pixels), np.float32)
    return Loaded(run, split, x)


def encode(model, x: np.ndarray) -> dict:
    """mu, logvar, gamma and code = gamma * mu of images x (n, pixels) as float32 arrays."""
    import torch

    from vsc_cli.evaluation.encoding import encode_tensor

    param = next(model.parameters())
    return encode_tensor(model, torch.from_numpy(np.ascontiguousarray(x)).to(param.device, param.dtype)).numpy()


def decode(model, z: np.ndarray, shape) -> np.ndarray:
    """Decoder means of codes z (n, J) as images (n, C, H, W)."""
    import torch

    with torch.no_grad():
        out = model.decoder.mean(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)))
    return out.numpy().reshape(len(z), *shape)


def _pick(loaded: Loaded, indices, count: int) -> list[int]:
    n = len(loaded.x)
    indices = list(range(min(count, n))) if not indices else list(indices)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise VscError(f"--index {bad[0]} is outside the {n} images of the split")
    return indices


# ---------------------------------------------------------------------------------------- drawing
def _figure(width_cells: float, height_cells: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(width_cells * CELL, height_cells * CELL + TITLE))


def _image(ax, img, label=None, color=None):
    ax.imshow(tile(img), cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if color:
        for side in ax.spines.values():
            side.set_edgecolor(color)
            side.set_linewidth(2)
    if label:
        ax.set_title(label, fontsize=7, pad=2)


def _bars(ax, code, gamma, threshold, marked=(), altered=None, label=None):
    j = np.arange(len(code))
    colors = np.where(gamma > threshold, ACTIVE, INACTIVE)
    ax.bar(j, code, color=colors, width=1.0)
    if altered is not None:
        ax.bar(j[list(marked)], altered[list(marked)], color=ALTERED, width=1.0)
    for m in marked:
        ax.plot([m], [code[m]], "o", ms=6, mfc="none", mec=ALTERED, mew=1.5)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlim(-0.5, len(code) - 0.5)
    ax.tick_params(labelsize=6)
    if label:
        ax.set_title(label, fontsize=7, pad=2)


def figure(kind: str, run_dir: Path, out: Path, data_dir=None, split: str = "test", indices=None,
           count: int | None = None, elements: int = 4, steps: int = 7, span: float = 3.0,
           threshold: float = 0.5, seed: int = 0, dpi: int = 100, save_arrays: bool = False) -> dict:
    """Draw one figure to the PNG `out` (atomically); returns its pixel size and the arrays behind it."""
    if kind not in KINDS:
        raise VscError(f"unknown figure {kind!r}; choose one of {', '.join(KINDS)}")
    out = Path(out)
    check_writable_folder(out)
    loaded = load(run_dir, data_dir, split, need_data=KINDS[kind].needs_data)
    # a VAE's gamma is 1 everywhere: its figures work the same, with every element active
    fig, arrays = KINDS[kind].draw(loaded, indices=indices, count=count, elements=elements, steps=steps, span=span,
                                   threshold=threshold, rng=np.random.default_rng(seed))
    fig.suptitle(f"{KINDS[kind].title}\n{loaded.title}", fontsize=9)
    size = tuple(int(round(v * dpi)) for v in fig.get_size_inches())
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    import matplotlib.pyplot as plt

    plt.close(fig)
    result = {"png": str(out), "pixels": size, "kind": kind}
    if KINDS[kind].needs_data:  # a collapsed or dense run is not drawn without a word
        from vsc_cli.evaluation.verdict import check_run

        result["verdict"] = check_run(loaded.run, loaded.x)
    if save_arrays:
        npz = out.with_suffix(".npz")

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

        atomic_write(npz, write)
        result["npz"] = str(npz)
    result["arrays"] = arrays
    return result


def _codes(loaded, indices, count, threshold, **_):
    idx = _pick(loaded, indices, count or 5)
    enc = encode(loaded.model, loaded.x[idx])
    recon = decode(loaded.model, enc["code"], loaded.shape)
    fig = _figure(6, len(idx))
    grid = fig.add_gridspec(len(idx), 3, width_ratios=[1, 4, 1], left=0.04, right=0.98, bottom=0.03,
                            top=1 - (TITLE + 0.1) / fig.get_size_inches()[1], hspace=0.45, wspace=0.15)
    for r, i in enumerate(idx):
        g = enc["gamma"][r]
        _image(fig.add_subplot(grid[r, 0]), loaded.x[i].reshape(loaded.shape), loaded.label(i))
        _bars(fig.add_subplot(grid[r, 1]), enc["code"][r], g, threshold,
              label=f"{int((g > threshold).sum())} of {len(g)} elements active")
        _image(fig.add_subplot(grid[r, 2]), recon[r], "reconstruction")
    return fig, {"indices": np.array(idx), "images": loaded.x[idx].reshape(len(idx), *loaded.shape),
                 "reconstructions": recon, **{k: v for k, v in enc.items()}}


def _alter(loaded, indices, elements, steps, span, threshold, **_):
    (i,) = _pick(loaded, (indices or [0])[:1], 1)
    enc = encode(loaded.model, loaded.x[i:i + 1])
    code, gamma = enc["code"][0], enc["gamma"][0]
    chosen = top_elements(code, gamma, elements, threshold)
    if len(chosen) == 0:
        raise VscError(f"{loaded.split} image #{i} has no active element (gamma > {threshold:g})")
    values = np.linspace(-span, span, steps).astype(np.float32)
    fig = _figure(steps + 1, len(chosen) + 1)
    grid = fig.add_gridspec(len(chosen) + 1, steps + 1, left=0.09, right=0.99, bottom=0.02,
                            top=1 - (TITLE + 0.1) / fig.get_size_inches()[1], hspace=0.35, wspace=0.08)
    _image(fig.add_subplot(grid[0, 0]), loaded.x[i].reshape(loaded.shape), loaded.label(i))
    _bars(fig.add_subplot(grid[0, 1:]), code, gamma, threshold, marked=chosen,
          label=f"code: {int((gamma > threshold).sum())} active; circled: the altered elements")
    decoded, codes = [], []
    for r, j in enumerate(chosen):
        z = alter_codes(code, j, values)
        imgs = decode(loaded.model, np.vstack([code[None], z]), loaded.shape)
        codes.append(z)
        decoded.append(imgs)
        ax = fig.add_subplot(grid[r + 1, 0])
        _image(ax, imgs[0], "reconstruction" if r == 0 else None, color=ACTIVE)
        ax.set_ylabel(f"z[{j}]\n= {code[j]:.2f}", fontsize=7, rotation=0, ha="right", va="center")
        for s in range(steps):
            _image(fig.add_subplot(grid[r + 1, s + 1]), imgs[s + 1], f"{values[s]:+.1f}" if r == 0 else None)
    return fig, {"index": np.array(i), "code": code, "gamma": gamma, "elements": chosen, "values": values,
                 "altered_codes": np.stack(codes), "decoded": np.stack(decoded)}


def _interpolate(loaded, indices, elements, steps, threshold, **_):
    pair = _pick(loaded, (indices or [0, 1])[:2], 2)
    if len(pair) != 2 or pair[0] == pair[1]:
        raise VscError("the interpolation figure needs two different --index values, e.g. --index 3,7")
    enc = encode(loaded.model, loaded.x[pair])
    a, b = enc["code"]
    diff = b - a
    chosen = np.argsort(-np.abs(diff), kind="stable")[:elements]
    fig = _figure(steps + 1, 2 * len(chosen) + 1)
    grid = fig.add_gridspec(2 * len(chosen) + 1, steps + 1, left=0.1, right=0.99, bottom=0.02,
                            top=1 - (TITLE + 0.1) / fig.get_size_inches()[1], hspace=0.35, wspace=0.08)
    _image(fig.add_subplot(grid[0, 0]), loaded.x[pair[0]].reshape(loaded.shape), f"A: {loaded.label(pair[0])}")
    _image(fig.add_subplot(grid[0, steps]), loaded.x[pair[1]].reshape(loaded.shape), f"B: {loaded.label(pair[1])}")
    _bars(fig.add_subplot(grid[0, 1:steps]), diff, np.maximum(enc["gamma"][0], enc["gamma"][1]), threshold,
          marked=chosen, label="interpolation vector B - A (circled: the elements altered below)")
    decoded, codes = [], []
    for r, j in enumerate(chosen):
        for side, (src, dst, name) in enumerate(((a, b, "A"), (b, a, "B"))):
            z = interpolation_codes(src, dst, j, steps + 1)
            imgs = decode(loaded.model, z, loaded.shape)
            codes.append(z)
            decoded.append(imgs)
            row = 1 + 2 * r + side
            for s in range(steps + 1):
                ax = fig.add_subplot(grid[row, s])
                _image(ax, imgs[s], color=ACTIVE if s == 0 else None)
                if s == 0:
                    other = "B" if name == "A" else "A"
                    ax.set_ylabel(f"{name}: z[{j}]\n{src[j]:.2f} -> {dst[j]:.2f}\n(to {other}'s)", fontsize=6,
                                  rotation=0, ha="right", va="center")
    return fig, {"indices": np.array(pair), "code_a": a, "code_b": b, "difference": diff, "elements": chosen,
                 "codes": np.stack(codes), "decoded": np.stack(decoded)}


def _prior(loaded, count, rng, **_):
    import torch

    n = count or 64
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    cfg = loaded.model.cfg
    alpha = cfg.alpha if FAMILIES[cfg.model].uses_alpha else 1.0
    # the run's own prior (a learned one if it has one), seeded from the figure's generator
    z = loaded.model.sample_prior(n, torch.Generator().manual_seed(int(rng.integers(2**62)))).float().numpy()
    imgs = decode(loaded.model, z, loaded.shape)
    fig = _figure(cols, rows)
    grid = fig.add_gridspec(rows, cols, left=0.01, right=0.99, bottom=0.01,
                            top=1 - (TITLE + 0.1) / fig.get_size_inches()[1], hspace=0.05, wspace=0.05)
    for k in range(rows * cols):
        ax = fig.add_subplot(grid[k // cols, k % cols])
        if k < n:
            _image(ax, imgs[k])
        else:
            ax.axis("off")
    return fig, {"codes": z, "decoded": imgs, "alpha": np.array(alpha)}


def _conditional(loaded, indices, count, threshold, rng, **_):
    idx = _pick(loaded, indices, 3)
    n = count or 8
    enc = encode(loaded.model, loaded.x[idx])
    recon = decode(loaded.model, enc["code"], loaded.shape)
    fig = _figure(n + 2, len(idx))
    grid = fig.add_gridspec(len(idx), n + 2, left=0.01, right=0.99, bottom=0.02,
                            top=1 - (TITLE + 0.1) / fig.get_size_inches()[1], hspace=0.35, wspace=0.08)
    codes, decoded = [], []
    for r, i in enumerate(idx):
        g = enc["gamma"][r]
        z = conditional_codes(g, n, rng, threshold)
        imgs = decode(loaded.model, z, loaded.shape)
        codes.append(z)
        decoded.append(imgs)
        _image(fig.add_subplot(grid[r, 0]), loaded.x[i].reshape(loaded.shape), loaded.label(i))
        _image(fig.add_subplot(grid[r, 1]), recon[r], f"{int((g > threshold).sum())} active", color=ACTIVE)
        for s in range(n):
            _image(fig.add_subplot(grid[r, s + 2]), imgs[s], "samples" if s == 0 and r == 0 else None)
    return fig, {"indices": np.array(idx), "gamma": enc["gamma"], "codes": np.stack(codes),
                 "decoded": np.stack(decoded)}


def _change(ax, img, label=None):
    """A signed pixel change (C, H, W) in red (+) and blue (-), scaled by its own largest magnitude."""
    c = img.mean(0)
    m = float(np.abs(c).max()) or 1.0
    ax.imshow(c, cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if label:
        ax.set_title(label, fontsize=7, pad=2)


def _consistency(loaded, count, elements, threshold, rng, **_):
    from vsc_cli.evaluation.consistency import consistency
    from vsc_cli.evaluation.encoding import active_elements

    model, n = loaded.model, min(len(loaded.x), CONSISTENCY_IMAGES)
    x = loaded.x[list(range(n))]
    enc = encode(model, x)
    active = active_elements(model, x, enc["gamma"], threshold, model.family.active)
    scores = consistency(model, enc["code"], active)["consistency_per_element"]
    if not scores:
        raise VscError("no element is active in at least 1% of the images: nothing to draw")
    order = list(scores)  # most consistent first
    chosen = list(dict.fromkeys(order[:elements] + order[::-1][:elements]))
    cols = count or 6
    fig = _figure(cols, len(chosen))
    grid = fig.add_gridspec(len(chosen), cols, left=0.01, right=0.99, bottom=0.02,
                            top=1 - (TITLE + 0.1) / fig.get_size_inches()[1], hspace=0.45, wspace=0.08)
    picked = np.full((len(chosen), cols), -1, dtype=np.int64)  # -1 / NaN: fewer active images than columns
    changes = np.full((len(chosen), cols, *loaded.shape), np.nan, dtype=np.float32)
    for r, key in enumerate(chosen):
        j = int(key)
        on = np.flatnonzero(active[:, j])
        idx = np.sort(rng.choice(on, min(cols, len(on)), replace=False))
        spread = float(np.std(enc["code"][on, j]))
        z = enc["code"][idx].copy()
        step = z.copy()
        step[:, j] += spread if spread > 0 else 1.0
        change = decode(model, step, loaded.shape) - decode(model, z, loaded.shape)
        picked[r, :len(idx)], changes[r, :len(idx)] = idx, change
        for s in range(cols):
            ax = fig.add_subplot(grid[r, s])
            if s < len(idx):
                _change(ax, change[s], f"element {j}: {scores[key]:.2f}" if s == 0 else f"#{idx[s]}")
            else:
                ax.axis("off")
    return fig, {"elements": np.array([int(k) for k in chosen]), "scores": np.array([scores[k] for k in chosen]),
                 "images": picked, "changes": changes}


# ---------------------------------------------------------------------------------------- the kinds
@dataclass(frozen=True)
class Kind:
    draw: Callable  # (Loaded, indices, count, elements, steps, span, threshold, rng) -> (figure, arrays)
    title: str  # the figure's title
    about: str  # a few words for `vsc figure --help`
    needs_data: bool = True  # False: drawn from the model alone


KINDS = {
    "codes": Kind(_codes, "Sparse codes (gamma*mu; blue: active, gamma > threshold) and reconstructions (paper Fig. 7)",
                  "test images, their codes (bar plots, active elements in blue) and reconstructions"),
    "alter": Kind(_alter, "Altering single active elements, all others fixed (paper Fig. 4)",
                  "one image; its largest active elements set one at a time from -RANGE to +RANGE"),
    "interpolate": Kind(_interpolate, "Altering the largest elements of the interpolation vector B - A, one at a time "
                        "(paper Fig. 5)", "two images A, B; the largest elements of B - A moved one at a time on each"),
    "prior": Kind(_prior, "Ancestral samples from the spike-and-slab prior (paper Fig. 12)",
                  "ancestral samples from the spike-and-slab prior, decoded", needs_data=False),
    "conditional": Kind(_conditional, "Conditional samples: N(0,1) only along the source's active dimensions (paper "
                        "Fig. 13)", "N(0, 1) draws along only the dimensions an image activates, decoded"),
    "consistency": Kind(_consistency, "Most and least consistent elements: a step in each, image by image (red +, "
                        "blue -)", "the ELEMENTS most and least consistent elements: a step in each, in COUNT images"),
}
