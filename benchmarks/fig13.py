"""Add Fig. 13's second number (conditional samples whose values come from the training codes of each element,
vsc_cli/evaluation/metrics.py) to finished sweep points that lack it, from their run folder and codes.h5.

    python benchmarks/fig13.py docs/results/codes/codes-fmnist-both1 [...] [--data-dir DIR]

A point is rewritten atomically, only when its checkpoint and codes are still beside its result.json."""
import argparse
import json
from pathlib import Path

from vsc_cli.trainers.checkpoint import CHECKPOINT
from vsc_cli.trainers.run import Run
from vsc_cli.evaluation.codes import read_gamma, read_labels
from vsc_cli.evaluation.metrics import conditional_retention_of
from vsc_cli.common.safeio import atomic_write_text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sweeps", nargs="+")
    ap.add_argument("--data-dir")
    args = ap.parse_args()
    for sweep in args.sweeps:
        for result in sorted(Path(sweep).glob("points/*/result.json")):
            r = json.loads(result.read_text())
            folder = result.parent
            if r.get("conditional_retention_data") is not None:
                continue
            if not (folder / CHECKPOINT).is_file() or not (folder / "codes.h5").is_file():
                print(f"{folder}: no run folder here, skipped")
                continue
            run = Run.open(folder, data_dir=args.data_dir)
            gamma, _ = read_gamma(folder / "codes.h5", "test")
            labels = read_labels(folder / "codes.h5", "test")
            got = conditional_retention_of(run, gamma, labels)
            if abs(got["conditional_retention"] - r["conditional_retention"]) > 1e-9:
                print(f"{folder}: warning: the N(0,1) number is now {got['conditional_retention']:.4f}, "
                      f"result.json has {r['conditional_retention']:.4f}")
            r["conditional_retention_data"] = got["conditional_retention_data"]
            atomic_write_text(result, json.dumps(r, indent=2) + "\n")
            print(f"{folder}: Fig. 13 kept {r['conditional_retention']:.3f} (N(0,1)) / "
                  f"{r['conditional_retention_data']:.3f} (data)")


if __name__ == "__main__":
    main()
