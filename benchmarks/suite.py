"""The yardstick every default is chosen on: one recipe on many kinds of data, with the scores each kind has.

    python benchmarks/suite.py run --recipe default-3 --seeds 0,1,2 --jobs 2
    python benchmarks/suite.py run --recipe default-4 --sets patches,s100 --iterations 20000
    python benchmarks/suite.py report            # docs/results/suite/README.md's tables from every result

Sets (`--sets`, default all but celeba64):
  mnist, fmnist   the built-in sets (read from --data-dir: a folder holding mnist/ and fashion-mnist/ as
                  `vsc download` leaves them, or ../shared/data), scored by the paper's linear classifier too
  celeba64        CelebA cropped to 64 x 64 (--image-size 64; hours per run on a CPU: opt in)
  patches         `vsc synth patches`: 60,000 grey 12 x 12 patches of scikit-image's ten photographs
  s50 ... n200    `vsc synth sparse-linear`: K = 50 / 100 / 200 atoms, 5 on per image, signed or non-negative
  m               `vsc synth manifolds`: 10 classes x 3 factors through a fixed random network
Every run is `vsc train --data SET --dim 200 --iterations N --recipe R --seed S` with no other setting but
`--normalise 01` on the arrays (the user's first try), plus `--extra`; then `vsc sparsity --json` (with `--truth` on
the known-factor sets) and, on MNIST / Fashion-MNIST, `vsc encode` + `vsc classify --json`. One result per run,
OUT/results/SET-LABEL-sSEED-iN.json, written when complete; a run already there is skipped, so a killed suite goes
on where it stopped. Runs and data sets live in --work. Each worker is pinned to one core with one thread.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYNTH = {  # set -> `vsc synth` arguments
    "patches": ["patches"],
    "s50": ["sparse-linear", "--values", "signed", "--factors", "50"],
    "s100": ["sparse-linear", "--values", "signed", "--factors", "100"],
    "s200": ["sparse-linear", "--values", "signed", "--factors", "200"],
    "n50": ["sparse-linear", "--values", "nonnegative", "--factors", "50"],
    "n100": ["sparse-linear", "--values", "nonnegative", "--factors", "100"],
    "n200": ["sparse-linear", "--values", "nonnegative", "--factors", "200"],
    "m": ["manifolds"],
}
BUILT_IN = {"mnist": ["--data", "mnist"], "fmnist": ["--data", "fmnist"],
            "celeba64": ["--data", "celeba", "--image-size", "64"]}
ALL = ["mnist", "fmnist", "patches", "s50", "s100", "s200", "n50", "n100", "n200", "m"]
KNOWN = [s for s in SYNTH if s != "patches"]


def vsc(*args, core=None, out=None, err=None):
    cmd = [sys.executable, "-m", "vsc_cli", *map(str, args)]
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(cmd, stdout=out, stderr=err, env=env, check=True)


def make_set(name: str, work: Path) -> Path:
    path = work / "sets" / f"{name}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        vsc("synth", *SYNTH[name], "-o", path, out=subprocess.DEVNULL)
    return path


def one(job, args, core) -> str:
    name, seed = job
    label = args.label or args.recipe
    safe = "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in label)  # a plain file name
    tag = f"{name}-{safe}-s{seed}-i{args.iterations}"
    result = Path(args.out) / "results" / f"{tag}.json"
    if result.exists():
        return f"{tag}: done before"
    work = Path(args.work)
    run = work / "runs" / tag
    if name in SYNTH:
        data = make_set(name, work)
        train_data = ["--data", data, "--normalise", "01"]
    else:
        train_data = BUILT_IN[name] + ["--data-dir", args.data_dir]
    log = open(work / "runs" / f"{tag}.log", "w")
    start = time.monotonic()
    train = ["train", *train_data, "--dim", 200, "--iterations", args.iterations, "--recipe", args.recipe,
             "--seed", seed, "--out", run, "--quiet", *args.extra.split()]
    if (run / "checkpoint.safetensors").exists():  # a killed run: go on with it
        train = ["train", "--resume", run, "--quiet"]
    try:
        vsc(*train, core=core, out=log, err=log)
        wall = time.monotonic() - start
        sparsity = ["sparsity", run, "--json", "--quiet"] + (["--truth", make_set(name, work)] if name in KNOWN else [])
        with open(work / "runs" / f"{tag}.sparsity.json", "w") as f:
            vsc(*sparsity, core=core, out=f, err=log)
        out = json.loads((work / "runs" / f"{tag}.sparsity.json").read_text())
        out = {k: v for k, v in out.items() if not isinstance(v, list)}
        if name in ("mnist", "fmnist"):
            codes = work / "runs" / f"{tag}.h5"
            vsc("encode", run, "-o", codes, "--force", "--quiet", core=core, out=log, err=log)
            with open(work / "runs" / f"{tag}.classify.json", "w") as f:
                vsc("classify", codes, "--json", "--quiet", core=core, out=f, err=log)
            out["classify"] = json.loads((work / "runs" / f"{tag}.classify.json").read_text())
            codes.unlink()
        metrics = run / "metrics.json"
        out["metrics"] = json.loads(metrics.read_text()) if metrics.exists() else None
    except subprocess.CalledProcessError as e:
        return f"{tag}: FAILED ({e.returncode}); see {log.name}"
    out.update(set=name, recipe=args.recipe, label=label, extra=args.extra, seed=seed, iterations=args.iterations,
               train_seconds=round(wall, 1), command=" ".join(map(str, train)))
    result.parent.mkdir(parents=True, exist_ok=True)
    tmp = result.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1, default=str))
    tmp.replace(result)
    return f"{tag}: {wall:.0f} s"


def run(args):
    sets = ALL if args.sets == "all" else args.sets.split(",")
    bad = [s for s in sets if s not in SYNTH and s not in BUILT_IN]
    if bad:
        sys.exit(f"unknown set {bad[0]!r}: choose {', '.join([*BUILT_IN, *SYNTH])}")
    (Path(args.work) / "runs").mkdir(parents=True, exist_ok=True)
    for s in sets:  # made once, before the workers race for them
        if s in SYNTH:
            make_set(s, Path(args.work))
    jobs = [(s, int(seed)) for seed in args.seeds.split(",") for s in sets]
    cores = [int(c) for c in args.cores.split(",")] if args.cores else list(range(args.jobs))
    free = list(cores)

    def work(job):
        core = free.pop()
        try:
            return one(job, args, core)
        finally:
            free.append(core)

    with ThreadPoolExecutor(len(cores)) as pool:
        for line in pool.map(work, jobs):
            print(line, flush=True)


def scores(r: dict) -> dict:
    """The numbers a report shows, from one result."""
    used = r.get("dims_used")
    out = {"active": r.get("active_mean"), "used": used, "error": r.get("reconstruction_error"),
           "jaccard": r.get("jaccard_all"), "mcc": r.get("truth_mcc"), "rec09": r.get("truth_recovered_09"),
           "f1": r.get("truth_support_f1"), "time": r.get("train_seconds")}
    out["elbo"] = (r.get("metrics") or {}).get("test_elbo")
    results = (r.get("classify") or {}).get("results") or [{}]
    acc = results[-1].get("accuracy_mean")  # 5,000 labelled codes, mean of the draws
    out["accuracy"] = None if acc is None else 100 * acc
    return out


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def report(args):
    rows = {}
    for f in sorted((Path(args.out) / "results").glob("*.json")):
        r = json.loads(f.read_text())
        rows.setdefault((r["set"], r["label"], r["iterations"]), []).append(scores(r))
    order = {s: i for i, s in enumerate([*ALL, "celeba64"])}
    lines = ["| set | recipe | iterations | seeds | active / image | elements used | error / mean image's | "
             "Jaccard | MCC | factors at 0.9 | support F1 | accuracy % | test ELBO | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (s, label, it), rs in sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1], kv[0][2])):
        def med(key):
            vals = [r[key] for r in rs if r[key] is not None]
            return statistics.median(vals) if vals else None

        lo_hi = lambda key, spec: "" if len(rs) < 2 or med(key) is None else \
            f" ({format(min(r[key] for r in rs), spec)}-{format(max(r[key] for r in rs), spec)})"
        lines.append(f"| {s} | {label} | {it} | {len(rs)} | {fmt(med('active'), '.1f')}{lo_hi('active', '.1f')} | "
                     f"{fmt(med('used'), '.0f')}{lo_hi('used', '.0f')} | {fmt(med('error'), '.3f')} | "
                     f"{fmt(med('jaccard'), '.3f')} | {fmt(med('mcc'), '.2f')}{lo_hi('mcc', '.2f')} | "
                     f"{fmt(med('rec09'), '.0f')} | {fmt(med('f1'), '.2f')} | {fmt(med('accuracy'), '.1f')} | "
                     f"{fmt(med('elbo'), '.1f')} | {fmt(med('time'), '.0f')} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        Path(args.write).write_text(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train and score one recipe on the sets")
    r.add_argument("--recipe", default="default", help="vsc train --recipe (default: vsc's default)")
    r.add_argument("--label", default=None, help="name of this column in the report (default: the recipe)")
    r.add_argument("--extra", default="", help="more vsc train options, e.g. '--spike-entropy 1'")
    r.add_argument("--sets", default="all", help=f"comma-separated: {', '.join([*BUILT_IN, *SYNTH])}; all = "
                   f"{','.join(ALL)}")
    r.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    r.add_argument("--iterations", type=int, default=5000, help="vsc train --iterations (default 5,000)")
    r.add_argument("--jobs", type=int, default=1, help="runs at once, one core each (default 1)")
    r.add_argument("--cores", default=None, help="the cores to pin them to, e.g. 0,1 (default 0..jobs-1)")
    r.add_argument("--data-dir", default=os.environ.get("VSC_DATA_DIR", str(ROOT.parent / "shared" / "data")),
                   help="where MNIST, Fashion-MNIST and CelebA are (default $VSC_DATA_DIR or ../shared/data)")
    r.add_argument("--work", default="runs/suite", help="runs and made sets (default runs/suite)")
    r.add_argument("--out", default="docs/results/suite", help="results folder (default docs/results/suite)")
    r.set_defaults(fn=run)
    t = sub.add_parser("report", help="the table of every result, medians over seeds (range in brackets)")
    t.add_argument("--out", default="docs/results/suite", help="results folder (default docs/results/suite)")
    t.add_argument("--write", default=None, help="also write the table to this file")
    t.set_defaults(fn=report)
    args = p.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
