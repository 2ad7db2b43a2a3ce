"""What a sweep's results say: results.csv, report.md and the plots of `vsc experiment`'s grids (the runner is
experiment.py; the verdicts on the paper's claims live outside the library, in benchmarks/study)."""
from __future__ import annotations

import csv
import json
import os
import platform
from pathlib import Path

from vsc_cli.common.safeio import atomic_write, atomic_write_text
from vsc_cli.pipelines.experiment import CSV_FIELDS, Point, format_seconds, model_key, model_label, parse_model


def rows(results: list[dict]) -> list[dict]:
    """One CSV row per (point, labelled count)."""
    table = []
    for r in results:
        for a in r["accuracy"]:
            table.append({**{k: r.get(k) for k in CSV_FIELDS}, "labelled": a["labelled"],
                          "accuracy_mean": a["accuracy_mean"], "accuracy_std": a["accuracy_std"]})
    return table


def write_outputs(grid: str, data: str, points: list[Point], results: list[dict], root: Path, command: str) -> dict:
    """results.csv, PNG plots in the paper's form and report.md, all written atomically."""
    root = Path(root)
    table = rows(results)

    def write_csv(tmp):
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, CSV_FIELDS)
            w.writeheader()
            w.writerows(table)

    if grid == "families":
        table = [{k: r.get(k) for k in FAMILY_FIELDS} | {"accuracy": r["accuracy"][0]["accuracy_mean"]}
                 for r in results]
        atomic_write(root / "results.csv", lambda tmp: _write_rows(tmp, table, [*FAMILY_FIELDS, "accuracy"]))
        plots = _plots(grid, data, results, root)
        atomic_write_text(root / "report.md", _families_report(data, points, results, command, plots))
        return {"csv": str(root / "results.csv"), "plots": plots, "report": str(root / "report.md")}
    atomic_write(root / "results.csv", write_csv)
    plots = _plots(grid, data, results, root)
    atomic_write_text(root / "report.md", _report(grid, data, points, results, plots, command))
    return {"csv": str(root / "results.csv"), "plots": plots, "report": str(root / "report.md")}


FAMILY_FIELDS = ["family", "data", "model", "alpha", "dim", "iterations", "sse", "test_recon", "test_elbo",
                 "objective_is_elbo", "elbo_is_bound", "active_mean", "nonzero_rate", "dims_used", "dims_always_on",
                 "jaccard_different_class", "jaccard_same_class", "seconds", "point"]


def _write_rows(path, table, fields):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fields)
        w.writeheader()
        w.writerows(table)


def _families_report(data, points, results, command, plots=()) -> str:
    """The families grid's table: one row per family and size (no verdicts: benchmarks/families_report.py)."""
    from vsc_cli.common.version import __version__

    by = {r["point"]: r for r in results}
    lines = [f"# sparse-VAE families on {data}", "", f"- command: `{command}`", f"- machine: {_machine()}",
             f"- vsc {__version__}; points finished: {len(by)} of {len(points)}",
             "- active = non-zero in one exact draw per test image; SSE = mean summed squared error of that draw's "
             "reconstruction (unit-norm images: 1 = nothing reconstructed); accuracy: a linear classifier on "
             f"{points[0].labelled[0] if points else 5000:,} labelled training codes",
             "- the thresholded family's 'ELBO' is recon - KL of its base Gaussian: not a bound (docs/model.md)", "",
             "| family | dims | SSE | test recon | test ELBO | active / image | non-zero rate | dims used | "
             "always on | Jaccard diff. / same class | accuracy | time |", "|" + "---|" * 12]
    for p in points:
        r = by.get(p.name)
        if r is None:
            lines.append(f"| {p.family} | {p.dim} | " + "not run | " * 10)
            continue
        jac = " / ".join("-" if v is None else f"{v:.2f}"
                         for v in (r.get("jaccard_different_class"), r.get("jaccard_same_class")))
        lines.append(f"| {p.family} | {p.dim} | {r['sse']:.3f} | {r['test_recon']:.1f} | {r['test_elbo']:.1f} | "
                     f"{r['active_mean']:.1f} | {r['nonzero_rate']:.3f} | {r['dims_used']} | {r['dims_always_on']} | "
                     f"{jac} | {100 * r['accuracy'][0]['accuracy_mean']:.1f} % | {format_seconds(r['seconds'])} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _plots(grid, data, results, root) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def save(fig, name):
        atomic_write(root / name, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
        plt.close(fig)
        made.append(name)

    if not results:
        return made
    if grid in ("dims", "families"):
        by_model: dict = {}
        for r in results:
            if grid == "families":
                key = r["family"]
            else:
                key = model_label(r["model"], r["alpha"])
            by_model.setdefault(key, []).append(r)
        n = results[0]["accuracy"][-1]["labelled"]
        # the families grid's question is reconstruction against size (Fallah & Rozell's claim), not the ELBO,
        # which is no bound for the thresholded family
        first = (("sse", "reconstruction error (SSE of one exact draw)", "sse-vs-dims.png") if grid == "families"
                 else ("test_elbo", "test ELBO per image (nats)", "elbo-vs-dims.png"))
        for metric, ylabel, name in (first,
                                     ("accuracy", f"test accuracy, {n} labels (%)", "accuracy-vs-dims.png")):
            fig, ax = plt.subplots(figsize=(6, 4))
            for key, rs in sorted(by_model.items()):
                rs = sorted(rs, key=lambda r: r["dim"])
                ys = [r[metric] if metric != "accuracy" else 100 * r["accuracy"][-1]["accuracy_mean"] for r in rs]
                ax.plot([r["dim"] for r in rs], ys, "o-", label=key)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("latent dimensions")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{data}: {ylabel.split(' (')[0]} against latent dimensions")
            ax.legend(fontsize=8)
            save(fig, name)
    else:
        rs = sorted(results, key=lambda r: r["alpha"])
        alphas = [r["alpha"] for r in rs]
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(alphas, [r["sparsity"] for r in rs], "o-", label="measured (mean gamma)")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="sparsity = alpha")
        ax.set_xlabel("prior alpha")
        ax.set_ylabel("posterior sparsity (fraction non-zero)")
        ax.set_title(f"{data}: posterior sparsity against alpha (Fig. 8)")
        ax.legend(fontsize=8)
        save(fig, "sparsity-vs-alpha.png")
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(alphas, [r["train_elbo"] for r in rs], "o-", label="train")
        ax.plot(alphas, [r["test_elbo"] for r in rs], "s-", label="test")
        ax.set_xlabel("prior alpha")
        ax.set_ylabel("ELBO per image (nats)")
        ax.set_title(f"{data}: ELBO against alpha (Fig. 10)")
        ax.legend(fontsize=8)
        save(fig, "elbo-vs-alpha.png")
        fig, ax = plt.subplots(figsize=(5, 4))
        for i, lab in enumerate(rs[0]["accuracy"]):
            ax.plot(alphas, [100 * r["accuracy"][i]["accuracy_mean"] for r in rs], "o-",
                    label=f"{lab['labelled']} labels")
        ax.set_xlabel("prior alpha")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{data}: accuracy against alpha (Fig. 11)")
        ax.legend(fontsize=8)
        save(fig, "accuracy-vs-alpha.png")
    return made


def _machine() -> str:
    import h5py
    import numba
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{cpu}, {os.cpu_count()} cores, GPU: {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, numba {numba.__version__}, numpy {numpy.__version__}, h5py {h5py.__version__}")


def _report(grid, data, points, results, plots, command) -> str:
    """The sweep's tables (no verdicts: the paper's claims are judged by benchmarks/study, which
    `python benchmarks/results_summary.py --write` adds to the committed sweeps' reports)."""
    from vsc_cli.common.version import __version__

    done = {r["point"] for r in results}
    missing = [p.name for p in points if p.name not in done]
    options = points[0].options if points else {}
    lines = [f"# {grid} sweep on {data}", "",
             f"- command: `{command}`", f"- machine: {_machine()}", f"- vsc {__version__}",
             f"- settings of every point: {json.dumps(options)}",
             f"- points finished: {len(done)} of {len(points)}"
             + (f" (missing: {', '.join(missing)})" if missing else ""),
             ""]
    if grid == "dims":
        dims = sorted({p.dim for p in points})
        models = []
        for p in points:
            key = model_key(p.model, p.alpha)
            if key not in models:
                models.append(key)
        n = results[0]["accuracy"][-1]["labelled"] if results else 5000
        for metric, title in (("accuracy", f"Test accuracy (%), linear classifier, {n} labels, mean ± std of 5 draws"),
                              ("test_elbo", "Test ELBO per image (nats)")):
            lines += [f"## {title}", "", "| model | " + " | ".join(map(str, dims)) + " |",
                      "|---|" + "---|" * len(dims)]
            for m in models:
                cells = []
                for d in dims:
                    r = next((r for r in results if r["dim"] == d and _key(r) == m), None)
                    if r is None:
                        cells.append("")
                    elif metric == "accuracy":
                        a = r["accuracy"][-1]
                        cells.append(f"{100 * a['accuracy_mean']:.1f} ± {100 * a['accuracy_std']:.1f}")
                    else:
                        cells.append(f"{r[metric]:.1f}")
                name = model_label(*parse_model(m))
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    else:
        lines += ["## Sparsity, ELBO and accuracy against alpha (200 dimensions)", "",
                  "| alpha | posterior sparsity | selected (gamma > 0.5) | train ELBO | test ELBO | "
                  "acc. 100 | acc. 1000 | acc. 5000 |", "|---|---|---|---|---|---|---|---|"]
        for r in sorted(results, key=lambda r: r["alpha"]):
            accs = " | ".join(f"{100 * a['accuracy_mean']:.1f}" for a in r["accuracy"])
            lines.append(f"| {r['alpha']:g} | {r['sparsity']:.3f} | {r['selected_fraction']:.3f} | "
                         f"{r['train_elbo']:.1f} | {r['test_elbo']:.1f} | {accs} |")
        lines.append("")
    lines += _specificity_table(results)
    lines += _time_table(results)
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def _specificity_table(results: list[dict]) -> list[str]:
    """Example-specificity of every finished point's test codes (gamma > 0.5; vsc_cli/evaluation/metrics.py)."""
    have = [r for r in results if "jaccard_different_class" in r]
    if not have:
        return []

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = ["## Example-specificity of the test codes (gamma > 0.5)", "",
             "Active elements per image (mean, 5th-95th percentile); dimensions used by >= 1% of images, "
             "always on (>= 95%), dead (< 1%); mean Jaccard similarity of two images' active sets, different / "
             "same class; Fig. 13: the fraction of conditional samples classified as their source's class, with N(0, 1) "
             "along the active elements (the paper's E.5) / with values drawn from the training codes that use each "
             "element.", "",
             "| point | active per image | used | always on | dead | Jaccard diff. / same | Fig. 13 kept, N(0,1) / data |",
             "|---|---|---|---|---|---|---|"]
    for r in have:
        lines.append(f"| {r['point']} | {r['active_mean']:.1f} ({r['active_p5']:g}-{r['active_p95']:g}) | "
                     f"{r['dims_used']} | {r['dims_always_on']} | {r['dims_dead']} | "
                     f"{num(r['jaccard_different_class'], '.2f')} / {num(r['jaccard_same_class'], '.2f')} | "
                     f"{num(r.get('conditional_retention'), '.2f')} / {num(r.get('conditional_retention_data'), '.2f')} |")
    return lines + [""]


def _time_table(results: list[dict]) -> list[str]:
    """Wall time of every point (training, evaluation, encoding, classifiers) and where it trained."""
    if not results:
        return []
    lines = ["## Wall time per point", "",
             "Training plus evaluation, encoding and classifiers, over every session of a resumed point.", "",
             "| point | iterations | wall time | of it training | trained on | backend |", "|---|---|---|---|---|---|"]
    for r in results:
        train = r.get("train_seconds")
        lines.append(f"| {r['point']} | {r['iterations']:,} | {format_seconds(r['seconds'])} | "
                     f"{format_seconds(train) if train is not None else '-'} | {r.get('device', 'cpu')} | "
                     f"{r['backend']} |")
    total = sum(r["seconds"] for r in results)
    return lines + ["", f"Sum of the {len(results)} finished points' wall times: {format_seconds(total)} (the "
                        "sweep's elapsed time if they ran one after another; points run side by side share "
                        "the machine and each takes longer).", ""]


def grid_models(points: list[Point]) -> list[str]:
    """The grid's models as keys: vae, vsc:ALPHA (in the grid's order)."""
    return list(dict.fromkeys(model_key(p.model, p.alpha) for p in points))


def _key(r: dict) -> str:
    return model_key(r["model"], r["alpha"])


