"""Reconstruction error of a run's codes against the mean image (the CelebA goal of docs/recipes.md).

    python benchmarks/reconstruction.py RUN_DIR [--data-dir DIR]

Prints, on the test split: the summed squared error per image of the decoded posterior mean code
(gamma * mu, as in `vsc figure codes`), of the mean training image, their ratio, and the codes'
example-specificity (vsc_cli/evaluation/metrics.py).
"""
import argparse
import json

import numpy as np
import torch

from vsc_cli.trainers.checkpoint import build_model, load_checkpoint
from vsc_cli.evaluation.encoding import encode_batches
from vsc_cli.evaluation.metrics import specificity
from vsc_cli.data.sources import open_images


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--data-dir")
    args = ap.parse_args()
    model = build_model(load_checkpoint(args.run))
    cfg = model.cfg
    train = open_images(cfg.data, "train", args.data_dir, cfg.normalisation, image_size=cfg.image_size)
    test = open_images(cfg.data, "test", args.data_dir, cfg.normalisation, image_size=cfg.image_size)
    mean_image = train[np.arange(len(train))].mean(0)
    x = test[np.arange(len(test))]
    gammas, errors = [], []
    with torch.no_grad():
        for start, mu, _, gamma in encode_batches(model, x, 500):
            recon = model.decoder.mean(torch.from_numpy(gamma * mu)).numpy()
            errors.append(((x[start:start + len(mu)] - recon) ** 2).sum(1))
            gammas.append(gamma)
    err = float(np.concatenate(errors).mean())
    mean_err = float(((x - mean_image) ** 2).sum(1).mean())
    spec = specificity(np.concatenate(gammas), test.labels)
    print(json.dumps({"run": args.run, "test_images": len(x), "sse_code": err, "sse_mean_image": mean_err,
                      "ratio": err / mean_err, **spec}, indent=2))


if __name__ == "__main__":
    main()
