"""`vsc` command line: thin click commands that hand off to library code."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vsc_cli.common.version import __version__
from vsc_cli.cli.options import (DataArg, GroupedCommand, check_backend, comma_list, data_dir_option, handle_errors,
                                 help_all, run_option, setting_option, setting_options, settings_list,
                                 usage_errors)
from vsc_cli.common.config import SETTABLE, PAPER_RECIPE
from vsc_cli.common.errors import VscError
from vsc_cli.common.registry import FAMILIES
from vsc_cli.data.datasets import DATASETS, IMAGE_DATASETS
from vsc_cli.evaluation.metrics import ROWS as SPECIFICITY_ROWS
from vsc_cli.trainers.recipes import DEFAULT, RECIPE_NAMES, recipe_help

DATA_NAMES = [*DATASETS, *IMAGE_DATASETS, "fashion-mnist"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vsc")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def main(debug):
    """Variational Sparse Coding: train VAEs with a spike-and-slab prior and use their sparse codes."""


@main.command()
@click.argument("dataset", type=click.Choice(DATA_NAMES, case_sensitive=False))
@data_dir_option
@click.option("--from", "source", type=click.Path(exists=True, path_type=Path),
              help="Copy the files from this local folder (for celeba: a folder or the zip itself) "
                   "instead of downloading them.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def download(dataset, data_dir, source, quiet):
    """Fetch and verify DATASET (mnist, fmnist or celeba) into the cache folder.

    mnist, fmnist: tries, in order, the cache, --from DIR, Debian's /usr/share/datasets/fashion-mnist/,
    $VSC_MIRROR, then the official URLs; every file is checked by the md5 of its decompressed content.
    celeba: the official zip sits behind a Google Drive page; download img_align_celeba.zip yourself
    and copy it in with --from (its images are checked), or put it in DATA_DIR/celeba/.
    """
    dataset = dataset.lower()
    if dataset == "celeba":
        from vsc_cli.data import celeba

        found = celeba.fetch(data_dir, source)
        click.echo(f"celeba: {celeba.check_source(found)} images in {found}")
        return
    from vsc_cli.data.datasets import fetch

    if source is not None and not source.is_dir():
        raise click.UsageError(f"--from {source}: give the folder holding the .gz files")
    folder = fetch(dataset, data_dir, source, progress=not quiet)
    click.echo(f"{dataset}: verified files in {folder}")


@main.command(cls=GroupedCommand)
@click.option("--help-all", is_flag=True, expose_value=False, is_eager=True, callback=help_all,
              help="Show this message with the help of every option beyond the paper, and exit.")
@setting_options
@run_option("--recipe", type=click.Choice(RECIPE_NAMES), default="default", show_default=True, group="training",
            help=recipe_help())
@run_option("--paper", is_flag=True, group="training",
            help="The paper's exact recipe (= --recipe paper); not combinable with the recipe's settings.")
@run_option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
            group="training",
            help="Settings from a TOML file, e.g. a run folder's config.toml (which trains that run again); "
                 "options given beside it win.")
@run_option("--out", type=click.Path(file_okay=False, path_type=Path),
            help="Run directory for checkpoint, log and metrics [default: runs/DATA-MODEL-dDIM-aALPHA-sSEED].")
@run_option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path),
            help="Continue the interrupted run in this directory (its own config is used).")
@run_option("--force", is_flag=True, help="Overwrite a finished or partial run in --out.")
@run_option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
            help="Torch device for the networks.")
@data_dir_option
@run_option("--quiet", is_flag=True, help="No progress bar.")
@run_option("--detect-anomaly", is_flag=True,
            help="Run autograd's anomaly detection (slow) so a NaN is traced to the operation that made it.")
@run_option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON.")
@handle_errors
def train(out, resume, force, device, data_dir, quiet, as_json, detect_anomaly, paper, recipe, config_file, **opts):
    """Train a VSC (or VAE) and report its test-set ELBO and posterior sparsity.

    Example: vsc train --data fmnist --dim 200

    Your own images: vsc train --data ~/pictures --image-size 32

    Several processes: torchrun --standalone --nproc-per-node 2 --no-python vsc train --data fmnist
    """
    import torch

    from vsc_cli.common.config import TrainConfig, from_toml
    from vsc_cli.data.sources import is_path
    from vsc_cli.trainers.checkpoint import CHECKPOINT, load_checkpoint
    from vsc_cli.trainers.recipes import new_run_config, resumed_config
    from vsc_cli.trainers.train import default_run_dir, train as run_training

    ctx = click.get_current_context()
    typed = {n for n in opts if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE}
    if device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda: no usable CUDA device here; use --device cpu")
    check_backend(opts["backend"], device)
    if opts["image_size"] is not None and not is_path(opts["data"]) and opts["data"].lower() != "celeba":
        raise click.UsageError(f"--image-size is for CelebA and your own data; {opts['data']} has a fixed size")
    recipe_typed = ctx.get_parameter_source("recipe") == click.core.ParameterSource.COMMANDLINE
    if paper and recipe_typed and recipe != "paper":
        raise click.UsageError(f"--paper is --recipe paper; it cannot be combined with --recipe {recipe}")
    recipe = "paper" if paper else recipe
    if recipe == "paper" and typed & set(PAPER_RECIPE):
        raise click.UsageError(f"the paper's exact recipe (--paper) cannot be combined with "
                               f"{', '.join('--' + n.replace('_', '-') for n in sorted(typed & set(PAPER_RECIPE)))}")
    if resume is not None:
        if paper or config_file or recipe_typed:
            raise click.UsageError("a resumed run keeps its config: drop --paper / --recipe / --config")
        if out is not None and out.resolve() != resume.resolve():
            raise click.UsageError("give either --resume RUN_DIR or --out RUN_DIR, not two different folders")
        stored = TrainConfig.from_dict(load_checkpoint(resume)["config"])
        cfg, out = usage_errors(resumed_config, stored, opts, typed), resume
    else:  # the recipe's settings, then the ones given (recipes.resolve: as vsc experiment and the Python API)
        from_file = None
        if config_file is not None:
            try:
                from_file = from_toml(config_file.read_text(), str(config_file))
            except (VscError, OSError, UnicodeDecodeError) as exc:
                raise click.UsageError(f"--config: {exc}") from None
        cfg = usage_errors(new_run_config, recipe, opts, typed, from_file)
        out = out or default_run_dir(cfg)
        if (out / CHECKPOINT).exists() and not force:
            raise click.UsageError(f"{out} already holds a run: continue it with --resume {out}, or pass --force")
    metrics = run_training(cfg, out, device=device, data_dir=data_dir, resume=resume is not None,
                           progress=not quiet, detect_anomaly=detect_anomaly)
    if metrics is None:  # a torchrun process other than rank 0: rank 0 reports
        return
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    click.echo(f"run: {out}")
    click.echo(f"test ELBO per image: {metrics['test_elbo']:.2f}  (reconstruction {metrics['test_recon']:.2f}, "
               f"slab KL {metrics['test_kl_slab']:.2f}, spike KL {metrics['test_kl_spike']:.2f})")
    if "test_elbo_paper_prior" in metrics:  # a learned prior: the ELBO above is against it
        click.echo(f"test ELBO under the paper's prior (alpha {cfg.alpha:g}): {metrics['test_elbo_paper_prior']:.2f}  "
                   f"(learned prior's rate term {metrics['test_kl_rate']:.2f})")
    if FAMILIES[cfg.model].uses_alpha:
        click.echo(f"posterior sparsity (fraction of non-zero elements): {metrics['test_sparsity']:.3f}  "
                   f"(prior alpha {cfg.alpha:g})")
    if not metrics.get("elbo_is_bound", True):
        click.echo(f"fraction of non-zero elements in the test draws: {metrics['test_sparsity']:.3f}  "
                   f"(recon - KL above is not an ELBO: {FAMILIES[cfg.model].not_elbo_because}, docs/model.md)")
    elif cfg.kl_weight != 1.0:
        click.echo(f"trained with the KL weighted by {cfg.kl_weight:g}: the objective was not the ELBO above")
    if metrics["seconds_per_1000_iterations"]:
        click.echo(f"time: {metrics['seconds_per_1000_iterations']:.1f} s per 1,000 iterations")
    if metrics.get("elbo_is_bound", True) and metrics["test_kl_slab"] + metrics["test_kl_spike"] < COLLAPSED_KL:
        # the codes say almost nothing about the image: every q(z|x) is (nearly) the prior
        click.echo(f"warning: posterior collapse: the codes carry {metrics['test_kl_slab'] + metrics['test_kl_spike']:.2f} "
                   f"nats per test image (KL < {COLLAPSED_KL:g}); train longer, or start the decoder's variance at the "
                   "data's (--logvar-init data) when the pixels' spread is small (docs/model.md)")


COLLAPSED_KL = 1.0  # nats per image: below this the codes are (nearly) the prior for every image


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="HDF5 file to write (written to a temporary name, renamed when complete).")
@click.option("--data", type=DataArg(),
              help="Dataset to encode, a name or a path as for `vsc train` [default: the one the run was trained on].")
@click.option("--split", "splits", default="train,test", show_default=True,
              callback=comma_list(str, "a comma-separated list of splits: train, test (no repeats)",
                                  choices=("train", "test"), unique=True),
              help="Comma-separated splits to encode: train, test or both.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Images encoded at once (bounds memory).")
@click.option("--threshold", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True,
              help="An element goes into the sparse CSR copy when its spike probability gamma exceeds this.")
@click.option("--limit", type=click.IntRange(min=1), help="Encode only the first N images of each split.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@data_dir_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def encode(run_dir, out, data, splits, batch_size, threshold, limit, force, data_dir, quiet):
    """Encode a dataset with a trained run into an HDF5 file of codes (mu, logvar, gamma, code, CSR).

    Example: vsc encode runs/fmnist-vsc-d200-a0.01-s0 -o codes.h5
    """
    from vsc_cli.evaluation.codes import encode as run_encode

    path = run_encode(run_dir, out, data, splits, data_dir, batch_size, threshold, force, progress=not quiet,
                      limit=limit)
    if path is not None:  # None: a torchrun process other than rank 0
        click.echo(f"wrote {path}")


@main.command()
@click.argument("codes", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--features", default="code", show_default=True,
              help="Dataset under each split to classify: code, mu, gamma, logvar (files from other tools: features).")
@click.option("--labelled", callback=comma_list(int, "a comma-separated list of positive integers, e.g. 100,1000,5000", minimum=1), default="5000", show_default=True,
              help="Labelled training codes drawn at random; a comma-separated list sweeps, e.g. 100,1000,5000.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Independent draws of the labelled set; mean and standard deviation are reported.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the draws of labelled codes.")
@click.option("--sparse-probe", "probe_ks", callback=comma_list(int, "a comma-separated list of element counts, e.g. 1,2,5",
                                                             minimum=1),
              help="Instead, sparse probing: per class, one against the rest on a balanced set, a linear probe on the "
                   "K elements whose mean differs most; the accuracy per K, e.g. 1,2,5.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def classify(codes, features, labelled, repeats, seed, probe_ks, as_json, quiet):
    """The paper's classification test: a linear softmax classifier on labelled codes, scored on the test split.

    Reads `vsc encode` files, or any HDF5 file with train/ and test/ groups holding `features` (N x J)
    and `labels` (N).
    """
    from rich.console import Console
    from rich.table import Table

    from vsc_cli.evaluation.classify import classify as run_classify, sparse_probe

    if probe_ks:
        result = sparse_probe(codes, features, probe_ks, seed, progress=not quiet and not as_json)
        if as_json:
            click.echo(json.dumps(result, indent=2))
            return
        table = Table(title=f"sparse probes on '{features}' of {codes}",
                      caption=f"one class against the rest, balanced; the mean over {result['classes']} classes")
        for col in ("elements", "accuracy %"):
            table.add_column(col, justify="right")
        for r in result["results"]:
            table.add_row(str(r["k"]), f"{100 * r['accuracy_mean']:.2f}")
        Console().print(table)
        return
    result = run_classify(codes, features, labelled, repeats, seed, progress=not quiet and not as_json)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"linear classifier on '{features}' of {codes} ({result['test_examples']} test images, "
                        f"{repeats} draws)")
    for col in ("labelled", "accuracy %", "std %"):
        table.add_column(col, justify="right")
    for r in result["results"]:
        table.add_row(str(r["labelled"]), f"{100 * r['accuracy_mean']:.2f}", f"{100 * r['accuracy_std']:.2f}")
    Console().print(table)


@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True,
              help="Which split's codes to measure.")
@click.option("--threshold", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True,
              help="gamma above which an element counts as selected.")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON (with every dimension's rate).")
@click.option("--conditional", is_flag=True,
              help="Also Fig. 13's check (RUN_DIR of mnist/fmnist only): the fraction of conditional samples of "
                   "1,000 test images (10 each) that a classifier trained on real images puts in the source's class.")
@click.option("--active", type=click.Choice(["gamma", "nonzero"]), default=None,
              help="What makes an element active in the specificity rows: gamma above --threshold, or non-zero in "
                   "one exact draw per image (RUN_DIR only). Default: nonzero for a thresholded run, else gamma.")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A set with known factors (vsc synth's .npz, the one RUN_DIR was trained on): adds how well code "
                   "elements match the true factors (MCC, factors recovered, support F1; docs/model.md).")
@click.option("--consistency", is_flag=True,
              help="Also whether each element does the same thing wherever it is on (RUN_DIR only): the median cosine "
                   "similarity of the pixel changes of a step in it, between images (docs/model.md).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def sparsity(source, split, threshold, data_dir, as_json, conditional, active, truth, consistency, quiet):
    """Posterior sparsity of a codes file (CODES.h5) or of a run's encoder (RUN_DIR), beside the prior alpha."""
    from rich.console import Console
    from rich.table import Table

    from vsc_cli.evaluation.sparsity import sparsity as run_sparsity

    r = run_sparsity(source, split, data_dir, threshold, progress=not quiet and not as_json, conditional=conditional,
                     active=active, truth=truth, consistency=consistency)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    table = Table(title=f"posterior sparsity of {source} ({split}, {r['examples']} images, {r['dim']} dimensions)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    alpha = r["alpha"]
    table.add_row("prior alpha", "-" if alpha is None else f"{alpha:g}")
    table.add_row("sparsity: mean gamma (expected fraction non-zero)", f"{r['sparsity']:.4f}")
    table.add_row(f"fraction with gamma > {threshold:g}", f"{r['selected_fraction']:.4f}")
    table.add_row(f"dimensions never active (in < {r['eps']:.0%} of images)", str(r["dims_never"]))
    table.add_row("dimensions sometimes active", str(r["dims_sometimes"]))
    table.add_row(f"dimensions always active (in >= {r['always_from']:.0%} of images)", str(r["dims_always"]))
    table.add_section()  # example-specificity: does each image use its own elements? (vsc_cli/evaluation/metrics.py)
    for key, label in SPECIFICITY_ROWS:
        value = r[key]
        text = "-" if value is None else (f"{value:.3f}" if key.startswith("jaccard") else
                                          str(value) if isinstance(value, int) else f"{value:.1f}")
        which = f"gamma > {threshold:g}" if r["active"] == "gamma" else "non-zero in a draw"
        table.add_row(f"{label} ({which})" if key == "active_mean" else label, text)
    if r["active"] == "nonzero":
        table.add_row("rate of non-zero elements over the draws", f"{r['nonzero_rate']:.4f}")
    if r.get("reconstruction_error") is not None:  # run folders: the decoded codes against the mean image
        table.add_row("reconstruction error of the codes / the mean training image's", f"{r['reconstruction_error']:.3f}")
    if consistency:
        table.add_section()
        value = r["consistency"]
        table.add_row(f"consistency: median cosine of an element's pixel changes ({r['consistency_elements']} "
                      "elements used by >= 1% of images)", "-" if value is None else f"{value:.3f}")
        table.add_row("  most / least consistent elements",
                      f"{','.join(map(str, r['consistency_best'][:3]))} / {','.join(map(str, r['consistency_worst'][:3]))}")
    if truth is not None:
        from vsc_cli.evaluation.truth import ROWS as TRUTH_ROWS

        table.add_section()
        for key, label in TRUTH_ROWS:
            if key not in r:  # the halves' rows: signed factors only
                continue
            value, of = r[key], r["truth_halves" if key.startswith("truth_halves") else "truth_factors"]
            table.add_row(label, f"{value} of {of}" if isinstance(value, int) else f"{value:.3f}")
    if conditional:
        table.add_row("Fig. 13: conditional samples kept in their source's class",
                      f"{r['conditional_retention']:.3f}")
        table.add_row("  the same, values drawn from the training codes of each element",
                      f"{r['conditional_retention_data']:.3f}")
        table.add_row("  (the classifier's accuracy on real test images)", f"{r['image_classifier_accuracy']:.3f}")
    Console().print(table)


@main.command()
@click.argument("kind", type=click.Choice(["sparse-linear", "manifolds"]))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help=".npz file to write (written to a temporary name, renamed when complete).")
@click.option("--images", type=click.IntRange(min=10), default=20_000, show_default=True, help="Images in the set.")
@click.option("--factors", type=click.IntRange(min=1), default=100, show_default=True,
              help="sparse-linear: dictionary atoms K.")
@click.option("--active", type=click.IntRange(min=1), default=5, show_default=True,
              help="sparse-linear: atoms on per image.")
@click.option("--values", type=click.Choice(["signed", "nonnegative"]), default="signed", show_default=True,
              help="sparse-linear: the active atoms' values, N(0, 1) or |N(0, 1)|.")
@click.option("--noise", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="sparse-linear: standard deviation of the pixel noise (before the map into [0, 1]).")
@click.option("--classes", type=click.IntRange(min=1), default=10, show_default=True,
              help="manifolds: classes, each with its own factors.")
@click.option("--per-class", type=click.IntRange(min=1), default=3, show_default=True,
              help="manifolds: factors of each class.")
@click.option("--side", type=click.IntRange(min=2, max=256), default=28, show_default=True,
              help="Images are SIDE x SIDE pixels.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds everything in the set.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@handle_errors
def synth(kind, out, images, factors, active, values, noise, classes, per_class, side, seed, force):
    """Make a set of images with known factors, to score whether code elements are features.

    \b
    sparse-linear  x = D s + noise: K random unit-norm atoms, ACTIVE of them on per image
    manifolds      CLASSES classes, each with its own factors, through a fixed random network

    Train on it like any own data and score the codes against its factors:

    \b
    vsc synth sparse-linear -o x.npz
    vsc train --data x.npz --normalise 01 --dim 200 --out runs/x
    vsc sparsity runs/x --truth x.npz
    """
    import numpy as np

    from vsc_cli.common.safeio import atomic_write
    from vsc_cli.data.synthetic import make

    if out.exists() and not force:
        raise click.UsageError(f"{out} exists; pass --force to overwrite it")
    if out.suffix != ".npz":
        raise click.UsageError(f"-o {out}: give a .npz file name")
    if kind == "sparse-linear" and active > factors:
        raise click.UsageError(f"--active {active} is more than the {factors} --factors")
    sizes = (dict(images=images, factors=factors, active=active, values=values, noise=noise, side=side, seed=seed)
             if kind == "sparse-linear" else dict(images=images, classes=classes, per_class=per_class, side=side,
                                                  seed=seed))
    arrays = make(kind, **sizes)

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(out, write)
    f = arrays["factors"]
    click.echo(f"wrote {out}: {len(f)} images of {side}x{side}, {f.shape[1]} factors, "
               f"{(f != 0).sum(1).mean():.1f} on per image")


@main.command()
@click.argument("kind", type=click.Choice(["codes", "alter", "interpolate", "prior", "conditional", "consistency"]))
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PNG file to write (written to a temporary name, renamed when complete).")
@click.option("--index", "indices", callback=comma_list(int, "a comma-separated list of image indices, e.g. 0 or 3,7",
                                                       minimum=0),
              help="Test image(s) to show: codes/conditional: a list [default: the first 5 / 3]; alter: one "
                   "[default: 0]; interpolate: two, A,B [default: 0,1].")
@click.option("--count", type=click.IntRange(min=1, max=1024),
              help="codes: images shown [5]; prior: samples [64]; conditional: samples per source image [8].")
@click.option("--elements", type=click.IntRange(min=1, max=64), default=4, show_default=True,
              help="alter / interpolate: how many of the largest elements to alter, one per row.")
@click.option("--steps", type=click.IntRange(min=2, max=64), default=7, show_default=True,
              help="alter / interpolate: decoded images per row.")
@click.option("--range", "span", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="alter: an element is set to values from -RANGE to +RANGE (prior standard deviations).")
@click.option("--threshold", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True,
              help="An element is active when its spike probability gamma exceeds this.")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True,
              help="Which split the images come from.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the prior and conditional draws.")
@click.option("--dpi", type=click.IntRange(min=20, max=600), default=100, show_default=True,
              help="PNG resolution (pixels per inch; one image tile is 1.1 inch).")
@click.option("--save-arrays", is_flag=True, help="Also write OUT.npz with the codes and images behind the figure.")
@data_dir_option
@handle_errors
def figure(kind, run_dir, out, indices, count, elements, steps, span, threshold, split, seed, dpi, save_arrays,
           data_dir):
    """Draw a figure of a trained run's sparse codes as a PNG (paper Figs. 4, 5, 7, 12, 13).

    \b
    codes        test images, their codes (bar plots, active elements in blue) and reconstructions
    alter        one image; its largest active elements set one at a time from -RANGE to +RANGE
    interpolate  two images A, B; the largest elements of B - A moved one at a time on each
    prior        ancestral samples from the spike-and-slab prior, decoded
    conditional  N(0, 1) draws along only the dimensions an image activates, decoded
    consistency  the ELEMENTS most and least consistent elements: a step in each, in COUNT images

    Example: vsc figure alter runs/fmnist-vsc-d200-a0.01-s0 -o alter.png --index 0
    """
    from vsc_cli.evaluation.figures import figure as draw

    if kind == "interpolate" and indices is not None and (len(indices) != 2 or indices[0] == indices[1]):
        raise click.UsageError("interpolate needs two different indices, e.g. --index 3,7")
    if kind == "alter" and indices is not None and len(indices) != 1:
        raise click.UsageError("alter shows one image: give one --index")
    result = draw(kind, run_dir, out, data_dir, split, indices, count, elements, steps, span, threshold, seed, dpi,
                  save_arrays)
    w, h = result["pixels"]
    click.echo(f"wrote {result['png']} ({w}x{h} pixels)" + (f" and {result['npz']}" if save_arrays else ""))


@main.command()
@click.argument("grid", type=click.Choice(["dims", "alpha", "families"]))
@click.option("--data", type=click.Choice(["mnist", "fmnist", "fashion-mnist"], case_sensitive=False), default="fmnist",
              show_default=True, help="Dataset of the sweep.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Sweep folder: one run folder per point, results.csv, plots, report.md "
                   "[default: experiments/DATA-GRID].")
@click.option("--dims", "dims", callback=comma_list(int, "a comma-separated list of positive integers, e.g. 100,1000,5000", minimum=1),
              help="dims grid: latent dimensions [default: 8,16,32,64,128,200].")
@click.option("--models", callback=comma_list(str, "a comma-separated list of models"), help="dims grid: models, e.g. vae,vsc:0.5,vsc:0.2,vsc:0.01 (the default); families "
                               "grid: families among vae,paper,default,thresholded (the default: all four).")
@click.option("--alphas", callback=comma_list(float, "a comma-separated list of numbers in (0, 1]"),
              help="alpha grid: prior alphas [default: 0.01,0.05,0.1,0.2,0.5,0.8,1.0]; families grid: "
                               "the spike-and-slab families' one alpha [default: 0.01].")
@setting_option("iterations")
@setting_option("backend")
@setting_option("gamma_init")
@click.option("--recipe", type=click.Choice(RECIPE_NAMES), default="paper", show_default=True,
              help=f"Training recipe of every VSC point: the paper's exact one, or one of vsc train's (default = "
                   f"{DEFAULT}; docs/recipes.md), its phases scaled to --iterations; --set overrides single "
                   "settings. A result records its recipe's number.")
@click.option("--set", "settings", multiple=True, callback=lambda c, p, v: settings_list(v), metavar="KEY=VALUE",
              help="A training setting for every point, repeatable, e.g. --set pretrain=10000 --set spike=sigmoid. "
                   f"Keys: {', '.join(SETTABLE)} (see `vsc train --help`). Default: the paper's recipe.")
@setting_option("train_size")
@click.option("--labelled", callback=comma_list(int, "a comma-separated list of positive integers, e.g. 100,1000,5000", minimum=1),
              help="Labelled-set sizes for the classifier [default: 5000 (dims), 100,1000,5000 (alpha)].")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Points trained at once in separate processes (CPU threads are split between them; "
                   "with --device cuda they share the GPUs, e.g. --jobs 8 on one GPU).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the points train. cuda: every job on a GPU (several GPUs are taken in turn); "
                   "a half-trained point resumes only on the kind of device it started on.")
@click.option("--point", type=click.IntRange(min=0),
              help="Run only grid point K (0-based, see --list): one point per job of a cluster array.")
@click.option("--list", "list_only", is_flag=True, help="List the grid's points, their state, and exit.")
@data_dir_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
@handle_errors
def experiment(grid, data, out, dims, models, alphas, iterations, backend, gamma_init, recipe, settings, train_size,
               labelled, jobs, device, point, list_only, data_dir, quiet):
    """Reproduce a sweep of the paper: `dims` (Figs. 2, 3) or `alpha` (Figs. 8, 10, 11); or `families`: the VAE,
    the paper's VSC, vsc's default recipe and the thresholded model at 64, 256 and 1,024 dimensions.

    Trains, evaluates, encodes and classifies every grid point, skipping finished ones (run it again
    to resume), then writes results.csv, the plots and report.md. Example:
    vsc experiment dims --data fmnist --jobs 2
    """
    from vsc_cli.pipelines import experiment as E

    data = {"fashion-mnist": "fmnist"}.get(data.lower(), data.lower())
    if not list_only:  # listing the grid needs no device
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise click.UsageError("--device cuda: no usable CUDA device here; use --device cpu")
        check_backend(backend, device)
    out = out or Path("experiments") / f"{data}-{grid}"
    options = {"iterations": iterations, "backend": backend}
    if gamma_init is not None:
        options["gamma_init"] = gamma_init
    if recipe != "paper":
        options["recipe"] = recipe
    options.update(settings)
    if train_size is not None:
        options["train_size"] = train_size
    kw = {"labelled": tuple(labelled)} if labelled else {}
    if dims:
        kw["dims"] = tuple(dims)
    if grid == "families":
        if click.get_current_context().get_parameter_source("recipe") == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("the families grid sets each family's recipe; drop --recipe")
        kw.setdefault("dims", E.FAMILY_DIMS)
        bad = [m for m in models or () if m not in E.FAMILIES]
        if bad:
            raise click.BadParameter(f"{bad[0]!r}: families are {', '.join(E.FAMILIES)}", param_hint="--models")
        kw["models"], kw["alphas"] = tuple(models or E.FAMILIES), (E.FAMILY_ALPHA,)
    elif models:
        kw["models"] = tuple(E.parse_models(",".join(models)))
    if alphas:
        kw["alphas"] = tuple(alphas)
        if any(not 0 < a <= 1 for a in kw["alphas"]):
            raise click.BadParameter("every alpha must be in (0, 1]", param_hint="--alphas")
        if grid == "families" and len(kw["alphas"]) != 1:
            raise click.BadParameter("the families grid takes one alpha", param_hint="--alphas")
    try:
        points = E.grid_points(grid, data, options=options, **kw)
        for p in points:  # every point's settings checked now, not after hours of the points before it
            E.point_config(p)
    except VscError as exc:
        raise click.UsageError(str(exc)) from None
    if point is not None and point >= len(points):
        raise click.BadParameter(f"the {grid} grid has points 0..{len(points) - 1}", param_hint="--point")
    if list_only:
        for k, p in enumerate(points):
            state = "done" if (out / "points" / p.name / E.RESULT).is_file() else "to do"
            click.echo(f"{k:3d}  {p.name:32s} {state}")
        click.echo(f"rough CPU time for all points here: {E.format_seconds(E.estimate_seconds(points))}")
        return
    results = E.run_grid(points, out, data_dir, jobs, progress=not quiet, only=point, device=device)
    command = "vsc " + " ".join(sys.argv[1:]) if sys.argv and "vsc" in Path(sys.argv[0]).name else \
        f"vsc experiment {grid} --data {data} --iterations {iterations}"
    from vsc_cli.pipelines.reports import write_outputs

    made = write_outputs(grid, data, points, results, out, command)
    click.echo(f"{len(results)} of {len(points)} points done; wrote {made['csv']}, {made['report']} and "
               f"{len(made['plots'])} plots in {out}")


def batch_by_dim(text: str) -> tuple:
    """'256x200' -> (256, 200), both at least 1 (ValueError otherwise)."""
    size = tuple(int(n) for n in text.lower().split("x"))
    if len(size) != 2 or min(size) < 1:
        raise ValueError(text)
    return size


@main.command()
@click.option("--sizes", callback=comma_list(batch_by_dim, "a list of BATCHxDIM sizes, e.g. 256x200,4096x800"),
              default="100x200,256x200,1024x200,4096x800", show_default=True,
              help="Comma-separated BATCHxDIM sizes for the op benchmark.")
@click.option("--impls", callback=comma_list(str, "a comma-separated list of torch-eager, torch-compile, numba, cuda",
                                             choices=("torch-eager", "torch-compile", "numba", "cuda")),
              help="Comma-separated implementations to time [default: torch-eager, torch-compile and every "
                   "available backend].")
@click.option("--no-compile", is_flag=True, help="Skip the torch.compile anchor (its first call compiles for a while).")
@click.option("--repeats", type=click.IntRange(min=1), default=50, show_default=True,
              help="Timed calls (or training iterations) per measurement; the median is reported.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True,
              help="Untimed calls before timing (compilation, caches).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True,
              help="Floating-point type of the op's inputs.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the tensors live (cuda times the cuda backend on the GPU).")
@click.option("--train", "train_mode", is_flag=True,
              help="Instead, time training steps of the paper's network (784-400-DIM, batch 256) per backend and "
                   "likelihood, beside the same step's matrix products alone and the obvious eager-PyTorch VSC.")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads for torch and numba [default: torch's default, all cores].")
@click.option("--network", type=click.Choice(["mlp", "conv"]), default="mlp", show_default=True,
              help="For --train: mlp (the paper's 784-400-DIM, batch 256, both likelihoods) or conv (the conv "
                   "network on 64x64 colour images, CelebA's size, batch 64, Gaussian; its step also with "
                   "channels-last memory).")
@click.option("--dim", type=click.IntRange(min=1),
              help="Latent dimensions for --train [default: 200 for the MLP, 256 for the conv network].")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@handle_errors
def bench(sizes, impls, no_compile, repeats, warmup, dtype, device, train_mode, threads, network, dim, as_json):
    """Time the spike-and-slab op (forward + backward) per backend, against torch eager and torch.compile.

    With --train: whole training steps, as ms, as a multiple of their matrix products' (and convolutions') time,
    and as a speed-up over the obvious eager version."""
    import torch

    if network == "conv" and not train_mode:
        raise click.UsageError("--network is for --train")
    dim = dim or (256 if network == "conv" else 200)

    if threads:  # for this command only (it may run inside another program, e.g. a test)
        import numba

        before = torch.get_num_threads(), numba.get_num_threads()
        torch.set_num_threads(threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            return _bench(sizes, impls, no_compile, repeats, warmup, dtype, device, train_mode, network, dim, as_json)
        finally:
            torch.set_num_threads(before[0])
            numba.set_num_threads(before[1])
    return _bench(sizes, impls, no_compile, repeats, warmup, dtype, device, train_mode, network, dim, as_json)


def _bench(sizes, impls, no_compile, repeats, warmup, dtype, device, train_mode, network, dim, as_json):
    import torch
    from rich.console import Console
    from rich.table import Table

    from vsc_cli.pipelines import bench as B

    if device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda: no usable CUDA device here")
    if device == "cpu" and impls and "cuda" in impls:
        raise click.UsageError("--impls cuda needs --device cuda")
    console = Console(stderr=True)
    with console.status("benchmarking") as status:
        report = (lambda what: status.update(f"benchmarking {what}")) if not as_json else None
        if train_mode and network == "conv":
            result = B.run_conv_bench(device=device, dim=dim, repeats=repeats, warmup=warmup, progress=report)
        elif train_mode:
            result = B.run_train_bench(device=device, dim=dim, repeats=repeats, warmup=warmup, progress=report)
        else:
            if no_compile and impls is None:
                impls = [i for i in [*B.ANCHORS, "numba", "cuda"] if i != "torch-compile"]
            elif no_compile:
                impls = [i for i in impls if i != "torch-compile"]
            result = B.run_op_bench(sizes, impls, device, getattr(torch, dtype), repeats, warmup, progress=report)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    m = result["machine"]
    title = f"{m.get('gpu') or m['processor']} | torch {m['torch']} | {m['torch_threads']} threads"
    out = Console()
    if train_mode:
        conv = network == "conv"
        net = (f"conv network {'x'.join(map(str, result['shape']))} ({','.join(map(str, result['channels']))})"
               if conv else f"{result['pixels']}-{result['hidden']}")
        base = "convolutions + matrix products" if conv else "matrix products"
        table = Table(title=f"training step, {net}-{result['dim']}, batch {result['batch_size']}, median of "
                            f"{repeats}: {title}")
        for col in ("step", "ms / iteration", "iterations / s", f"x {base}", "x obvious eager"):
            table.add_column(col, justify="right")
        ms, per_s = (".1f", ".2f") if conv else (".2f", ".1f")  # a conv step is ~0.2 s, an MLP step ~20 ms
        for r in result["rows"]:
            table.add_row(r["step"], format(r["ms_per_iteration"], ms), format(r["iterations_per_second"], per_s),
                          f"{r['x_matrix_products']:.2f}", f"{r['speedup_vs_obvious']:.2f}")
        alone = ("its layers' forward and backward alone" if conv
                 else "its matrix products' alone (1.00 = nothing else costs)")
        table.caption = (f"x {base}: the step's time over {alone}; x obvious eager: the obvious version's time over "
                         "this step's")
    else:
        table = Table(title=f"spike-slab op, forward + backward, {result['dtype']}, median of {repeats}: {title}")
        for col in ("size", "impl", "ms", "x eager", "GB/s", "x bandwidth bound"):
            table.add_column(col, justify="right")
        for r in result["rows"]:
            if "error" in r:
                table.add_row(r["size"], r["impl"], "error", "", "", r["error"][:40])
                continue
            table.add_row(r["size"], r["impl"], f"{r['ms']:.3f}",
                          f"{r['speedup_vs_eager']:.1f}" if r["speedup_vs_eager"] else "",
                          f"{r['gbps']:.1f}", f"{r['x_bandwidth_bound']:.2f}")
        table.caption = f"copy bandwidth measured: {result['copy_bandwidth_gbps']:.1f} GB/s"
    out.print(table)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
