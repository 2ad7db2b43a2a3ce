"""What `vsc train` starts: the run's config and folder from its choices (a recipe or --paper, a --config file,
--resume RUN_DIR, --out, --force and the settings given), refusing choices that do not go together."""
from __future__ import annotations

from pathlib import Path

from vsc_cli.common.config import PAPER_RECIPE, TrainConfig, from_toml
from vsc_cli.common.errors import OptionsError, VscError
from vsc_cli.common.registry import FAMILIES
from vsc_cli.trainers.checkpoint import CHECKPOINT, load_checkpoint
from vsc_cli.trainers.recipes import new_run_config, resumed_config


def default_run_dir(cfg: TrainConfig) -> Path:
    """runs/DATA-MODEL-dDIM[-aALPHA]-sSEED (alpha where the family has it)."""
    from vsc_cli.data.sources import is_path

    alpha = f"-a{cfg.alpha:g}" if FAMILIES[cfg.model].uses_alpha else ""
    name = Path(cfg.data).stem if is_path(cfg.data) else cfg.data
    return Path("runs") / f"{name}-{cfg.model}-d{cfg.dim}{alpha}-s{cfg.seed}"


def _options(fn, *args):
    """fn(*args), its VscError (settings that do not go together) an OptionsError."""
    try:
        return fn(*args)
    except VscError as exc:
        raise OptionsError(str(exc)) from None


def run_config(options: dict, typed: set, recipe: str = "default", recipe_typed: bool = False, paper: bool = False,
               config_file: Path | None = None, resume: Path | None = None, out: Path | None = None,
               force: bool = False) -> tuple[TrainConfig, Path]:
    """(config, run folder) of `vsc train`: a new run from the recipe (`paper`: the paper's exact one), the
    --config file's settings and the options (`options`: every setting option's value, `typed`: the names given
    on the command line), or with `resume` the interrupted run's own config. OptionsError for choices that do not
    go together; a checkpoint that cannot be read raises its own VscError."""
    from vsc_cli.data.sources import is_path

    if options["image_size"] is not None and not is_path(options["data"]) and options["data"].lower() != "celeba":
        raise OptionsError(f"--image-size is for CelebA and your own data; {options['data']} has a fixed size")
    if paper and recipe_typed and recipe != "paper":
        raise OptionsError(f"--paper is --recipe paper; it cannot be combined with --recipe {recipe}")
    recipe = "paper" if paper else recipe
    if recipe == "paper" and typed & set(PAPER_RECIPE):
        raise OptionsError(f"the paper's exact recipe (--paper) cannot be combined with "
                           f"{', '.join('--' + n.replace('_', '-') for n in sorted(typed & set(PAPER_RECIPE)))}")
    if resume is not None:
        if paper or config_file or recipe_typed:
            raise OptionsError("a resumed run keeps its config: drop --paper / --recipe / --config")
        if out is not None and out.resolve() != resume.resolve():
            raise OptionsError("give either --resume RUN_DIR or --out RUN_DIR, not two different folders")
        stored = TrainConfig.from_dict(load_checkpoint(resume)["config"])
        return _options(resumed_config, stored, options, typed), resume
    # the recipe's settings, then the ones given (recipes.resolve: as vsc experiment and the Python API)
    from_file = None
    if config_file is not None:
        try:
            from_file = from_toml(config_file.read_text(), str(config_file))
        except (VscError, OSError, UnicodeDecodeError) as exc:
            raise OptionsError(f"--config: {exc}") from None
    cfg = _options(new_run_config, recipe, options, typed, from_file)
    out = out or default_run_dir(cfg)
    if (out / CHECKPOINT).exists() and not force:
        raise OptionsError(f"{out} already holds a run: continue it with --resume {out}, or pass --force")
    return cfg, out
