"""docs/results/suite/error-vs-l0.png: each suite run's error (over the mean image's) against its active elements
per image, on natural patches and three known-factor sets, beside dictionary learning + OMP's (patches: omp.json's
curve; known factors: benchmarks/dictionary_anchor.py at the true 5 non-zeros) and the top-k family's
(docs/results/features/grid; s50 / s200's anchors in docs/results/suite/anchors). Usage: python benchmarks/suite_plot.py [--out docs/results/suite]"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--out", default=str(ROOT / "docs" / "results" / "suite"))
args = p.parse_args()
out = Path(args.out)
results = [json.loads(f.read_text()) for f in sorted((out / "results").glob("*.json"))]
grid = ROOT / "docs" / "results" / "features" / "grid"
# one colour and marker per recipe / label on every panel
ALL_LABELS = sorted({r["label"] for r in results})
COLOUR = {label: plt.get_cmap("tab20")(i % 20) for i, label in enumerate(ALL_LABELS)}
MARK = {label: "os^Dv"[i // 20 % 5] for i, label in enumerate(ALL_LABELS)}
fig, axes = plt.subplots(2, 3, figsize=(16, 9), dpi=100)
axes = axes.ravel()
for ax, name in zip(axes, ("patches", "s50", "s100", "s200", "n100", "n200")):
    if name == "patches":
        omp = json.loads((ROOT / "docs" / "results" / "patches" / "omp.json").read_text())["results"]
        ax.plot([r["k"] for r in omp], [r["error"] for r in omp], "k--o", label="dictionary learning + OMP")
    else:
        for fam, mark, label in (("dl", "k*", "dictionary learning + OMP"), ("topk", "kx", "top-k, matched L0")):
            f = grid / f"{name}-{fam}.json"
            if not f.exists():
                f = out / "anchors" / f"{name}-{fam}.json"
            if f.exists():
                r = json.loads(f.read_text())
                ax.plot([r["active_mean"]], [r["reconstruction_error"]], mark, markersize=10, label=label)
    labels = sorted({r["label"] for r in results if r["set"] == name})
    for label in labels:
        pts = [r for r in results if r["set"] == name and r["label"] == label]
        # a collapsed run (L0 0) is drawn at the axis' floor, 0.1
        ax.scatter([max(r["active_mean"], 0.1) for r in pts], [r["reconstruction_error"] for r in pts], s=22,
                   color=COLOUR[label], marker=MARK[label],
                   label=f"vsc {label}" + (f" ({len(pts)} runs)" if len(pts) > 1 else ""))
    ax.set_title(f"{name}, 200 elements")
    ax.set_xscale("log")
    ax.set_xlim(0.08, 250)
    ax.set_xlabel("active elements per image (L0; log scale, 0 drawn at 0.1)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=6)
for ax in axes[::3]:
    ax.set_ylabel("error / mean image's")
fig.tight_layout()
fig.savefig(out / "error-vs-l0.png")
print(f"wrote {out / 'error-vs-l0.png'}")
