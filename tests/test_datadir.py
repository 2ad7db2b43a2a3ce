"""A run remembers where its data are: the cache folder of a built-in set (in its checkpoint) and an own data path
(absolute), so that commands on it and --resume work from any directory; a missing cache names --data-dir."""
import pytest
from click.testing import CliRunner

from test_owndata import images, write_folder
from vsc_cli.cli import main
from vsc_cli.common.errors import VscError
from vsc_cli.data import datasets
from vsc_cli.trainers.checkpoint import load_checkpoint
from vsc_cli.trainers.run import Run

TINY = ["--dim", "4", "--hidden", "16", "--batch-size", "8", "--iterations", "6", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_built_in_run_finds_its_cache_from_anywhere(shared_data, tmp_path, monkeypatch):
    monkeypatch.delenv("VSC_DATA_DIR", raising=False)
    run = tmp_path / "run"
    r = invoke("train", "--data", "fmnist", "--data-dir", shared_data, "--train-size", "200", "--test-size", "50",
               "--out", run, *TINY)
    assert r.exit_code == 0, r.output
    assert load_checkpoint(run)["data_dir"] == str(shared_data.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./data here
    assert Run.open(run).data_dir == shared_data.resolve()
    s = invoke("sparsity", run, "--json", "--quiet")
    assert s.exit_code == 0, s.output
    f = invoke("figure", "codes", run, "-o", elsewhere / "c.png")
    assert f.exit_code == 0, f.output
    # the environment and the option still win over the record
    monkeypatch.setenv("VSC_DATA_DIR", str(tmp_path / "nowhere"))
    assert Run.open(run).data_dir is None
    assert Run.open(run, data_dir=tmp_path).data_dir == tmp_path


def test_an_own_data_run_records_its_folder_absolute(tmp_path, monkeypatch):
    write_folder(tmp_path / "imgs", images(40))
    monkeypatch.chdir(tmp_path)
    r = invoke("train", "--data", "imgs", "--out", "run", *TINY)
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "run")["config"]["data"] == str((tmp_path / "imgs").resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    s = invoke("sparsity", tmp_path / "run", "--quiet")
    assert s.exit_code == 0, s.output


def test_a_missing_cache_names_the_option_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "mirrors", lambda ds: ("http://127.0.0.1:9/",))  # refused at once: no network
    with pytest.raises(VscError, match=r"--data-dir DIR \(or VSC_DATA_DIR\)"):
        datasets.fetch("fmnist", tmp_path / "empty")
