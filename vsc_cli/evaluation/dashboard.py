"""`vsc dashboard`: every element of a run, as a static site (no server, no network: open index.html from disk).

One encoding pass over the split (evaluation/encoding.py: the same codes and the same "active" as `vsc encode` and
`vsc sparsity`), then per element: how often it is on, its value where on, the class it predicts best, the
elements it co-occurs with; the images that switch it on most strongly (each sign), the weakest that switch it on,
an alteration strip (the element moved across -RANGE..+RANGE in images where it is on, decoded in batches, as
`vsc figure alter` does), its consistency score and mean pixel change (consistency.py, as `vsc sparsity
--consistency`), and with --truth the true factor it is matched to (truth.py, as `vsc sparsity --truth`).
`element_table` is the same numbers for a notebook (the Python API's `run.elements()`).

Layout of DIR: index.html (the run's settings and numbers, a sortable, filterable table of every element),
e/J.html (element J), img/J-*.png (its images, written once, loaded lazily by the browser), style.css, table.js.
"""
from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from vsc_cli.common.errors import VscError
from vsc_cli.common.progress import tqdm
from vsc_cli.common.safeio import check_writable_folder
from vsc_cli.data.datasets import class_name
from vsc_cli.data.display import tile
from vsc_cli.evaluation.consistency import consistency as consistency_scores
from vsc_cli.evaluation.encoding import active_elements, encode_batches
from vsc_cli.evaluation.metrics import mean_jaccard
from vsc_cli.evaluation.verdict import verdict

DEAD, ALWAYS = 0.01, 0.95  # rates below / at or above which an element is dead / always on (as `vsc sparsity`)
STEPS = 7  # decoded values per alteration strip
ALTER_IMAGES = 3  # images per alteration strip
JACCARD_SAMPLE = 2000  # images the overview's mean Jaccard is measured on


def element_table(codes: np.ndarray, active: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Per element j of codes (N, J) with active (N, J) bool: rate (fraction of images on), status (dead, always,
    used), mean_abs (mean |value| where on), positive (fraction of its on-values > 0), best_class / class_share
    (the class most of its on-images have, and that fraction; None without labels), class_rates (classes x J),
    cooccurs (the 3 elements whose active sets overlap its own most, by Jaccard, and those Jaccards)."""
    n, dim = codes.shape
    on = active.astype(np.float64)
    count = on.sum(0)
    rate = count / max(n, 1)
    safe = np.maximum(count, 1)
    mean_abs = (np.abs(codes) * on).sum(0) / safe
    positive = ((codes > 0) & active).sum(0) / safe
    status = np.where(rate < DEAD, "dead", np.where(rate >= ALWAYS, "always", "used"))
    out = {"rate": rate, "count": count.astype(np.int64), "mean_abs": mean_abs, "positive": positive,
           "status": status, "best_class": None, "class_share": None, "class_rates": None, "classes": None}
    if labels is not None and len(labels) == n and (np.asarray(labels) >= 0).all() and n:
        classes = np.unique(labels)
        member = (np.asarray(labels)[:, None] == classes[None, :]).astype(np.float64)  # (N, C)
        on_by_class = member.T @ on  # (C, J): on-images of each class
        out["classes"] = classes
        out["class_rates"] = on_by_class / np.maximum(member.sum(0), 1)[:, None]
        best = on_by_class.argmax(0)
        out["best_class"] = classes[best]
        out["class_share"] = np.where(count > 0, on_by_class[best, np.arange(dim)] / safe, np.nan)
    both = on.T @ on  # (J, J) images where both are on
    union = count[:, None] + count[None, :] - both
    jac = np.where(union > 0, both / np.maximum(union, 1), 0.0)
    np.fill_diagonal(jac, -1.0)
    order = np.argsort(-jac, axis=1, kind="stable")[:, :3]
    out["cooccurs"] = order
    out["cooccur_jaccard"] = np.take_along_axis(jac, order, 1)
    return out


def encoded(run, split: str = "test", threshold: float = 0.5, progress: bool = False):
    """(images, codes (N, J) = gamma mu, active (N, J) bool, element_table) of a run's split: one encoding pass,
    "active" as the family defines it (encoding.active_elements)."""
    model = run.model
    x = run.images(split, progress=progress)
    if len(x) == 0:
        raise VscError(f"the {split} split has no images")
    mu, gamma = [], []
    for _, m, _, g in encode_batches(model, x, 1000, progress, desc="encoding"):
        mu.append(m)
        gamma.append(g)
    mu, gamma = np.concatenate(mu), np.concatenate(gamma)
    codes = (gamma * mu).astype(np.float64)
    active = active_elements(model, x, gamma, threshold, model.family.active)
    return x, codes, active, element_table(codes, active, np.asarray(x.labels))


def strongest(codes: np.ndarray, active: np.ndarray, j: int, n: int, sign: int = 1) -> np.ndarray:
    """Indices of the n images that switch element j on most strongly with values of this sign (+1 / -1), or
    (sign 0) most weakly, in that order."""
    on = np.flatnonzero(active[:, j])
    value = codes[on, j]
    if sign == 0:
        return on[np.argsort(np.abs(value), kind="stable")][:n]
    keep = on[value * sign > 0]
    return keep[np.argsort(-codes[keep, j] * sign, kind="stable")][:n]


def _png(img: np.ndarray, path: Path, scale: int) -> None:
    """(H, W) or (H, W, 3) values in [0, 1] as a PNG, each pixel scale x scale (nearest: pixels stay pixels)."""
    from PIL import Image

    out = Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    if scale > 1:
        out = out.resize((out.width * scale, out.height * scale), Image.NEAREST)
    out.save(path)


def _grid(rows: list, path: Path, scale: int) -> None:
    """Rows of images (C, H, W) as one PNG, each image scaled by its own maximum (data/display.tile)."""
    _png(np.concatenate([np.concatenate([tile(im) for im in row], axis=1) for row in rows], axis=0), path, scale)


def _signed(change: np.ndarray, path: Path, scale: int) -> None:
    """A (C, H, W) pixel change as a PNG: mid-grey where nothing changes, lighter where the pixel grows, darker where
    it shrinks, scaled by the largest |change| (per channel for colour, so a hue shows which channel moved)."""
    top = np.abs(change).max()
    img = 0.5 + 0.5 * change / top if top > 0 else np.full_like(change, 0.5)
    _png(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), path, scale)


def _svg_bars(values, labels, width=260, height=80, title="") -> str:
    """A small bar chart as inline SVG (no plotting library in the page)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return ""
    top = values.max() if values.max() > 0 else 1.0
    w = width / len(values)
    bars = "".join(f'<rect x="{i * w:.1f}" y="{height - 14 - (v / top) * (height - 20):.1f}" width="{max(w - 1, 1):.1f}" '
                   f'height="{(v / top) * (height - 20):.1f}"><title>{html.escape(str(lab))}: {v:.3g}</title></rect>'
                   for i, (v, lab) in enumerate(zip(values, labels)))
    ticks = "".join(f'<text x="{i * w + w / 2:.1f}" y="{height - 2}" text-anchor="middle">{html.escape(str(lab).split(" ")[0])}</text>'
                    for i, lab in enumerate(labels) if len(labels) <= 12)
    return (f'<svg class="bars" width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">'
            f"{bars}{ticks}</svg>")


def _fmt(v, spec=".3f"):
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


CSS = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}th{cursor:pointer;background:#f4f4f4}
td.l,th.l{text-align:left}img{image-rendering:pixelated}.bars rect{fill:#3b7dd8}.bars text{font-size:9px}
.warn{color:#a00;font-weight:bold}.dead{color:#999}.always{color:#a60}nav a{margin-right:1em}
"""
JS = """// sort the element table by a column (click its header again to reverse) and filter it by status and text;
// index.html#sort=COLUMN&dir=-1&q=TEXT&status=dead opens it sorted and filtered (a link to a view, and the tests')
(function(){const t=document.getElementById('elements');if(!t)return;const body=t.tBodies[0];
let col=-1,dir=1;function key(r,c){const v=r.cells[c].dataset.v;return v===undefined?r.cells[c].textContent:v}
function sortBy(c,d){col=c;dir=d;const rows=[...body.rows];rows.sort((a,b)=>{const x=key(a,c),y=key(b,c),
nx=parseFloat(x),ny=parseFloat(y);return dir*((isNaN(nx)||isNaN(ny))?String(x).localeCompare(String(y)):nx-ny)});
rows.forEach(r=>body.appendChild(r))}
t.tHead.querySelectorAll('th').forEach((th,c)=>th.addEventListener('click',()=>sortBy(c,(col===c)?-dir:1)));
const f=document.getElementById('filter'),s=document.getElementById('status');
function apply(){const q=f.value.trim().toLowerCase(),st=s.value;let shown=0;for(const r of body.rows){
const ok=(!st||r.dataset.status===st)&&(!q||r.textContent.toLowerCase().includes(q));r.hidden=!ok;if(ok)shown++}
document.getElementById('shown').textContent=shown}f.addEventListener('input',apply);s.addEventListener('change',apply);
const h=new URLSearchParams(location.hash.slice(1));const names=[...t.tHead.querySelectorAll('th')].map(th=>th.textContent);
if(h.has('sort')){const c=names.indexOf(h.get('sort'));if(c>=0)sortBy(c,h.get('dir')==='-1'?-1:1)}
if(h.has('q'))f.value=h.get('q');if(h.has('status'))s.value=h.get('status');apply()})();
"""


def _page(title: str, body: str, depth: int = 0) -> str:
    up = "../" * depth
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<link rel="stylesheet" href="{up}style.css"></head><body>\n{body}\n'
            f'<script src="{up}table.js"></script></body></html>\n')


def scores(run, codes: np.ndarray, active: np.ndarray, split: str, truth=None, consistency: bool = True) -> dict:
    """The per-element scores beside element_table's, added to `table` in place and returned as the run's: with
    consistency, `consistency` (J,; NaN for elements on in < 1% of the images) and `mean_change` (j -> pixels);
    with truth (a vsc synth .npz), `factor` (J,; the true factor matched to each element by the Hungarian method,
    -1 for none), `factor_corr` (its |corr|), `factor_best` / `factor_best_corr` (the factor it correlates with
    most) and the run's truth scores."""
    dim = codes.shape[1]
    out = {"consistency": np.full(dim, np.nan), "mean_change": {}}
    if consistency:
        c = consistency_scores(run.model, codes, active, mean_change=True)
        for j, v in c["consistency_per_element"].items():
            out["consistency"][int(j)] = v
        out["mean_change"] = c["consistency_mean_change"]
        out["run_consistency"] = {k: c[k] for k in ("consistency", "consistency_elements")}
    if truth is not None:
        from vsc_cli.evaluation.truth import abs_correlation, linear_sum_assignment, run_factors, truth_scores

        factors = run_factors(run, truth, split, len(codes))
        corr = abs_correlation(codes, factors)  # (J, K)
        rows, cols = linear_sum_assignment(-corr)
        out["factor"] = np.full(dim, -1)
        out["factor"][rows] = cols
        out["factor_corr"] = np.where(out["factor"] >= 0, corr[np.arange(dim), np.maximum(out["factor"], 0)], np.nan)
        out["factor_best"] = corr.argmax(1)
        out["factor_best_corr"] = corr.max(1)
        out["run_truth"] = truth_scores(codes, active, factors)
    return out


def build(run, out: Path, split: str = "test", top: int = 8, elements: int | None = None, threshold: float = 0.5,
          span: float = 3.0, force: bool = False, progress: bool = False, truth=None, consistency: bool = True) -> dict:
    """Write the dashboard of `run` (trainers.run.Run) into folder `out` (refused if it exists, unless force; written
    beside it and renamed when complete, so a failure leaves nothing half-written); returns a summary. truth: a set
    with known factors (vsc synth's .npz) that the run was trained on; consistency: score each element (scores)."""
    out = Path(out)
    if out.exists() and not force:
        raise VscError(f"{out} exists; use --force to replace it, or another -o")
    check_writable_folder(out)
    x, codes, active, table = encoded(run, split, threshold, progress)
    table.update(scores(run, codes, active, split, truth, consistency))
    labels = np.asarray(x.labels)
    dim = codes.shape[1]
    order = np.argsort(-table["rate"], kind="stable")
    shown = order[:elements] if elements else order
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "e").mkdir(parents=True)
    (tmp / "img").mkdir()
    try:
        summary = _write(run, tmp, x, codes, active, labels, table, shown, split, top, threshold, span, progress)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**summary, "out": str(out), "elements": int(len(shown)), "dim": int(dim), "images": int(len(x))}


def _write(run, tmp, x, codes, active, labels, table, shown, split, top, threshold, span, progress) -> dict:
    model, cfg = run.model, run.cfg
    shape = tuple(run.shape)
    scale = max(1, 64 // shape[1])  # small images drawn larger (nearest-neighbour: pixels stay pixels)
    n, dim = codes.shape
    per_image = active.sum(1)
    sample = np.unique(np.linspace(0, n - 1, min(n, JACCARD_SAMPLE)).astype(np.int64))
    jaccard = mean_jaccard(active[sample])["all"]
    metrics = run.metrics or {}
    warning = verdict(cfg, float(per_image.mean()), metrics.get("test_reconstruction_error"), jaccard)
    param = next(model.parameters())

    have = [int(k) for k in shown]  # the elements with a page, in the table's order (most often on first)
    for j in tqdm(shown, desc="elements", disable=not progress, leave=False):
        j = int(j)
        on = np.flatnonzero(active[:, j])
        value = codes[on, j]
        groups = {"pos": strongest(codes, active, j, top, 1), "neg": strongest(codes, active, j, top, -1),
                  "weak": strongest(codes, active, j, top, 0)}
        for name, idx in groups.items():
            if len(idx):
                _grid([list(x[idx].reshape(len(idx), *shape))], tmp / "img" / f"{j}-{name}.png", scale)
        base = on[np.argsort(-np.abs(value), kind="stable")][:ALTER_IMAGES]
        if len(base):  # the element moved across -span..span in its strongest images, the rest of each code fixed
            z = np.repeat(codes[base][:, None, :], STEPS, axis=1)
            z[:, :, j] = np.linspace(-span, span, STEPS)[None, :]
            with torch.no_grad():
                dec = model.decoder.mean(torch.from_numpy(z.reshape(-1, dim)).to(param.device, param.dtype))
            dec = dec.float().cpu().numpy().reshape(len(base), STEPS, *shape)
            _grid([list(row) for row in dec], tmp / "img" / f"{j}-alter.png", scale)
        if j in table["mean_change"]:
            _signed(table["mean_change"][j].reshape(shape), tmp / "img" / f"{j}-change.png", scale)
        (tmp / "e" / f"{j}.html").write_text(_element_page(j, table, groups, value, have, span, len(base) > 0, n,
                                                          j in table["mean_change"], run.data))
    (tmp / "index.html").write_text(_overview(run, table, shown, per_image, jaccard, warning, split, threshold, n))
    (tmp / "style.css").write_text(CSS)
    (tmp / "table.js").write_text(JS)
    return {"active_mean": float(per_image.mean()), "jaccard": jaccard, "verdict": warning,
            "dead": int((table["status"] == "dead").sum()), "always": int((table["status"] == "always").sum())}


def _element_page(j, table, groups, value, have, span, altered, n, changed=False, data="") -> str:
    """Element j's page; `have`: the elements with a page, in the table's order (links go to those only)."""
    rate, status = table["rate"][j], table["status"][j]
    at = have.index(j)
    nav = ('<nav><a href="../index.html">all elements</a>'
           + (f'<a href="{have[at - 1]}.html">previous: element {have[at - 1]}</a>' if at > 0 else "")
           + (f'<a href="{have[at + 1]}.html">next: element {have[at + 1]}</a>' if at < len(have) - 1 else "")
           + "</nav>")
    parts = [nav, f"<h1>Element {j}</h1>",
             f'<p>on in {table["count"][j]:,} of {n:,} images ({rate:.1%}; <span class="{status}">{status}</span>); '
             f'mean |value| where on {table["mean_abs"][j]:.3f}; positive in {table["positive"][j]:.0%} of them.</p>']
    c = table["consistency"][j]
    parts.append(f"<p>consistency {c:.3f}: the median cosine between images of the pixel change a step in it makes "
                 "(1: the same change wherever it is on).</p>" if not np.isnan(c) else
                 "<p>consistency: not scored (on in fewer than 1% of the images, or not computed).</p>")
    if "factor" in table:
        best = table["factor_best"][j]
        matched = (f"matched to true factor {table['factor'][j]} (|corr| {table['factor_corr'][j]:.3f})"
                   if table["factor"][j] >= 0 else "matched to no true factor")
        parts.append(f"<p>{matched}; it correlates most with factor {best} (|corr| "
                     f"{table['factor_best_corr'][j]:.3f}).</p>")
    if table["best_class"] is not None and table["count"][j]:
        parts.append(f"<p>its images are most often class {html.escape(class_name(data, table['best_class'][j]))} "
                     f"({table['class_share'][j]:.0%} of them).</p>")
        parts.append("<h2>Rate per class</h2>" + _svg_bars(table["class_rates"][:, j],
                                                           [class_name(data, c) for c in table["classes"]],
                                                           title="rate per class"))
    if len(value):
        hist, edges = np.histogram(value, bins=20)
        parts.append("<h2>Its value where on</h2>" + _svg_bars(hist, [f"{e:.2f}" for e in edges[:-1]],
                                                               title="histogram of the value where on")
                     + f"<p>20 bins from {edges[0]:.3f} to {edges[-1]:.3f}.</p>")
    captions = {"pos": "switch it on most strongly (positive values)",
                "neg": "switch it on most strongly (negative values)",
                "weak": "switch it on most weakly"}
    for name, idx in groups.items():
        if len(idx):
            parts.append(f'<h2>Images that {captions[name]}</h2><img loading="lazy" src="../img/{j}-{name}.png" '
                         f'alt="element {j}: {captions[name]}">')
    if altered:
        parts.append(f"<h2>Moved from {-span:g} to {span:g}</h2><p>each row one of its strongest images, decoded with "
                     f'the element set to {STEPS} values, every other element as encoded.</p>'
                     f'<img loading="lazy" src="../img/{j}-alter.png" alt="element {j} altered">')
    if changed:
        parts.append("<h2>Mean pixel change</h2><p>of a step of one spread of its values, over the images where it is "
                     "on: grey nothing, lighter brighter, darker dimmer.</p>"
                     f'<img loading="lazy" src="../img/{j}-change.png" alt="element {j}: mean pixel change">')
    links = ", ".join((f'<a href="{int(k)}.html">{int(k)}</a>' if int(k) in have else str(int(k)))
                      + f" (Jaccard {jac:.2f})"
                      for k, jac in zip(table["cooccurs"][j], table["cooccur_jaccard"][j]) if jac > 0)
    parts.append(f"<h2>On together with</h2><p>{links or 'no other element shares its images'}</p>")
    return _page(f"element {j}", "\n".join(parts), depth=1)


def _overview(run, table, shown, per_image, jaccard, warning, split, threshold, n) -> str:
    cfg, metrics = run.cfg, run.metrics or {}
    p5, p50, p95 = np.percentile(per_image, [5, 50, 95]) if len(per_image) else (0, 0, 0)
    status = table["status"]
    numbers = [("images encoded", f"{n:,} ({split} split)"),
               ("active elements per image, mean (p5 / median / p95)",
                f"{per_image.mean():.1f} ({p5:.0f} / {p50:.0f} / {p95:.0f}) of {cfg.dim}"),
               ("elements used / dead / always on",
                f"{(status == 'used').sum()} / {(status == 'dead').sum()} / {(status == 'always').sum()}"),
               ("mean Jaccard between two images' active sets", _fmt(jaccard))]
    for key, label in (("test_elbo", "test ELBO per image"), ("validation_elbo", "validation ELBO per image"),
                       ("test_reconstruction_error", "codes' reconstruction error, test (of the mean image's)"),
                       ("train_reconstruction_error", "the same, training images")):
        if metrics.get(key) is not None:
            numbers.append((label, _fmt(metrics[key], ".3f" if "error" in key else ".2f")))
    if table.get("run_consistency", {}).get("consistency") is not None:
        rc = table["run_consistency"]
        numbers.append((f"consistency, median over the {rc['consistency_elements']} elements on in >= 1% of images",
                        _fmt(rc["consistency"])))
    if "run_truth" in table:
        t = table["run_truth"]
        numbers += [("true factors: MCC (matched |corr|)", _fmt(t["truth_mcc"])),
                    ("true factors recovered (|corr| >= 0.9)", f"{t['truth_recovered_09']} of {t['truth_factors']}"),
                    ("support F1", _fmt(t["truth_support_f1"]))]
    settings = {k: v for k, v in cfg.to_dict().items() if k in ("data", "model", "network", "dim", "alpha",
                                                                  "iterations", "image_size", "validation")}
    head = [f"<h1>{html.escape(str(run.path or 'run'))}</h1>",
            f"<p>{html.escape(json.dumps(settings))}; iteration {run.iteration:,}; "
            f"an element is on where {'gamma > ' + format(threshold, 'g') if run.model.family.active == 'gamma' else 'non-zero in a draw'}.</p>"]
    if warning:
        head.append(f'<p class="warn">{html.escape(warning)}</p>')
    head.append("<table>" + "".join(f'<tr><td class="l">{html.escape(a)}</td><td>{html.escape(b)}</td></tr>'
                                    for a, b in numbers) + "</table>")
    head.append('<h2>Every element</h2><p><input id="filter" placeholder="filter" aria-label="filter"> '
                '<select id="status" aria-label="status"><option value="">any status</option><option>used</option>'
                '<option>dead</option><option>always</option></select> <span id="shown"></span> shown; '
                'click a column to sort.</p>')
    has_class = table["best_class"] is not None
    has_truth = "factor" in table
    cols = ["element", "status", "rate", "mean |value|", "positive", "consistency",
            *(["best class", "share"] if has_class else []), *(["factor", "|corr|"] if has_truth else []),
            "on with", "strongest images"]
    rows = []
    for j in shown:
        j = int(j)
        cells = [f'<td data-v="{j}"><a href="e/{j}.html">{j}</a></td>', f'<td class="l">{status[j]}</td>',
                 f'<td data-v="{table["rate"][j]:.6f}">{table["rate"][j]:.1%}</td>',
                 f'<td>{table["mean_abs"][j]:.3f}</td>', f'<td data-v="{table["positive"][j]:.4f}">'
                 f'{table["positive"][j]:.0%}</td>']
        c = table["consistency"][j]
        cells.append(f'<td data-v="{-2 if np.isnan(c) else c:.4f}">{_fmt(c)}</td>')
        if has_class:
            share = table["class_share"][j]
            cells += [f'<td class="l" data-v="{table["best_class"][j]}">'
                      f"{html.escape(class_name(run.data, table['best_class'][j]))}</td>",
                      f'<td data-v="{0 if np.isnan(share) else share:.4f}">{_fmt(share, ".0%")}</td>']
        if has_truth:
            f, fc = table["factor"][j], table["factor_corr"][j]
            cells += [f'<td data-v="{f}">{f if f >= 0 else "-"}</td>',
                      f'<td data-v="{-1 if np.isnan(fc) else fc:.4f}">{_fmt(fc)}</td>']
        cells.append('<td class="l">' + " ".join(str(int(k)) for k, jac in
                                                 zip(table["cooccurs"][j], table["cooccur_jaccard"][j]) if jac > 0)
                     + "</td>")
        thumb = "pos" if table["count"][j] and table["positive"][j] >= 0.5 else "neg"
        cells.append('<td class="l">' + (f'<img loading="lazy" height="28" src="img/{j}-{thumb}.png" alt="">'
                                          if table["count"][j] else "") + "</td>")
        rows.append(f'<tr data-status="{status[j]}">' + "".join(cells) + "</tr>")
    tab = ('<table id="elements"><thead><tr>' + "".join(f'<th class="l">{c}</th>' if c in ("status", "best class", "on with",
                                                         "strongest images") else f"<th>{c}</th>" for c in cols)
           + "</tr></thead><tbody>" + "\n".join(rows) + "</tbody></table>")
    return _page(f"vsc dashboard: {run.path}", "\n".join(head) + tab)


def dashboard(run_dir: Path, out: Path, data_dir=None, **kw) -> dict:
    """`vsc dashboard RUN -o DIR`: build() of the run in folder RUN (its best checkpoint where it has one)."""
    from vsc_cli.trainers.run import Run

    return build(Run.open(run_dir, data_dir=data_dir), out, **kw)
