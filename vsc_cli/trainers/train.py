"""The training loop (`train`: set up, then a batch, the iteration's step, a log row, a checkpoint) and the
test-set evaluation of a run. The log is trainers/log.py, the state carried between iterations trainers/state.py,
the data and the config statistics trainers/data.py, the checkpoint file trainers/checkpoint.py."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from vsc_kernels import default_backend

from vsc_cli.common.config import TrainConfig, to_toml
from vsc_cli.common.errors import NonFiniteStep, VscError
from vsc_cli.common.progress import tqdm
from vsc_cli.common.safeio import OutputLock, atomic_write_text
from vsc_cli.common.version import __version__
from vsc_cli.models.regularisers import penalty_of, rate_kl
from vsc_cli.models.schedule import Schedule, Step
from vsc_cli.models.vae import VAE
from vsc_cli.trainers import dist
from vsc_cli.trainers.augment import augment, augments
from vsc_cli.trainers.checkpoint import BEST, CHECKPOINT, load_checkpoint
from vsc_cli.trainers.data import load_data
from vsc_cli.trainers.log import LOG, TERM_COLUMNS, Log
from vsc_cli.trainers.state import RunState, agree
from vsc_cli.trainers.stops import NAMES, Stops, TrainingInterrupted

METRICS = "metrics.json"
CONFIG = "config.toml"  # the run's settings, for `vsc train --config`
EVAL_BATCH = 1000


@torch.no_grad()
def evaluate(model: VAE, x, seed: int = 0, c: float = math.inf, progress: bool = False, mean_image=None) -> dict:
    """Mean per-image ELBO terms over x (a tensor or `Images`), with exact spike draws (c = inf) by default,
    and sparsity. With mean_image (the training images' mean, (pixels,)) also the codes' reconstruction error:
    the squared error of the decoded code E[z] = gamma mu over that of the mean image (evaluation/encoding.py's
    reconstruction_error, which `vsc sparsity` reports)."""
    model.eval()
    param = next(model.parameters())
    gen = torch.Generator(device=param.device).manual_seed(10_000 + seed)
    sums = dict.fromkeys(TERM_COLUMNS, 0.0)  # the fixed ones first, in metrics.json's order; 0 where the family
    gamma_sum = None  # has no such term
    step = Step(c, 1.0, model.cfg.alpha)  # c = inf: Step.evaluation, the true ELBO
    mean = None if mean_image is None else torch.as_tensor(mean_image).to(param.device, torch.float64)
    err_code = err_mean = 0.0
    for start in tqdm(range(0, len(x), EVAL_BATCH), desc="evaluating", leave=False, disable=not progress):
        xb = x[start:start + EVAL_BATCH]
        xb = (torch.from_numpy(xb) if isinstance(xb, np.ndarray) else xb).to(param.device, param.dtype)
        if mean is not None:
            q = model.posterior(xb)
            recon = model.decoder.mean(q.gamma * q.mu).double()
            err_code += float(((xb.double() - recon) ** 2).sum())
            err_mean += float(((xb.double() - mean) ** 2).sum())
        terms = model.elbo_terms(xb, step, generator=gen)
        gamma = terms.pop("gamma", None)
        for k, val in terms.items():
            if val.dim() == 1:  # the per-image terms (a family's (B, J) batch outputs are not averaged here)
                sums[k] = sums.get(k, 0.0) + float(val.double().sum())
        if gamma is not None and model.cfg.get("rate_weight"):
            gamma_sum = gamma.double().sum(0) + (0.0 if gamma_sum is None else gamma_sum)
    model.train()
    out = {k: val / len(x) for k, val in sums.items()}
    if gamma_sum is not None:  # the aggregate spike-rate term's KL over the whole set, at the run's alpha
        out["aggregate_rate_kl"] = float(rate_kl(gamma_sum / len(x), model.cfg.alpha))
    out["sparsity"] = out.pop("active")  # expected fraction of non-zero latent elements (appendix E.2)
    if mean is not None:
        out["reconstruction_error"] = err_code / err_mean if err_mean > 0 else None
    return out


def _check_finite(loss: torch.Tensor, terms: dict, model: VAE, iteration: int, last_good: int | None,
                  rebuild=None) -> None:
    """NonFiniteStep naming the iteration, the ELBO term and the parameters when anything is NaN/Inf.

    The step's graph is not kept (retain_graph costs memory and time on every step); to tell which term's
    gradient is non-finite, `rebuild()` recomputes the step's terms (same batch, same noise) with a graph."""
    kept = (f"the last good checkpoint (iteration {last_good}) is kept" if last_good
            else "no checkpoint had been written yet")
    if not torch.isfinite(loss):
        bad = [k for k in model.loss_terms if k in terms and not bool(torch.isfinite(terms[k]).all())]
        raise NonFiniteStep(f"non-finite loss at iteration {iteration} (term: {', '.join(bad) or 'elbo'}); {kept}. "
                       "Try a lower --lr, or --detect-anomaly to find the operation")
    named = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
    if bool(torch.isfinite(torch.stack(torch._foreach_norm([p.grad for _, p in named]))).all()):  # one fused pass
        return
    params = [n for n, p in named if not bool(torch.isfinite(p.grad).all())]
    culprits = []
    terms = rebuild() if rebuild is not None else terms
    for k in model.loss_terms:  # which term's gradient is non-finite
        if k in terms and terms[k].requires_grad:
            grads = torch.autograd.grad(-terms[k].mean(), [p for _, p in named], retain_graph=True,
                                        allow_unused=True)
            if any(g is not None and not bool(torch.isfinite(g).all()) for g in grads):
                culprits.append(k)
    raise NonFiniteStep(f"non-finite gradient at iteration {iteration} (term: {', '.join(culprits) or 'elbo'}; "
                   f"parameters: {', '.join(params[:4])}); {kept}. "
                   "Try a lower --lr, or --detect-anomaly to find the operation")


def training_step(net, model: VAE, opt, xb, step: Step, noise_gen, log, iteration: int,
                  last_good: int | None, penalty=None) -> float:
    """One step of the training loop (`vsc bench --train` times exactly this): the ELBO terms of batch xb, the
    gradient, the finiteness check, Adam's update, the log window. Returns the batch's mean objective.
    step: the iteration's c, lambda, alpha and KL weight (schedule.py).
    penalty: (terms, step) -> a training term added to the loss (regularisers.penalty_of), or None."""
    noise_state = noise_gen.get_state()  # a few KB: lets a non-finite step be rebuilt exactly

    def rebuild():
        noise_gen.set_state(noise_state)
        return model.elbo_terms(xb, step, generator=noise_gen)

    terms = net(xb, step, generator=noise_gen)
    loss = -terms.get("objective", terms["elbo"]).mean()  # objective: the pseudo-input prior's, with its rate term
    if penalty is not None:
        loss = loss + penalty(terms, step, xb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    _check_finite(loss, terms, model, iteration, last_good, rebuild)
    opt.step()
    log.add(terms)
    return -loss.item()


def train(cfg: TrainConfig | None, out_dir: Path, device: str = "cpu", data_dir=None, resume: bool = False,
          progress: bool = True, stop_at: int | None = None, detect_anomaly: bool = False) -> dict | None:
    """Train (or resume) a run in out_dir; returns the final test-set metrics (None on ranks other than 0).

    Only one process may train in a run directory at a time (a lock file refuses the second).
    Under torchrun every process trains on its shard of each batch order with DistributedDataParallel;
    rank 0 alone writes the run folder.
    stop_at: checkpoint and return None after that iteration, as if killed there (for tests).
    detect_anomaly: run autograd's anomaly mode (slow) so a NaN is traced to the operation making it.
    """
    out_dir = Path(out_dir)
    world, device = dist.setup(device)
    try:
        if world.main:
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise VscError(f"cannot create run folder {out_dir}: {exc.strerror}") from None
        with OutputLock(out_dir, "vsc train") if world.main else contextlib.nullcontext(), flush_denormals():
            if not detect_anomaly:
                return _train(cfg, out_dir, device, data_dir, resume, progress, stop_at, world)
            return _train_anomaly(cfg, out_dir, device, data_dir, resume, progress, stop_at, world)
    finally:
        dist.teardown(world)


@contextlib.contextmanager
def flush_denormals():
    """Training with subnormal floats (below 1.2e-38 in float32) flushed to zero, then as before.

    x86 arithmetic on subnormals is up to ~100x slower, and a VSC makes them: the spike probability of a
    switched-off element and its gradients fall to 1e-30 and below. A CelebA run whose elements had switched
    off took 8x longer per step (200 s instead of 25 s per 100 iterations). Only numbers in that range change."""
    flushed = torch.set_flush_denormal(True)  # False where the CPU cannot (then nothing changed)
    try:
        yield
    finally:
        if flushed:
            torch.set_flush_denormal(False)  # the process's default: an API user's own code is not touched


def _train_anomaly(cfg, out_dir, device, data_dir, resume, progress, stop_at, world):
    # autograd reports where the faulty operation was called as a warning; record it so that it is
    # shown whatever the warning filters are (once-per-location, or captured by a test runner)
    failure = result = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.autograd.detect_anomaly(check_nan=True):
                result = _train(cfg, out_dir, device, data_dir, resume, progress, stop_at, world)
        except RuntimeError as exc:
            if "nan" not in str(exc).lower():
                raise
            failure = VscError(f"anomaly detection: {str(exc).splitlines()[0]} (at iteration "
                               f"{getattr(exc, 'vsc_iteration', '?')}); the last good checkpoint is kept")
        recorded = list(caught)
    for w in recorded:  # outside the recording context: other warnings reach the user as usual
        if "Traceback of forward call" in str(w.message):
            print(str(w.message), file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if failure is not None:
        raise failure
    return result


def _train(cfg, out_dir, device, data_dir, resume, progress, stop_at, world):
    progress, ckpt_path = progress and world.main, out_dir / CHECKPOINT
    cfg, run, data, log = _setup(cfg, out_dir, device, data_dir, resume, progress, world)
    x_train, x_val = data.train, data.validation
    model, start, dtype = run.model, run.iteration, getattr(torch, cfg.dtype)
    if resume and (start == cfg.iterations or run.validation["stopped_at"]):
        return _finished(run, data, out_dir, device, progress)  # nothing to train (a kill during the final
    mean = dist.global_mean(world, device) if world.on else None  # evaluation may have left no metrics)
    penalty, schedule, net = penalty_of(cfg, model.family, mean, model), Schedule(cfg), _parallel(model, world, device)
    t0, shown, val_shown = time.perf_counter(), None, _last_validation(run)
    clock = StepClock(start, cfg.iterations, device, progress, cfg)
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="training",
               disable=not progress, dynamic_ncols=True)

    def checkpoint():
        run.save(ckpt_path, log, run.seconds + time.perf_counter() - t0)
        run.last_good = run.iteration
        stops.checkpointed()

    def postfix(elbo):
        bar.set_postfix(elbo=f"{elbo:.1f}" if elbo is not None else "-", c=f"{step.c:.0f}",
                        **({"val": f"{val_shown:.1f}"} if val_shown is not None else {}), refresh=False)

    with Stops(world, device, cfg.checkpoint_minutes) as stops, contextlib.closing(bar):
        for it in bar:  # the loop: a batch (augmented), the iteration's schedule, one step; the log row; the
            xb, step = x_train.take(run.next_batch(), device, dtype), schedule(it)  # validation; the checkpoint
            if augments(cfg):
                xb = augment(xb, x_train.shape, cfg, run.aug_gen)
            try:
                training_step(net, model, run.opt, xb, step, run.noise_gen, log, it + 1, run.last_good, penalty)
            except RuntimeError as exc:  # autograd's anomaly mode: the message names the iteration
                exc.vsc_iteration = it + 1
                raise
            except NonFiniteStep as exc:  # name the images' scale when it is far from the paper's
                if run.data_max > 10:
                    raise NonFiniteStep(f"{exc}; the images' pixel values reach {run.data_max:g} (--normalise "
                                        f"{cfg.normalisation}): --normalise unit (the paper's) or 01 puts them on "
                                        "a scale the networks' initialisation expects") from None
                raise
            run.iteration = it + 1
            clock.tick(run.iteration, bar)
            if run.iteration % cfg.log_every == 0 or run.iteration == cfg.iterations:
                shown = log.write(run.iteration, step.c, run.seconds + time.perf_counter() - t0)
                postfix(shown)
            elif shown is None and progress and (run.iteration - start) % 10 == 1:
                postfix(log.running_elbo())  # before the first row: the mean over the window so far
            stop_early = False
            if x_val is not None and (run.iteration % cfg.validate_every == 0 or run.iteration == cfg.iterations):
                val_shown = validate(run, x_val, data.mean_image, out_dir, run.seconds + time.perf_counter() - t0,
                                     log, counts=run.iteration >= schedule.settled)
                postfix(shown)
                v = run.validation
                if cfg.patience and v["since_best"] >= cfg.patience and run.iteration < cfg.iterations:
                    v["stopped_at"], stop_early = run.iteration, True
                    if world.main:
                        (bar.write if progress else print)(f"stopping early at iteration {run.iteration:,}: no better validation ELBO in "
                                  f"{cfg.patience} evaluations since iteration {v['best_iteration']:,} "
                                  f"({v['best_elbo']:.2f}); --patience 0 trains every iteration", file=sys.stderr)
            if stop_early:
                break
            signum, due = stops.poll()
            if signum is not None:
                checkpoint()
                raise TrainingInterrupted(
                    f"stopped by {NAMES.get(signum, f'signal {signum}')} at iteration {run.iteration:,} of "
                    f"{cfg.iterations:,}; checkpoint written: continue with `vsc train --resume {out_dir}`", signum)
            if (run.iteration % cfg.checkpoint_every == 0 or due) and run.iteration < cfg.iterations \
                    or run.iteration == stop_at:
                checkpoint()
            if run.iteration == stop_at:
                return None
    train_seconds = time.perf_counter() - t0
    digests = run.save(ckpt_path, log, run.seconds + train_seconds)
    if not world.main:
        return None
    return _final_metrics(run, data, out_dir, device, train_seconds, run.iteration - start, digests, progress)


def _last_validation(run):
    rows = run.validation["rows"]
    return rows[-1]["elbo"] if rows else None


VALIDATION_LOG = "validation.csv"
RECONSTRUCTIONS = "reconstructions.png"
VALIDATION_FIELDS = ("iteration", "elbo", "recon", "reconstruction_error", "sparsity", "best_iteration", "seconds")


def validate(run, x_val, mean_image, out_dir: Path, seconds: float, log, counts: bool = True) -> float:
    """One evaluation on the validation split (the ELBO with exact spike draws, the codes' reconstruction error):
    a row of validation.csv, best.safetensors when the ELBO is the best so far, reconstructions.png; returns the
    validation ELBO. counts: whether the schedule has settled (Schedule.settled): before, the row is written but
    neither the best checkpoint nor --patience looks at it. Every rank evaluates (the same model: the same
    numbers) and takes part in the save."""
    model, v = run.model, run.validation
    terms = evaluate(model, x_val, run.cfg.seed, mean_image=mean_image)
    improved = counts and (v["best_elbo"] is None or terms["elbo"] > v["best_elbo"])
    if improved:
        v["best_elbo"], v["best_iteration"], v["since_best"] = terms["elbo"], run.iteration, 0
    elif counts:
        v["since_best"] += 1
    v["rows"].append({"iteration": run.iteration, "elbo": terms["elbo"], "recon": terms["recon"],
                      "reconstruction_error": terms["reconstruction_error"], "sparsity": terms["sparsity"],
                      "best_iteration": v["best_iteration"], "seconds": round(seconds, 3)})
    if improved:
        run.save(out_dir / BEST, log, seconds)
    if run.world.main:
        lines = [",".join(VALIDATION_FIELDS)] + [",".join("" if r[k] is None else str(r[k]) for k in VALIDATION_FIELDS)
                                                 for r in v["rows"]]
        atomic_write_text(out_dir / VALIDATION_LOG, "\n".join(lines) + "\n")
        write_reconstructions(model, x_val, out_dir / RECONSTRUCTIONS)
    return terms["elbo"]


def write_reconstructions(model, x, path: Path, count: int = 8) -> None:
    """A small PNG: `count` images spread over x (top row) and their reconstructions from the codes E[z] (bottom),
    each scaled by its own maximum as `vsc figure` draws them."""
    from PIL import Image

    from vsc_cli.common.safeio import atomic_write
    from vsc_cli.data.display import tile

    shape = tuple(model.cfg.image_shape) if model.cfg.image_shape else None
    if shape is None:
        from vsc_cli.data.datasets import image_shape
        shape = image_shape(model.cfg.data, x.pixels)
    idx = np.unique(np.linspace(0, len(x) - 1, min(count, len(x))).astype(np.int64))
    rows = x[idx]
    param = next(model.parameters())
    model.eval()
    with torch.no_grad():
        q = model.posterior(torch.from_numpy(rows).to(param.device, param.dtype))
        recon = model.decoder.mean(q.gamma * q.mu).float().cpu().numpy()
    model.train()
    cells = [[tile(r.reshape(shape)) for r in rows], [tile(r.reshape(shape)) for r in recon]]
    grid = np.concatenate([np.concatenate(row, axis=1) for row in cells], axis=0)
    image = Image.fromarray((np.clip(grid, 0, 1) * 255).round().astype(np.uint8))
    scale = max(1, 64 // shape[1])  # small images drawn larger
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def _finished(run, data, out_dir, device, progress):
    """`--resume` of a run that trained all its iterations: its metrics, evaluated now if a kill during the final
    evaluation left none (a note on stderr says nothing was trained)."""
    cfg, world = run.cfg, run.world
    if world.main and run.validation["stopped_at"]:
        print(f"note: {out_dir} stopped early at iteration {run.validation['stopped_at']:,} (--patience "
              f"{cfg.patience}); nothing to train", file=sys.stderr)
    elif world.main:
        print(f"note: {out_dir} already trained all its {cfg.iterations:,} iterations; nothing to train "
              "(a longer run is a new run: --iterations N --out NEW_DIR)", file=sys.stderr)
    metrics_path = out_dir / METRICS
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text()) if world.main else None
    else:
        digests = agree(run.model, world, device)
        metrics = _final_metrics(run, data, out_dir, device, 0.0, 0, digests, progress) if world.main else None
    return metrics


def _setup(cfg, out_dir, device, data_dir, resume, progress, world):
    """A run's config (the checkpoint's when resuming), its RunState (restored when resuming), the data and the
    log: everything the loop starts from."""
    ckpt_path = out_dir / CHECKPOINT
    state = load_checkpoint(ckpt_path) if resume else None
    if state is not None:
        cfg = TrainConfig.from_dict(state["config"]) if cfg is None else cfg
        recorded = state.get("data_dir")  # resumed from another folder: the data it was trained from
        if data_dir is None and not os.environ.get("VSC_DATA_DIR") and recorded and Path(recorded).is_dir():
            data_dir = Path(recorded)
    elif world.main:  # a fresh run: no stale metrics, best checkpoint or validation rows beside it
        for stale in (METRICS, BEST, VALIDATION_LOG, RECONSTRUCTIONS):
            (out_dir / stale).unlink(missing_ok=True)

    asked_backend = cfg.backend
    if cfg.backend == "auto":  # record the backend actually used in the checkpoint and metrics
        cfg = dataclasses.replace(cfg, backend=default_backend(device))
    x_train, x_val, x_test, cfg, x_mean, data_max = load_data(cfg, data_dir, world, progress)
    if state is None and world.main:  # `vsc train --config RUN/config.toml` trains this run again, on any device
        atomic_write_text(out_dir / CONFIG, to_toml(dataclasses.replace(cfg, backend=asked_backend)))
    n, pixels, dtype = len(x_train), x_train.pixels, getattr(torch, cfg.dtype)
    if cfg.batch_size > n // world.size:
        raise VscError(f"--batch-size {cfg.batch_size} is larger than the {n // world.size} training images "
                       + (f"of each of the {world.size} processes" if world.on else ""))

    torch.manual_seed(cfg.seed)  # initial weights (the same on every rank; DDP also broadcasts rank 0's)
    model = VAE(cfg, pixels).to(device=device, dtype=dtype)
    if cfg.centre and state is None:  # a resumed run restores its mean with the weights
        model.x_mean.copy_(torch.from_numpy(x_mean).to(device, dtype))
    run = RunState(cfg, model, n, pixels, world, device)
    run.data_max = data_max  # named in a non-finite step's error when the images are on a large scale
    run.data_dir = recorded_data_dir(cfg.data, data_dir)
    if state is not None:
        run.restore(state, ckpt_path)
        if world.main and run.iteration < cfg.iterations:
            print(f"resuming {out_dir} at iteration {run.iteration:,} of {cfg.iterations:,}", file=sys.stderr)
    log = Log(out_dir / LOG, run.iteration if state is not None else None, world, device)
    if state is not None:
        log.sums, log.count = dict(state["log_window"]["sums"]), int(state["log_window"]["count"])
    return cfg, run, Data(x_train, x_val, x_test, x_mean), log


@dataclasses.dataclass
class Data:
    """A run's splits (`Images`; validation None without one) and its training images' mean image."""
    train: object
    validation: object
    test: object
    mean_image: np.ndarray


class StepClock:
    """The honest start: after a few timed steps, one line on stderr with the time the rest of the run will take
    on this device and, when that is long, what would shorten it. The first WARMUP steps are not timed (numba's
    compilation, allocator warm-up)."""
    WARMUP, TIMED = 3, 10
    LONG = 15 * 60  # seconds: a run this long on the CPU is told what would shorten it

    def __init__(self, start: int, total: int, device, progress: bool, cfg=None):
        self.start, self.total, self.device, self.on, self.cfg = start, total, str(device), progress, cfg
        self.t = None

    def tick(self, iteration: int, bar) -> None:
        if not self.on:
            return
        done = iteration - self.start
        if done == self.WARMUP:
            self.t = time.perf_counter()
        elif done == self.WARMUP + self.TIMED and self.t is not None:
            per_step = (time.perf_counter() - self.t) / self.TIMED
            self.on = False
            left = self.total - iteration
            if left * per_step < 60:  # a short run needs no forecast
                return
            bar.write(estimate_line(per_step, left, self.device, torch.cuda.is_available(), self.cfg),
                      file=sys.stderr)


def duration(seconds: float) -> str:
    """'2 h 05 min', '14 min', '40 s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


def estimate_line(per_step: float, left: int, device: str, cuda_available: bool, cfg=None) -> str:
    """The forecast line: the time of the `left` iterations at `per_step` seconds each, and what would shorten a
    long one on a CPU, in settings the run does not have yet (its network's half width, early stopping where it
    has a validation split and no patience)."""
    line = f"estimated time: about {duration(per_step * left)} for the {left:,} iterations left on {device} " \
           f"({per_step:.3f} s a step, timed over {StepClock.TIMED})"
    if device.startswith("cpu") and per_step * left > StepClock.LONG:
        if cuda_available:
            return line + "; a GPU is there: --device cuda (or --device auto) trains faster"
        from vsc_cli.common.registry import NETWORKS

        tips = ["fewer --iterations"]
        smaller = NETWORKS[cfg.network].smaller(cfg) if cfg is not None else None
        if smaller:
            tips.append(f"a smaller network ({smaller})")
        if cfg is not None and cfg.validation and not cfg.patience:
            tips.append("--patience 5 (stop once the validation ELBO stops improving)")
        line += "; on a CPU, " + " or ".join(tips) + " would shorten it"
        if cfg is not None and cfg.validation and cfg.patience:
            line += f" (it stops early if the validation ELBO has not improved in {cfg.patience} evaluations)"
    return line


def recorded_data_dir(data: str, data_dir) -> str | None:
    """The cache folder a run of a built-in set records (absolute), None for own data (its path is the data)."""
    from vsc_cli.data.datasets import default_data_dir
    from vsc_cli.data.sources import is_path

    return None if is_path(data) else str(Path(data_dir or default_data_dir()).resolve())


def _best_model(run, path: Path):
    """The model of the best checkpoint (best.safetensors), on the run's device; the training model is untouched."""
    import copy

    model = copy.deepcopy(run.model)
    model.load_state_dict(load_checkpoint(path)["model"])
    return model


def _parallel(model, world, device):
    """The module the loop calls: the model, or under torchrun its DistributedDataParallel wrapper."""
    if not world.on:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[torch.device(device).index] if device != "cpu" else None)


TRAIN_SAMPLE = 1000  # training images (spread evenly) whose ELBO and error metrics.json sets beside the test split's


def _final_metrics(run, data, out_dir, device, train_seconds, done, digests, progress) -> dict:
    """The metrics of a finished run, written to metrics.json (rank 0): the test split's ELBO terms and the codes'
    reconstruction error, the same on TRAIN_SAMPLE training images and (with one) the validation split, and the
    gaps between them. With a validation split every number is the best checkpoint's (best_iteration), which the
    commands on the run use too."""
    cfg, model, world = run.cfg, run.model, run.world
    v = run.validation
    if data.validation is not None and v["best_iteration"] is not None and (out_dir / BEST).is_file():
        model = _best_model(run, out_dir / BEST)
    metrics = {f"test_{k}": v for k, v in evaluate(model, data.test, cfg.seed, progress=progress,
                                                   mean_image=data.mean_image).items()}
    sample = np.unique(np.linspace(0, len(data.train) - 1, min(TRAIN_SAMPLE, len(data.train))).astype(np.int64))
    train_terms = evaluate(model, data.train.subset(sample), cfg.seed, mean_image=data.mean_image)
    metrics.update(train_elbo=train_terms["elbo"], train_reconstruction_error=train_terms["reconstruction_error"],
                   train_sample=len(sample))
    if data.validation is not None:
        val_terms = evaluate(model, data.validation, cfg.seed, mean_image=data.mean_image)
        metrics.update(validation_elbo=val_terms["elbo"],
                       validation_reconstruction_error=val_terms["reconstruction_error"],
                       best_iteration=v["best_iteration"], stopped_early_at=v["stopped_at"])
    metrics["elbo_gap"] = metrics["train_elbo"] - metrics["test_elbo"]  # per image: > 0 when training images fit better
    metrics.update(
        iterations=run.iteration, alpha=cfg.alpha if model.family.uses_alpha else None,
        seconds=run.seconds + train_seconds,
        seconds_per_1000_iterations=(train_seconds / done * 1000) if done else None,
        images_per_second=(done * cfg.batch_size * world.size / train_seconds) if done else None,
        device=device, backend=cfg.backend, threads=torch.get_num_threads(), processes=world.size,
        rank_parameter_sha256=digests, vsc_version=__version__,
    )
    if not model.family.elbo_is_bound or cfg.kl_weight != 1.0:
        # test_elbo is recon - KL at weight 1; training minimised another objective, or (the thresholded family)
        # the KL is not the posterior's own, so the number is no bound on log p(x) (docs/model.md)
        metrics.update(objective_is_elbo=False, elbo_is_bound=model.family.elbo_is_bound, kl_weight=cfg.kl_weight)
    atomic_write_text(out_dir / METRICS, json.dumps(metrics, indent=2) + "\n")
    return metrics
