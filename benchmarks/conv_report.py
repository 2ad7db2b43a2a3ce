"""The tables of the conv network's results (docs/results/celeba-conv/README.md) from the finished runs' JSON:

    python benchmarks/conv_report.py [RESULTS_DIR]

CelebA 64x64 (docs/results/celeba-conv/*.json, benchmarks/celeba_conv.sh) and Fashion-MNIST / MNIST, conv against MLP
(docs/results/conv-vs-mlp/*.json, benchmarks/conv_vs_mlp.sh), as markdown tables on stdout.
"""
import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results")


def minutes(s):
    return f"{s / 60:.0f} min" if s else "-"


print("| run | error / mean face's | active per face (p5-p95) | Jaccard between faces | dims used | always on | "
      "test ELBO | time |")
print("|---|---|---|---|---|---|---|---|")
for p in sorted((root / "celeba-conv").glob("*.json")):
    r = json.loads(p.read_text())
    s = r
    print(f"| {p.stem} | {r['ratio']:.3f} | {s['active_mean']:.1f} ({s['active_p5']:g}-{s['active_p95']:g}) | "
          f"{s['jaccard_all']:.3f} | {s['dims_used']} | {s['dims_always_on']} | {r['test_elbo']:.1f} | "
          f"{minutes(r['seconds'])} |")
print()
print("| data | network | model | alpha | accuracy % (5,000 labels, 5 draws) | test ELBO | active per image | "
      "dims used | Jaccard different / same class | time |")
print("|---|---|---|---|---|---|---|---|---|---|")
for p in sorted((root / "conv-vs-mlp").glob("*.json")):
    r = json.loads(p.read_text())
    m, c, s = r["metrics"], r["classify"]["results"][0], r["sparsity"]
    data = p.stem.split("-")[0]
    extra = f" ({r['settings']})" if r.get("settings") else ""
    print(f"| {data} | {r['network']}{extra} | {r['model']} | {s.get('alpha') if r['model'] != 'vae' else '-'} | {100 * c['accuracy_mean']:.1f} "
          f"± {100 * c['accuracy_std']:.1f} | {m['test_elbo']:.1f} | {s['active_mean']:.1f} | {s['dims_used']} | "
          f"{s['jaccard_different_class']:.2f} / {s['jaccard_same_class']:.2f} | {minutes(m['seconds'])} |")
