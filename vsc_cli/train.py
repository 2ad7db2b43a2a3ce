"""Training loop, checkpoints, resume and test-set evaluation."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from vsc_kernels import c_schedule, default_backend

from . import __version__
from .config import TrainConfig
from .data import load_split
from .errors import VscError
from .model import VAE

CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
METRICS = "metrics.json"
LOG_FIELDS = ["iteration", "c", "elbo", "recon", "kl_slab", "kl_spike", "active", "seconds"]
EVAL_BATCH = 1000


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), fsync, then rename over `path`: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load with weights_only=True: a checkpoint is data; a pickled object is refused, never run."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise VscError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise VscError(f"{path}: not a vsc checkpoint or corrupt ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != "vsc-checkpoint":
        raise VscError(f"{path}: not a vsc checkpoint")
    return state


def build_model(state: dict, device="cpu") -> VAE:
    """Rebuild a model from a checkpoint dict (it carries its own config)."""
    cfg = TrainConfig.from_dict(state["config"])
    model = VAE(cfg, state["pixels"]).to(device)
    model.load_state_dict(state["model"])
    return model


@torch.no_grad()
def evaluate(model: VAE, x: torch.Tensor, seed: int = 0, c: float = math.inf, progress: bool = False) -> dict:
    """Mean per-image ELBO terms over x, with exact spike draws (c = inf) by default, and sparsity."""
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(10_000 + seed)
    sums = {}
    nonzero = 0
    for start in tqdm(range(0, len(x), EVAL_BATCH), desc="evaluating", leave=False, disable=not progress):
        xb = x[start:start + EVAL_BATCH]
        terms = model.elbo_terms(xb, c=c, generator=gen, hard=math.isinf(c))
        for k, val in terms.items():
            sums[k] = sums.get(k, 0.0) + float(val.double().sum())
        if model.sparse:
            _, _, v = model.encode(xb)
            nonzero += float(model.gamma(v).double().sum())
    model.train()
    out = {k: val / len(x) for k, val in sums.items()}
    out["sparsity"] = out.pop("active")  # expected fraction of non-zero latent elements (appendix E.2)
    return out


class _Log:
    """Averages of the ELBO terms over the last `log_every` iterations, appended to log.csv."""

    def __init__(self, path: Path, resume_at: int | None):
        self.path = path
        if resume_at is None or not path.exists():
            with open(path, "w", newline="") as fh:
                csv.writer(fh).writerow(LOG_FIELDS)
        else:  # drop rows written after the checkpoint we resume from: they will be redone
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["iteration"]) <= resume_at]

            def write(tmp):
                with open(tmp, "w", newline="") as fh:
                    w = csv.DictWriter(fh, LOG_FIELDS)
                    w.writeheader()
                    w.writerows(rows)

            atomic_write(path, write)
        self.reset()

    def reset(self):
        self.sums, self.count = {}, 0

    def add(self, terms: dict):
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach().mean())
        self.count += 1

    def write(self, iteration: int, c: float, seconds: float):
        row = {k: f"{v / self.count:.6g}" for k, v in self.sums.items()}
        row.update(iteration=iteration, c=f"{c:.4g}", seconds=f"{seconds:.2f}")
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, LOG_FIELDS).writerow(row)
        self.reset()


def _check_finite(loss: torch.Tensor, terms: dict, model: VAE, iteration: int) -> None:
    if torch.isfinite(loss):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()):  # one fused pass
            return
        raise VscError(f"non-finite gradient at iteration {iteration}; the last checkpoint is kept")
    bad = [k for k in ("recon", "kl_slab", "kl_spike") if not bool(torch.isfinite(terms[k]).all())]
    raise VscError(f"non-finite loss at iteration {iteration} (term: {', '.join(bad) or 'elbo'}); "
                   "the last checkpoint is kept")


def train(cfg: TrainConfig, out_dir: Path, device: str = "cpu", data_dir=None, resume: bool = False,
          progress: bool = True, stop_at: int | None = None) -> dict | None:
    """Train (or resume) a run in out_dir; returns the final test-set metrics.

    stop_at: checkpoint and return None after that iteration, as if killed there (for tests).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT
    state = load_checkpoint(ckpt_path) if resume else None
    if state is not None:
        cfg = TrainConfig.from_dict(state["config"]) if cfg is None else cfg

    if cfg.backend == "auto":  # record the backend actually used in the checkpoint and metrics
        cfg = dataclasses.replace(cfg, backend=default_backend(device))
    x_train, _ = load_split(cfg.data, "train", data_dir, cfg.normalisation, cfg.train_size)
    x_test, _ = load_split(cfg.data, "test", data_dir, cfg.normalisation, cfg.test_size)
    if cfg.likelihood == "bernoulli" and (x_train.min() < 0 or x_train.max() > 1):
        raise VscError("the Bernoulli likelihood needs data in [0, 1]: use --normalise 01 or unit")
    if cfg.batch_size > len(x_train):
        raise VscError(f"--batch-size {cfg.batch_size} is larger than the {len(x_train)} training images")
    dtype = getattr(torch, cfg.dtype)
    x_train = torch.from_numpy(x_train).to(device=device, dtype=dtype)
    x_test = torch.from_numpy(x_test).to(device=device, dtype=dtype)
    n, pixels = x_train.shape

    torch.manual_seed(cfg.seed)  # initial weights
    model = VAE(cfg, pixels).to(device=device, dtype=dtype)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    data_gen = torch.Generator().manual_seed(cfg.seed + 1)  # batch order (on CPU)
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 2)  # eps and eta
    perm, pos, start = torch.randperm(n, generator=data_gen), 0, 0
    if state is not None:
        if state["pixels"] != pixels:
            raise VscError(f"checkpoint has {state['pixels']} pixels, the data {pixels}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        data_gen.set_state(state["rng"]["data"])
        noise_gen.set_state(state["rng"]["noise"])  # generator states are CPU byte tensors, even for cuda
        perm, pos, start = state["perm"], int(state["pos"]), int(state["iteration"])
        elapsed = float(state.get("seconds", 0.0))
    else:
        elapsed = 0.0
    log = _Log(out_dir / LOG, start if state is not None else None)
    if state is not None:
        log.sums, log.count = dict(state["log_window"]["sums"]), int(state["log_window"]["count"])

    def checkpoint(iteration):
        save_checkpoint(ckpt_path, {
            "format": "vsc-checkpoint", "vsc_version": __version__, "config": cfg.to_dict(),
            "pixels": pixels, "iteration": iteration, "model": model.state_dict(),
            "optimizer": opt.state_dict(), "perm": perm, "pos": pos, "seconds": elapsed + time.perf_counter() - t0,
            "rng": {"data": data_gen.get_state(), "noise": noise_gen.get_state()},
            "log_window": {"sums": dict(log.sums), "count": log.count},  # a partial log.csv row
        })

    t0 = time.perf_counter()
    running = None
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="training",
               disable=not progress, dynamic_ncols=True)
    for it in bar:
        if pos + cfg.batch_size > n:  # new epoch: reshuffle, drop the incomplete last batch
            perm, pos = torch.randperm(n, generator=data_gen), 0
        idx = perm[pos:pos + cfg.batch_size].to(device)
        pos += cfg.batch_size
        c = c_schedule(it, cfg.iterations, cfg.c_start, cfg.c_end)
        terms = model.elbo_terms(x_train[idx], c, generator=noise_gen)
        loss = -terms["elbo"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _check_finite(loss, terms, model, it + 1)
        opt.step()
        log.add(terms)
        value = -loss.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        if (it + 1) % cfg.log_every == 0 or it + 1 == cfg.iterations:
            log.write(it + 1, c, elapsed + time.perf_counter() - t0)
            bar.set_postfix(elbo=f"{running:.1f}", c=f"{c:.0f}")
        if (it + 1) % cfg.checkpoint_every == 0 and it + 1 < cfg.iterations or it + 1 == stop_at:
            checkpoint(it + 1)
        if it + 1 == stop_at:
            bar.close()
            return None
    bar.close()
    train_seconds = time.perf_counter() - t0
    checkpoint(cfg.iterations)
    done = cfg.iterations - start

    metrics = {f"test_{k}": v for k, v in evaluate(model, x_test, cfg.seed, progress=progress).items()}
    metrics.update(
        iterations=cfg.iterations, alpha=cfg.alpha if cfg.model == "vsc" else None,
        seconds=elapsed + train_seconds,
        seconds_per_1000_iterations=(train_seconds / done * 1000) if done else None,
        device=device, backend=cfg.backend, threads=torch.get_num_threads(), vsc_version=__version__,
    )
    atomic_write(out_dir / METRICS, lambda tmp: tmp.write_text(json.dumps(metrics, indent=2) + "\n"))
    return metrics
