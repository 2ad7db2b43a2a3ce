"""Training loop, checkpoints, resume and test-set evaluation."""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from vsc_cli.common.progress import tqdm

from vsc_kernels import default_backend

from vsc_cli.common.version import __version__
from vsc_cli.trainers import dist
from vsc_cli.trainers.checkpoint import CHECKPOINT, build_model, check_tensors, load_checkpoint, save_checkpoint  # noqa: F401
from vsc_cli.common.config import TrainConfig, to_toml
from vsc_cli.common.registry import FAMILIES
from vsc_cli.common.errors import VscError
from vsc_cli.models.vae import VAE
from vsc_cli.models.regularisers import penalty_of, rate_kl
from vsc_cli.models.schedule import Schedule, Step
from vsc_cli.common.safeio import OutputLock, atomic_write, atomic_write_text

LOG = "log.csv"
METRICS = "metrics.json"
CONFIG = "config.toml"  # the run's settings, for `vsc train --config`
LOG_FIELDS = ["iteration", "c", "elbo", "recon", "kl_slab", "kl_spike", "active", "seconds"]
EVAL_BATCH = 1000


@torch.no_grad()
def evaluate(model: VAE, x, seed: int = 0, c: float = math.inf, progress: bool = False) -> dict:
    """Mean per-image ELBO terms over x (a tensor or `Images`), with exact spike draws (c = inf) by default,
    and sparsity."""
    model.eval()
    param = next(model.parameters())
    gen = torch.Generator(device=param.device).manual_seed(10_000 + seed)
    sums = {}
    gamma_sum = None
    step = Step(c, 1.0, model.cfg.alpha)  # c = inf: Step.evaluation, the true ELBO
    for start in tqdm(range(0, len(x), EVAL_BATCH), desc="evaluating", leave=False, disable=not progress):
        xb = x[start:start + EVAL_BATCH]
        xb = (torch.from_numpy(xb) if isinstance(xb, np.ndarray) else xb).to(param.device, param.dtype)
        terms = model.elbo_terms(xb, step, generator=gen)
        gamma = terms.pop("gamma", None)
        for k, val in terms.items():
            if val.dim() == 1:  # the per-image terms (a family's (B, J) batch outputs are not averaged here)
                sums[k] = sums.get(k, 0.0) + float(val.double().sum())
        if gamma is not None and model.cfg.rate_weight:
            gamma_sum = gamma.double().sum(0) + (0.0 if gamma_sum is None else gamma_sum)
    model.train()
    out = {k: val / len(x) for k, val in sums.items()}
    if gamma_sum is not None:  # the aggregate spike-rate term's KL over the whole set, at the run's alpha
        out["aggregate_rate_kl"] = float(rate_kl(gamma_sum / len(x), model.cfg.alpha))
    out["sparsity"] = out.pop("active")  # expected fraction of non-zero latent elements (appendix E.2)
    return out


def _complete_rows(path: Path) -> list[dict]:
    """Rows of log.csv, without a last line cut short by a kill (no newline, or a missing field)."""
    with open(path, newline="") as fh:
        text = fh.read()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    rows = []
    for row in csv.DictReader(text.splitlines()):
        if all(row.get(k) not in (None, "") for k in LOG_FIELDS):
            with contextlib.suppress(ValueError):
                row["iteration"] = int(row["iteration"])
                rows.append(row)
    return rows


class _Log:
    """Averages of the ELBO terms over the last `log_every` iterations, appended to log.csv."""

    def __init__(self, path: Path, resume_at: int | None, world=None, device="cpu"):
        self.path, self.world, self.device = path, world, device
        if path is None or (world is not None and not world.main):  # no file (a benchmark), or a rank that
            # only contributes its averages
            self.reset()
            return
        if resume_at is None or not path.exists():
            atomic_write_text(path, ",".join(LOG_FIELDS) + "\n")
        else:  # drop rows written after the checkpoint we resume from: they will be redone
            rows = [r for r in _complete_rows(path) if r["iteration"] <= resume_at]

            def write(tmp):
                with open(tmp, "w", newline="") as fh:
                    w = csv.DictWriter(fh, LOG_FIELDS, lineterminator="\n")
                    w.writeheader()
                    w.writerows(rows)

            atomic_write(path, write)
        self.reset()

    def reset(self):
        self._keys, self._acc, self.count = None, None, 0

    # The window's sums stay on the model's device (float64, added in the order of the steps) so that a step does
    # not wait for five host copies; they are read only when a row or a checkpoint is written.
    @property
    def sums(self) -> dict:
        return {} if self._acc is None else dict(zip(self._keys, self._acc.tolist()))

    @sums.setter
    def sums(self, values: dict):  # a resumed window: later steps add to these exact numbers, as if never cut
        self._keys = sorted(values) or None
        self._acc = torch.tensor([float(values[k]) for k in self._keys], dtype=torch.float64,
                                 device=self.device) if values else None

    def add(self, terms: dict):
        if self._keys is None:  # the per-image terms ((B,) tensors); not gamma, which is (B, J)
            self._keys = sorted(k for k, v in terms.items() if v.dim() == 1)
        means = torch.stack([terms[k].detach().mean() for k in self._keys]).double()
        self._acc = means if self._acc is None else self._acc + means
        self.count += 1

    def window(self) -> dict:
        """The window's sums averaged over the ranks (every rank must call this: a collective)."""
        if self.world is None or not self.world.on or not self.sums:
            return dict(self.sums)
        keys = sorted(self.sums)
        mean = dist.all_mean(self.world, torch.tensor([self.sums[k] for k in keys], dtype=torch.float64), self.device)
        return dict(zip(keys, mean.tolist()))

    def write(self, iteration: int, c: float, seconds: float):
        sums = self.window()
        if self.world is not None and not self.world.main:
            self.reset()
            return
        row = {k: f"{v / self.count:.6g}" for k, v in sums.items()}
        row.update(iteration=iteration, c=f"{c:.4g}", seconds=f"{seconds:.2f}")
        line = ",".join(str(row[k]) for k in LOG_FIELDS) + "\n"
        with open(self.path, "a") as fh:  # one short write: a kill leaves whole lines (or a cut last one)
            fh.write(line)
        self.reset()


TERMS = ("recon", "kl_slab", "kl_spike")


def make_optimizer(model, lr: float) -> torch.optim.Adam:
    """Adam, fused (one kernel for all parameters' updates instead of several passes per parameter) where torch
    has it for the parameters' device and dtype; the plain one otherwise. A resumed run keeps the variant its
    checkpoint recorded (load_state_dict restores the flag)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def _check_finite(loss: torch.Tensor, terms: dict, model: VAE, iteration: int, last_good: int | None,
                  rebuild=None) -> None:
    """Stop with a message naming the iteration, the ELBO term and the parameters when anything is NaN/Inf.

    The step's graph is not kept (retain_graph costs memory and time on every step); to tell which term's
    gradient is non-finite, `rebuild()` recomputes the step's terms (same batch, same noise) with a graph."""
    kept = (f"the last good checkpoint (iteration {last_good}) is kept" if last_good
            else "no checkpoint had been written yet")
    if not torch.isfinite(loss):
        bad = [k for k in (*TERMS, "kl_rate") if k in terms and not bool(torch.isfinite(terms[k]).all())]
        raise VscError(f"non-finite loss at iteration {iteration} (term: {', '.join(bad) or 'elbo'}); {kept}. "
                       "Try a lower --lr, or --detect-anomaly to find the operation")
    named = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
    if bool(torch.isfinite(torch.stack(torch._foreach_norm([p.grad for _, p in named]))).all()):  # one fused pass
        return
    params = [n for n, p in named if not bool(torch.isfinite(p.grad).all())]
    culprits = []
    terms = rebuild() if rebuild is not None else terms
    for k in (*TERMS, "kl_rate"):  # which term's gradient is non-finite
        if k in terms and terms[k].requires_grad:
            grads = torch.autograd.grad(-terms[k].mean(), [p for _, p in named], retain_graph=True,
                                        allow_unused=True)
            if any(g is not None and not bool(torch.isfinite(g).all()) for g in grads):
                culprits.append(k)
    raise VscError(f"non-finite gradient at iteration {iteration} (term: {', '.join(culprits) or 'elbo'}; "
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


def _agree(model, world, device) -> list[str]:
    """SHA-256 of the parameters on every rank; VscError when the ranks hold different models."""
    import hashlib

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    mine = torch.frombuffer(bytearray(h.digest()), dtype=torch.uint8)
    digests = [bytes(d.numpy()).hex() for d in dist.all_gather(world, mine, device)]
    if len(set(digests)) > 1:
        raise VscError(f"the {world.size} processes hold different parameters (SHA-256 "
                       f"{', '.join(d[:12] for d in digests)}); gradients were not synchronised")
    return digests


def default_run_dir(cfg: TrainConfig) -> Path:
    """runs/DATA-MODEL-dDIM[-aALPHA]-sSEED (alpha where the family has it)."""
    from vsc_cli.data.sources import is_path

    alpha = f"-a{cfg.alpha:g}" if FAMILIES[cfg.model].uses_alpha else ""
    name = Path(cfg.data).stem if is_path(cfg.data) else cfg.data
    return Path("runs") / f"{name}-{cfg.model}-d{cfg.dim}{alpha}-s{cfg.seed}"


def noise_seed(seed: int, rank: int) -> int:
    """Seed of a rank's eps/eta generator: rank 0 (and a single process) uses seed + 2."""
    return seed + 2 + 1_000_003 * rank


def load_data(cfg: TrainConfig, data_dir, world, progress: bool):
    """(train Images, test Images, cfg with image_shape / logvar_init / encoder_scale resolved, the training
    images' mean for centred encoder input: float32, None unless cfg.centre, the largest pixel value seen)."""
    from vsc_cli.data.sources import READ_BLOCK, Memory, is_path, open_images

    def load():
        kw = dict(data_dir=data_dir, normalisation=cfg.normalisation, image_size=cfg.image_size,
                  progress=progress and world.main)
        return (open_images(cfg.data, "train", limit=cfg.train_size, **kw),
                open_images(cfg.data, "test", limit=cfg.test_size, **kw))

    x_train, x_test = dist.main_first(world, load)  # rank 0 may download; the others then find the files
    if is_path(cfg.data) or cfg.network == "conv":  # the conv network needs the shape, not only the size
        if cfg.image_shape is not None and list(cfg.image_shape) != list(x_train.shape):
            raise VscError(f"{cfg.data}: images are now {x_train.shape}, the run was trained on "
                           f"{tuple(cfg.image_shape)}")
        cfg = dataclasses.replace(cfg, image_shape=list(x_train.shape))
    if len(x_test) == 0:
        raise VscError(f"{cfg.data}: no test images (own data need at least 10 images: every tenth is a test image)")
    mean = None
    if isinstance(x_train, Memory):  # the built-in sets are in memory: use all of them
        x = x_train.x
        lo, hi, var = float(x.min(initial=0)), float(x.max(initial=0)), x.var(0, dtype=np.float64).mean()
        if cfg.centre:
            mean = x.mean(0, dtype=np.float64).astype(np.float32)
    else:  # own data: up to 10,000 images spread evenly over the set (folders are in class order)
        lo, hi, total, total_sq, count = np.inf, -np.inf, 0.0, 0.0, 0
        sample = np.unique(np.linspace(0, len(x_train) - 1, min(len(x_train), 10_000)).astype(np.int64))
        for start in range(0, len(sample), READ_BLOCK):
            rows = x_train[sample[start:start + READ_BLOCK]]
            rows = rows.astype(np.float64)
            lo, hi = min(lo, rows.min()), max(hi, rows.max())
            total, total_sq, count = total + rows.sum(0), total_sq + (rows * rows).sum(0), count + len(rows)
        var = float(np.mean(total_sq / count - (total / count) ** 2))
        if cfg.centre:
            mean = (total / count).astype(np.float32)
    if cfg.likelihood == "bernoulli" and (lo < 0 or hi > 1):
        raise VscError("the Bernoulli likelihood needs data in [0, 1]: use --normalise 01 or unit")
    if cfg.logvar_init == "data":  # resolved once; the checkpoint keeps the number
        cfg = dataclasses.replace(cfg, logvar_init=float(np.log(var)))
    if cfg.encoder_scale == "data":  # likewise
        cfg = dataclasses.replace(cfg, encoder_scale=float(1.0 / np.sqrt(var)))
    return x_train, x_test, cfg, mean, float(hi)


class RunState:
    """Everything a run carries from one iteration to the next: the model, Adam, the batch order and its
    generator, the noise generator, the iteration and the training time of earlier sessions. `save` writes it
    (with the log's open window) to the checkpoint, a collective under torchrun; `restore` reads it back, so that
    a resumed run goes on bit for bit (tests/test_train.py)."""

    def __init__(self, cfg, model, n: int, pixels: int, world, device):
        self.cfg, self.model, self.n, self.pixels, self.world, self.device = cfg, model, n, pixels, world, device
        self.shard = n // world.size  # DistributedSampler-style: rank r takes perm[r::size], the tail dropped
        self.opt = make_optimizer(model, cfg.lr)
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)  # batch order (CPU; the same on every rank)
        self.noise_gen = torch.Generator(device=device).manual_seed(noise_seed(cfg.seed, world.rank))  # eps, eta
        self.perm, self.pos, self.iteration = torch.randperm(n, generator=self.data_gen), 0, 0
        self.seconds, self.last_good = 0.0, None  # training time of earlier sessions; the last checkpoint
        self.data_max = 0.0  # the largest pixel value of the training images (set by _setup)
        self.epoch = self._shard(self.perm)

    def _shard(self, perm: torch.Tensor) -> torch.Tensor:
        """This rank's part of a batch order."""
        return perm[self.world.rank::self.world.size][:self.shard]

    def next_batch(self) -> torch.Tensor:
        """This rank's image indices of the next batch; a new epoch reshuffles and drops the incomplete last batch."""
        if self.pos + self.cfg.batch_size > self.shard:
            self.perm, self.pos = torch.randperm(self.n, generator=self.data_gen), 0
            self.epoch = self._shard(self.perm)
        idx = self.epoch[self.pos:self.pos + self.cfg.batch_size]
        self.pos += self.cfg.batch_size
        return idx

    def restore(self, state: dict, path: Path) -> None:
        """Continue from a checkpoint's state (load_checkpoint), refusing one that does not fit this run."""
        world, n = self.world, self.n
        if state["pixels"] != self.pixels:
            raise VscError(f"{path}: the run has {state['pixels']} pixels per image, the data {self.pixels}")
        check_tensors(self.model.state_dict(), state["model"], self.cfg, self.pixels)
        if len(state["perm"]) != n or state["pos"] > n or state["iteration"] > self.cfg.iterations:
            raise VscError(f"{path}: its batch order or iteration does not fit {n} training images "
                           f"and {self.cfg.iterations} iterations")
        try:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.data_gen.set_state(state["rng"]["data"])
            noise_states = [state["rng"]["noise"], *state["rng"].get("noise_ranks", [])]
            if world.rank < len(noise_states):  # generator states are CPU byte tensors, even for cuda
                self.noise_gen.set_state(noise_states[world.rank])
            else:  # a rank the interrupted run did not have
                self.noise_gen.manual_seed(noise_seed(self.cfg.seed, world.rank) + state["iteration"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise VscError(f"{path}: optimiser or generator state does not fit this run "
                           f"({str(exc).splitlines()[0]})") from None
        self.perm, self.pos, self.iteration = state["perm"], state["pos"], state["iteration"]
        self.epoch = self._shard(self.perm)
        stored_world = int(state.get("world_size", 1))
        if stored_world != world.size:  # shards of another size: start a new epoch (the rest is exact)
            self.pos = n
            if world.main:
                print(f"note: the run was trained by {stored_world} process(es), it goes on with {world.size}; "
                      "it starts a new pass over the data", file=sys.stderr)
        self.seconds, self.last_good = float(state.get("seconds", 0.0)), self.iteration

    def save(self, path: Path, log, seconds: float) -> list[str]:
        """Write the checkpoint at self.iteration (a collective: every rank calls it, rank 0 writes); returns the
        ranks' parameter digests."""
        world = self.world
        window = log.window()
        noise = dist.all_gather(world, self.noise_gen.get_state(), self.device)
        digests = _agree(self.model, world, self.device)
        if world.main:
            save_checkpoint(path, {
                "vsc_version": __version__, "config": self.cfg.to_dict(),
                "pixels": self.pixels, "iteration": self.iteration, "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "perm": self.perm, "pos": self.pos, "seconds": seconds,
                "rng": {"data": self.data_gen.get_state(), "noise": noise[0], "noise_ranks": noise[1:]},
                "log_window": {"sums": window, "count": log.count},  # a partial log.csv row
                "world_size": world.size,
            })
        return digests


def _train(cfg, out_dir, device, data_dir, resume, progress, stop_at, world):
    progress, ckpt_path = progress and world.main, out_dir / CHECKPOINT
    cfg, run, x_train, x_test, log = _setup(cfg, out_dir, device, data_dir, resume, progress, world)
    model, start, dtype = run.model, run.iteration, getattr(torch, cfg.dtype)
    mean = dist.global_mean(world, device) if world.on else None  # a batch statistic over every process's batch
    penalty, schedule, net = penalty_of(cfg, model.family, mean, model), Schedule(cfg), _parallel(model, world, device)
    t0, running = time.perf_counter(), None
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="training",
               disable=not progress, dynamic_ncols=True)
    for it in bar:  # the loop: a batch, the iteration's schedule, one step; the log row; the checkpoint
        xb, step = x_train.take(run.next_batch(), device, dtype), schedule(it)
        try:
            value = training_step(net, model, run.opt, xb, step, run.noise_gen, log, it + 1, run.last_good, penalty)
        except RuntimeError as exc:  # autograd's anomaly mode: the message names the iteration
            exc.vsc_iteration = it + 1
            raise
        except VscError as exc:  # a non-finite step: name the images' scale when it is far from the paper's
            if "non-finite" in str(exc) and run.data_max > 10:
                raise VscError(f"{exc}; the images' pixel values reach {run.data_max:g} (--normalise "
                               f"{cfg.normalisation}): --normalise unit (the paper's) or 01 puts them on a scale the "
                               "networks' initialisation expects") from None
            raise
        run.iteration = it + 1
        running = value if running is None else 0.98 * running + 0.02 * value
        if run.iteration % cfg.log_every == 0 or run.iteration == cfg.iterations:
            log.write(run.iteration, step.c, run.seconds + time.perf_counter() - t0)
            bar.set_postfix(elbo=f"{running:.1f}", c=f"{step.c:.0f}")
        if run.iteration % cfg.checkpoint_every == 0 and run.iteration < cfg.iterations or run.iteration == stop_at:
            run.save(ckpt_path, log, run.seconds + time.perf_counter() - t0)
            run.last_good = run.iteration
        if run.iteration == stop_at:
            bar.close()
            return None
    bar.close()
    train_seconds = time.perf_counter() - t0
    run.iteration = cfg.iterations
    digests = run.save(ckpt_path, log, run.seconds + train_seconds)
    if not world.main:
        return None
    return _final_metrics(run, x_test, out_dir, device, train_seconds, cfg.iterations - start, digests, progress)


def _setup(cfg, out_dir, device, data_dir, resume, progress, world):
    """A run's config (the checkpoint's when resuming), its RunState (restored when resuming), the data and the
    log: everything the loop starts from."""
    ckpt_path = out_dir / CHECKPOINT
    state = load_checkpoint(ckpt_path) if resume else None
    if state is not None:
        cfg = TrainConfig.from_dict(state["config"]) if cfg is None else cfg
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
    if state is not None:
        run.restore(state, ckpt_path)
    log = _Log(out_dir / LOG, run.iteration if state is not None else None, world, device)
    if state is not None:
        log.sums, log.count = dict(state["log_window"]["sums"]), int(state["log_window"]["count"])
    return cfg, run, x_train, x_test, log


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
