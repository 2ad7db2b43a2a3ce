"""The `vsc` command line through click's CliRunner: exit codes and one-line messages."""
import urllib.error

import click
import pytest
from click.testing import CliRunner

from vsc_cli.data import datasets as data
from vsc_cli.cli import main


def run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def assert_one_line_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for f in fragments:
        assert f in errors[0], errors[0]


@pytest.mark.parametrize("cmd", [[], ["train"], ["download"]])
def test_help(cmd):
    result = run(*cmd, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_every_option_has_help():
    for name, cmd in main.commands.items():
        for param in cmd.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"vsc {name} {param.opts[0]} has no help"


@pytest.mark.parametrize("args,fragment", [
    (["--alpha", "0"], "--alpha"),
    (["--alpha", "1.5"], "--alpha"),
    (["--dim", "0"], "--dim"),
    (["--data", "cifar"], "--data"),
    (["--hidden", "400,x"], "--hidden"),
    (["--hidden", "0"], "--hidden"),
    (["--lr", "-1"], "--lr"),
    (["--model", "gan"], "--model"),
])
def test_bad_values_exit_2(args, fragment):
    assert_one_line_error(run("train", *args), 2, "Invalid value", fragment)


def test_unknown_download_dataset():
    assert_one_line_error(run("download", "imagenet"), 2, "Invalid value")


def test_missing_data_is_one_line_error(tmp_path, monkeypatch):
    def fail(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data.urllib.request, "urlopen", fail)
    no_debian = data.DatasetSpec(**{**data.DATASETS["fmnist"].__dict__, "debian_dir": str(tmp_path / "none")})
    monkeypatch.setitem(data.DATASETS, "fmnist", no_debian)
    result = run("train", "--data-dir", tmp_path, "--out", tmp_path / "run", "--quiet")
    assert_one_line_error(result, 1, "--from", "dataset-fashion-mnist")


def test_train_then_resume_and_refusals(shared_data, tmp_path):
    out = tmp_path / "run"
    base = ["train", "--data", "fmnist", "--dim", 10, "--iterations", 40, "--train-size", 500,
            "--test-size", 200, "--batch-size", 50, "--data-dir", shared_data, "--out", out, "--quiet"]
    result = run(*base, "--alpha", 0.2)
    assert result.exit_code == 0, result.output
    assert "test ELBO per image" in result.output and "prior alpha 0.2" in result.output
    for name in ("checkpoint.safetensors", "log.csv", "metrics.json"):
        assert (out / name).is_file(), name
    # the same --out again is refused without --force
    assert_one_line_error(run(*base), 2, "--resume")
    # resuming with a different model option is refused
    assert_one_line_error(run("train", "--resume", out, "--dim", 11, "--data-dir", shared_data), 2, "--dim")
    result = run("train", "--resume", out, "--data-dir", shared_data, "--quiet", "--json")
    assert result.exit_code == 0 and '"test_elbo"' in result.output


def test_download_from_folder(shared_data, tmp_path):
    result = run("download", "mnist", "--from", shared_data / "mnist", "--data-dir", tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "mnist").glob("*.gz"))) == 4


def test_cuda_device_without_gpu_is_usage_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_one_line_error(run("train", "--device", "cuda"), 2, "--device cuda")


def test_backend_cuda_without_gpu_is_usage_error(monkeypatch):
    import torch

    from vsc_kernels import _plumbing

    monkeypatch.setattr(_plumbing, "simulated", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_one_line_error(run("train", "--backend", "cuda"), 2, "--backend cuda", "numba")


def test_bench_table_and_json():
    import json

    result = run("bench", "--sizes", "4x8,16x8", "--no-compile", "--repeats", 2, "--warmup", 1, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    impls = {r["impl"] for r in report["rows"]}
    assert {"torch-eager", "numba"} <= impls and "torch-compile" not in impls
    assert report["copy_bandwidth_gbps"] > 0 and all(r["ms"] > 0 for r in report["rows"])
    result = run("bench", "--sizes", "4x8", "--impls", "numba", "--repeats", 2)
    assert result.exit_code == 0 and "numba" in result.output and "GB/s" in result.output


def test_bench_train_json():
    import json

    result = run("bench", "--train", "--dim", 8, "--repeats", 2, "--warmup", 1, "--threads", 1, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rows = {r["step"]: r for r in report["rows"]}
    for lik in ("gaussian", "bernoulli"):
        assert {f"vsc torch ({lik})", f"vsc numba ({lik})", f"matrix products ({lik})", f"obvious eager ({lik})"} <= set(rows)
        assert rows[f"matrix products ({lik})"]["x_matrix_products"] == 1.0
        assert rows[f"obvious eager ({lik})"]["speedup_vs_obvious"] == 1.0
    for r in rows.values():  # each ratio is the quotient of two times measured in this run
        mm = rows[f"matrix products ({r['likelihood']})"]["ms_per_iteration"]
        assert abs(r["x_matrix_products"] - r["ms_per_iteration"] / mm) < 1e-9 and r["iterations_per_second"] > 0
    assert report["machine"]["torch_threads"] == 1
    table = run("bench", "--train", "--dim", 8, "--repeats", 2, "--warmup", 1, "--threads", 1)
    assert table.exit_code == 0 and "x matrix products" in table.output


@pytest.mark.parametrize("args", [["--sizes", "256"], ["--sizes", "0x5"], ["--impls", "fortran"]])
def test_bench_bad_values(args):
    assert_one_line_error(run("bench", *args), 2, "Invalid value")


def test_bench_cuda_impl_needs_cuda_device():
    assert_one_line_error(run("bench", "--impls", "cuda"), 2, "--device cuda")


def test_each_setting_is_declared_once_and_everything_follows():
    """A TrainConfig field's declaration (config.setting) makes its `vsc train` option (flag, type, default, help,
    section of --help), its `--set` parsing, its checkpoint check and its row in docs/training.md."""
    from pathlib import Path

    from vsc_cli.common import config as C
    from vsc_cli.cli import _settings, option_table, train

    options = {p.name: p for p in train.params}
    for name, f in C.SETTINGS.items():
        if not f.metadata["option"]:
            assert name not in options  # filled in by training (image_shape)
            continue
        p = options[name]
        assert p.group == f.metadata["group"] and p.text == f.metadata["help"], name
        assert C.check(name, f.default), name  # the paper's default passes its own check
        if f.metadata["recipe"]:
            assert p.default is None and name in C.PAPER_RECIPE  # the recipe fills it in
    assert set(C.SETTABLE) == {n for n, f in C.SETTINGS.items() if f.metadata["settable"]}
    assert _settings(["pretrain=7", "centre=yes", "encoder_scale=data", "rate_target=none", "lr=0.01"]) == \
        {"pretrain": 7, "centre": True, "encoder_scale": "data", "rate_target": None, "lr": 0.01}
    for bad in ("pretrain=-1", "centre=maybe", "rate_target=1", "spike=max", "lr=none", "dim=3"):
        with pytest.raises(click.BadParameter):
            _settings([bad])
    # the docs' tables are generated from the same declarations (python docs/make_option_table.py --write)
    doc = (Path(__file__).resolve().parent.parent / "docs" / "training.md").read_text()
    assert option_table() in doc
    help_text = run("train", "--help").output
    assert help_text.index("Data:") < help_text.index("Model:") < help_text.index("Beyond the paper:") \
        < help_text.index("Run:")
    # --help names the options beyond the paper (their help is --help-all's): shorter, nothing hidden
    full = run("train", "--help-all").output
    assert len(help_text.splitlines()) < 0.7 * len(full.splitlines())
    beyond = help_text[help_text.index("Beyond the paper:"):help_text.index("Run:")]
    for option in ("--rate-weight", "--centre", "--threshold", "--kl-weight", "--pseudo-inputs"):
        assert option in beyond and option in full
    assert "target rate" not in help_text and "target rate" in " ".join(full.split())
