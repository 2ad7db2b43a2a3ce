"""Training throughput (images per second) of one process versus torchrun with several, on this machine.

    python benchmarks/distributed.py [--iterations 300] [--rounds 3] [--nproc 2] [--data fmnist]

Runs `vsc train` (the paper's Fashion-MNIST network: 784-400-200, batch 256 per process) as
  * one process with all cores' threads,
  * one process with one thread,
  * `torchrun --nproc-per-node N` (one thread each, torchrun's default),
  * one process reading the same training images from an .npy file (--data PATH, streamed),
in alternating rounds, and prints the median images/s of each (from metrics.json: training time only,
start-up and evaluation excluded). Needs the dataset in $VSC_DATA_DIR (or ./data).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

VSC = shutil.which("vsc") or str(Path(sys.executable).with_name("vsc"))


def train(args, out, data, env_extra, nproc=1):
    env = {**os.environ, **env_extra}
    cmd = [VSC] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    f"--nproc-per-node={nproc}", "--no-python", VSC]
    cmd += ["train", "--data", data, "--dim", "200", "--batch-size", "256", "--iterations", str(args.iterations),
            "--test-size", "100", "--log-every", "100", "--checkpoint-every", str(10 * args.iterations),
            "--out", str(out), "--force", "--quiet"]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return json.loads((out / "metrics.json").read_text())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=300, help="optimiser steps per run")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    p.add_argument("--nproc", type=int, default=2, help="processes for the torchrun case")
    p.add_argument("--data", default="fmnist", help="built-in dataset to train on")
    p.add_argument("--json", action="store_true", help="print the raw numbers as JSON too")
    args = p.parse_args()

    from vsc_cli.data.datasets import load_split  # the .npy copy of the same training images

    cores = os.cpu_count()
    tmp = Path(tempfile.mkdtemp(prefix="vsc-bench-dist-"))
    try:
        x, _ = load_split(args.data, "train", normalisation="none")
        import numpy as np

        np.save(tmp / "train.npy", np.rint(x).astype(np.uint8).reshape(len(x), 28, 28))
        cases = {
            f"1 process, {cores} threads": (args.data, {"OMP_NUM_THREADS": str(cores)}, 1),
            "1 process, 1 thread": (args.data, {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}, 1),
            f"torchrun, {args.nproc} processes x 1 thread": (args.data, {"OMP_NUM_THREADS": "1"}, args.nproc),
            f"1 process, {cores} threads, --data train.npy (streamed)": (str(tmp / "train.npy"),
                                                                         {"OMP_NUM_THREADS": str(cores)}, 1),
        }
        speeds = {k: [] for k in cases}
        for r in range(args.rounds):
            for name, (data, env, nproc) in cases.items():
                m = train(args, tmp / "run", data, env, nproc)
                speeds[name].append(m["images_per_second"])
                print(f"round {r + 1}: {name}: {m['images_per_second']:.0f} images/s", file=sys.stderr)
        base = statistics.median(speeds[f"1 process, {cores} threads"])
        print(f"\n{args.iterations} iterations, batch 256 per process, {args.data}, {cores} cores; "
              f"median of {args.rounds} alternating rounds\n")
        print("| case | images/s | x 1 process |\n|---|---|---|")
        for name, v in speeds.items():
            med = statistics.median(v)
            print(f"| {name} | {med:.0f} | {med / base:.2f} |")
        if args.json:
            print(json.dumps(speeds, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
