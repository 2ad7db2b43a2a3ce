"""The `vsc` command line through click's CliRunner: exit codes and one-line messages."""
import importlib.util
import urllib.error

import click
import pytest
from click.testing import CliRunner

from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.data import datasets as data

from conftest import ROOT


def run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def docs_tables():
    """docs/make_option_table.py, the script that writes the docs' generated tables, as a module (test_recipes.py
    reads it too)."""
    spec = importlib.util.spec_from_file_location("make_option_table", ROOT / "docs" / "make_option_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    report = json.loads(result.stdout)
    impls = {r["impl"] for r in report["rows"]}
    assert {"torch-eager", "numba"} <= impls and "torch-compile" not in impls
    assert report["copy_bandwidth_gbps"] > 0 and all(r["ms"] > 0 for r in report["rows"])
    result = run("bench", "--sizes", "4x8", "--impls", "numba", "--repeats", 2)
    assert result.exit_code == 0 and "numba" in result.output and "GB/s" in result.output


def test_bench_train_json():
    import json

    result = run("bench", "--train", "--dim", 8, "--repeats", 2, "--warmup", 1, "--threads", 1, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
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
    from vsc_cli.common import config as C
    from vsc_cli.cli import train
    from vsc_cli.cli.options import settings_list

    options = {p.name: p for p in train.params}
    for name, f in C.SETTINGS.items():
        if not f.metadata["option"]:
            assert name not in options  # filled in by training (image_shape)
            continue
        p = options[name]
        assert p.group == f.metadata["group"] and p.text == f.metadata["help"], name
        assert C.check(name, f.default), name  # the paper's default passes its own check
    assert set(C.SETTABLE) == {n for n, f in C.SETTINGS.items() if f.metadata["settable"]}
    assert settings_list(["pretrain=7", "centre=yes", "encoder_scale=data", "rate_target=none", "lr=0.01"]) == \
        {"pretrain": 7, "centre": True, "encoder_scale": "data", "rate_target": None, "lr": 0.01}
    for bad in ("pretrain=-1", "centre=maybe", "rate_target=1", "spike=max", "lr=none", "dim=3"):
        with pytest.raises(click.BadParameter):
            settings_list([bad])
    # the docs' tables are generated from the same declarations (python docs/make_option_table.py --write)
    assert docs_tables().option_table(train) in (ROOT / "docs" / "training.md").read_text()
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


def test_recipe_options_on_the_command_line(tmp_path):
    result = run("train", "--paper", "--pretrain", 100, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "--paper" in result.output and "--pretrain" in result.output
    result = run("train", "--prior", "gaussian", "--out", tmp_path / "r")
    assert result.exit_code == 2
    result = run("train", "--help-all")
    assert "a different model from the paper's" in " ".join(result.output.split())
    for bad in ({"spike": "max"}, {"pretrain": -1}, {"prior": "x"}, {"prior_sharpness": 0}):
        with pytest.raises(Exception, match="out of range"):
            TrainConfig.from_dict({**TrainConfig().to_dict(), **bad})


def test_a_run_started_with_data_settings_resumes_with_them(shared_data, tmp_path):
    """--encoder-scale data / --logvar-init data are resolved to numbers when training starts and the checkpoint
    keeps the numbers; resuming with the same words is the same run (and a vsc experiment point too)."""
    from vsc_cli.trainers.checkpoint import load_checkpoint
    from vsc_cli.trainers.recipes import same_setting

    base = ["--data", "fmnist", "--data-dir", shared_data, "--dim", 4, "--train-size", 300, "--test-size", 50,
            "--batch-size", 50, "--quiet", "--encoder-scale", "data", "--logvar-init", "data"]
    result = run("train", *base, "--iterations", 4, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    cfg = load_checkpoint(tmp_path / "r")["config"]
    assert isinstance(cfg["encoder_scale"], float) and cfg["encoder_scale"] > 1
    result = run("train", "--resume", tmp_path / "r", "--encoder-scale", "data", "--logvar-init", "data",
                 "--data-dir", shared_data, "--quiet")
    assert result.exit_code == 0, result.output
    result = run("train", "--resume", tmp_path / "r", "--encoder-scale", 3, "--data-dir", shared_data, "--quiet")
    assert result.exit_code == 2 and "differs from the run being resumed" in result.output
    assert same_setting(12.5, "data") and same_setting(None, None) and not same_setting(None, "data")
    assert not same_setting(12.5, 3.0)


def test_a_run_folder_holds_a_config_file_that_trains_it_again(shared_data, tmp_path):
    """vsc train writes RUN/config.toml (every setting); `vsc train --config RUN/config.toml` builds the same
    config, options given beside it win, and a bad file is one line, exit 2."""
    from vsc_cli.trainers.checkpoint import load_checkpoint
    from vsc_cli.common.config import from_toml, to_toml

    base = ["--data-dir", shared_data, "--quiet"]
    result = run("train", "--data", "fmnist", "--dim", 4, "--alpha", 0.2, "--iterations", 3, "--train-size", 200,
                 "--test-size", 50, "--batch-size", 50, "--out", tmp_path / "a", *base)
    assert result.exit_code == 0, result.output
    first = load_checkpoint(tmp_path / "a")["config"]
    # the file holds the backend asked for (auto), so that it trains on another device too; the checkpoint the one used
    assert TrainConfig(**from_toml((tmp_path / "a" / "config.toml").read_text())).to_dict() == \
        {**first, "backend": "auto"}
    result = run("train", "--config", tmp_path / "a" / "config.toml", "--out", tmp_path / "b", *base)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "b")["config"] == first
    assert (tmp_path / "a" / "log.csv").read_text().splitlines()[1].split(",")[:-1] == \
        (tmp_path / "b" / "log.csv").read_text().splitlines()[1].split(",")[:-1]  # the same run again
    result = run("train", "--config", tmp_path / "a" / "config.toml", "--seed", 5, "--out", tmp_path / "c", *base)
    assert result.exit_code == 0 and load_checkpoint(tmp_path / "c")["config"]["seed"] == 5
    # every kind of value survives the round trip, None included
    cfg = TrainConfig(hidden=(3, 2), rate_target=0.05, centre=True, encoder_scale=12.5, data="/x/my data \"q\"")
    assert TrainConfig(**from_toml(to_toml(cfg))) == cfg
    for text, message in (("dims = 3\n", "unknown setting 'dims'"), ("alpha = 2.0\n", "alpha = 2.0"),
                          ("alpha = \n", "not TOML")):
        (tmp_path / "bad.toml").write_text(text)
        result = run("train", "--config", tmp_path / "bad.toml", "--out", tmp_path / "d", *base)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output


def test_train_warns_of_posterior_collapse(monkeypatch, tmp_path):
    """Codes that carry almost nothing about the image (KL < 1 nat per test image) get a warning with what to try;
    codes that carry more, and an autoencoder (no KL), do not."""
    import vsc_cli.trainers.train as T

    seen = {}

    def fake_train(cfg, out, **kw):
        return {"test_elbo": 100.0, "test_recon": 100.5, "test_kl_slab": seen["kl"][0], "test_kl_spike": seen["kl"][1],
                "test_sparsity": 0.05, "seconds_per_1000_iterations": 1.0, "elbo_is_bound": seen.get("bound", True)}

    monkeypatch.setattr(T, "train", fake_train)
    # default-3: the decoder's variance not started at the data's, so the advice names it
    args = ["train", "--data", "fmnist", "--dim", "4", "--iterations", "2", "--quiet", "--recipe", "default-3"]
    for kl, bound, warned in (((0.3, 0.2), True, True), ((0.3, 0.8), True, False), ((0.0, 0.0), False, False)):
        seen.update(kl=kl, bound=bound)
        result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / f"r{kl}{bound}")])
        assert result.exit_code == 0, result.output
        assert ("warning: posterior collapse: the codes carry 0.50 nats" in result.output) == warned, result.output
        assert ("--logvar-init data" in result.output) == warned
    # a run that already set the decoder's starting variance is not told to set it (trainers/report.py)
    seen.update(kl=(0.3, 0.2), bound=True)
    result = CliRunner().invoke(main, [*args, "--logvar-init", "-8", "--out", str(tmp_path / "given")])
    assert "warning: posterior collapse" in result.output and "--logvar-init data" not in result.output, result.output
    # nor is a default-4 run, which starts it at the data's
    result = CliRunner().invoke(main, [*args[:-2], "--out", str(tmp_path / "default4")])
    assert "warning: posterior collapse" in result.output and "--logvar-init data" not in result.output, result.output
