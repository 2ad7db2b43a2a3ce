"""`vsc dashboard`: the element table against a plain loop, and the site's files, links and rows (without a browser)."""
import re
from html.parser import HTMLParser
import numpy as np
import pytest
from click.testing import CliRunner

from vsc_cli.cli import main
from vsc_cli.evaluation.dashboard import element_table


def naive_table(codes, active, labels):
    """Element by element, image by image."""
    n, dim = codes.shape
    out = []
    for j in range(dim):
        on = [i for i in range(n) if active[i, j]]
        rate = len(on) / n
        mean_abs = sum(abs(codes[i, j]) for i in on) / max(len(on), 1)
        positive = sum(1 for i in on if codes[i, j] > 0) / max(len(on), 1)
        status = "dead" if rate < 0.01 else "always" if rate >= 0.95 else "used"
        counts = {}
        for i in on:
            counts[labels[i]] = counts.get(labels[i], 0) + 1
        best = max(sorted(counts), key=lambda c: counts[c]) if counts else None
        jac = []
        for k in range(dim):
            if k == j:
                continue
            both = sum(1 for i in range(n) if active[i, j] and active[i, k])
            union = sum(1 for i in range(n) if active[i, j] or active[i, k])
            jac.append((both / union if union else 0.0, k))
        top = [k for _, k in sorted(jac, key=lambda t: (-t[0], t[1]))[:3]]
        out.append(dict(rate=rate, mean_abs=mean_abs, positive=positive, status=status, best=best,
                        share=counts[best] / len(on) if counts else None, top=top))
    return out


def test_the_element_table_is_the_plain_loops():
    rng = np.random.default_rng(3)
    codes = rng.normal(size=(60, 7))
    active = rng.random((60, 7)) < np.array([0.0, 0.5, 0.2, 0.99, 1.0, 0.05, 0.3])
    codes = codes * active
    labels = rng.integers(0, 4, 60)
    got = element_table(codes, active, labels)
    for j, want in enumerate(naive_table(codes, active, labels)):
        assert got["rate"][j] == pytest.approx(want["rate"])
        assert got["mean_abs"][j] == pytest.approx(want["mean_abs"])
        assert got["positive"][j] == pytest.approx(want["positive"])
        assert got["status"][j] == want["status"]
        if want["best"] is not None:
            assert got["best_class"][j] == want["best"] and got["class_share"][j] == pytest.approx(want["share"])
        assert list(got["cooccurs"][j]) == want["top"]
    assert element_table(codes, active, None)["best_class"] is None  # no labels, no classes


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.rows, self.ids = [], 0, set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("href", "src"):
            if key in a:
                self.refs.append(a[key])
        if tag == "tr" and "data-status" in a:
            self.rows += 1
        if "id" in a:
            self.ids.add(a["id"])


def test_the_site_of_a_run_has_every_element_and_no_broken_link(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (200, 8, 8), dtype=np.uint8)
    labels = np.repeat(np.arange(4), 50)
    np.savez(tmp_path / "x.npz", images=x, labels=labels)
    runner = CliRunner()
    r = runner.invoke(main, ["train", "--data", str(tmp_path / "x.npz"), "--dim", "6", "--hidden", "16",
                             "--iterations", "40", "--batch-size", "20", "--alpha", "0.5", "--out",
                             str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 0, r.output
    site = tmp_path / "site"
    r = runner.invoke(main, ["dashboard", str(tmp_path / "run"), "-o", str(site), "--quiet", "--top", "3"])
    assert r.exit_code == 0, r.output
    assert re.search(r"wrote .*index.html: 6 of 6 elements, 20 test images", r.stdout)
    index = Links()
    index.feed((site / "index.html").read_text())
    assert index.rows == 6 and {"elements", "filter", "status"} <= index.ids
    pages = sorted((site / "e").glob("*.html"))
    assert [p.stem for p in pages] == sorted(str(j) for j in range(6))
    for page in [site / "index.html", *pages]:
        links = Links()
        links.feed(page.read_text())
        for ref in links.refs:
            assert (page.parent / ref).resolve().is_file(), (page.name, ref)
    # a second run into the same folder is refused without --force, and nothing half-written is left on failure
    again = runner.invoke(main, ["dashboard", str(tmp_path / "run"), "-o", str(site), "--quiet"])
    assert again.exit_code == 1 and "use --force" in again.output and "Traceback" not in again.output
    assert runner.invoke(main, ["dashboard", str(tmp_path / "run"), "-o", str(site), "--quiet", "--force",
                                "--elements", "2"]).exit_code == 0
    index = Links()
    index.feed((site / "index.html").read_text())
    assert index.rows == 2 and len(list((site / "e").glob("*.html"))) == 2
    assert not list(tmp_path.glob(".site.partial*"))
    for page in [site / "index.html", *(site / "e").glob("*.html")]:  # links only to pages that were written
        links = Links()
        links.feed(page.read_text())
        assert all((page.parent / ref).resolve().is_file() for ref in links.refs), page.name


def chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


def rendered(url, tmp_path):
    """The DOM of a page after its scripts ran, in headless Chromium, and what the console printed."""
    import subprocess

    r = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                        "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
                       capture_output=True, text=True, timeout=120)
    return r.stdout, r.stderr


@pytest.mark.skipif(chromium() is None and not __import__("os").environ.get("VSC_REQUIRE_BROWSER"),
                    reason="needs Debian's chromium (CI installs it)")
def test_the_site_in_a_real_browser_sorts_filters_and_shows_images(tmp_path):
    """Headless Chromium opens the overview and an element page from disk: every element's row, sorting by rate
    (ascending: the file lists them descending), filtering by status, the element page's images, and no error in the console."""
    assert chromium() is not None, "VSC_REQUIRE_BROWSER is set but chromium is not installed"
    x = np.random.default_rng(0).integers(0, 256, (200, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", images=x, labels=np.repeat(np.arange(4), 50))
    runner = CliRunner()
    assert runner.invoke(main, ["train", "--data", str(tmp_path / "x.npz"), "--dim", "6", "--hidden", "16",
                                "--iterations", "40", "--batch-size", "20", "--alpha", "0.5", "--out",
                                str(tmp_path / "run"), "--quiet"]).exit_code == 0
    site = tmp_path / "site"
    assert runner.invoke(main, ["dashboard", str(tmp_path / "run"), "-o", str(site), "--quiet"]).exit_code == 0
    index = (site / "index.html").as_uri()
    dom, console = rendered(index + "#sort=rate", tmp_path)  # ascending: the page is written descending
    rows = re.findall(r'<tr data-status="(\w+)"[^>]*>.*?<td data-v="(\d+)">.*?<td data-v="([\d.]+)">', dom, re.S)
    assert len(rows) == 6
    rates = [float(r[2]) for r in rows]
    assert rates == sorted(rates) and rates != sorted(rates, reverse=True)
    assert re.search(r'<span id="shown">6</span>', dom)
    assert "Uncaught" not in console and "ERROR:CONSOLE" not in console, console
    dom, console = rendered(index + "#status=always", tmp_path)
    always = sum(1 for r in rows if r[0] == "always")
    assert re.search(rf'<span id="shown">{always}</span>', dom) and dom.count(" hidden=") == 6 - always
    j = int(rows[-1][1])  # the most often on
    dom, console = rendered((site / "e" / f"{j}.html").as_uri(), tmp_path)
    assert f"<h1>Element {j}</h1>" in dom and f'src="../img/{j}-' in dom and "Uncaught" not in console


def test_the_api_gives_the_same_table_and_top_images(tmp_path):
    import vsc_cli as vsc

    x = np.random.default_rng(0).integers(0, 256, (100, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    vsc.fit(vsc.train_config(data=str(tmp_path / "x.npy"), dim=5, hidden=(16,), iterations=30, batch_size=20,
                             alpha=0.5), tmp_path / "run", progress=False)
    run = vsc.load(tmp_path / "run")
    t = run.elements()
    codes = run.encode(t["images"]).code.numpy().astype(np.float64)
    active = run.encode(t["images"]).gamma.numpy() > 0.5
    np.testing.assert_allclose(t["rate"], active.mean(0))
    for j in range(5):
        on = [i for i in range(len(codes)) if active[i, j] and codes[i, j] > 0]
        want = sorted(on, key=lambda i: -codes[i, j])[:3]
        assert list(t["top"](j, 3)) == want


def test_consistency_and_mean_change_are_the_sparsity_commands_and_a_plain_mean(tmp_path):
    """The consistency column is `vsc sparsity --consistency`'s per element (one definition), and the mean pixel
    change drawn on an element page is the plain mean over its images of dec(z + spread e_j) - dec(z)."""
    import json

    import torch

    import vsc_cli as vsc
    from vsc_cli.evaluation.dashboard import encoded, scores

    x = np.random.default_rng(1).integers(0, 256, (200, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    runner = CliRunner()
    assert runner.invoke(main, ["train", "--data", str(tmp_path / "x.npy"), "--dim", "6", "--hidden", "16",
                                "--iterations", "40", "--batch-size", "20", "--alpha", "0.5", "--out",
                                str(tmp_path / "run"), "--quiet"]).exit_code == 0
    r = runner.invoke(main, ["sparsity", str(tmp_path / "run"), "--consistency", "--json", "--quiet"])
    per = json.loads(r.stdout)["consistency_per_element"]
    run = vsc.load(tmp_path / "run").opened
    _, codes, active, _ = encoded(run)
    s = scores(run, codes, active, "test")
    assert per, "no element scored: the test says nothing"
    for j in range(6):
        if str(j) in per:
            # the dashboard's codes are float64, the command's float32: their spreads differ in the 8th digit
            assert s["consistency"][j] == pytest.approx(per[str(j)], abs=1e-6)
        else:
            assert np.isnan(s["consistency"][j]) and j not in s["mean_change"]
    dec = run.model.decoder.mean
    param = next(run.model.parameters())
    for j, got in s["mean_change"].items():
        on = [i for i in range(len(codes)) if active[i, j]]  # 20 test images: every on-image is used
        spread = float(np.std(codes[on, j])) or 1.0
        total = 0.0
        for i in on:
            z = torch.tensor(codes[i][None], dtype=param.dtype)
            moved = z.clone()
            moved[0, j] += spread
            with torch.no_grad():
                total = total + (dec(moved) - dec(z)).double().numpy()[0]
        np.testing.assert_allclose(got, total / len(on), atol=1e-5)
    site = tmp_path / "site"
    assert runner.invoke(main, ["dashboard", str(tmp_path / "run"), "-o", str(site), "--quiet"]).exit_code == 0
    for j in s["mean_change"]:
        assert (site / "img" / f"{j}-change.png").is_file() and f"{j}-change.png" in (site / "e" / f"{j}.html").read_text()
    assert "consistency, median over" in (site / "index.html").read_text()
    assert runner.invoke(main, ["dashboard", str(tmp_path / "run"), "-o", str(tmp_path / "plain"), "--quiet",
                                "--no-consistency"]).exit_code == 0
    assert not list((tmp_path / "plain" / "img").glob("*-change.png"))


def test_truth_columns_are_the_hungarian_match_and_a_plain_argmax(tmp_path):
    """With --truth each element's matched factor is the one truth_scores' matching gives it (the MCC the overview
    shows is `vsc sparsity --truth`'s), and its best factor the argmax of a plain |corr| loop."""
    import json

    import vsc_cli as vsc
    from vsc_cli.evaluation.dashboard import encoded, scores
    from vsc_cli.evaluation.truth import read_factors

    runner = CliRunner()
    data = tmp_path / "x.npz"
    assert runner.invoke(main, ["synth", "sparse-linear", "-o", str(data), "--images", "200", "--factors", "5",
                                "--active", "2", "--side", "6"]).exit_code == 0
    assert runner.invoke(main, ["train", "--data", str(data), "--normalise", "01", "--dim", "8", "--hidden", "16",
                                "--iterations", "40", "--batch-size", "20", "--out", str(tmp_path / "run"),
                                "--quiet"]).exit_code == 0
    r = runner.invoke(main, ["sparsity", str(tmp_path / "run"), "--truth", str(data), "--json", "--quiet"])
    want = json.loads(r.stdout)
    run = vsc.load(tmp_path / "run").opened
    _, codes, active, _ = encoded(run)
    s = scores(run, codes, active, "test", truth=data, consistency=False)
    assert s["run_truth"]["truth_mcc"] == pytest.approx(want["truth_mcc"], abs=1e-12)
    factors = read_factors(data, "test", len(codes))
    matched = sorted(float(s["factor_corr"][j]) for j in range(8) if s["factor"][j] >= 0)
    assert sorted(s["factor"][s["factor"] >= 0].tolist()) == list(range(5))  # each factor to its own element
    assert matched == pytest.approx(sorted(want["truth_matched_corr"]), abs=1e-12)
    for j in range(8):
        corr = []
        for k in range(5):
            a, b = codes[:, j], factors[:, k]
            corr.append(0.0 if a.std() == 0 or b.std() == 0 else abs(float(np.corrcoef(a, b)[0, 1])))
        assert s["factor_best_corr"][j] == pytest.approx(max(corr), abs=1e-9)
        assert corr[s["factor_best"][j]] == pytest.approx(max(corr), abs=1e-9)
    site = tmp_path / "site"
    r = runner.invoke(main, ["dashboard", str(tmp_path / "run"), "-o", str(site), "--quiet", "--truth", str(data)])
    assert r.exit_code == 0, r.output
    page = (site / "index.html").read_text()
    assert "<th>factor</th>" in page and f"{want['truth_mcc']:.3f}" in page
    other = tmp_path / "m.npz"
    assert runner.invoke(main, ["synth", "manifolds", "-o", str(other), "--images", "50", "--side", "6"]).exit_code == 0
    r = runner.invoke(main, ["dashboard", str(tmp_path / "run"), "-o", str(tmp_path / "s2"), "--truth", str(other)])
    assert r.exit_code == 1 and "give the file the run was trained on" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "s2").exists()
