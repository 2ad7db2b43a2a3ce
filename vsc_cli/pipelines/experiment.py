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

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from vsc_cli.common.config import split_list
from vsc_cli.common.errors import VscError
from vsc_cli.common.registry import FAMILIES as MODEL_FAMILIES
from vsc_cli.trainers.recipes import first_difference
from vsc_cli.evaluation.metrics import ROWS as SPECIFICITY_ROWS
from vsc_cli.common.safeio import atomic_write_text

DEFAULT_DIMS = (8, 16, 32, 64, 128, 200)
DEFAULT_MODELS = ("vae", "vsc:0.5", "vsc:0.2", "vsc:0.01")
DEFAULT_ALPHAS = (0.01, 0.05, 0.1, 0.2, 0.5, 0.8, 1.0)
LABELLED = {"dims": (5000,), "alpha": (100, 1000, 5000)}
# `families`: sparse-VAE families side by side (the VAE, the paper's VSC, vsc's default, Fallah & Rozell's
# thresholded family): name -> (TrainConfig model, its options)
FAMILY_PRESETS = {"vae": ("vae", {}), "paper": ("vsc", {"recipe": "paper"}), "default": ("vsc", {"recipe": "default"}),
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
    model: str  # the --model value (vae, vsc, ...)
    alpha: float  # 1.0 for the VAE
    dim: int
    labelled: tuple = (5000,)
    options: dict = field(default_factory=dict)  # extra TrainConfig fields (iterations, gamma_init, ...)
    family: str = ""  # the families grid's family name (FAMILY_PRESETS), "" elsewhere

    @property
    def name(self) -> str:
        alpha = f"-a{self.alpha:g}" if MODEL_FAMILIES[self.model].uses_alpha else ""
        return f"{self.data}-{self.family or self.model}-d{self.dim}{alpha}"

    @property
    def label(self) -> str:
        if self.family:
            return self.family
        return model_label(self.model, self.alpha)


def model_key(model: str, alpha: float) -> str:
    """A dims grid's model as written on the command line: MODEL, or MODEL:ALPHA for a family with eq. 4's alpha."""
    return f"{model}:{alpha:g}" if MODEL_FAMILIES[model].uses_alpha else model


def model_label(model: str, alpha: float) -> str:
    """The same for tables and plots: "VAE", "VSC, alpha 0.5"."""
    return f"{model.upper()}, alpha {alpha:g}" if MODEL_FAMILIES[model].uses_alpha else model.upper()


def parse_model(key: str) -> tuple[str, float]:
    """model_key's inverse: (model, alpha), alpha 1.0 for a family without one; VscError for a bad key."""
    model, _, alpha = key.partition(":")
    if model in MODEL_FAMILIES and not MODEL_FAMILIES[model].uses_alpha and not alpha:
        return model, 1.0
    try:
        if model in MODEL_FAMILIES and 0 < float(alpha) <= 1:
            return model, float(alpha)
    except ValueError:
        pass
    raise VscError(f"model {key!r}: use vae or vsc:ALPHA with ALPHA in (0, 1], e.g. vae,vsc:0.01")


def parse_models(text: str) -> list[str]:
    """'vae,vsc:0.01' -> ['vae', 'vsc:0.01'], each checked (parse_model)."""
    models = [m for m in split_list(text, str) if m]
    for m in models:
        parse_model(m)
    return models


def grid_points(grid: str, data: str, dims=DEFAULT_DIMS, models=DEFAULT_MODELS, alphas=DEFAULT_ALPHAS,
                alpha_dim: int = 200, options: dict | None = None, labelled=None) -> list[Point]:
    """The grid's points in a fixed order (the order --point K counts in). A recipe in options is numbered
    ("default" -> today's default-N), so that a later default does not take these points' results for its own."""
    from vsc_cli.trainers.recipes import recipe_name

    options = dict(options or {})
    if "recipe" in options:
        options["recipe"] = recipe_name(options["recipe"])
    labelled = tuple(labelled or LABELLED.get(grid, (5000,)))
    if grid == "dims":
        return [Point(grid, data, *parse_model(m), d, labelled, options) for m in models for d in dims]
    if grid == "alpha":
        return [Point(grid, data, "vsc", float(a), alpha_dim, labelled, options) for a in alphas]
    if grid == "families":  # models: family names; alphas: the spike-and-slab families' one alpha
        models = tuple(FAMILY_PRESETS) if models is DEFAULT_MODELS else models
        dims = FAMILY_DIMS if dims is DEFAULT_DIMS else dims
        alphas = (FAMILY_ALPHA,) if alphas is DEFAULT_ALPHAS else alphas
        unknown = [m for m in models if m not in FAMILY_PRESETS]
        if unknown:
            raise VscError(f"unknown family {unknown[0]!r}; the families are {', '.join(FAMILY_PRESETS)}")
        points = []
        for name in models:
            model, own = FAMILY_PRESETS[name]
            own = {k: recipe_name(v) if k == "recipe" else v for k, v in own.items()}
            alpha = float(alphas[0]) if MODEL_FAMILIES[model].uses_alpha else 1.0
            points += [Point(grid, data, model, alpha, d, labelled, {**options, **own}, name) for d in dims]
        return points
    raise VscError(f"unknown grid {grid!r}; choose dims, alpha or families")


def point_config(point: Point):
    """The TrainConfig of a point (config.resolve): its recipe (options["recipe"], the paper's by default; a VAE
    always the paper's), then its explicit options (--set, --iterations, ...) on top."""
    from vsc_cli.trainers.recipes import resolve

    options = dict(point.options)
    recipe = options.pop("recipe", "paper")
    # a --set setting is for the points whose family and network have it (the VAE has no spike settings)
    return resolve(recipe, foreign="drop", data=point.data, model=point.model, dim=point.dim, alpha=point.alpha,
                   **options)


def run_point(point: Point, root: Path, data_dir=None, threads: int | None = None, progress: bool = False,
              device: str = "cpu") -> dict:
    """Train (or resume), evaluate, encode and classify one point; write and return its result.

    device: where the point trains (cpu or cuda); evaluation, encoding and classification run on the CPU,
    where they take seconds."""
    import torch

    from vsc_cli.trainers.checkpoint import CHECKPOINT
    from vsc_cli.trainers.run import Run
    from vsc_cli.evaluation.classify import classify
    from vsc_cli.evaluation.codes import encode, read_gamma, read_labels
    from vsc_cli.evaluation.encoding import nonzero_draws, reconstruction_sse
    from vsc_cli.evaluation.sparsity import sparsity_from_gamma
    from vsc_cli.evaluation.metrics import conditional_retention_of, specificity
    from vsc_cli.common.config import PAPER_RECIPE
    from vsc_cli.common.registry import FAMILIES
    from vsc_cli.trainers.train import evaluate, train

    if threads:  # several jobs share the cores: cap torch's and numba's threads (oversubscription is slow)
        from vsc_cli.trainers.dist import set_threads

        set_threads(threads)
    folder = Path(root) / "points" / point.name
    if (folder / RESULT).is_file():
        return json.loads((folder / RESULT).read_text())
    cfg = point_config(point)
    # what a half-trained point must have been started with: its explicit options and, for the VSC, its recipe's
    recipe_keys = set(PAPER_RECIPE) if FAMILIES[point.model].takes_recipe else set()
    options = {k: cfg.get(k) for k in sorted({k for k in point.options if k != "recipe"} | recipe_keys) if k in cfg}
    resume = (folder / CHECKPOINT).is_file()
    if resume:  # a half-trained point must have been started with the same settings
        diff = first_difference(Run.open(folder).cfg, options)
        if diff:
            raise VscError(f"{folder} was started with {diff[0]}={diff[1]}, not {diff[2]}; "
                           "use another --out for different settings")
    metrics = train(None if resume else cfg, folder, device=device, data_dir=data_dir, resume=resume,
                    progress=progress)
    t_trained = time.perf_counter()  # metrics["seconds"] is the training time, over every session of a resumed point
    run = Run.open(folder, data_dir=data_dir)
    model = run.model
    x_train = run.images("train", model.cfg.train_size)[:]
    train_elbo = evaluate(model, torch.from_numpy(x_train), model.cfg.seed)["elbo"]
    codes = folder / "codes.h5"
    if not codes.is_file():  # train_size (tests) limits the encoded images like the training set
        encode(folder, codes, data_dir=data_dir, progress=progress, limit=point.options.get("train_size"))
    acc = classify(codes, "code", point.labelled, repeats=5, seed=0)
    gamma, _ = read_gamma(codes, "test")
    sp = sparsity_from_gamma(gamma, point.alpha)
    labels = read_labels(codes, "test")
    if point.grid == "families":  # active = non-zero in one exact draw, the one definition every family shares
        x_test = run.images("test")[:len(gamma)]  # as encoded
        on = nonzero_draws(model, x_test, seed=model.cfg.seed)
        spec = {**specificity(on, labels), "nonzero_rate": float(on.mean()), "sse": reconstruction_sse(model, x_test)}
    else:
        spec = specificity(gamma, labels)
    retention = conditional_retention_of(run, gamma, labels)
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
        return [g for g in split_list(visible, str) if g][:torch.cuda.device_count()]
    return [str(k) for k in range(torch.cuda.device_count())]


def started_elsewhere(points: list[Point], root: Path, device: str) -> list[str]:
    """Half-trained points whose checkpoint was made on the other kind of device.

    A run resumes exactly only where it started: the noise generator's state is a CPU Mersenne twister
    (5,056 bytes) or a CUDA Philox counter (16 bytes), and the backend was chosen for that device."""
    from vsc_cli.trainers.checkpoint import CHECKPOINT
    from vsc_cli.trainers.run import Run

    want_cuda = str(device).startswith("cuda")
    found = []
    for p in points:
        folder = Path(root) / "points" / p.name
        if (folder / RESULT).is_file() or not (folder / CHECKPOINT).is_file():
            continue
        state = Run.open(folder).state
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
            diff = first_difference(stored_options(json.loads(path.read_text())), p.options)
            if diff:
                k, was, now = diff
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


def collect(points: list[Point], root: Path) -> list[dict]:
    out = []
    for p in points:
        path = Path(root) / "points" / p.name / RESULT
        if path.is_file():
            out.append(json.loads(path.read_text()))
    return out


def stored_options(result: dict) -> dict:
    """A finished point's options, its recipe numbered: before default-2 existed, "default" meant default-1."""
    options = dict(result.get("options", {}))
    if options.get("recipe") == "default":
        options["recipe"] = "default-1"
    return options


def format_seconds(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def estimate_seconds(points: list[Point], seconds_per_1000: float = 30.0) -> float:
    """A rough CPU-time estimate: training at `seconds_per_1000` per 1,000 iterations (this VM: ~30)."""
    return sum(p.options.get("iterations", 20_000) / 1000 * seconds_per_1000 * (1 + math.log2(max(p.dim, 8)) / 16)
               for p in points)
