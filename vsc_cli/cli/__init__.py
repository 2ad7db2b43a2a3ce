"""`vsc` command line: thin click commands that hand off to library code."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vsc_cli.common.version import __version__
from vsc_cli.cli.options import (DataArg, GroupedCommand, batch_by_dim, check_backend, comma_list, data_dir_option,
                                 handle_errors, help_all, lazy_option, LazyCommand, run_option, setting_option,
                                 setting_options, settings_list)
from vsc_cli.common.config import SETTABLE
from vsc_cli.data.datasets import ALIASES, DATASETS, IMAGE_DATASETS, canonical
from vsc_cli.cli.reports import FIGURE_KINDS, figure_kinds, report_options
from vsc_cli.trainers.recipes import DEFAULT, RECIPE_NAMES, recipe_help

SHOWN_ALIAS = {name: alias for alias, name in reversed(ALIASES.items())}  # a set's first alias, in --help's choices
DATA_NAMES = [*DATASETS, *IMAGE_DATASETS, *SHOWN_ALIAS.values()]
IDX_NAMES = [*DATASETS, *(SHOWN_ALIAS[n] for n in DATASETS if n in SHOWN_ALIAS)]


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
    from vsc_cli.data.datasets import default_data_dir

    dataset, data_dir = dataset.lower(), data_dir or default_data_dir()
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
@run_option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
            help="Torch device for the networks; auto: cuda when PyTorch sees a GPU, else cpu (a resumed run "
                 "whose spike-and-slab op is numba's, a CPU kernel, stays on the CPU).")
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
    from vsc_cli.trainers.dist import auto_device
    from vsc_cli.trainers.launch import run_config
    from vsc_cli.trainers.report import report_lines
    from vsc_cli.trainers.train import train as run_training

    ctx = click.get_current_context()
    typed = {n for n in opts if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE}
    device = auto_device(device, opts["backend"], resume)
    check_backend(opts["backend"], device)
    recipe_typed = ctx.get_parameter_source("recipe") == click.core.ParameterSource.COMMANDLINE
    cfg, out = run_config(opts, typed, recipe, recipe_typed, paper, config_file, resume, out, force)
    metrics = run_training(cfg, out, device=device, data_dir=data_dir, resume=resume is not None,
                           progress=not quiet, detect_anomaly=detect_anomaly)
    if metrics is None:  # a torchrun process other than rank 0: rank 0 reports
        return
    click.echo(json.dumps(metrics, indent=2) if as_json else "\n".join(report_lines(metrics, cfg, out)))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="HDF5 file to write (written to a temporary name, renamed when complete).")
@click.option("--data", type=DataArg(),
              help="Dataset to encode, a name or a path as for `vsc train` [default: the one the run was trained on].")
@click.option("--split", "splits", default="train,test", show_default=True,
              callback=comma_list(str, "a comma-separated list of splits: train, validation, test (no repeats)",
                                  choices=("train", "validation", "test"), unique=True),
              help="Comma-separated splits to encode: train, validation (a run with a validation split), test.")
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
@click.option("--labelled", callback=comma_list(int, "a comma-separated list of positive integers, e.g. 100,1000,5000", minimum=1),
              help="Labelled training codes drawn at random; a comma-separated list sweeps, e.g. 100,1000,5000 "
                   "[default: the paper's 5000, or every training code where there are fewer].")
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
    from vsc_cli.cli.render import classify_table, probe_table, show
    from vsc_cli.evaluation.classify import classify as run_classify, sparse_probe

    progress = not quiet and not as_json
    result = (sparse_probe(codes, features, probe_ks, seed, progress=progress) if probe_ks else
              run_classify(codes, features, labelled, repeats, seed, progress=progress))
    if not probe_ks and result["labelled_capped"]:
        n = result["results"][0]["labelled"]
        click.echo(f"note: {codes} holds {n:,} training codes, fewer than the paper's 5,000: all of them are "
                   "labelled (every draw the same set)", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    show(probe_table(result, features, codes) if probe_ks else classify_table(result, features, codes, repeats))


@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True,
              help="Which split's codes to measure.")
@click.option("--threshold", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True,
              help="gamma above which an element counts as selected.")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON (with every dimension's rate).")
@report_options  # --conditional, --active, --truth, --consistency: evaluation/reports.py's REPORTS
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def sparsity(source, split, threshold, data_dir, as_json, quiet, **reports):
    """Posterior sparsity of a codes file (CODES.h5) or of a run's encoder (RUN_DIR), beside the prior alpha."""
    from vsc_cli.cli.reports import print_sections
    from vsc_cli.evaluation.reports import table
    from vsc_cli.evaluation.sparsity import measure

    r, ran = measure(source, split, data_dir, threshold, progress=not quiet and not as_json, **reports)
    if as_json:
        click.echo(json.dumps(r, indent=2))
    else:
        print_sections(table(r, ran))
    for warning in (r.get("verdict"), r.get("memorisation")):
        if warning:
            click.echo(warning, err=True)


@main.command()
@click.argument("kind", type=click.Choice(["sparse-linear", "manifolds", "patches"]))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help=".npz file to write (written to a temporary name, renamed when complete).")
@click.option("--images", type=click.IntRange(min=10), help="Images in the set.  [default: 20,000; 60,000 patches]")
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
@click.option("--whiten", type=click.Choice(["none", "zca"]), default="none", show_default=True,
              help="patches: after each patch's mean is removed, ZCA-whiten the pixels over the set, or not.")
@click.option("--from", "folder", type=click.Path(path_type=Path),
              help="patches: cut them from every image in this folder  [default: the ten photographs scikit-image "
                   "ships; pip install scikit-image]")
@click.option("--side", type=click.IntRange(min=2, max=256), help="Images are SIDE x SIDE pixels.  [default: 28; "
              "12 for patches]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds everything in the set.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@handle_errors
def synth(kind, out, images, factors, active, values, noise, classes, per_class, whiten, folder, side, seed, force):
    """Make a set of images with known factors, to score whether code elements are features, or of natural-image
    patches, the classic sparse-coding data.

    \b
    sparse-linear  x = D s + noise: K random unit-norm atoms, ACTIVE of them on per image
    manifolds      CLASSES classes, each with its own factors, through a fixed random network
    patches        grey patches of photographs, each patch's mean removed, the set mapped into [0, 1]

    Train on it like any own data and score the codes against its factors:

    \b
    vsc synth sparse-linear -o x.npz
    vsc train --data x.npz --normalise 01 --dim 200 --out runs/x
    vsc sparsity runs/x --truth x.npz
    """
    from vsc_cli.common.safeio import atomic_write_npz
    from vsc_cli.data.synthetic import make

    if out.exists() and not force:
        raise click.UsageError(f"{out} exists; pass --force to overwrite it")
    if out.suffix != ".npz":
        raise click.UsageError(f"-o {out}: give a .npz file name")
    if kind == "sparse-linear" and active > factors:
        raise click.UsageError(f"--active {active} is more than the {factors} --factors")
    if kind != "patches" and (folder is not None or whiten != "none"):
        raise click.UsageError(f"--{'from' if folder is not None else 'whiten'} is for patches, not {kind}")
    side = side or (12 if kind == "patches" else 28)
    images = images or (60_000 if kind == "patches" else 20_000)
    sizes = {"sparse-linear": dict(images=images, factors=factors, active=active, values=values, noise=noise,
                                   side=side, seed=seed),
             "manifolds": dict(images=images, classes=classes, per_class=per_class, side=side, seed=seed),
             "patches": dict(images=images, side=side, whiten=whiten, seed=seed, folder=folder)}[kind]
    arrays = make(kind, **sizes)
    atomic_write_npz(out, arrays)
    if kind == "patches":
        click.echo(f"wrote {out}: {images} patches of {side}x{side} from {len(arrays['photos'])} photographs "
                   f"(each patch's mean removed{', ZCA-whitened' if whiten == 'zca' else ''}; 0 is "
                   f"{float(arrays['offset']):.3f} in [0, 1])")
        return
    f = arrays["factors"]
    click.echo(f"wrote {out}: {len(f)} images of {side}x{side}, {f.shape[1]} factors, "
               f"{(f != 0).sum(1).mean():.1f} on per image")


@main.command()
@click.argument("kind", type=click.Choice(list(FIGURE_KINDS)))
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
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True,
              help="Which split the images come from.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the prior and conditional draws.")
@click.option("--dpi", type=click.IntRange(min=20, max=600), default=100, show_default=True,
              help="PNG resolution (pixels per inch; one image tile is 1.1 inch).")
@click.option("--save-arrays", is_flag=True, help="Also write OUT.npz with the codes and images behind the figure.")
@data_dir_option
@handle_errors
@figure_kinds
def figure(kind, run_dir, out, indices, count, elements, steps, span, threshold, split, seed, dpi, save_arrays,
           data_dir):
    """Draw a figure of a trained run's sparse codes as a PNG (paper Figs. 4, 5, 7, 12, 13).

    \b
    {kinds}

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
    if result.get("verdict"):
        click.echo(result["verdict"], err=True)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="Folder to write the site into (written beside it and renamed when complete); open OUT/index.html.")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True,
              help="Which split's images are encoded and shown.")
@click.option("--top", type=click.IntRange(min=1, max=64), default=8, show_default=True,
              help="Images shown per element for each of: strongest positive, strongest negative, weakest.")
@click.option("--elements", type=click.IntRange(min=1),
              help="Only the N most often active elements get a page [default: every element].")
@click.option("--threshold", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True,
              help="An element is active when its spike probability gamma exceeds this.")
@click.option("--range", "span", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="An element's alteration strip sets it to values from -RANGE to +RANGE.")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A set with known factors (vsc synth's .npz, the one RUN_DIR was trained on): each element's "
                   "matched true factor and the run's MCC, as vsc sparsity --truth reports them.")
@click.option("--consistency/--no-consistency", default=True, show_default=True,
              help="Score each element's consistency and draw its mean pixel change (as vsc sparsity "
                   "--consistency; two decoder passes of up to 100 images per element).")
@click.option("--force", is_flag=True, help="Replace an existing OUT folder.")
@data_dir_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def dashboard(run_dir, out, split, top, elements, threshold, span, truth, consistency, force, data_dir, quiet):
    """Write a static site of every element of a trained run: which images switch each on, what it does when
    moved, how often it is on, and the run's numbers (open OUT/index.html in a browser; no server needed).

    Example: vsc dashboard runs/fmnist-vsc-d200-a0.01-s0 -o dashboard
    """
    from vsc_cli.evaluation.dashboard import dashboard as build_dashboard

    r = build_dashboard(run_dir, out, data_dir, split=split, top=top, elements=elements, threshold=threshold,
                        span=span, force=force, progress=not quiet, truth=truth, consistency=consistency)
    click.echo(f"wrote {r['out']}/index.html: {r['elements']} of {r['dim']} elements, {r['images']:,} {split} images "
               f"({r['dead']} dead, {r['always']} always on)")
    if r.get("verdict"):
        click.echo(r["verdict"], err=True)


@main.command(cls=LazyCommand)
@click.argument("grid", type=click.Choice(["dims", "alpha", "families"]))
@click.option("--data", type=click.Choice(IDX_NAMES, case_sensitive=False), default="fmnist",
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
@lazy_option(lambda: click.Option(
    ["--set", "settings"], multiple=True, callback=lambda c, p, v: settings_list(v), metavar="KEY=VALUE",
    help="A training setting for every point whose family and network have it, repeatable, e.g. --set "
         f"pretrain=10000 --set spike=sigmoid. Keys: {', '.join(SETTABLE)} (see `vsc train --help`). Default: the "
         "paper's recipe."))
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
    from vsc_cli.pipelines import experiment as E, grids

    data = canonical(data)
    if not list_only:  # listing the grid needs no device
        check_backend(backend, device)
    out = out or Path("experiments") / f"{data}-{grid}"
    typed = click.get_current_context().get_parameter_source("recipe") == click.core.ParameterSource.COMMANDLINE
    points = grids.sweep_points(grid, data, iterations, backend, gamma_init, recipe, typed, settings, train_size,
                                labelled, dims, models, alphas, point)
    if list_only:
        click.echo("\n".join(grids.listing(points, out)))
        return
    results = E.run_grid(points, out, data_dir, jobs, progress=not quiet, only=point, device=device)
    from vsc_cli.pipelines.reports import write_outputs

    made = write_outputs(grid, data, points, results, out, grids.command_line(grid, data, iterations))
    click.echo(f"{len(results)} of {len(points)} points done; wrote {made['csv']}, {made['report']} and "
               f"{len(made['plots'])} plots in {out}")


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
    from rich.console import Console

    from vsc_cli.cli.render import show
    from vsc_cli.pipelines import bench as B

    B.check(device, impls, train_mode, network)
    with B.threads(threads), Console(stderr=True).status("benchmarking") as status:
        report = (lambda what: status.update(f"benchmarking {what}")) if not as_json else None
        result = B.run(sizes, impls, no_compile, repeats, warmup, dtype, device, train_mode, network, dim, report)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    show(B.table(result, repeats, train_mode, network))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
