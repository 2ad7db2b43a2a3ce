"""The command line's tables: a table as data ({title, columns, rows of strings, caption}) printed with rich, and
the tables of `vsc classify`'s results."""
from __future__ import annotations


def show(table: dict, justify: str = "right") -> None:
    """Print a table {title, columns, rows, caption (optional)} to stdout, every column justified alike."""
    from rich.console import Console
    from rich.table import Table

    out = Table(title=table["title"], caption=table.get("caption"))
    for col in table["columns"]:
        out.add_column(col, justify=justify)
    for row in table["rows"]:
        out.add_row(*row)
    Console().print(out)


def classify_table(result: dict, features: str, codes, repeats: int) -> dict:
    """The linear classifier's accuracy per labelled-set size (evaluation.classify.classify's result)."""
    return {"title": f"linear classifier on '{features}' of {codes} ({result['test_examples']} test images, "
                     f"{repeats} draws)",
            "columns": ["labelled", "accuracy %", "std %"],
            "rows": [[str(r["labelled"]), f"{100 * r['accuracy_mean']:.2f}", f"{100 * r['accuracy_std']:.2f}"]
                     for r in result["results"]]}


def probe_table(result: dict, features: str, codes) -> dict:
    """The sparse probes' accuracy per element count (evaluation.classify.sparse_probe's result)."""
    return {"title": f"sparse probes on '{features}' of {codes}",
            "caption": f"one class against the rest, balanced; the mean over {result['classes']} classes",
            "columns": ["elements", "accuracy %"],
            "rows": [[str(r["k"]), f"{100 * r['accuracy_mean']:.2f}"] for r in result["results"]]}
