"""Verdict sections for a sweep's report.md: the library writes the measured tables (`vsc experiment`), this adds
the paper's claims judged on them and the published reproduction's numbers, replacing older such sections."""
from __future__ import annotations

from vsc_cli.pipelines.experiment import DEFAULT_DIMS

from .claims import judge, markdown
from .published import PUBLIC

CLAIMS_TITLE = "## The paper's claims, judged on these points"
PUBLIC_TITLE = "## Public figures from an independent reproduction"


def claims_section(verdicts) -> list[str]:
    return [CLAIMS_TITLE, "", "Each claim has a fixed numerical test (benchmarks/study/claims.py); 'not measured' "
            "until its points finish.", "", *markdown(verdicts), ""]


def public_section(data: str) -> list[str]:
    public = [(m, PUBLIC[(m, data)]) for m in ("vae", "vsc:0.01") if (m, data) in PUBLIC]
    if not public:
        return []
    lines = [f"{PUBLIC_TITLE} (5000 labels, test accuracy %)", "",
             "| model | " + " | ".join(map(str, DEFAULT_DIMS)) + " |", "|---|" + "---|" * len(DEFAULT_DIMS)]
    for m, vals in public:
        lines.append(f"| {'VAE' if m == 'vae' else 'VSC, alpha 0.01'} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    return lines + [""]


def with_sections(report: str, sections: list[str]) -> str:
    """report.md with `sections` (lines) placed before its first '## ' heading, after dropping any earlier claims or
    public-figures sections (each runs to the next '## ' heading)."""
    blocks, current = [], []
    for line in report.splitlines():
        if line.startswith("## ") and current:
            blocks.append(current)
            current = []
        current.append(line)
    blocks.append(current)
    head, rest = blocks[0], [b for b in blocks[1:] if not b[0].startswith((CLAIMS_TITLE, PUBLIC_TITLE))]
    if head and head[0].startswith((CLAIMS_TITLE, PUBLIC_TITLE)):
        head = []
    out = [*head, *sections]
    for b in rest:
        out += b
    return "\n".join(out) + "\n"


def judged_report(report: str, grid: str, data: str, results: list[dict], dims, alphas, models, verdicts=None) -> str:
    """The report with the claims (judged here unless `verdicts` are given) and, for the dims grid, the public numbers."""
    if verdicts is None:
        verdicts = judge(grid, data, results, dims=dims, alphas=alphas, models=models)
    return with_sections(report, claims_section(verdicts) + (public_section(data) if grid == "dims" else []))
