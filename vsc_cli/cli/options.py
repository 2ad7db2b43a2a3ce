"""The command line's building blocks: the settings-to-click adapter (one option per TrainConfig setting, grouped
in `--help`), the one comma-list parser, dataset arguments, and the one-line error handling."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from vsc_cli.common import config as C
from vsc_cli.common.errors import OptionsError, VscError
from vsc_cli.common.registry import VARIANTS
from vsc_cli.common.safeio import describe_os_error


def batch_by_dim(text: str) -> tuple:
    """'256x200' -> (256, 200), both at least 1 (ValueError otherwise): an item of `vsc bench --sizes`."""
    size = tuple(int(n) for n in text.lower().split("x"))
    if len(size) != 2 or min(size) < 1:
        raise ValueError(text)
    return size


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
        except OptionsError as exc:  # choices that do not go together: a bad invocation
            if exc.option:
                raise click.BadParameter(str(exc), param_hint=exc.option) from None
            raise click.UsageError(str(exc)) from None
        except VscError as exc:
            if debug:
                raise
            error = click.ClickException(str(exc))
            error.exit_code = getattr(exc, "exit_code", 1)  # a run stopped by a signal: 130 / 143, as the shell's
            raise error from None
        except OSError as exc:
            if debug:
                raise
            where = exc.filename or "a file"
            raise click.ClickException(describe_os_error(exc, where).replace("cannot write", "cannot use")) from None
        except KeyboardInterrupt:
            error = click.ClickException("interrupted; no half-written file is left (a run keeps its last "
                                         "checkpoint: continue it with --resume)")
            error.exit_code = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
            raise error from None
        except Exception as exc:  # a bug: still one line, the traceback on request
            if debug:
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise click.ClickException(f"internal error ({type(exc).__name__}: {first}); "
                                       "rerun with `vsc --debug ...` for the traceback and report it") from None

    return wrapper


data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="VSC_DATA_DIR", default=None,
    help="Dataset cache folder (env VSC_DATA_DIR) [default: for a trained run the folder it was trained from, "
         "else ./data].")


def check_backend(backend: str, device: str) -> None:
    """UsageError for a device this machine lacks (trainers.dist.check_device), or a backend that cannot run on
    this device or machine."""
    from vsc_kernels import cuda_problem

    from vsc_cli.trainers.dist import check_device

    try:
        check_device(device)
    except OptionsError as exc:
        raise click.UsageError(str(exc)) from None

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
    """A click option that `vsc train --help` lists under its group's heading, or, for a family's or network's own
    setting, under that class's heading (`owners`: the (registry, name) of the classes that declare it)."""

    def __init__(self, *args, group: str = "run", shown: str | None = None, owners=(), **kwargs):
        self.text = kwargs.get("help") or ""  # the help without its default, for docs/training.md's tables
        if shown is not None:  # a default that is not one value ("the recipe's", "2000,2000 for celeba, ...")
            kwargs["help"] = f"{self.text} [default: {shown}]"
        super().__init__(*args, **kwargs)
        self.group, self.owners = group, tuple(owners)
        self.heading = " / ".join(C.owner_label(r, n) for r, n in self.owners) if self.owners else group
        self.shown = shown if shown is not None else (str(self.default) if self.show_default else "")


class Placeholder:
    """Stands in a command's parameters for options made on first use (`make()` -> a list of click parameters),
    so that `vsc --help` imports no family: the options of the families' and networks' own settings, which
    their classes declare. A LazyCommand expands it in place, again after a family or network is registered."""

    def __init__(self, make):
        self.make = make


class LazyCommand(click.Command):
    """A click command whose parameters may hold Placeholders, expanded when the parameters are first asked for
    (parsing or help), and again whenever a table of classes (common.registry.VARIANTS) has changed."""

    @property
    def params(self):
        versions = tuple(r.version for r in VARIANTS)
        if getattr(self, "_versions", None) != versions:
            self._expanded = [q for p in self._declared
                              for q in (p.make() if isinstance(p, Placeholder) else [p])]
            self._versions = versions
        return self._expanded

    @params.setter
    def params(self, value):
        self._declared, self._versions = list(value), None


class GroupedCommand(LazyCommand):
    """--help in sections, one per group of options (config.GROUPS), then one per family and network with its own
    settings (only the one chosen when --model / --network is given beside --help), then the rest. The options
    beyond the paper are listed by name only, unless --help-all asks for each one's help."""

    COLLAPSED = ("beyond the paper",)

    def parse_args(self, ctx, args):
        chosen = {}
        for i, arg in enumerate(args):  # peeked before parsing: --help is eager and exits during it
            for key in ("model", "network"):
                if arg == f"--{key}" and i + 1 < len(args):
                    chosen[key] = args[i + 1]
                elif arg.startswith(f"--{key}="):
                    chosen[key] = arg.split("=", 1)[1]
        ctx.meta["vsc_chosen"] = chosen
        return super().parse_args(ctx, args)

    @staticmethod
    def _shown(owners, chosen) -> bool:
        return any(chosen.get(r.setting, n) == n for r, n in owners)

    def format_options(self, ctx, formatter):
        sections: dict[str, list] = {}
        chosen = ctx.meta.get("vsc_chosen", {})
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            owners = getattr(param, "owners", ())
            if record and (not owners or self._shown(owners, chosen)):
                # a family or network asked for by name (--model topk --help) shows each of its options' help
                named = owners and any(r.setting in chosen for r, _ in owners)
                collapsed = (getattr(param, "group", None) in self.COLLAPSED and not ctx.meta.get("help_all")
                             and not named)
                sections.setdefault(getattr(param, "heading", "run"), []).append((record, collapsed))
        own = [h for h in sections if h not in C.GROUPS]  # the families' and networks' own, before the run's
        for heading in [*C.GROUPS[:-1], *own, C.GROUPS[-1]]:
            if heading not in sections:
                continue
            with formatter.section(f"{heading[0].upper()}{heading[1:]}"):
                full = [record for record, collapsed in sections[heading] if not collapsed]
                if full:
                    formatter.write_dl(full)
                names = [record[0].split()[0] for record, collapsed in sections[heading] if collapsed]
                if names:
                    self._names(ctx, formatter, names)

    @staticmethod
    def _names(ctx, formatter, names):
        """The collapsed options' names, wrapped by hand: an option's name is never split at its hyphens."""
        words = [n + "," for n in names[:-1]] + [names[-1] + "."] + \
            f"Each one's help: vsc {ctx.info_name} --help-all, or docs/training.md.".split()
        line, indent = "", " " * formatter.current_indent
        for w in words:
            if line and len(indent) + len(line) + 1 + len(w) > (formatter.width or 80) - 2:
                formatter.write(indent + line + "\n")
                line = ""
            line = f"{line} {w}" if line else w
        formatter.write(indent + line + "\n")


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


def _remember(fn, param) -> None:
    """Add a parameter (or Placeholder) to a function being made a click command, as click's decorators do."""
    if not hasattr(fn, "__click_params__"):
        fn.__click_params__ = []
    fn.__click_params__.append(param)


def setting_options(fn):
    """One click option per setting (config.py declares the shared ones, each family's and network's class its
    own: default, help, kind, group); made on first use (a Placeholder), so `vsc --help` imports no family."""
    def make():
        return [setting_option(name).param for name, f in C.SETTINGS.items() if f.metadata["option"]]

    _remember(fn, Placeholder(make))
    return fn


class _OneOption:
    """A decorator adding one setting's option; `.param` is the option itself."""

    def __init__(self, make):
        self.make = make

    @property
    def param(self):
        return self.make()

    def __call__(self, fn):
        if self._shared:
            _remember(fn, self.make())
        else:  # a family's or network's own setting: its class is imported when the command is used
            _remember(fn, Placeholder(lambda: [self.make()]))
        return fn


def setting_option(name: str, **overrides):
    """The click option of one setting, as `vsc train` has it; `overrides` replace its keyword arguments (e.g. a
    default for every point of `vsc experiment`). A family's or network's own setting needs a LazyCommand."""
    def make():
        f = C.SETTINGS[name]
        meta = f.metadata
        owners = C.SETTINGS.owners(name)
        flag = meta["flag"] or "--" + name.replace("_", "-")
        kind, help_text = meta["kind"], meta["help"]
        kw = {"cls": GroupedOption, "group": meta["group"], "owners": owners}
        if meta["recipe"]:  # None: the recipe fills it in (train: recipes.resolve)
            kw["default"], kw["shown"] = None, "the recipe's"
        elif meta["shown_default"]:  # None: resolved from the data set (hidden, lr) or nothing (the rest)
            kw["default"], kw["shown"] = None, meta["shown_default"]
        elif owners:  # None: not given (a run of another family has no such setting); its class's default
            kw["default"] = None
            if f.default is not None:
                kw["shown"] = str(f.default)
        elif f.default is not None:
            kw["default"], kw["show_default"] = f.default, True
        if isinstance(kind, C.Flag):
            decls = [f"{flag}/--no-{flag[2:]}", name]
        else:
            decls = [flag, name]
            if isinstance(kind, C.Widths):
                kw["callback"] = comma_list(int, "a list of layer widths, e.g. 400 or 2000,2000", minimum=1,
                                            into=tuple)
            elif isinstance(kind, C.DataOrNumber):
                kw["callback"] = _data_or_number(kind, _EXAMPLES.get(name, "1"))
            else:
                kw["type"] = _click_type(name, kind)
        kw.update(overrides)
        cls = kw.pop("cls")
        return cls(decls, help=help_text, **kw)

    one = _OneOption(make)
    one._shared = name in C.SHARED
    return one


def lazy_option(make):
    """A decorator adding the option `make()` builds when the (Lazy)command is first used: for help text made
    from every family's settings (vsc experiment --set)."""
    def decorate(fn):
        _remember(fn, Placeholder(lambda: [make()]))
        return fn

    return decorate


def run_option(*decls, group="run", **kw):
    return click.option(*decls, cls=GroupedOption, group=group, **kw)
