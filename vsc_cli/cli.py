"""`vsc` command line: thin click commands that hand off to library code."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from . import __version__
from .config import TrainConfig
from .data import DATASETS, NORMALISATIONS
from .errors import VscError

DATA_NAMES = [*DATASETS, "fashion-mnist"]


def _hidden(ctx, param, value):
    """'400' or '2000,2000' -> (400,) / (2000, 2000)."""
    if value is None:
        return None
    try:
        sizes = tuple(int(s) for s in str(value).split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of layer widths, e.g. 400 or 2000,2000")
    if not sizes or any(s < 1 for s in sizes):
        raise click.BadParameter(f"{value!r}: every layer width must be at least 1")
    return sizes


def handle_errors(fn):
    """Turn the library's VscError (and a few OS errors) into one-line ClickExceptions, unless --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except (VscError, OSError) as exc:
            if ctx.find_root().params.get("debug"):
                raise
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; the last checkpoint is kept") from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vsc")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def main(debug):
    """Variational Sparse Coding: train VAEs with a spike-and-slab prior and use their sparse codes."""


data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="VSC_DATA_DIR", default="data",
    show_default=True, help="Dataset cache folder (env VSC_DATA_DIR).")


@main.command()
@click.argument("dataset", type=click.Choice(DATA_NAMES, case_sensitive=False))
@data_dir_option
@click.option("--from", "source", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Copy the files from this local folder instead of downloading them.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def download(dataset, data_dir, source, quiet):
    """Fetch and verify DATASET (mnist or fmnist) into the cache folder.

    Tries, in order: the cache, --from DIR, Debian's /usr/share/datasets/fashion-mnist/,
    then the official URLs. Every file is checked by the md5 of its decompressed content.
    """
    from .data import fetch

    folder = fetch(dataset, data_dir, source, progress=not quiet)
    click.echo(f"{dataset}: verified files in {folder}")


@main.command()
@click.option("--data", type=click.Choice(DATA_NAMES, case_sensitive=False), default="fmnist", show_default=True,
              help="Dataset to train on.")
@click.option("--dim", type=click.IntRange(min=1), default=200, show_default=True, help="Latent dimensions J.")
@click.option("--model", type=click.Choice(["vsc", "vae"]), default="vsc", show_default=True,
              help="vsc: spike-and-slab prior; vae: the standard Gaussian VAE baseline.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="Prior spike probability, in (0, 1] (VSC only).")
@click.option("--hidden", callback=_hidden, default="400", show_default=True,
              help="Hidden layer widths of encoder and decoder, e.g. 400 or 2000,2000.")
@click.option("--likelihood", type=click.Choice(["gaussian", "bernoulli"]), default="gaussian", show_default=True,
              help="Decoder likelihood: Gaussian with learned per-pixel mean and log-variance, or Bernoulli.")
@click.option("--normalise", "normalisation", type=click.Choice(NORMALISATIONS), default="unit", show_default=True,
              help="Image scaling: unit L2 norm per image (the paper), 01 (divide by 255) or none.")
@click.option("--iterations", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Optimiser steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True, help="Images per step.")
@click.option("--lr", type=click.FloatRange(0, 1, min_open=True), default=1e-3, show_default=True,
              help="Adam learning rate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds weights, batch order and noise.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory for checkpoint, log and metrics [default: runs/DATA-MODEL-dDIM-aALPHA-sSEED].")
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Continue the interrupted run in this directory (its own config is used).")
@click.option("--force", is_flag=True, help="Overwrite a finished or partial run in --out.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Torch device for the networks.")
@click.option("--train-size", type=click.IntRange(min=1), help="Use only the first N training images.")
@click.option("--test-size", type=click.IntRange(min=1), help="Evaluate on only the first N test images.")
@click.option("--log-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Iterations between rows of log.csv (averages of the ELBO terms).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Iterations between checkpoints.")
@click.option("--min-logvar", type=float, default=-10.0, show_default=True,
              help="Soft floor on the Gaussian decoder's per-pixel log-variance.")
@data_dir_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON.")
@handle_errors
def train(out, resume, force, device, data_dir, quiet, as_json, **opts):
    """Train a VSC (or VAE) and report its test-set ELBO and posterior sparsity.

    Example: vsc train --data fmnist --dim 200
    """
    import torch

    from .train import CHECKPOINT, load_checkpoint
    from .train import train as run_training

    ctx = click.get_current_context()
    if device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda: no usable CUDA device here; use --device cpu")
    opts["data"] = {"fashion-mnist": "fmnist"}.get(opts["data"].lower(), opts["data"].lower())
    if resume is not None:
        if out is not None and out.resolve() != resume.resolve():
            raise click.UsageError("give either --resume RUN_DIR or --out RUN_DIR, not two different folders")
        stored = TrainConfig.from_dict(load_checkpoint(resume)["config"])
        for name, value in opts.items():
            given = ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
            if given and getattr(stored, name) != value:
                raise click.UsageError(f"--{name.replace('_', '-')} {value} differs from the run being resumed "
                                       f"({getattr(stored, name)}); a resumed run keeps its config")
        cfg, out = stored, resume
    else:
        cfg = TrainConfig(**opts)
        if out is None:
            alpha = f"-a{cfg.alpha:g}" if cfg.model == "vsc" else ""
            out = Path("runs") / f"{cfg.data}-{cfg.model}-d{cfg.dim}{alpha}-s{cfg.seed}"
        if (out / CHECKPOINT).exists() and not force:
            raise click.UsageError(f"{out} already holds a run: continue it with --resume {out}, or pass --force")
    metrics = run_training(cfg, out, device=device, data_dir=data_dir, resume=resume is not None,
                           progress=not quiet)
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    click.echo(f"run: {out}")
    click.echo(f"test ELBO per image: {metrics['test_elbo']:.2f}  (reconstruction {metrics['test_recon']:.2f}, "
               f"slab KL {metrics['test_kl_slab']:.2f}, spike KL {metrics['test_kl_spike']:.2f})")
    if cfg.model == "vsc":
        click.echo(f"posterior sparsity (fraction of non-zero elements): {metrics['test_sparsity']:.3f}  "
                   f"(prior alpha {cfg.alpha:g})")
    if metrics["seconds_per_1000_iterations"]:
        click.echo(f"time: {metrics['seconds_per_1000_iterations']:.1f} s per 1,000 iterations")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
