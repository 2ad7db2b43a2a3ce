"""The evaluation's tables on the command line: `vsc sparsity`'s reports (evaluation.reports.REPORTS) as its options
and its printed table, and `vsc figure`'s kinds (evaluation.figures.KINDS) as its choices and --help lines."""
from __future__ import annotations

from pathlib import Path

import click

from vsc_cli.evaluation.figures import KINDS as FIGURE_KINDS
from vsc_cli.evaluation.reports import options as report_list


def _click_option(report):
    o = report.option
    flag = f"--{report.name}"
    if o.kind == "flag":
        return click.option(flag, is_flag=True, help=o.help)
    if o.kind == "choice":
        return click.option(flag, type=click.Choice(list(o.choices)), default=None, help=o.help)
    if o.kind == "file":
        return click.option(flag, type=click.Path(exists=True, dir_okay=False, path_type=Path), help=o.help)
    raise ValueError(f"report {report.name}: unknown option kind {o.kind!r}")


def report_options(f):
    """One option per report of evaluation.reports.REPORTS that has one, in their --help order; the command
    gets them by the reports' names."""
    for report in reversed(report_list()):
        f = _click_option(report)(f)
    return f


def print_sections(table: dict) -> None:
    """Print {title, sections of (label, value text) rows} as a two-column table, sections ruled off."""
    from rich.console import Console
    from rich.table import Table

    out = Table(title=table["title"])
    out.add_column("measure")
    out.add_column("value", justify="right")
    for k, rows in enumerate(table["sections"]):
        if k:
            out.add_section()
        for label, text in rows:
            out.add_row(label, text)
    Console().print(out)


def figure_kinds(f):
    """`vsc figure`: the figure kinds' lines in place of {kinds} in its --help (under click's \\b)."""
    lines = "\n".join(f"{name:<12} {kind.about}" for name, kind in FIGURE_KINDS.items())
    f.__doc__ = f.__doc__.replace("{kinds}", lines.replace("\n", "\n    "))
    return f
