"""The recipe comparison table of docs/recipes.md, from the sweeps' committed result.json files.

    python benchmarks/recipe_table.py [--alpha A] docs/results/paper-sweeps/fmnist-alpha docs/results/recipes/recipe-fmnist-*

Each folder is a `vsc experiment` output; every point in it (at prior alpha A, if given) becomes one row
(recipe = its --set options).
"""
import json
import sys
from pathlib import Path


def recipe(r: dict) -> str:
    opts = {k: v for k, v in r.get("options", {}).items() if k not in ("iterations", "backend")}
    return ", ".join(f"{k}={v}" for k, v in opts.items()) or "paper"


def main(folders, alpha=None):
    print("| folder | recipe | data | alpha | active per image, mean (5-95%) | dims used >= 1% | always on | dead | "
          "Jaccard diff. / same class | acc. 5,000 labels | Fig. 13 kept | test ELBO (paper prior) | minutes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for folder in folders:
        for path in sorted(Path(folder).glob("points/*/result.json")):
            r = json.loads(path.read_text())
            if "jaccard_different_class" not in r or (alpha is not None and r["alpha"] != alpha):
                continue
            acc = next(a for a in r["accuracy"] if a["labelled"] == 5000)
            elbo = r.get("test_elbo_paper_prior", r["test_elbo"])
            print(f"| {Path(folder).name} | {recipe(r)} | {r['data']} | {r['alpha']:g} | "
                  f"{r['active_mean']:.1f} ({r['active_p5']:g}-{r['active_p95']:g}) | {r['dims_used']} | "
                  f"{r['dims_always_on']} | {r['dims_dead']} | {r['jaccard_different_class']:.2f} / "
                  f"{r['jaccard_same_class']:.2f} | {100 * acc['accuracy_mean']:.1f} ± {100 * acc['accuracy_std']:.1f} | "
                  f"{r['conditional_retention']:.2f} | {elbo:.1f} | {r['seconds'] / 60:.0f} |")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--alpha"]:
        main(args[2:], float(args[1]))
    else:
        main(args)
