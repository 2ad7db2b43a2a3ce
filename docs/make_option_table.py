"""The docs' generated tables: docs/training.md's option tables, from the settings' declarations
(vsc_cli/common/config.py) and `vsc train`'s run options (vsc_cli/cli/__init__.py), and docs/recipes.md's table of
recipes (vsc_cli/trainers/recipes.py), so that the docs cannot drift from `vsc train --help`.

    python docs/make_option_table.py          # print the tables
    python docs/make_option_table.py --write  # put them between the markers in the two pages
"""
import sys
from pathlib import Path

import click

from vsc_cli.cli import train
from vsc_cli.common.config import GROUPS
from vsc_cli.trainers.recipes import recipe_table

DOC = Path(__file__).resolve().parent / "training.md"
RECIPES_DOC = Path(__file__).resolve().parent / "recipes.md"
RECIPES_START, RECIPES_END = "<!-- recipes:start (python docs/make_option_table.py --write) -->", "<!-- recipes:end -->"


def option_table(command) -> str:
    """docs/training.md's option tables, one per section of `vsc train --help`, from the same declarations
    (config.py's settings and the run options above): `python docs/make_option_table.py --write`."""
    sections: dict[str, list] = {}
    for param in command.get_params(click.Context(command)):
        if isinstance(param, click.Option) and "--help" not in param.opts:
            sections.setdefault(getattr(param, "heading", "run"), []).append(param)
    lines = []
    own = [h for h in sections if h not in GROUPS]  # each family's and network's own settings, as in --help
    for group in [*GROUPS[:-1], *own, GROUPS[-1]]:
        if group not in sections:
            continue
        lines += [f"**{group[0].upper()}{group[1:]}**", "", "| option | default | meaning |", "|---|---|---|"]
        for p in sections[group]:
            flags = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            shown = getattr(p, "shown", None)
            if shown is None:  # a plain click option (--data-dir)
                shown = str(p.default) if p.show_default else ""
            text = getattr(p, "text", p.help or "").replace("|", "\\|")
            lines.append(f"| {flags} | {shown} | {text} |")
        lines.append("")
    return "\n".join(lines)


START, END = "<!-- options:start (python docs/make_option_table.py --write) -->", "<!-- options:end -->"


def between(doc: Path, start: str, end: str) -> str:
    """The text between a page's two markers (without the newlines next to them)."""
    return doc.read_text().split(start, 1)[1].split(end, 1)[0][1:-1]


def main(argv) -> int:
    tables = [(DOC, START, END, option_table(train)), (RECIPES_DOC, RECIPES_START, RECIPES_END, recipe_table())]
    for doc, start, end, table in tables:
        if "--write" not in argv:
            print(table)
            continue
        head, rest = doc.read_text().split(start, 1)
        _, tail = rest.split(end, 1)
        doc.write_text(f"{head}{start}\n{table}\n{end}{tail}")
        print(f"wrote the table into {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
