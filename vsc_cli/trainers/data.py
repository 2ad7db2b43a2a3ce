"""The training data of a run and the statistics that resolve its config: the images' shape for the conv network,
the decoder's starting log-variance and the encoder's input scale ("data"), the mean image for centred input."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from vsc_cli.common.config import TrainConfig
from vsc_cli.common.errors import VscError
from vsc_cli.common.registry import NETWORKS
from vsc_cli.trainers import dist


def load_data(cfg: TrainConfig, data_dir, world, progress: bool):
    """(train Images, validation Images or None, test Images, cfg with image_shape / logvar_init / encoder_scale
    resolved, the training images' mean image (float32: centred encoder input, and what reconstruction errors are
    measured against), the largest pixel value seen)."""
    from vsc_cli.data.sources import READ_BLOCK, Memory, is_path, open_images

    def load():
        kw = dict(data_dir=data_dir, normalisation=cfg.normalisation, image_size=cfg.image_size,
                  progress=progress and world.main, validation=cfg.validation or 0.0, aspect=cfg.aspect or "stretch")
        return (open_images(cfg.data, "train", limit=cfg.train_size, **kw),
                open_images(cfg.data, "validation", limit=cfg.train_size, **kw) if cfg.validation else None,
                open_images(cfg.data, "test", limit=cfg.test_size, **kw))

    x_train, x_val, x_test = dist.main_first(world, load)  # rank 0 may download; the others then find the files
    if is_path(cfg.data) and not Path(cfg.data).expanduser().is_absolute():  # found again from any folder
        cfg = dataclasses.replace(cfg, data=str(Path(cfg.data).expanduser().resolve()))
    if is_path(cfg.data) or NETWORKS[cfg.network].needs_shape:  # the conv network needs the shape, not the size
        if cfg.image_shape is not None and list(cfg.image_shape) != list(x_train.shape):
            raise VscError(f"{cfg.data}: images are now {x_train.shape}, the run was trained on "
                           f"{tuple(cfg.image_shape)}")
        cfg = dataclasses.replace(cfg, image_shape=list(x_train.shape))
    if len(x_test) == 0:
        raise VscError(f"{cfg.data}: no test images (own data need at least 10 images: every tenth is a test image)")
    if isinstance(x_train, Memory):  # the built-in sets are in memory: use all of them
        x = x_train.x
        lo, hi, var = float(x.min(initial=0)), float(x.max(initial=0)), x.var(0, dtype=np.float64).mean()
        mean = x.mean(0, dtype=np.float64).astype(np.float32)
    else:  # own data: up to 10,000 images spread evenly over the set (folders are in class order)
        lo, hi, total, total_sq, count = np.inf, -np.inf, 0.0, 0.0, 0
        sample = np.unique(np.linspace(0, len(x_train) - 1, min(len(x_train), 10_000)).astype(np.int64))
        for start in range(0, len(sample), READ_BLOCK):
            rows = x_train[sample[start:start + READ_BLOCK]]
            rows = rows.astype(np.float64)
            lo, hi = min(lo, rows.min()), max(hi, rows.max())
            total, total_sq, count = total + rows.sum(0), total_sq + (rows * rows).sum(0), count + len(rows)
        var = float(np.mean(total_sq / count - (total / count) ** 2))
        mean = (total / count).astype(np.float32)
    if cfg.likelihood == "bernoulli" and (lo < 0 or hi > 1):
        raise VscError("the Bernoulli likelihood needs data in [0, 1]: use --normalise 01 or unit")
    if cfg.logvar_init == "data":  # resolved once; the checkpoint keeps the number
        cfg = dataclasses.replace(cfg, logvar_init=float(np.log(var)))
    if cfg.encoder_scale == "data":  # likewise
        cfg = dataclasses.replace(cfg, encoder_scale=float(1.0 / np.sqrt(var)))
    return x_train, x_val, x_test, cfg, mean, float(hi)
