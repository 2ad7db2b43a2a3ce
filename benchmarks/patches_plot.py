"""docs/results/patches/error-vs-l0.png: vsc's error against active elements per patch (the --noise-std sweep,
noise-sweep.csv) beside dictionary learning + OMP's (omp.json). Usage: python benchmarks/patches_plot.py"""
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parents[1] / "docs" / "results" / "patches"
rows = list(csv.DictReader(open(HERE / "noise-sweep.csv")))
omp = json.load(open(HERE / "omp.json"))["results"]
fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
ax.plot([r["k"] for r in omp], [r["error"] for r in omp], "k--o", label="dictionary learning + OMP (200 atoms)")
for decoder, marker in (("linear", "s"), ("mlp", "^")):
    pts = [r for r in rows if r["decoder"] == decoder and float(r["error"]) < 0.95]
    ax.scatter([float(r["active"]) for r in pts], [float(r["error"]) for r in pts], marker=marker,
               label=f"vsc, {decoder} decoder")
    for r in pts:
        ax.annotate(r["noise_std"], (float(r["active"]), float(r["error"])), textcoords="offset points",
                    xytext=(4, 4), fontsize=7)
ax.set_xlabel("active elements per patch (L0)")
ax.set_ylabel("error (over the mean patch's)")
ax.set_title("natural 12x12 patches, 200 elements, 5,000 iterations")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(HERE / "error-vs-l0.png")
print(f"wrote {HERE / 'error-vs-l0.png'}")
