"""Tables and the plot of the features comparison: every family on the known-factor sets (benchmarks/features_grid.sh,
docs/results/features/grid/; at 20,000 iterations the same with ITER and OUT set, grid-20k/) and on MNIST / Fashion-MNIST (benchmarks/features_real.sh, docs/results/features/real/).

    python benchmarks/features_report.py            # print the tables
    python benchmarks/features_report.py --plot     # and draw docs/results/features/error-vs-l0.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "docs" / "results" / "features"
SETS = {"s100": "sparse-linear, signed, K 100", "n100": "sparse-linear, non-negative, K 100",
        "s50": "sparse-linear, signed, K 50", "n50": "sparse-linear, non-negative, K 50",
        "s200": "sparse-linear, signed, K 200", "n200": "sparse-linear, non-negative, K 200",
        "m": "union of manifolds, 10 x 3"}
FAMILIES = {"vae": "VAE", "vaelv": "VAE + lv", "paper": "VSC, paper recipe", "paperlv": "VSC, paper recipe + lv",
            "default": "VSC, default recipe", "defaultlv": "VSC, default recipe + lv", "thresholded": "thresholded",
            "thresholdedlv": "thresholded + lv", "topk": "top-k (matched L0)", "dl": "dictionary learning + OMP"}
# "+ lv": with --logvar-init data (the decoder's log-variance started at the data's)
REAL = {"vae": "VAE", "paper": "VSC, paper recipe", "thresholded": "thresholded", "default": "VSC, default recipe", "default2": "VSC, default-2",
        "default2-lv": "VSC, default-2 + --logvar-init data", "topk": "top-k (matched L0)"}


def load(folder: str) -> dict:
    return {f.stem: json.loads(f.read_text()) for f in sorted((HERE / folder).glob("*.json"))}


def f3(v):
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def grid_table(grid: dict) -> str:
    lines = ["| set | family | MCC | recovered 0.9 / 0.7 (signed: halves at 0.9, of 2K) | support F1 | L0 error | active / image | dims used | "
             "error / mean image's | time |", "|---|---|---|---|---|---|---|---|---|---|"]
    runs = [(s, fam, label, seed) for s in SETS for fam, label in FAMILIES.items() for seed in ("", "-s1", "-s2")]
    for s, fam, label, seed in runs:
        r = grid.get(f"{s}-{fam}{seed}")
        if r is None:
            continue
        k = f" (k {r['settings'].split('--k ')[1].split()[0]})" if fam == "topk" else ""
        halves = f" (halves {r['truth_halves_recovered_09']})" if "truth_halves" in r else ""
        seeded = f", seed {r['settings'].split('--seed ')[1]}" if "--seed" in r["settings"] else ""
        lines.append(f"| {s} | {label}{k}{seeded} | {r['truth_mcc']:.2f} | {r['truth_recovered_09']} / "
                     f"{r['truth_recovered_07']}{halves} | {r['truth_support_f1']:.2f} | {r['truth_l0_error']:.1f} | "
                     f"{r['active_mean']:.1f} | {r['dims_used']} | {f3(r.get('reconstruction_error'))} | "
                     f"{r['wall_seconds']} s |")
    return "\n".join(lines)


def real_table(real: dict) -> str:
    lines = ["| data | family | sparse probe k = 1 / 2 / 5 | accuracy, 5,000 labels | consistency (elements) | "
             "active / image | dims used / always on | Jaccard between / within | error / mean image's | test ELBO | "
             "time |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for data in ("mnist", "fmnist"):
        for fam, label in REAL.items():
            r = real.get(f"{data}-{fam}")
            if r is None:
                continue
            sp, s = r["sparse_probe"], r["sparsity"]
            probe = " / ".join(f"{100 * p['accuracy_mean']:.1f}" for p in sp["results"])
            acc = [a for a in r["classify"]["results"] if a["labelled"] == 5000][0]
            k = f" (k {r['settings'].split('--k ')[1].split()[0]})" if fam == "topk" else ""
            lines.append(f"| {data} | {label}{k} | {probe} % | {100 * acc['accuracy_mean']:.1f} % | "
                         f"{f3(s.get('consistency'))} ({s.get('consistency_elements')}) | {s['active_mean']:.1f} | "
                         f"{s['dims_used']} / {s['dims_always_on']} | {f3(s['jaccard_different_class'])} / "
                         f"{f3(s['jaccard_same_class'])} | {f3(s.get('reconstruction_error'))} | "
                         f"{r['test_elbo']:.1f}{' (recon.: no KL)' if fam == 'topk' else ''} | {r['wall_seconds']} s |")
    return "\n".join(lines)


def plot(grid: dict, real: dict, out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [s for s in SETS if any(k.startswith(s + "-") for k in grid)]
    fig, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets), 3.2), squeeze=False)
    markers = dict(zip(FAMILIES, "o8s^v<>DxP"))
    for ax, s in zip(axes[0], sets):
        for fam, label in FAMILIES.items():
            r = grid.get(f"{s}-{fam}")
            if r is None or r.get("reconstruction_error") is None:
                continue
            ax.scatter(max(r["active_mean"], 0.1), r["reconstruction_error"], marker=markers[fam], label=label)
        ax.set_xscale("log")
        ax.set_title(SETS[s], fontsize=8)
        ax.set_xlabel("active elements per image (L0)")
        ax.set_ylabel("error / mean image's")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plot", action="store_true", help="draw docs/results/features/error-vs-l0.png")
    args = ap.parse_args()
    grid, real = load("grid"), load("real")
    print(grid_table(grid))
    print()
    print(grid_table(load("grid-20k")))  # the default recipe + lv at 20,000 iterations (features_grid.sh, ITER=20000)
    print()
    print(real_table(real))
    if args.plot:
        plot(grid, real, HERE / "error-vs-l0.png")


if __name__ == "__main__":
    main()
