"""The summary of docs/results/README.md, from the sweeps' committed result.json files.

    python benchmarks/results_summary.py [--write]

With --write it also judges the claims in each committed sweep's report.md.

Prints (or, with --write, puts between the README's `<!-- summary:start -->` and `<!-- summary:end -->`
lines) the progress of the series, the paper's claims judged per dataset and series (benchmarks/study/claims.py),
the reproduction table beside Alfo5123's published accuracies, the example-specificity of the alpha 0.01,
200-dimension codes and the wall times.
"""
import sys
from pathlib import Path

from vsc_cli.pipelines import experiment as E
from vsc_cli.pipelines import reports as R

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import claims as C  # noqa: E402
from study.published import PUBLIC  # noqa: E402
from study.report import judged_report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent / "docs" / "results"
DATA = ("fmnist", "mnist")
NAMES = {"fmnist": "Fashion-MNIST", "mnist": "MNIST"}
# (series, grid) -> (folder pattern, models of the dims grid)
SWEEPS = {("paper", "dims"): ("paper-sweeps/{d}-dims", E.DEFAULT_MODELS), ("paper", "alpha"): ("paper-sweeps/{d}-alpha", None),
          ("default-1", "dims"): ("default-recipe/default1-{d}-dims", ("vsc:0.01",)),
          ("default-1", "alpha"): ("default-recipe/default1-{d}-alpha", None),
          ("default", "dims"): ("default-recipe/default-{d}-dims", ("vsc:0.01",)),
          ("default", "alpha"): ("default-recipe/default-{d}-alpha", None)}
SERIES = ("paper", "default-1", "default")  # the paper's recipe, vsc's first default, today's (default-2)
LABELS = {"paper": "paper's recipe", "default-1": "default-1", "default": "default-2 (today's default)"}


def sweep(series, grid, data):
    folder, models = SWEEPS[(series, grid)]
    points = E.grid_points(grid, data, **({"models": models} if models else {}))
    root = ROOT / folder.format(d=data)
    return root, points, E.collect(points, root)


def judged(series, grid, data):
    """The verdicts of one sweep. The default series' dims grid has no VAE of its own (a recipe changes only
    the VSC), so its claims against the VAE are judged with the paper series' VAE points."""
    root, points, results = sweep(series, grid, data)
    if series != "paper" and grid == "dims":
        _, vae_points, paper = sweep("paper", "dims", data)
        points = [p for p in vae_points if p.model == "vae"] + points
        results = [r for r in paper if r["model"] == "vae"] + results
    verdicts = C.judge(grid, data, results, dims=sorted({p.dim for p in points}),
                       alphas=sorted({p.alpha for p in points}), models=R.grid_models(points))
    if series != "paper" and grid == "dims":  # claims about the VAE alone: the paper column's, not repeated
        verdicts = [C.Verdict(v.claim, v.test, C.NA, "the VAE alone: judged with the paper's recipe's sweep")
                    if v.claim.startswith(VAE_ONLY) else v for v in verdicts]
    return verdicts


VAE_ONLY = ("Fig. 2: the VAE's", "Fig. 3: the VAE's")  # claims that no VSC point enters


def acc5000(r):
    a = next((a for a in r["accuracy"] if a["labelled"] == 5000), None)
    return None if a is None else 100 * a["accuracy_mean"]


def num(value, fmt) -> str:
    return "-" if value is None else format(value, fmt)


def summary() -> list[str]:
    out = ["## Progress", "",
           "| series | data | grid | points done | sum of point wall times | trained on | report |",
           "|---|---|---|---|---|---|---|"]
    total, count = 0.0, 0
    for series in SERIES:
        for data in DATA:
            for grid in ("dims", "alpha"):
                root, points, results = sweep(series, grid, data)
                secs = sum(r["seconds"] for r in results)
                total, count = total + secs, count + len(results)
                where = ", ".join(sorted({r.get("device", "cpu") for r in results})) or "-"
                rel = root.relative_to(ROOT).as_posix()  # GROUP/FOLDER, linked from docs/results/README.md
                link = f"[{root.name}]({rel}/report.md)" if (root / "report.md").is_file() else root.name
                out.append(f"| {'default-2' if series == 'default' else series} | {data} | {grid} | "
                           f"{len(results)} of {len(points)} | "
                           f"{E.format_seconds(secs) if results else '-'} | {where} | {link} |")
    out += ["", f"All finished points together: {count} points, {E.format_seconds(total)}: the sum of their wall "
                "times.", ""]

    for data in DATA:
        out += [f"## The paper's claims on {NAMES[data]}", "",
                "Verdicts by the fixed tests of benchmarks/study/claims.py (the test of each claim is in the sweep's report); "
                "the numbers they rest on follow each verdict. The default recipe changes only the VSC: its claims "
                "against the VAE use the paper series' VAE points.", "",
                "| claim | " + " | ".join(LABELS[s] for s in SERIES) + " |", "|---|" + "---|" * len(SERIES)]
        rows: dict = {}
        for series in SERIES:
            for grid in ("dims", "alpha"):
                for v in judged(series, grid, data):
                    cell = rows.setdefault(v.claim, {})
                    # both grids judge the claims on the alpha 0.01, 200-dim point: the first verdict stands
                    if series not in cell or cell[series][0] in (C.UNMEASURED, C.NA):
                        cell[series] = (v.status, v.evidence)
        for claim, cell in rows.items():
            parts = ["n/a (" + cell[s][1] + ")" if cell[s][0] == C.NA else f"**{cell[s][0]}**"
                     + (f": {cell[s][1]}" if cell[s][0] != C.UNMEASURED else "") if s in cell else "-"
                     for s in SERIES]
            out.append(f"| {claim} | " + " | ".join(p.replace("|", "\\|") for p in parts) + " |")
        out.append("")

    dims = E.DEFAULT_DIMS
    out += ["## Reproduction: test accuracy (%) against latent dimensions, 5,000 labels", "",
            "Linear classifier on 5,000 encoded training images, whole test set, mean of 5 draws. 'Alfo5123' is "
            "the published ICLR reproducibility re-implementation (its README's table); the paper gives these "
            "only as plots (Fig. 3).", "",
            "| data | model | source | " + " | ".join(map(str, dims)) + " |", "|---|---|---|" + "---|" * len(dims)]
    for data in DATA:
        _, _, paper = sweep("paper", "dims", data)
        ours = [(LABELS[s], sweep(s, "dims", data)[2]) for s in SERIES[1:]]
        for key, label in (("vae", "VAE"), ("vsc:0.5", "VSC, alpha 0.5"), ("vsc:0.2", "VSC, alpha 0.2"),
                           ("vsc:0.01", "VSC, alpha 0.01")):
            rows = [("vsc (paper's recipe)", paper)] + ([(f"vsc ({label})", r) for label, r in ours] if key == "vsc:0.01" else [])
            for source, results in rows:
                by_dim = {r["dim"]: acc5000(r) for r in results if R._key(r) == key}
                cells = [f"{by_dim[d]:.1f}" if by_dim.get(d) is not None else "" for d in dims]
                out.append(f"| {data} | {label} | {source} | " + " | ".join(cells) + " |")
            if (key, data) in PUBLIC:
                out.append(f"| {data} | {label} | Alfo5123 | " + " | ".join(f"{v:.1f}" for v in PUBLIC[(key, data)])
                           + " |")
    out.append("")

    out += ["## Example-specificity of the codes (VSC, alpha 0.01, 200 dimensions, test set)", "",
            "Active elements per image (mean, 5th-95th percentile), dimensions used by >= 1% of images, always "
            "on (>= 95%), dead (< 1%), mean Jaccard of two images' active sets (different / same class), Fig. 13: "
            "fraction of conditional samples classified as their source's class (0.10 is chance).", "",
            "| data | recipe | active per image | used | always on | dead | Jaccard diff. / same | Fig. 13 | "
            "acc. 5,000 | test ELBO |", "|---|---|---|---|---|---|---|---|---|---|"]
    for data in DATA:
        for series in SERIES:
            _, _, results = sweep(series, "alpha", data)
            r = next((r for r in results if r["alpha"] == 0.01), None)
            if r is None:
                out.append(f"| {data} | {series} | not finished | | | | | | | |")
                continue
            cells = [f"{r['active_mean']:.1f} ({r['active_p5']:g}-{r['active_p95']:g})" if "active_mean" in r else "-",
                     *(str(r.get(k, "-")) for k in ("dims_used", "dims_always_on", "dims_dead")),
                     f"{num(r.get('jaccard_different_class'), '.2f')} / {num(r.get('jaccard_same_class'), '.2f')}",
                     num(r.get("conditional_retention"), ".2f"), num(acc5000(r), ".1f"),
                     num(r.get("test_elbo_paper_prior", r["test_elbo"]), ".1f")]
            out.append(f"| {data} | {series} | " + " | ".join(cells) + " |")
    return out + [""]


def main(argv):
    text = "\n".join(summary())
    if argv[:1] != ["--write"]:
        print(text)
        return
    readme = ROOT / "README.md"
    body = readme.read_text()
    start, end = "<!-- summary:start -->", "<!-- summary:end -->"
    if start not in body or end not in body:
        sys.exit(f"{readme} has no {start} ... {end} block")
    head, rest = body.split(start, 1)
    readme.write_text(head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1])
    print(f"wrote the summary into {readme}")
    written = write_reports()
    print(f"judged the claims in {written} sweep reports")


def write_reports() -> int:
    """Each committed sweep's report.md (written by `vsc experiment`, tables only) with the claims judged on its
    points (as in the summary above) and, for the dims grids, the published reproduction's numbers."""
    count = 0
    for series, grid in SWEEPS:
        for data in DATA:
            root, points, results = sweep(series, grid, data)
            report = root / "report.md"
            if not report.is_file():
                continue
            text = judged_report(report.read_text(), grid, data, results, None, None, None,
                                 verdicts=judged(series, grid, data))
            if text != report.read_text():
                report.write_text(text)
            count += 1
    return count


if __name__ == "__main__":
    main(sys.argv[1:])
