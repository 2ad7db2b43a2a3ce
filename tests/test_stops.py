"""A run stopped by Ctrl-C or SIGTERM writes a checkpoint of a whole iteration and resumes bit for bit; a wall-clock
checkpoint; what --resume says; the progress bar's ELBO is log.csv's."""
import json
import os
import signal

import pytest
import torch
from click.testing import CliRunner

import vsc_cli.trainers.stops as stops_module
import vsc_cli.trainers.train as train_module
from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.trainers.checkpoint import load_checkpoint
from vsc_cli.trainers.stops import Stops, TrainingInterrupted
from vsc_cli.trainers.train import train
from vsc_cli.trainers.dist import World

from test_train import log_rows


def small_cfg(**kw):
    base = dict(data="fmnist", dim=10, train_size=500, test_size=200, batch_size=64, log_every=10,
                checkpoint_every=1000, iterations=60, alpha=0.1)
    base.update(kw)
    return TrainConfig(**base)


def signal_at(monkeypatch, iteration, signum):
    """Deliver `signum` to this process in the middle of training step `iteration` (after its update)."""
    real = train_module.training_step

    def step(*args, **kwargs):
        value = real(*args, **kwargs)
        if args[7] == iteration:  # training_step's `iteration` (1-based)
            signal.raise_signal(signum)
        return value

    monkeypatch.setattr(train_module, "training_step", step)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_checkpoints_the_iteration_and_resumes_exactly(shared_data, tmp_path, monkeypatch, signum):
    cfg = small_cfg()
    train(cfg, tmp_path / "full", data_dir=shared_data, progress=False)
    signal_at(monkeypatch, 27, signum)
    before = signal.getsignal(signum)
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg, tmp_path / "cut", data_dir=shared_data, progress=False)
    assert info.value.exit_code == 128 + signum
    assert "iteration 27 of 60" in str(info.value) and f"vsc train --resume {tmp_path / 'cut'}" in str(info.value)
    assert signal.getsignal(signum) == before  # the loop's handlers are given back
    assert load_checkpoint(tmp_path / "cut")["iteration"] == 27  # before the first fixed checkpoint (1,000)
    monkeypatch.undo()
    train(None, tmp_path / "cut", data_dir=shared_data, progress=False, resume=True)
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "cut")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["elbo"] for r in log_rows(tmp_path / "full")] == [r["elbo"] for r in log_rows(tmp_path / "cut")]


def test_the_command_exits_130_and_says_how_to_go_on(shared_data, tmp_path, monkeypatch):
    signal_at(monkeypatch, 5, signal.SIGINT)
    run = tmp_path / "run"
    args = ["train", "--data", "fmnist", "--data-dir", str(shared_data), "--dim", "10", "--train-size", "500",
            "--test-size", "200", "--batch-size", "64", "--iterations", "20", "--out", str(run), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130, result.output
    assert "Ctrl-C" in result.output and "iteration 5 of 20" in result.output
    assert "Traceback" not in result.output
    monkeypatch.undo()
    resumed = CliRunner().invoke(main, ["train", "--resume", str(run), "--data-dir", str(shared_data), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.output and "at iteration 5 of 20" in resumed.output
    again = CliRunner().invoke(main, ["train", "--resume", str(run), "--data-dir", str(shared_data), "--quiet"])
    assert again.exit_code == 0 and "already trained all its 20 iterations; nothing to train" in again.output
    assert "test ELBO per image" in again.output  # and its report, from metrics.json


def test_a_kill_during_the_final_evaluation_is_finished_by_resume(shared_data, tmp_path):
    cfg = small_cfg(iterations=20)
    metrics = train(cfg, tmp_path / "run", data_dir=shared_data, progress=False)
    (tmp_path / "run" / "metrics.json").unlink()  # as if killed after the last checkpoint, before the metrics
    again = train(None, tmp_path / "run", data_dir=shared_data, progress=False, resume=True)
    assert again["test_elbo"] == metrics["test_elbo"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_elbo"] == metrics["test_elbo"]
    assert load_checkpoint(tmp_path / "run")["iteration"] == 20


@pytest.mark.parametrize("minutes, expected", [(1.0, [3, 6, 9, 12, 15, 18, 20]), (0.0, [20])])
def test_checkpoints_by_the_clock(shared_data, tmp_path, monkeypatch, minutes, expected):
    """Each step takes 25 s of a fake clock: with one minute between checkpoints every third iteration writes
    one (75 s >= 60 s), on top of the fixed ones (every 1,000 iterations: none here) and the last."""
    clock = {"now": 0.0}
    monkeypatch.setattr(stops_module.time, "monotonic", lambda: clock["now"])
    real_step, saved = train_module.training_step, []

    def step(*args, **kwargs):
        clock["now"] += 25.0
        return real_step(*args, **kwargs)

    real_save = train_module.RunState.save

    def save(self, *args, **kwargs):
        saved.append(self.iteration)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(train_module, "training_step", step)
    monkeypatch.setattr(train_module.RunState, "save", save)
    train(small_cfg(iterations=20, checkpoint_minutes=minutes), tmp_path / "run", data_dir=shared_data,
          progress=False)
    assert saved == expected


def test_a_second_ctrl_c_stops_at_once():
    with Stops(World(), "cpu", 0) as stops:
        signal.raise_signal(signal.SIGINT)
        assert stops.poll() == (signal.SIGINT, False)  # the first: a flag the loop reads after its step
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_the_progress_bar_shows_the_log_rows_elbo(shared_data, tmp_path, monkeypatch):
    shown, current = [], {"it": 0}
    real_bar, real_step = train_module.tqdm, train_module.training_step

    def bar(*args, **kwargs):
        made = real_bar(*args, **{**kwargs, "disable": False})
        post = made.set_postfix

        def set_postfix(*a, **k):
            shown.append((current["it"], k.get("elbo")))
            return post(*a, **k)

        made.set_postfix = set_postfix
        return made

    def step(*args, **kwargs):
        current["it"] = args[7]
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "tqdm", bar)
    monkeypatch.setattr(train_module, "training_step", step)
    train(small_cfg(iterations=30), tmp_path / "run", data_dir=shared_data, progress=True)
    rows = {int(r["iteration"]): float(r["elbo"]) for r in log_rows(tmp_path / "run")}
    early = [e for i, e in shown if i < 10]
    assert early and all(e != "-" for e in early)  # before the first row: the window's mean so far
    at_rows = {i: float(e) for i, e in shown if i in rows}
    assert at_rows.keys() == rows.keys()
    for i, value in rows.items():  # log.csv keeps 6 significant digits, the bar one decimal
        assert abs(at_rows[i] - value) <= 0.05 + 1e-5 * abs(value), (i, at_rows[i], value)
