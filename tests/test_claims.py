"""benchmarks/study/claims.py: each claim's verdict on made-up sweeps whose answer is known by construction."""
import pytest

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from study import claims as C  # noqa: E402  (the study around vsc, not the library)

DIMS = [8, 16, 32, 64, 128, 200]
ALPHAS = [0.01, 0.1, 0.5, 1.0]


def point(model, dim, alpha=1.0, elbo=100.0, acc=0.8, std=0.002, sparsity=None, labelled=(5000,), jaccard=(0.2, 0.5)):
    return {"model": model, "dim": dim, "alpha": alpha, "test_elbo": elbo,
            "sparsity": alpha if sparsity is None else sparsity,
            "accuracy": [{"labelled": n, "accuracy_mean": a, "accuracy_std": std}
                         for n, a in zip(labelled, acc if isinstance(acc, tuple) else (acc,) * len(labelled))],
            "jaccard_different_class": jaccard[0], "jaccard_same_class": jaccard[1],
            "active_mean": 6.0, "dims_used": 60}


def by_claim(verdicts, words):
    found = [v for v in verdicts if words in v.claim]
    assert len(found) == 1, [v.claim for v in verdicts]
    return found[0]


def paper_like_dims(vsc_models=("vsc:0.01",)):
    """Fig. 2 and 3 as the paper draws them: the VAE peaks at 32 and falls 10%; every VSC stays level, lower."""
    vae_elbo = [90, 95, 100, 97, 93, 90]
    vae_acc = [0.80, 0.84, 0.86, 0.85, 0.83, 0.80]
    vsc_acc = [0.70, 0.80, 0.84, 0.86, 0.87, 0.87]
    out = [point("vae", d, elbo=e, acc=a) for d, e, a in zip(DIMS, vae_elbo, vae_acc)]
    for k, m in enumerate(vsc_models):
        alpha = float(m[4:])
        out += [point("vsc", d, alpha, elbo=e - k, acc=a) for d, e, a in zip(DIMS, [85, 90, 95, 96, 96, 96], vsc_acc)]
    return out


MODELS = ["vae", "vsc:0.5", "vsc:0.01"]


def test_dims_claims_hold_on_the_papers_shape():
    v = C.judge("dims", "fmnist", paper_like_dims(("vsc:0.5", "vsc:0.01")), dims=DIMS, models=MODELS)
    assert {x.status for x in v} == {C.HELD}, [(x.claim, x.status, x.evidence) for x in v]
    assert "peak at 32 dims, last 10.0% below it" in by_claim(v, "VAE's test ELBO peaks").evidence
    assert by_claim(v, "classify at or above").evidence.startswith("5,000 labels: 64: VSC 86.0 vs VAE 85.0")
    assert "VSC alpha 0.5: last 0.0% below its peak; VSC alpha 0.01" in by_claim(v, "stays level").evidence


def test_dims_claims_fail_where_the_numbers_do():
    rs = paper_like_dims(("vsc:0.5", "vsc:0.01"))
    for r in rs:
        if r["model"] == "vae":
            r["test_elbo"] = 100 + r["dim"] / 100  # rising to the last dimension: no fall
            r["accuracy"][0]["accuracy_mean"] = 0.9  # flat and above every VSC
        if r["alpha"] == 0.01 and r["dim"] == 128:
            r["accuracy"][0]["accuracy_mean"] = 0.5  # one dimension >= 64 below the VAE
        if r["alpha"] == 0.5 and r["dim"] == 200:
            r["test_elbo"] = 80  # VSC alpha 0.5 falls 16.7% from 96; alpha 0.01 stays level
    v = C.judge("dims", "fmnist", rs, dims=DIMS, models=MODELS)
    assert by_claim(v, "VAE's test ELBO peaks").status == C.NOT_HELD
    assert by_claim(v, "stays level").status == C.PARTLY
    assert by_claim(v, "classify at or above").status == C.NOT_HELD  # 90 beats every VSC accuracy
    assert by_claim(v, "lower maximum ELBO").status == C.HELD  # 96 < 102
    assert by_claim(v, "marginally outperforms").status == C.NOT_HELD  # 87 < 90
    assert by_claim(v, "VAE's accuracy falls").status == C.NOT_HELD  # flat
    for r in rs:
        if r["model"] == "vae":
            r["accuracy"][0]["accuracy_mean"] = 0.85
            r["test_elbo"] = 110 - r["dim"] / 10  # highest at the smallest dimension: no moderate peak
    v = C.judge("dims", "fmnist", rs, dims=DIMS, models=MODELS)
    assert by_claim(v, "VAE's test ELBO peaks").status == C.NOT_HELD
    assert "peak at 8 dims" in by_claim(v, "VAE's test ELBO peaks").evidence
    assert by_claim(v, "classify at or above").status == C.PARTLY  # 64 and 200 win (86, 87), 128 loses (50)


def test_dims_claims_wait_for_missing_points_and_models():
    rs = [r for r in paper_like_dims() if not (r["model"] == "vae" and r["dim"] == 128)]
    v = C.judge("dims", "fmnist", rs, dims=DIMS, models=MODELS)
    assert by_claim(v, "VAE's test ELBO peaks").status == C.UNMEASURED
    assert by_claim(v, "VAE's test ELBO peaks").evidence == "unfinished: VAE at [128]"
    assert by_claim(v, "classify at or above").status == C.UNMEASURED
    # VSC alpha 0.5 is in the grid but has no finished point: the all-models claims wait for it
    assert by_claim(v, "stays level").status == C.UNMEASURED
    assert "VSC alpha 0.5 at [8, 16, 32, 64, 128, 200]" in by_claim(v, "stays level").evidence
    assert by_claim(v, "own few elements").status == C.HELD  # the 200-dim alpha 0.01 point is there
    # a NaN ELBO (a diverged run) gives no verdict, not an arbitrary one
    rs = paper_like_dims()
    rs[1]["test_elbo"] = float("nan")
    v = C.judge("dims", "fmnist", rs, dims=DIMS, models=["vae", "vsc:0.01"])
    assert by_claim(v, "VAE's test ELBO peaks").status == C.UNMEASURED
    assert "non-finite" in by_claim(v, "VAE's test ELBO peaks").evidence


def test_dims_claims_without_what_they_need_are_not_applicable():
    only_vsc = [r for r in paper_like_dims() if r["model"] == "vsc"]  # the default series: VSC alpha 0.01 only
    v = C.judge("dims", "mnist", only_vsc, dims=DIMS, models=["vsc:0.01"])
    for words in ("VAE's test ELBO peaks", "lower maximum ELBO", "classify at or above", "marginally",
                  "VAE's accuracy falls"):
        assert by_claim(v, words).status == C.NA, words
    assert by_claim(v, "stays level").status == C.HELD
    small = [r for r in paper_like_dims() if r["dim"] <= 16]
    v = C.judge("dims", "mnist", small, dims=[8, 16], models=["vae", "vsc:0.01"])
    assert by_claim(v, "VAE's test ELBO peaks").status == C.NA and by_claim(v, ">= 94%").status == C.NA


def test_accuracy_is_read_at_the_largest_labelled_set():
    rs = paper_like_dims()
    for r in rs:  # 1,000 labels listed after 5,000: the 5,000-label numbers must be the ones judged
        r["accuracy"].append({"labelled": 1000, "accuracy_mean": 0.1 if r["model"] == "vsc" else 0.99,
                              "accuracy_std": 0.01})
    v = C.judge("dims", "fmnist", rs, dims=DIMS, models=["vae", "vsc:0.01"])
    assert by_claim(v, "classify at or above").status == C.HELD
    assert by_claim(v, "classify at or above").evidence.startswith("5,000 labels")


def alpha_sweep(elbo, sparsity, acc):
    return [point("vsc", 200, a, elbo=e, sparsity=s, acc=x, labelled=(100, 1000, 5000))
            for a, e, s, x in zip(ALPHAS, elbo, sparsity, acc)]


def test_alpha_claims_on_the_papers_shape_and_against_it():
    held = alpha_sweep(elbo=[95, 110, 105, 100], sparsity=[0.15, 0.14, 0.52, 1.0],
                       acc=[(0.7, 0.9, 0.95), (0.68, 0.89, 0.94), (0.65, 0.88, 0.94), (0.6, 0.85, 0.93)])
    v = C.judge("alpha", "mnist", held, alphas=ALPHAS)
    statuses = {x.claim.split(":")[0] + x.claim[8:30]: x.status for x in v}
    assert by_claim(v, "follows the prior").status == C.HELD
    assert by_claim(v, "departs above").status == C.HELD
    assert by_claim(v, "raises the ELBO").status == C.HELD, statuses
    assert by_claim(v, "more efficient").status == C.HELD
    # our 20,000-iteration shape: the ELBO falls all the way from alpha 1; sparsity 0.08 off at 0.5
    against = alpha_sweep(elbo=[90, 95, 99, 100], sparsity=[0.05, 0.12, 0.58, 1.0],
                          acc=[(0.7, 0.9, 0.93), (0.7, 0.9, 0.93), (0.7, 0.9, 0.93), (0.6, 0.9, 0.935)])
    v = C.judge("alpha", "mnist", against, alphas=ALPHAS)
    assert by_claim(v, "follows the prior").status == C.NOT_HELD  # 0.5 off by 0.08 (alpha 1 does not count)
    assert by_claim(v, "departs above").status == C.NOT_HELD  # 0.05 is not > 0.01 + 0.05
    assert by_claim(v, "raises the ELBO").status == C.NOT_HELD
    assert "peak at alpha 1" in by_claim(v, "raises the ELBO").evidence
    assert by_claim(v, "more efficient").status == C.PARTLY  # only 100 labels gain beyond the spread
    # an ELBO that rises all the way to the smallest alpha: the rise is there, the final fall is not
    rising = alpha_sweep(elbo=[120, 110, 105, 100], sparsity=[0.15, 0.14, 0.52, 1.0], acc=[0.9] * 4)
    assert by_claim(C.judge("alpha", "mnist", rising, alphas=ALPHAS), "raises the ELBO").status == C.PARTLY


def test_alpha_claims_match_labelled_sizes_and_need_only_their_points():
    rs = alpha_sweep(elbo=[95, 110, 105, 100], sparsity=[0.15, 0.14, 0.52, 1.0],
                     acc=[(0.7, 0.9, 0.95), (0.68, 0.89, 0.94), (0.65, 0.88, 0.94), (0.6, 0.85, 0.93)])
    rs[-1]["accuracy"] = rs[-1]["accuracy"][::-1][:2]  # alpha 1: 5000 and 1000 labels only, in another order
    v = C.judge("alpha", "mnist", rs, alphas=ALPHAS)
    fig11 = by_claim(v, "more efficient")
    assert fig11.status == C.HELD and "100 labels" not in fig11.evidence
    assert fig11.evidence == "1000 labels: 90.0 at alpha 0.01 vs 85.0 at 1; 5000 labels: 95.0 at alpha 0.01 vs 93.0 at 1"
    # a grid without alpha 1: Figs. 10 and 11 do not apply; Fig. 8 is judged on its own points
    v = C.judge("alpha", "mnist", rs[:3], alphas=ALPHAS[:3])
    assert by_claim(v, "raises the ELBO").status == C.NA and by_claim(v, "more efficient").status == C.NA
    assert by_claim(v, "follows the prior").status == C.HELD and by_claim(v, "departs above").status == C.HELD
    # Fig. 8 waits only for its own alphas: 0.5 missing
    v = C.judge("alpha", "mnist", [rs[0], rs[1], rs[3]], alphas=ALPHAS)
    assert by_claim(v, "follows the prior").evidence == "unfinished: alpha 0.5"
    assert by_claim(v, "departs above").status == C.HELD


def test_example_specificity_without_a_same_class_pair():
    r = point("vsc", 200, 0.01, acc=(0.5, 0.8, 0.95), labelled=(100, 1000, 5000), jaccard=(0.2, None))
    v = by_claim(C.judge("alpha", "mnist", [r], alphas=[0.01]), "own few elements")
    assert v.status == C.HELD and "no same-class pair" in v.evidence
    r["jaccard_different_class"] = None
    assert by_claim(C.judge("alpha", "mnist", [r], alphas=[0.01]), "own few elements").status == C.UNMEASURED


@pytest.mark.parametrize("acc, jaccard, want", [(0.941, (0.2, 0.5), (C.HELD, C.HELD)),
                                                (0.939, (0.98, 0.99), (C.NOT_HELD, C.NOT_HELD)),
                                                (0.95, (0.25, 0.2), (C.HELD, C.NOT_HELD))])
def test_accuracy_goal_and_example_specific_codes(acc, jaccard, want):
    rs = [point("vsc", 200, 0.01, acc=(0.5, 0.8, acc), labelled=(100, 1000, 5000), jaccard=jaccard)]
    v = C.judge("alpha", "mnist", rs, alphas=[0.01, 0.5, 1.0])
    assert (by_claim(v, ">= 94%").status, by_claim(v, "own few elements").status) == want
    assert by_claim(v, "raises the ELBO").status == C.UNMEASURED  # alphas 0.5 and 1 missing


def test_markdown_has_one_row_per_claim():
    v = C.judge("dims", "mnist", paper_like_dims(), dims=DIMS)
    lines = C.markdown(v)
    assert len(lines) == 2 + len(v) and all(line.count("|") >= 5 for line in lines)
    assert "**held**" in lines[2]
    v[0].evidence = "a | b"  # a bar in a cell is escaped, not a new column
    assert C.markdown(v)[2].count(" | ") == 3 and "a \\| b" in C.markdown(v)[2]


def test_results_summary_reads_the_sweep_folders(tmp_path, monkeypatch):
    """benchmarks/results_summary.py: progress, verdicts and the reproduction table from result.json files."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "results_summary", Path(__file__).resolve().parent.parent / "benchmarks" / "results_summary.py")
    S = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(S)
    monkeypatch.setattr(S, "ROOT", tmp_path)
    for r in alpha_sweep(elbo=[95, 110, 105, 100], sparsity=[0.15, 0.14, 0.52, 1.0], acc=[(0.6, 0.8, 0.95)] * 4):
        name = f"mnist-vsc-d200-a{r['alpha']:g}"
        folder = tmp_path / "paper-sweeps" / "mnist-alpha" / "points" / name
        folder.mkdir(parents=True)
        r.update(point=name, seconds=600.0, device="cpu", conditional_retention=0.1, dims_always_on=0,
                 dims_dead=140, active_p5=3, active_p95=9)
        (folder / "result.json").write_text(json.dumps(r))
    text = "\n".join(S.summary())
    assert "| paper | mnist | alpha | 4 of 7 | 40 min | cpu | mnist-alpha |" in text
    assert "| paper | fmnist | dims | 0 of 24 | - | - | fmnist-dims |" in text
    # 4 of the 7 alphas: the alpha claims wait; the 0.01 point's own claims are judged
    fig10 = [line for line in text.splitlines() if line.startswith("| Fig. 10") and "mnist" not in line]
    assert len(fig10) == 2  # one row per dataset
    assert all(line.endswith("| **not measured** | **not measured** |") for line in fig10), fig10
    # claims about the VAE alone are the paper column's (a recipe changes only the VSC)
    assert "| Fig. 2: the VAE's test ELBO peaks at a moderate dimension and falls for larger latent spaces. | " \
           "**not measured** | n/a (the VAE alone: judged with the paper's recipe's sweep) |" in text
    assert "**held**: 95.0%" in text and "**held**: Jaccard 0.20 between classes" in text
    assert "| mnist | VSC, alpha 0.01 | Alfo5123 | 68.2 |" in text
    assert "| mnist | paper | 6.0 (3-9) | 60 | 0 | 140 | 0.20 / 0.50 | 0.10 | 95.0 | 95.0 |" in text
    # now the paper series' VAE and the default series' VSC, all dims: the default column is judged
    for r in paper_like_dims():
        grid = "paper-sweeps/mnist-dims" if r["model"] == "vae" else "default-recipe/default-mnist-dims"
        name = f"mnist-{r['model']}-d{r['dim']}" + ("-a0.01" if r["model"] == "vsc" else "")
        folder = tmp_path / grid / "points" / name
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({**r, "point": name, "seconds": 60.0}))
    rows = [line for line in S.summary() if line.startswith("| Fig. 3: with alpha 0.01")]
    assert rows[1].endswith("| **not measured** | **held**: 5,000 labels: 64: VSC 86.0 vs VAE 85.0; "
                            "128: VSC 87.0 vs VAE 83.0; 200: VSC 87.0 vs VAE 80.0 |"), rows  # rows: fmnist, mnist
    readme = tmp_path / "README.md"
    readme.write_text("head\n<!-- summary:start -->\nold\n<!-- summary:end -->\ntail\n")
    S.main(["--write"])
    body = readme.read_text()
    assert body.startswith("head\n<!-- summary:start -->\n## Progress") and body.endswith("<!-- summary:end -->\ntail\n")
    assert "old" not in body


def test_verdict_sections_are_placed_once_before_the_tables():
    from study.report import CLAIMS_TITLE, PUBLIC_TITLE, judged_report

    library = "# dims sweep on fmnist\n\n- points finished: 0 of 2\n\n## Test accuracy\n\n| a |\n\n## Plots\n"
    results = [point("vae", d, 1.0, elbo=100.0 + d) for d in DIMS]
    once = judged_report(library, "dims", "fmnist", results, DIMS, None, ["vae"])
    assert once.index(CLAIMS_TITLE) < once.index(PUBLIC_TITLE) < once.index("## Test accuracy")
    assert "72.9" in once  # the published reproduction's VAE at 8 dims, Fashion-MNIST
    twice = judged_report(once, "dims", "fmnist", results, DIMS, None, ["vae"])
    assert twice == once and twice.count(CLAIMS_TITLE) == 1
    assert PUBLIC_TITLE not in judged_report(library, "alpha", "fmnist", [], None, [0.01], None)
