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
from vsc_cli.trainers.checkpoint import CHECKPOINT, load_checkpoint
from vsc_cli.trainers.data import load_data
from vsc_cli.trainers.log import LOG, TERM_COLUMNS, Log
from vsc_cli.trainers.state import RunState, agree
from vsc_cli.trainers.stops import NAMES, Stops, TrainingInterrupted

METRICS = "metrics.json"
CONFIG = "config.toml"  # the run's settings, for `vsc train --config`
EVAL_BATCH = 1000


@torch.no_grad()
def evaluate(model: VAE, x, seed: int = 0, c: float = math.inf, progress: bool = False) -> dict:
    """Mean per-image ELBO terms over x (a tensor or `Images`), with exact spike draws (c = inf) by default,
    and sparsity."""
    model.eval()
    param = next(model.parameters())
    gen = torch.Generator(device=param.device).manual_seed(10_000 + seed)
    sums = dict.fromkeys(TERM_COLUMNS, 0.0)  # the fixed ones first, in metrics.json's order; 0 where the family
    gamma_sum = None  # has no such term
    step = Step(c, 1.0, model.cfg.alpha)  # c = inf: Step.evaluation, the true ELBO
    for start in tqdm(range(0, len(x), EVAL_BATCH), desc="evaluating", leave=False, disable=not progress):
        xb = x[start:start + EVAL_BATCH]
        xb = (torch.from_numpy(xb) if isinstance(xb, np.ndarray) else xb).to(param.device, param.dtype)
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
    cfg, run, x_train, x_test, log = _setup(cfg, out_dir, device, data_dir, resume, progress, world)
    model, start, dtype = run.model, run.iteration, getattr(torch, cfg.dtype)
    if resume and start == cfg.iterations:  # nothing to train; a kill during the final evaluation left no metrics
        return _finished(run, x_test, out_dir, device, progress)
    mean = dist.global_mean(world, device) if world.on else None  # a batch statistic over every process's batch
    penalty, schedule, net = penalty_of(cfg, model.family, mean, model), Schedule(cfg), _parallel(model, world, device)
    t0, shown = time.perf_counter(), None
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="training",
               disable=not progress, dynamic_ncols=True)

    def checkpoint():
        run.save(ckpt_path, log, run.seconds + time.perf_counter() - t0)
        run.last_good = run.iteration
        stops.checkpointed()

    with Stops(world, device, cfg.checkpoint_minutes) as stops, contextlib.closing(bar):
        for it in bar:  # the loop: a batch, the iteration's schedule, one step; the log row; the checkpoint
            xb, step = x_train.take(run.next_batch(), device, dtype), schedule(it)
            try:
                value = training_step(net, model, run.opt, xb, step, run.noise_gen, log, it + 1, run.last_good,
                                      penalty)
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
            if run.iteration % cfg.log_every == 0 or run.iteration == cfg.iterations:
                shown = log.write(run.iteration, step.c, run.seconds + time.perf_counter() - t0)
                bar.set_postfix(elbo=f"{shown:.1f}" if shown is not None else "-", c=f"{step.c:.0f}", refresh=False)
            elif shown is None and progress and (run.iteration - start) % 10 == 1:
                # before the first row: the mean over the window so far (the bar shows log rows' numbers after)
                value = log.running_elbo()
                bar.set_postfix(elbo=f"{value:.1f}" if value is not None else "-", c=f"{step.c:.0f}", refresh=False)
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
    run.iteration = cfg.iterations
    digests = run.save(ckpt_path, log, run.seconds + train_seconds)
    if not world.main:
        return None
    return _final_metrics(run, x_test, out_dir, device, train_seconds, cfg.iterations - start, digests, progress)


def _finished(run, x_test, out_dir, device, progress):
    """`--resume` of a run that trained all its iterations: its metrics, evaluated now if a kill during the final
    evaluation left none (a note on stderr says nothing was trained)."""
    cfg, world = run.cfg, run.world
    if world.main:
        print(f"note: {out_dir} already trained all its {cfg.iterations:,} iterations; nothing to train "
              "(a longer run is a new run: --iterations N --out NEW_DIR)", file=sys.stderr)
    metrics_path = out_dir / METRICS
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text()) if world.main else None
    else:
        digests = agree(run.model, world, device)
        metrics = _final_metrics(run, x_test, out_dir, device, 0.0, 0, digests, progress) if world.main else None
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
    elif world.main:
        (out_dir / METRICS).unlink(missing_ok=True)  # a fresh run: no stale metrics beside it

    asked_backend = cfg.backend
    if cfg.backend == "auto":  # record the backend actually used in the checkpoint and metrics
        cfg = dataclasses.replace(cfg, backend=default_backend(device))
    x_train, x_test, cfg, x_mean, data_max = load_data(cfg, data_dir, world, progress)
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
    return cfg, run, x_train, x_test, log


def recorded_data_dir(data: str, data_dir) -> str | None:
    """The cache folder a run of a built-in set records (absolute), None for own data (its path is the data)."""
    from vsc_cli.data.datasets import default_data_dir
    from vsc_cli.data.sources import is_path

    return None if is_path(data) else str(Path(data_dir or default_data_dir()).resolve())


def _parallel(model, world, device):
    """The module the loop calls: the model, or under torchrun its DistributedDataParallel wrapper."""
    if not world.on:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[torch.device(device).index] if device != "cpu" else None)


def _final_metrics(run, x_test, out_dir, device, train_seconds, done, digests, progress) -> dict:
    """The test-set metrics of a finished run, written to metrics.json (rank 0)."""
    cfg, model, world = run.cfg, run.model, run.world
    metrics = {f"test_{k}": v for k, v in evaluate(model, x_test, cfg.seed, progress=progress).items()}
    metrics.update(
        iterations=cfg.iterations, alpha=cfg.alpha if model.family.uses_alpha else None,
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
