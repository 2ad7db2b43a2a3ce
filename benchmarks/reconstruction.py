"""Reconstruction error of a run's codes against the mean image (the CelebA goal of docs/recipes.md).

    python benchmarks/reconstruction.py RUN_DIR [--data-dir DIR]

Prints, on the test split: the summed squared error per image of the decoded posterior mean code
(gamma * mu, as in `vsc figure codes`), of the mean training image, their ratio, and the codes'
example-specificity (vsc_cli/evaluation/metrics.py).
"""
import argparse
import json

import numpy as np

from vsc_cli.evaluation.encoding import encode_batches
from vsc_cli.evaluation.metrics import specificity
from vsc_cli.evaluation.sparsity import reconstruction_error
from vsc_cli.trainers.run import Run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--data-dir")
    args = ap.parse_args()
    run = Run.open(args.run, data_dir=args.data_dir)
    model, test = run.model, run.images("test")
    blocks = [(mu, gamma) for _, mu, _, gamma in encode_batches(model, test, 500)]
    gamma = np.concatenate([g for _, g in blocks])
    codes = np.concatenate([g * mu for mu, g in blocks])
    err = reconstruction_error(run, test, codes)  # the same numbers as `vsc sparsity RUN`
    print(json.dumps({"run": args.run, "test_images": len(codes), "sse_code": err["reconstruction_sse"],
                      "sse_mean_image": err["mean_image_sse"], "ratio": err["reconstruction_error"],
                      **specificity(gamma, test.labels)}, indent=2))


if __name__ == "__main__":
    main()
