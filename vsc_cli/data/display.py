"""Images as people see them: the networks' normalised rows back to something to draw or save (`tile` for
`vsc figure` and the training's reconstructions.png, `to_pixels` for the Python API)."""
from __future__ import annotations

import numpy as np

from vsc_cli.common.errors import VscError


def tile(img: np.ndarray) -> np.ndarray:
    """(C, H, W) unit-norm image -> (H, W) or (H, W, 3) in [0, 1], scaled by its own maximum."""
    img = np.clip(img, 0, None)
    img = img / img.max() if img.max() > 0 else img
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def to_pixels(images, normalisation: str = "unit", shape: tuple | None = None) -> np.ndarray:
    """Normalised images (N, C, H, W), (C, H, W), or flat rows with `shape`) -> uint8 pixels (N, H, W, C).
    '01' and 'none' images go back to 0..255 exactly (times 255, or as they are); 'unit' images have lost their
    brightness (each was divided by its L2 norm), so each is scaled by its own maximum, as `vsc figure` draws
    them. Negative values (a decoder's mean may dip below 0) become 0."""
    x = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    x = x.astype(np.float64)
    if shape is not None:
        x = x.reshape(-1, *shape)
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise VscError(f"images of shape {tuple(np.shape(images))}: give (N, C, H, W), or rows with shape=(C, H, W)")
    x = np.clip(x, 0, None)
    if normalisation == "unit":
        top = x.reshape(len(x), -1).max(1, initial=0.0).reshape(-1, 1, 1, 1)
        x = np.where(top > 0, x / np.where(top > 0, top, 1.0), 0.0) * 255.0
    elif normalisation == "01":
        x = x * 255.0
    elif normalisation != "none":
        raise VscError(f"normalisation {normalisation!r}: choose unit, 01 or none")
    return np.clip(np.rint(x), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
