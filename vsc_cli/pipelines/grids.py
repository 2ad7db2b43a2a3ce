"""`vsc experiment`'s grid from its choices (the grid, the data, the settings for every point, dims, models,
alphas, labelled-set sizes), every point's settings checked before any trains; and the listing of a grid."""
from __future__ import annotations

import sys
from pathlib import Path

from vsc_cli.common.config import foreign
from vsc_cli.common.errors import OptionsError, VscError
from vsc_cli.pipelines import experiment as E


def sweep_points(grid: str, data: str, iterations: int, backend: str, gamma_init=None, recipe: str = "paper",
                 recipe_typed: bool = False, settings: dict | None = None, train_size=None, labelled=None,
                 dims=None, models=None, alphas=None, point: int | None = None) -> list:
    """The grid's points (experiment.grid_points) for `vsc experiment`'s options (None: the grid's default),
    OptionsError for choices that do not fit the grid or a point's settings that do not go together."""
    options = {"iterations": iterations, "backend": backend}
    if gamma_init is not None:
        options["gamma_init"] = gamma_init
    if recipe != "paper":
        options["recipe"] = recipe
    options.update(settings or {})
    if train_size is not None:
        options["train_size"] = train_size
    kw = {"labelled": tuple(labelled)} if labelled else {}
    if dims:
        kw["dims"] = tuple(dims)
    if grid == "families":
        if recipe_typed:
            raise OptionsError("the families grid sets each family's recipe; drop --recipe")
        kw.setdefault("dims", E.FAMILY_DIMS)
        bad = [m for m in models or () if m not in E.FAMILY_PRESETS]
        if bad:
            raise OptionsError(f"{bad[0]!r}: families are {', '.join(E.FAMILY_PRESETS)}", option="--models")
        kw["models"], kw["alphas"] = tuple(models or E.FAMILY_PRESETS), (E.FAMILY_ALPHA,)
    elif models:
        kw["models"] = tuple(E.parse_models(",".join(models)))
    if alphas:
        kw["alphas"] = tuple(alphas)
        if any(not 0 < a <= 1 for a in kw["alphas"]):
            raise OptionsError("every alpha must be in (0, 1]", option="--alphas")
        if grid == "families" and len(kw["alphas"]) != 1:
            raise OptionsError("the families grid takes one alpha", option="--alphas")
    try:
        points = E.grid_points(grid, data, options=options, **kw)
        configs = [E.point_config(p) for p in points]  # every point checked now, not after hours of others
        for key in {**(settings or {}), **({"gamma_init": gamma_init} if gamma_init is not None else {})}:
            if not any(key in cfg for cfg in configs):  # a setting is for the points that have it: one at least
                raise VscError(foreign(key, configs[0]).replace("this run is", "every point of the grid is", 1))
    except VscError as exc:
        raise OptionsError(str(exc)) from None
    if point is not None and point >= len(points):
        raise OptionsError(f"the {grid} grid has points 0..{len(points) - 1}", option="--point")
    return points


def listing(points: list, out: Path) -> list[str]:
    """`vsc experiment --list`: each point, whether it is done in the sweep folder out, and the rough CPU time."""
    lines = []
    for k, p in enumerate(points):
        state = "done" if (out / "points" / p.name / E.RESULT).is_file() else "to do"
        lines.append(f"{k:3d}  {p.name:32s} {state}")
    lines.append(f"rough CPU time for all points here: {E.format_seconds(E.estimate_seconds(points))}")
    return lines


def command_line(grid: str, data: str, iterations: int) -> str:
    """The command that made the sweep, for its report: this process's, when it is `vsc`."""
    if sys.argv and "vsc" in Path(sys.argv[0]).name:
        return "vsc " + " ".join(sys.argv[1:])
    return f"vsc experiment {grid} --data {data} --iterations {iterations}"
