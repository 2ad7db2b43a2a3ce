"""The command line's building blocks: the settings-to-click adapter (one option per TrainConfig setting, grouped
in `--help`), the one comma-list parser, dataset arguments, and the one-line error handling."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from vsc_cli.common import config as C
from vsc_cli.common.errors import VscError
from vsc_cli.common.safeio import describe_os_error


def comma_list(convert, what: str, *, minimum=None, choices=None, unique: bool = False, into=list):
    """A click callback reading 'a,b,c' into a list (or `into`, e.g. tuple; config.split_list), each item converted
    by `convert` and at least `minimum` / one of `choices`; None stays None. BadParameter names `what` the option
    wants."""
    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            items = C.split_list(str(value), convert)
        except ValueError:
            items = None
        if (not items or (minimum is not None and min(items) < minimum)
                or (choices is not None and any(i not in choices for i in items))
                or (unique and len(set(items)) != len(items))):
            raise click.BadParameter(f"{value!r} is not {what}")
        return into(items)

    return callback


def usage_errors(fn, *args):
    """fn(*args), its VscError (settings that do not go together) turned into a UsageError: a bad invocation."""
    try:
        return fn(*args)
    except VscError as exc:
        raise click.UsageError(str(exc)) from None


def settings_list(items) -> dict:
    """('pretrain=100', 'spike=sigmoid') -> {'pretrain': 100, 'spike': 'sigmoid'}, each checked as a checkpoint's
    config would be (config.parse_setting)."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in C.SETTABLE:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE with KEY one of {', '.join(C.SETTABLE)}",
                                     param_hint="--set")
        try:
            out[key] = C.parse_setting(key, text)
        except ValueError as exc:
            raise click.BadParameter(f"{item!r}: {exc}", param_hint="--set") from None
    return out


class DataArg(click.ParamType):
    """A built-in dataset name, or the path of the user's own images (a folder, .npy, .npz or HDF5 file)."""

    name = "NAME|PATH"

    def convert(self, value, param, ctx):
        from vsc_cli.data.datasets import ALIASES, DATASETS, IMAGE_DATASETS

        key = ALIASES.get(str(value).lower(), str(value).lower())
        if key in DATASETS or key in IMAGE_DATASETS:
            return key
        path = Path(value).expanduser()
        if not path.exists():
            self.fail(f"{value!r} is neither a dataset ({', '.join([*DATASETS, *IMAGE_DATASETS])}) nor an existing "
                      "folder of images, .npy, .npz or HDF5 file", param, ctx)
        return str(path.resolve())  # absolute: the run's checkpoint can be used from anywhere


def _data_or_number(kind, example: str):
    """A click callback for options that take 'data' (resolved from the training images) or a number: the
    setting's kind (config.DataOrNumber) parses and checks it."""
    def callback(ctx, param, value):
        if value is None:
            return value
        try:
            parsed = kind.parse(value)
        except ValueError:
            parsed = None
        if parsed is None or not kind.check(parsed):
            raise click.BadParameter(f"{value!r}: give 'data' or a {'positive ' if kind.positive else ''}number, "
                                     f"e.g. {example}")
        return parsed

    return callback


def handle_errors(fn):
    """Turn the library's VscError (and a few OS errors) into one-line ClickExceptions, unless --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = ctx.find_root().params.get("debug")
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except VscError as exc:
            if debug:
                raise
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            if debug:
                raise
            where = exc.filename or "a file"
            raise click.ClickException(describe_os_error(exc, where).replace("cannot write", "cannot use")) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; no half-written file is left (a run keeps its last "
                                       "checkpoint: continue it with --resume)") from None
        except Exception as exc:  # a bug: still one line, the traceback on request
            if debug:
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise click.ClickException(f"internal error ({type(exc).__name__}: {first}); "
                                       "rerun with `vsc --debug ...` for the traceback and report it") from None

    return wrapper


data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="VSC_DATA_DIR", default="data",
    show_default=True, help="Dataset cache folder (env VSC_DATA_DIR).")


def check_backend(backend: str, device: str) -> None:
    """UsageError for a backend that cannot run on this device or machine."""
    from vsc_kernels import cuda_problem

    if backend == "numba" and device == "cuda":
        raise click.UsageError("--backend numba runs on the CPU; use --backend cuda with --device cuda")
    if backend == "cuda":
        problem = cuda_problem()
        if problem:
            raise click.UsageError(f"--backend cuda cannot run here: {problem}; use --backend numba")
        from vsc_kernels._plumbing import simulated

        if device != "cuda" and not simulated():
            raise click.UsageError("--backend cuda needs --device cuda")


class GroupedOption(click.Option):
    """A click option that `vsc train --help` lists under its group's heading."""

    def __init__(self, *args, group: str = "run", shown: str | None = None, **kwargs):
        self.text = kwargs.get("help") or ""  # the help without its default, for docs/training.md's tables
        if shown is not None:  # a default that is not one value ("the recipe's", "2000,2000 for celeba, ...")
            kwargs["help"] = f"{self.text} [default: {shown}]"
        super().__init__(*args, **kwargs)
        self.group = group
        self.shown = shown if shown is not None else (str(self.default) if self.show_default else "")


class GroupedCommand(click.Command):
    """--help in sections, one per group of options (config.GROUPS, then the rest). The options beyond the paper
    are listed by name only, unless --help-all asks for each one's help."""

    COLLAPSED = ("beyond the paper",)

    def format_options(self, ctx, formatter):
        sections: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record:
                sections.setdefault(getattr(param, "group", "run"), []).append(record)
        for group in [*C.GROUPS, *sorted(set(sections) - set(C.GROUPS))]:
            if group not in sections:
                continue
            with formatter.section(f"{group[0].upper()}{group[1:]}"):
                if group in self.COLLAPSED and not ctx.meta.get("help_all"):
                    names = [record[0].split()[0] for record in sections[group]]
                    words = [n + "," for n in names[:-1]] + [names[-1] + "."] + \
                        f"Each one's help: vsc {ctx.info_name} --help-all, or docs/training.md.".split()
                    line, indent = "", " " * formatter.current_indent
                    for w in words:  # wrapped by hand: an option's name is never split at its hyphens
                        if line and len(indent) + len(line) + 1 + len(w) > (formatter.width or 80) - 2:
                            formatter.write(indent + line + "\n")
                            line = ""
                        line = f"{line} {w}" if line else w
                    formatter.write(indent + line + "\n")
                else:
                    formatter.write_dl(sections[group])


def help_all(ctx, param, value):
    if value and not ctx.resilient_parsing:
        ctx.meta["help_all"] = True
        click.echo(ctx.get_help(), color=ctx.color)
        ctx.exit()


def _click_type(name: str, kind):
    """The click type of a setting's kind (config.py)."""
    if name == "data":
        return DataArg()
    if isinstance(kind, C.Choice):
        return click.Choice(tuple(kind.values))
    if isinstance(kind, C.Int):
        return click.IntRange(kind.lo, kind.hi) if (kind.lo, kind.hi) != (None, None) else int
    if isinstance(kind, C.Float):
        if (kind.lo, kind.hi) == (None, None):
            return float
        return click.FloatRange(kind.lo, kind.hi, min_open=kind.lo_open, max_open=kind.hi_open)
    return None  # text read by a callback


_EXAMPLES = {"logvar_init": "-8", "encoder_scale": "30"}


def setting_options(fn):
    """One click option per TrainConfig setting (config.py declares each once: default, help, kind, group)."""
    for name, f in reversed(list(C.SETTINGS.items())):
        if f.metadata["option"]:
            fn = setting_option(name)(fn)
    return fn


def setting_option(name: str, **overrides):
    """The click option of one setting, as `vsc train` has it; `overrides` replace its keyword arguments (e.g. a
    default for every point of `vsc experiment`)."""
    f = C.SETTINGS[name]
    meta = f.metadata
    flag = meta["flag"] or "--" + name.replace("_", "-")
    kind, help_text = meta["kind"], meta["help"]
    kw = {"cls": GroupedOption, "group": meta["group"]}
    if meta["recipe"]:  # None: the recipe fills it in (train: recipes.resolve)
        kw["default"], kw["shown"] = None, "the recipe's"
    elif meta["shown_default"]:  # None: resolved from the data set (hidden, lr) or nothing (the rest)
        kw["default"], kw["shown"] = None, meta["shown_default"]
    elif f.default is not None:
        kw["default"], kw["show_default"] = f.default, True
    if isinstance(kind, C.Flag):
        decls = [f"{flag}/--no-{flag[2:]}", name]
    else:
        decls = [flag, name]
        if isinstance(kind, C.Widths):
            kw["callback"] = comma_list(int, "a list of layer widths, e.g. 400 or 2000,2000", minimum=1, into=tuple)
        elif isinstance(kind, C.DataOrNumber):
            kw["callback"] = _data_or_number(kind, _EXAMPLES.get(name, "1"))
        else:
            kw["type"] = _click_type(name, kind)
    kw.update(overrides)
    return click.option(*decls, help=help_text, **kw)


def run_option(*decls, group="run", **kw):
    return click.option(*decls, cls=GroupedOption, group=group, **kw)
