"""The paper's sweeps (Figs. 2, 3, 8, 10, 11) as grids of runs: train, evaluate, encode, classify.

`dims`: latent dimensions x {VAE, VSC at alpha 0.5, 0.2, 0.01}: test ELBO and accuracy with 5,000 labels.
`alpha`: 200 dimensions x alpha in {0.01, ..., 1.0}: posterior sparsity, train and test ELBO, accuracy
with {100, 1000, 5000} labels.

Each grid point is one run folder `<out>/points/<name>/` holding the run (checkpoint, log, metrics),
its codes (codes.h5) and its result (result.json, written last and atomically): a point whose
result.json exists is done and skipped, so an interrupted sweep is resumed by running it again.
A point whose training was interrupted resumes from its checkpoint.
"""
from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from vsc_cli.common.errors import VscError
from vsc_cli.evaluation.metrics import ROWS as SPECIFICITY_ROWS
from vsc_cli.common.safeio import atomic_write, atomic_write_text

DEFAULT_DIMS = (8, 16, 32, 64, 128, 200)
DEFAULT_MODELS = ("vae", "vsc:0.5", "vsc:0.2", "vsc:0.01")
DEFAULT_ALPHAS = (0.01, 0.05, 0.1, 0.2, 0.5, 0.8, 1.0)
LABELLED = {"dims": (5000,), "alpha": (100, 1000, 5000)}
# `families`: sparse-VAE families side by side (issue 25): name -> (TrainConfig model, its options)
FAMILIES = {"vae": ("vae", {}), "paper": ("vsc", {"recipe": "paper"}), "default": ("vsc", {"recipe": "default"}),
            "thresholded": ("thresholded", {})}
FAMILY_DIMS = (64, 256, 1024)
FAMILY_ALPHA = 0.01  # the spike-and-slab families' prior alpha (the paper's sparsest setting)
RESULT = "result.json"
# example-specificity of the test codes (vsc_cli/evaluation/metrics.py), in every result and CSV row
SPECIFICITY_FIELDS = [key for key, _ in SPECIFICITY_ROWS if key != "jaccard_all"]
CSV_FIELDS = ["grid", "data", "model", "alpha", "dim", "iterations", "test_elbo", "train_elbo", "sparsity",
              "selected_fraction", *SPECIFICITY_FIELDS, "conditional_retention", "conditional_retention_data",
              "image_classifier_accuracy",
              "labelled", "accuracy_mean", "accuracy_std", "seconds", "backend", "point"]

@dataclass
class Point:
    grid: str
    data: str
    model: str  # vae | vsc
    alpha: float  # 1.0 for the VAE
    dim: int
    labelled: tuple = (5000,)
    options: dict = field(default_factory=dict)  # extra TrainConfig fields (iterations, gamma_init, ...)
    family: str = ""  # the families grid's family name (FAMILIES), "" elsewhere

    @property
    def name(self) -> str:
        alpha = f"-a{self.alpha:g}" if self.model == "vsc" else ""
        return f"{self.data}-{self.family or self.model}-d{self.dim}{alpha}"

    @property
    def label(self) -> str:
        if self.family:
            return self.family
        return "VAE" if self.model == "vae" else f"VSC, alpha {self.alpha:g}"


def parse_models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    for m in models:
        if m != "vae" and not (m.startswith("vsc:") and _alpha_ok(m[4:])):
            raise VscError(f"model {m!r}: use vae or vsc:ALPHA with ALPHA in (0, 1], e.g. vae,vsc:0.01")
    return models


def _alpha_ok(text: str) -> bool:
    try:
        return 0 < float(text) <= 1
    except ValueError:
        return False


def grid_points(grid: str, data: str, dims=DEFAULT_DIMS, models=DEFAULT_MODELS, alphas=DEFAULT_ALPHAS,
                alpha_dim: int = 200, options: dict | None = None, labelled=None) -> list[Point]:
    """The grid's points in a fixed order (the order --point K counts in). A recipe in options is numbered
    ("default" -> today's default-N), so that a later default does not take these points' results for its own."""
    from vsc_cli.common.config import recipe_name

    options = dict(options or {})
    if "recipe" in options:
        options["recipe"] = recipe_name(options["recipe"])
    labelled = tuple(labelled or LABELLED.get(grid, (5000,)))
    if grid == "dims":
        return [Point(grid, data, "vae" if m == "vae" else "vsc", 1.0 if m == "vae" else float(m[4:]), d,
                      labelled, options) for m in models for d in dims]
    if grid == "alpha":
        return [Point(grid, data, "vsc", float(a), alpha_dim, labelled, options) for a in alphas]
    if grid == "families":  # models: family names; alphas: the spike-and-slab families' one alpha
        models = tuple(FAMILIES) if models is DEFAULT_MODELS else models
        dims = FAMILY_DIMS if dims is DEFAULT_DIMS else dims
        alphas = (FAMILY_ALPHA,) if alphas is DEFAULT_ALPHAS else alphas
        unknown = [m for m in models if m not in FAMILIES]
        if unknown:
            raise VscError(f"unknown family {unknown[0]!r}; the families are {', '.join(FAMILIES)}")
        points = []
        for name in models:
            model, own = FAMILIES[name]
            own = {k: recipe_name(v) if k == "recipe" else v for k, v in own.items()}
            alpha = float(alphas[0]) if model == "vsc" else 1.0
            points += [Point(grid, data, model, alpha, d, labelled, {**options, **own}, name) for d in dims]
        return points
    raise VscError(f"unknown grid {grid!r}; choose dims, alpha or families")


def reconstruction_sse(model, x, seed: int = 0, batch: int = 1000) -> float:
    """Mean over images of the summed squared error ||x - decoder mean(z)||^2, z one exact draw of q(z|x): for
    unit-norm images the fraction of an image's energy the reconstruction misses (0 perfect, 1 a blank image)."""
    import torch

    from vsc_cli.evaluation.codes import exact_draws

    with torch.no_grad():
        total = sum(float(((xb - model.decoder.mean(z)) ** 2).sum())
                    for xb, z in exact_draws(model, x, 30_000 + seed, batch))
    return total / len(x)


def point_config(point: Point):
    """The TrainConfig of a point (config.resolve): its recipe (options["recipe"], the paper's by default; a VAE
    always the paper's), then its explicit options (--set, --iterations, ...) on top."""
    from vsc_cli.common.config import resolve

    options = dict(point.options)
    recipe = options.pop("recipe", "paper")
    return resolve(recipe, data=point.data, model=point.model, dim=point.dim, alpha=point.alpha, **options)


def run_point(point: Point, root: Path, data_dir=None, threads: int | None = None, progress: bool = False,
              device: str = "cpu") -> dict:
    """Train (or resume), evaluate, encode and classify one point; write and return its result.

    device: where the point trains (cpu or cuda); evaluation, encoding and classification run on the CPU,
    where they take seconds."""
    import torch

    from vsc_cli.trainers.checkpoint import CHECKPOINT, build_model, load_checkpoint
    from vsc_cli.evaluation.codes import classify, encode, read_gamma, read_labels, sparsity_from_gamma
    from vsc_cli.evaluation.metrics import conditional_retention_of, specificity
    from vsc_cli.common.config import PAPER_RECIPE, TrainConfig, same_setting
    from vsc_cli.data.datasets import load_split
    from vsc_cli.trainers.train import evaluate, train

    if threads:  # several jobs share the cores: cap torch's and numba's threads (oversubscription is slow)
        from vsc_cli.trainers.dist import set_threads

        set_threads(threads)
    folder = Path(root) / "points" / point.name
    if (folder / RESULT).is_file():
        return json.loads((folder / RESULT).read_text())
    cfg = point_config(point)
    # what a half-trained point must have been started with: its explicit options and, for the VSC, its recipe's
    keys = {k for k in point.options if k != "recipe"} | (set(PAPER_RECIPE) if point.model == "vsc" else set())
    options = {k: getattr(cfg, k) for k in sorted(keys)}
    resume = (folder / CHECKPOINT).is_file()
    if resume:  # a half-trained point must have been started with the same settings
        stored = TrainConfig.from_dict(load_checkpoint(folder)["config"])
        for key, value in options.items():
            if key != "backend" and not same_setting(getattr(stored, key), value):
                raise VscError(f"{folder} was started with {key}={getattr(stored, key)}, not {value}; "
                               "use another --out for different settings")
    metrics = train(None if resume else cfg, folder, device=device, data_dir=data_dir, resume=resume,
                    progress=progress)
    t_trained = time.perf_counter()  # metrics["seconds"] is the training time, over every session of a resumed point
    model = build_model(load_checkpoint(folder))
    x_train, _ = load_split(point.data, "train", data_dir, model.cfg.normalisation, model.cfg.train_size)
    train_elbo = evaluate(model, torch.from_numpy(x_train), model.cfg.seed)["elbo"]
    codes = folder / "codes.h5"
    if not codes.is_file():  # train_size (tests) limits the encoded images like the training set
        encode(folder, codes, data_dir=data_dir, progress=progress, limit=point.options.get("train_size"))
    acc = classify(codes, "code", point.labelled, repeats=5, seed=0)
    gamma, _ = read_gamma(codes, "test")
    sp = sparsity_from_gamma(gamma, point.alpha)
    labels = read_labels(codes, "test")
    if point.grid == "families":  # active = non-zero in one exact draw, the one definition every family shares
        from vsc_cli.evaluation.codes import nonzero_draws

        x_test = load_split(point.data, "test", data_dir, model.cfg.normalisation)[0][:len(gamma)]  # as encoded
        on = nonzero_draws(model, x_test, seed=model.cfg.seed)
        spec = {**specificity(on, labels), "nonzero_rate": float(on.mean()), "sse": reconstruction_sse(model, x_test)}
    else:
        spec = specificity(gamma, labels)
    retention = conditional_retention_of(model, point.data, gamma, labels, data_dir)
    result = {
        "grid": point.grid, "data": point.data, "model": point.model, "alpha": point.alpha, "dim": point.dim,
        "iterations": model.cfg.iterations, "test_elbo": metrics["test_elbo"], "train_elbo": train_elbo,
        # the ELBO under the paper's prior (eq. 4): the same number as test_elbo unless the prior is learned
        "test_elbo_paper_prior": metrics.get("test_elbo_paper_prior", metrics["test_elbo"]),
        "sparsity": sp["sparsity"], "selected_fraction": sp["selected_fraction"],
        "dims_sometimes": sp["dims_sometimes"], **{k: spec[k] for k in SPECIFICITY_FIELDS},
        # the backend it trained with (the CPU-rebuilt model may use another one for evaluation)
        **retention, "accuracy": acc["results"], "backend": metrics.get("backend", model.cfg.backend),
        "device": _device_name(device),  # where it trained: cpu or the GPU's name
        "seconds": metrics["seconds"] + time.perf_counter() - t_trained, "train_seconds": metrics["seconds"],
        "point": point.name,
        "options": point.options,
    }
    if point.grid == "families":
        result.update(family=point.family, nonzero_rate=spec["nonzero_rate"], sse=spec["sse"],
                      test_recon=metrics["test_recon"], objective_is_elbo=metrics.get("objective_is_elbo", True),
                      elbo_is_bound=metrics.get("elbo_is_bound", True))
    atomic_write_text(folder / RESULT, json.dumps(result, indent=2) + "\n")
    return result


def _device_name(device: str) -> str:
    """'cpu', or the GPU's name (a result records where its point trained)."""
    import torch

    if not str(device).startswith("cuda"):
        return "cpu"
    return torch.cuda.get_device_name(torch.device(device))


def _worker(args):
    point, root, data_dir, threads, device = args
    return run_point(point, root, data_dir, threads, device=device)


def _take_gpu(counter, gpus: list[str]) -> None:
    """Worker initialiser with --device cuda: this process sees one GPU, the next in turn, as cuda:0.

    Set before torch or numba touch CUDA, so both the networks and numba.cuda's kernels use it."""
    with counter.get_lock():
        k = counter.value
        counter.value += 1
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus[k % len(gpus)]


def _gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [g.strip() for g in visible.split(",") if g.strip()][:torch.cuda.device_count()]
    return [str(k) for k in range(torch.cuda.device_count())]


def started_elsewhere(points: list[Point], root: Path, device: str) -> list[str]:
    """Half-trained points whose checkpoint was made on the other kind of device.

    A run resumes exactly only where it started: the noise generator's state is a CPU Mersenne twister
    (5,056 bytes) or a CUDA Philox counter (16 bytes), and the backend was chosen for that device."""
    from vsc_cli.trainers.checkpoint import CHECKPOINT, load_checkpoint

    want_cuda = str(device).startswith("cuda")
    found = []
    for p in points:
        folder = Path(root) / "points" / p.name
        if (folder / RESULT).is_file() or not (folder / CHECKPOINT).is_file():
            continue
        state = load_checkpoint(folder)
        if state["iteration"] >= state["config"]["iterations"]:  # trained: only evaluation is left, anywhere
            continue
        if (state["rng"]["noise"].numel() < 100) != want_cuda:  # CUDA's state is 16 bytes, the CPU's 5,056
            found.append(p.name)
    return found


def run_grid(points: list[Point], root: Path, data_dir=None, jobs: int = 1, progress: bool = True,
             only: int | None = None, device: str = "cpu") -> list[dict]:
    """Run every unfinished point (or only point `only`), `jobs` at a time; return all finished results.

    device cuda: every job trains on a GPU; with several GPUs the jobs take them in turn, with one GPU
    the jobs share it (these networks are small, so several at once keep a GPU busy)."""
    import multiprocessing

    from vsc_cli.common.progress import tqdm

    root = Path(root)
    (root / "points").mkdir(parents=True, exist_ok=True)
    todo = [points[only]] if only is not None else points
    for p in todo:  # a finished point must have been run with the same settings
        path = root / "points" / p.name / RESULT
        if path.is_file():
            done = stored_options(json.loads(path.read_text()))
            differ = {k: (done.get(k), v) for k, v in p.options.items() if k != "backend" and done.get(k) != v}
            if differ:
                k, (was, now) = next(iter(differ.items()))
                hint = f" (--recipe {was} finds it)" if k == "recipe" and was else ""
                raise VscError(f"{path.parent} was run with {k}={was}, not {now}{hint}; use another --out")
    todo = [p for p in todo if not (root / "points" / p.name / RESULT).is_file()]
    elsewhere = started_elsewhere(todo, root, device)
    if elsewhere:
        here, there = ("the GPU", "the CPU") if str(device).startswith("cuda") else ("the CPU", "a GPU")
        raise VscError(f"{len(elsewhere)} half-trained point(s) were started on {there} and cannot resume exactly "
                       f"on {here}: {', '.join(elsewhere)}; finish them there, or delete their folders under "
                       f"{root / 'points'} to restart them here")
    # the cores this process may use (taskset, Slurm's cgroups), not the machine's
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, jobs))
    if jobs <= 1:
        for p in tqdm(todo, desc="grid points", disable=not progress):
            run_point(p, root, data_dir, threads, device=device)
    else:
        kw = {}
        if str(device).startswith("cuda"):  # CUDA cannot be used in a forked child: spawn, one GPU each in turn
            gpus = _gpus()
            if not gpus:
                raise VscError("--device cuda: no GPU is visible to this process")
            ctx = multiprocessing.get_context("spawn")
            kw = {"mp_context": ctx, "initializer": _take_gpu, "initargs": (ctx.Value("i", 0), gpus)}
            device = "cuda"  # each worker's one visible GPU
        with ProcessPoolExecutor(max_workers=jobs, **kw) as pool:
            futures = [pool.submit(_worker, (p, root, data_dir, threads, device)) for p in todo]
            for f in tqdm(as_completed(futures), total=len(futures), desc="grid points", disable=not progress):
                f.result()
    return collect(points, root)


def stored_options(result: dict) -> dict:
    """A finished point's options, its recipe numbered: before default-2 existed, "default" meant default-1."""
    options = dict(result.get("options", {}))
    if options.get("recipe") == "default":
        options["recipe"] = "default-1"
    return options


def collect(points: list[Point], root: Path) -> list[dict]:
    out = []
    for p in points:
        path = Path(root) / "points" / p.name / RESULT
        if path.is_file():
            out.append(json.loads(path.read_text()))
    return out


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
    from vsc_cli import __version__

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
                key = "VAE" if r["model"] == "vae" else f"VSC, alpha {r['alpha']:g}"
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
    from vsc_cli import __version__

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
            key = "vae" if p.model == "vae" else f"vsc:{p.alpha:g}"
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
                name = "VAE" if m == "vae" else f"VSC, alpha {m[4:]}"
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
    return list(dict.fromkeys("vae" if p.model == "vae" else f"vsc:{p.alpha:g}" for p in points))


def _key(r: dict) -> str:
    return "vae" if r["model"] == "vae" else f"vsc:{r['alpha']:g}"


def format_seconds(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def estimate_seconds(points: list[Point], seconds_per_1000: float = 30.0) -> float:
    """A rough CPU-time estimate: training at `seconds_per_1000` per 1,000 iterations (this VM: ~30)."""
    return sum(p.options.get("iterations", 20_000) / 1000 * seconds_per_1000 * (1 + math.log2(max(p.dim, 8)) / 16)
               for p in points)
