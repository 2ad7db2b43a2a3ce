"""trainers/run.py's `Run`, the one place a trained run is reopened (its checkpoint, config, model, shape, data,
metrics.json), and what is built over it: `vsc encode`, `vsc sparsity` and its report table
(evaluation/reports.py), `vsc figure` and its kinds table, the Python API."""
import json
import re
from pathlib import Path

import click
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import vsc_cli as vsc
from vsc_cli.cli import main
from vsc_cli.cli.reports import report_options
from vsc_cli.common.config import TrainConfig
from vsc_cli.common.errors import VscError
from vsc_cli.data.datasets import load_split
from vsc_cli.evaluation import figures, reports
from vsc_cli.evaluation.codes import network_attrs
from vsc_cli.evaluation.sparsity import measure
from vsc_cli.trainers import checkpoint
from vsc_cli.trainers.checkpoint import CHECKPOINT, load_checkpoint
from vsc_cli.trainers.run import Run
from vsc_cli.trainers.train import train

PACKAGE = Path(__file__).resolve().parents[1] / "vsc_cli"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def fmnist_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(data="fmnist", dim=6, alpha=0.3, iterations=20, batch_size=50, train_size=300,
                      test_size=100, log_every=10)
    train(cfg, out, data_dir=shared_data, progress=False)
    return out


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    """A run on a small set with known factors (own data: every tenth image a test image)."""
    root = tmp_path_factory.mktemp("synth")
    x = root / "x.npz"
    runner = CliRunner()
    assert runner.invoke(main, ["synth", "sparse-linear", "-o", str(x), "--images", "200", "--factors", "6",
                                "--active", "2", "--side", "6"]).exit_code == 0
    r = runner.invoke(main, ["train", "--data", str(x), "--normalise", "01", "--dim", "8", "--hidden", "16",
                             "--iterations", "20", "--batch-size", "20", "--out", str(root / "run"), "--quiet"])
    assert r.exit_code == 0, r.output
    return root / "run", x


# ------------------------------------------------------------------------------------------ the Run
def test_a_run_reopens_its_config_model_data_and_metrics(fmnist_run, shared_data):
    state = load_checkpoint(fmnist_run)
    for path in (fmnist_run, fmnist_run / CHECKPOINT):  # a folder or its checkpoint file
        r = Run.open(path, data_dir=shared_data)
        assert r.path == fmnist_run and r.checkpoint == fmnist_run / CHECKPOINT
        assert r.cfg == TrainConfig.from_dict(state["config"]) and r.cfg.dim == 6 and r.iteration == 20
        assert r.metrics == json.loads((fmnist_run / "metrics.json").read_text())
        assert r.shape == (1, 28, 28) and r.pixels == 784 and r.data == "fmnist"
        assert not r.model.training
        for k, v in r.model.state_dict().items():
            assert torch.equal(v, state["model"][k]), k
        x = r.images("test", limit=50)
        want, labels = load_split("fmnist", "test", shared_data, r.cfg.normalisation, limit=50, fetch_missing=False)
        np.testing.assert_array_equal(x[:], want)  # the run's normalisation, its own data
        np.testing.assert_array_equal(x.labels, labels)
        assert r.images("test", limit=50) is x  # read once


def test_a_run_reads_nothing_it_is_not_asked_for(fmnist_run, monkeypatch, tmp_path):
    built = []
    original = checkpoint.build_model
    monkeypatch.setattr(checkpoint, "build_model", lambda *a, **k: built.append(1) or original(*a, **k))
    r = Run.open(fmnist_run)
    assert r.cfg.alpha == pytest.approx(0.3) and built == []  # the config costs no model
    r.model, r.model  # noqa: B018
    assert built == [1]
    bare = tmp_path / "bare"  # a run folder without metrics.json
    bare.mkdir()
    (bare / CHECKPOINT).write_bytes((fmnist_run / CHECKPOINT).read_bytes())
    assert Run.open(bare).metrics is None
    with pytest.raises(VscError, match="no checkpoint"):
        Run.open(tmp_path / "empty")


def test_another_data_set_must_fit_the_run(fmnist_run, tmp_path):
    np.save(tmp_path / "small.npy", np.zeros((20, 8, 8), np.uint8))
    r = Run.open(fmnist_run, data=str(tmp_path / "small.npy"))
    with pytest.raises(VscError, match=r"images are 1x8x8 .*trained on 1x28x28"):
        r.images("test")
    result = run("encode", fmnist_run, "-o", tmp_path / "c.h5", "--data", tmp_path / "small.npy", "--quiet")
    assert result.exit_code == 1 and "trained on 1x28x28" in result.output


def test_encode_sparsity_figure_and_the_api_reopen_through_the_run(fmnist_run, shared_data, tmp_path, monkeypatch):
    opened = []
    original = Run.open.__func__

    def spy(cls, path, *args, **kwargs):
        opened.append(Path(path))
        return original(cls, path, *args, **kwargs)

    monkeypatch.setattr(Run, "open", classmethod(spy))
    data = ("--data-dir", shared_data)
    assert run("encode", fmnist_run, "-o", tmp_path / "c.h5", "--limit", 20, "--quiet", *data).exit_code == 0
    assert opened == [fmnist_run]
    assert run("sparsity", fmnist_run, "--quiet", "--json", *data).exit_code == 0
    assert run("figure", "codes", fmnist_run, "-o", tmp_path / "f.png", "--count", 2, "--dpi", 20, *data).exit_code == 0
    assert run("figure", "prior", fmnist_run, "-o", tmp_path / "p.png", "--count", 2, "--dpi", 20).exit_code == 0
    vsc.load(fmnist_run)
    assert opened == [fmnist_run] * 5
    assert run("sparsity", tmp_path / "c.h5", "--quiet").exit_code == 0  # a codes file opens no run
    assert len(opened) == 5


def test_no_module_above_the_trainers_reopens_a_run_or_reads_a_set_itself():
    """The one Run: evaluation and pipelines never call the checkpoint's readers or the data loaders; above the
    data layer, the built-in sets' reader is never used (sources.open_images is the one loader)."""
    calls = re.compile(r"\b(load_checkpoint|build_model|open_images|load_split|checkpoint_path)\b")
    found = [f"{p.relative_to(PACKAGE)}: {line.strip()}" for layer in ("evaluation", "pipelines", "cli")
             for p in sorted((PACKAGE / layer).rglob("*.py")) for line in p.read_text().splitlines()
             if calls.search(line.split("#")[0])]
    assert found == []
    above_data = [p.relative_to(PACKAGE) for layer in ("trainers", "evaluation", "pipelines", "cli")
                  for p in sorted((PACKAGE / layer).rglob("*.py")) if re.search(r"\bload_split\b", p.read_text())]
    assert above_data == []


def test_the_api_is_built_over_the_run(fmnist_run, shared_data):
    api = vsc.load(fmnist_run)
    assert isinstance(api.opened, Run) and api.model is api.opened.model and api.shape == (1, 28, 28)
    assert api.metrics == api.opened.metrics and api.config == api.model.cfg.to_dict()
    assert api.path == fmnist_run and vsc.load(fmnist_run / CHECKPOINT).path == fmnist_run
    # the run's own data, at its size and normalisation: the same arrays as naming them
    x, y = vsc.dataset(api, "test", data_dir=shared_data, limit=30)
    want, labels = vsc.dataset("fmnist", "test", data_dir=shared_data, limit=30, normalisation="unit")
    np.testing.assert_array_equal(x, want)
    np.testing.assert_array_equal(y, labels)
    again, _ = api.dataset("test", data_dir=shared_data, limit=30)
    np.testing.assert_array_equal(again, want)
    raw, _ = vsc.dataset(api, "test", data_dir=shared_data, limit=30, normalisation="none")
    assert raw.max() > 1 and raw.shape == (30, 1, 28, 28)
    with pytest.raises(VscError, match="choose train, validation, test"):
        vsc.dataset(api, "valid", data_dir=shared_data)


# ------------------------------------------------------------------------------------------ vsc sparsity
def test_the_report_table_drives_the_sparsity_options():
    command = main.commands["sparsity"]
    names = [p.name for p in command.params]
    given = [r.name for r in reports.options()]
    assert given == ["conditional", "active", "truth", "consistency"]  # --help's order, as before the table
    assert names[names.index("as_json") + 1:names.index("quiet")] == given
    assert {r.name for r in reports.REPORTS} - set(given) == {"reconstruction"}  # a run folder's, no option
    fields = {"run", "model", "images", "codes", "gamma", "labels", "active", "split", "threshold"}
    for report in reports.REPORTS:
        assert set(report.needs) <= fields, report.name
        assert report.placement in ("specificity", "section", "end")
        assert not (report.needs_run and report.option is not None) or report.refusal, report.name


def test_a_report_added_to_the_table_is_an_option_a_computation_and_rows(tmp_path, monkeypatch):
    toy = reports.Report("toy", reports.Option("flag", "The mean gamma once more.", place=9), needs=("gamma",),
                         keys=("toy_mean",), compute=lambda enc, value: {"toy_mean": float(enc.gamma.mean())},
                         rows=lambda r, value: [("toy mean", f"{r['toy_mean']:.2f}")])
    monkeypatch.setattr(reports, "REPORTS", (*reports.REPORTS, toy))

    @click.command()
    @report_options
    def cmd(**kw):
        click.echo(json.dumps({k: v for k, v in kw.items() if v}))

    assert "--toy" in CliRunner().invoke(cmd, ["--help"]).output
    assert json.loads(CliRunner().invoke(cmd, ["--toy"]).stdout) == {"toy": True}
    path = tmp_path / "g.h5"
    gamma = np.array([[0.9, 0.1], [0.8, 0.6]], np.float32)
    with h5py.File(path, "w") as f:
        f.attrs["alpha"] = 0.5
        f["test/gamma"] = gamma
        f["test/labels"] = np.array([0, 1])
    r, ran = measure(path, toy=True)
    assert r["toy_mean"] == pytest.approx(0.6) and ran == {"toy": True}  # a codes file: no run folder's reports
    assert list(r)[-3:] == ["toy_mean", "source", "split"]
    assert reports.table(r, ran)["sections"][-1] == [("toy mean", "0.60")]
    with pytest.raises(VscError, match="--consistency needs a run folder"):
        measure(path, consistency=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nothing'"):
        measure(path, nothing=True)


def test_each_report_adds_the_keys_it_declares_in_the_tables_order(synth_run):
    folder, x = synth_run
    plain, ran = measure(folder)
    assert ran == {"active": "gamma", "reconstruction": True}
    r, ran = measure(folder, truth=x, consistency=True, active="nonzero")
    assert list(ran) == ["active", "reconstruction", "consistency", "truth"]  # the table's order
    added = [k for k in r if k not in plain or k in ("nonzero_rate",)]
    declared = [k for rep in reports.REPORTS if rep.name in ran for k in rep.keys]
    assert set(added) <= set(declared)
    assert [k for k in declared if k in added] == added  # JSON keys in the reports' order
    assert r["nonzero_rate"] >= 0 and r["truth"] == str(x)
    sections = reports.table(r, ran)["sections"]
    from vsc_cli.evaluation.metrics import ROWS

    # specificity + the draws' rate + reconstruction, and its training / validation / test row (own data have a
    # validation split, so metrics.json has all three)
    assert len(r["splits"]) == 3
    assert [len(s) for s in sections][:2] == [6, len(ROWS) + 3]
    assert sections[2][0][0].startswith("consistency: median cosine") and sections[3][0][0].startswith("MCC")


def test_a_truth_file_that_is_no_npz_is_a_one_line_error(synth_run, tmp_path):
    folder, _ = synth_run
    np.save(tmp_path / "wrong.npy", np.zeros((3, 4)))
    result = run("sparsity", folder, "--quiet", "--truth", tmp_path / "wrong.npy")
    assert result.exit_code == 1 and "internal error" not in result.output
    assert result.output.strip() == (f"Error: --truth {tmp_path / 'wrong.npy'}: one array, not an .npz file with a "
                                     "'factors' array (make one with vsc synth)")


# ------------------------------------------------------------------------------------------ vsc figure, codes
def test_figure_kinds_are_one_table_and_images_are_labelled_with_their_split(fmnist_run, shared_data, tmp_path,
                                                                             monkeypatch):
    command = main.commands["figure"]
    assert list(command.params[0].type.choices) == list(figures.KINDS)
    help_text = run("figure", "--help").output
    for name, kind in figures.KINDS.items():
        assert f"{name:<12} {kind.about}" in help_text
    labels = []
    original = figures._image
    monkeypatch.setattr(figures, "_image", lambda ax, img, label=None, color=None:
                        labels.append(label) or original(ax, img, label, color))
    figures.figure("codes", fmnist_run, tmp_path / "t.png", shared_data, split="train", indices=[3], dpi=20)
    assert "train #3" in labels and not any("test" in (lab or "") for lab in labels)
    labels.clear()
    figures.figure("interpolate", fmnist_run, tmp_path / "i.png", shared_data, indices=[0, 1], dpi=20, steps=2,
                   elements=1)
    assert {"A: test #0", "B: test #1"} <= set(labels)


def test_the_codes_file_records_the_network_and_its_settings(fmnist_run, shared_data, tmp_path):
    assert network_attrs(TrainConfig()) == {"network": "mlp", "decoder": "mlp", "hidden": "400"}
    assert network_attrs(TrainConfig(network="conv", channels=(4, 8))) == \
        {"network": "conv", "decoder": "conv", "channels": "4,8"}
    assert network_attrs(TrainConfig(decoder="linear")) == {"network": "mlp", "decoder": "linear", "hidden": "400"}
    out = tmp_path / "c.h5"
    assert run("encode", fmnist_run, "-o", out, "--limit", 10, "--quiet", "--data-dir", shared_data).exit_code == 0
    with h5py.File(out, "r") as f:
        assert (f.attrs["network"], f.attrs["decoder"], f.attrs["hidden"]) == ("mlp", "mlp", "400")


def test_the_sweep_presets_are_not_the_family_registry():
    from vsc_cli.pipelines import experiment as E

    assert not hasattr(E, "FAMILIES") and list(E.FAMILY_PRESETS) == ["vae", "paper", "default", "thresholded"]
