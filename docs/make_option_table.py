"""docs/training.md's option tables, generated from the settings' declarations (vsc_cli/common/config.py) and
`vsc train`'s run options (vsc_cli/cli/__init__.py), so that the docs cannot drift from `vsc train --help`.

    python docs/make_option_table.py          # print the tables
    python docs/make_option_table.py --write  # put them between the markers in docs/training.md
"""
import sys
from pathlib import Path

from vsc_cli.cli import option_table

DOC = Path(__file__).resolve().parent / "training.md"
START, END = "<!-- options:start (python docs/make_option_table.py --write) -->", "<!-- options:end -->"


def main(argv) -> int:
    table = option_table()
    if "--write" not in argv:
        print(table)
        return 0
    text = DOC.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    print(f"wrote the option tables into {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
