"""`vsc experiment`: grid points, a tiny real sweep, resume, outputs."""
import csv
import json

import pytest
from click.testing import CliRunner

from vsc_cli.pipelines import experiment as E
from vsc_cli.cli import main
from vsc_cli.common.errors import VscError
from vsc_cli.trainers.recipes import DEFAULT


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_grid_points_and_names():
    points = E.grid_points("dims", "mnist")
    assert len(points) == 24 and points[0].name == "mnist-vae-d8" and points[-1].name == "mnist-vsc-d200-a0.01"
    alpha = E.grid_points("alpha", "fmnist")
    assert [p.alpha for p in alpha] == [0.01, 0.05, 0.1, 0.2, 0.5, 0.8, 1.0] and {p.dim for p in alpha} == {200}
    assert alpha[0].labelled == (100, 1000, 5000)
    assert E.parse_models("vae,vsc:0.01") == ["vae", "vsc:0.01"]
    for bad in ("gan", "vsc:0", "vsc:x", "vsc:1.5"):
        with pytest.raises(VscError):
            E.parse_models(bad)


def test_tiny_sweep_runs_resumes_and_reports(shared_data, tmp_path):
    out = tmp_path / "sweep"
    base = ["experiment", "dims", "--data", "fmnist", "--dims", "4", "--models", "vae,vsc:0.2",
            "--iterations", 30, "--backend", "torch", "--train-size", 1500, "--labelled", 300,
            "--data-dir", shared_data, "--out", out, "--quiet"]
    # a quick sweep: 1,500 images per split, 30 iterations; point 1 alone first (as one job of an array)
    result = run(*base, "--point", 1)
    assert result.exit_code == 0, result.output
    assert "1 of 2 points done" in result.output
    first = (out / "points" / "fmnist-vsc-d4-a0.2" / "result.json").stat().st_mtime_ns
    result = run(*base, "--list")
    assert "fmnist-vsc-d4-a0.2" in result.output and "done" in result.output and "to do" in result.output
    result = run(*base)
    assert result.exit_code == 0 and "2 of 2 points done" in result.output, result.output
    assert (out / "points" / "fmnist-vsc-d4-a0.2" / "result.json").stat().st_mtime_ns == first  # skipped
    with open(out / "results.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 2 and {r["model"] for r in table} == {"vae", "vsc"}
    for r in table:
        # chance is 0.1; even 30 iterations give a code that a linear classifier reads
        assert 0.3 < float(r["accuracy_mean"]) <= 1 and r["labelled"] == "300", r
        assert float(r["test_elbo"]) > 0 and 0 < float(r["sparsity"]) <= 1
    vae = json.loads((out / "points" / "fmnist-vae-d4" / "result.json").read_text())
    assert vae["sparsity"] == 1.0 and vae["iterations"] == 30 and vae["device"] == "cpu"
    # the VAE switches every element on in every image: a dense code, by the specificity numbers too
    assert vae["active_mean"] == 4 and vae["dims_always_on"] == 4 and vae["jaccard_different_class"] == 1.0
    assert 0 <= vae["conditional_retention"] <= 1 and vae["image_classifier_accuracy"] > 0.7
    dims_used = {r["model"]: int(r["dims_used"]) for r in table}
    assert dims_used["vae"] == 4 and 1 <= dims_used["vsc"] <= 4, dims_used
    assert all(0 < float(r["jaccard_same_class"]) <= 1 for r in table)
    assert "Example-specificity" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    assert "| VAE |" in report and "| VSC, alpha 0.2 |" in report
    assert "claims" not in report and "79.7" not in report  # verdicts and published numbers: benchmarks/study
    for png in ("elbo-vs-dims.png", "accuracy-vs-dims.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # the same folder with other settings is refused, naming the setting
    result = run(*[40 if a == 30 else a for a in base])
    assert result.exit_code == 1 and "iterations=30, not 40" in result.output


def test_experiment_bad_inputs(tmp_path):
    result = run("experiment", "dims", "--point", 99, "--out", tmp_path)
    assert result.exit_code == 2 and "points 0..23" in result.output
    result = run("experiment", "alpha", "--alphas", "0.5,2", "--out", tmp_path)
    assert result.exit_code == 2 and "(0, 1]" in result.output
    result = run("experiment", "dims", "--models", "vae,gan", "--out", tmp_path)
    assert result.exit_code == 1 and "gan" in result.output


def test_device_cuda_needs_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run("experiment", "dims", "--device", "cuda", "--out", tmp_path)
    assert result.exit_code == 2 and "--device cuda: no usable CUDA device" in result.output
    assert "Traceback" not in result.output
    result = run("experiment", "dims", "--device", "cuda", "--list", "--out", tmp_path)  # listing needs none
    assert result.exit_code == 0 and "fmnist-vae-d8" in result.output


@pytest.mark.parametrize("made_on, resume_on", [("cpu", "cuda"), ("cuda", "cpu")])
def test_half_trained_point_on_the_other_device_is_refused_before_training(tmp_path, monkeypatch, made_on,
                                                                           resume_on):
    import torch

    from vsc_cli.trainers import checkpoint

    points = E.grid_points("dims", "fmnist", dims=(4,), models=("vae", "vsc:0.2"))
    # point 0 half-trained on `made_on` (its generator state: CUDA's Philox is 16 bytes, the CPU's 5,056);
    # point 1 finished, so not checked
    for p in points:
        (tmp_path / "points" / p.name).mkdir(parents=True)
        (tmp_path / "points" / p.name / checkpoint.CHECKPOINT).write_bytes(b"x")
    (tmp_path / "points" / points[1].name / E.RESULT).write_text(json.dumps({"options": {}}))
    # the sizes the check relies on: the CPU generator's real state (CUDA's Philox state is 16 bytes)
    assert torch.Generator().get_state().numel() == 5056
    noise = torch.zeros(16, dtype=torch.uint8) if made_on == "cuda" else torch.Generator().get_state()
    half = {"rng": {"noise": noise}, "iteration": 500, "config": {"iterations": 1000}}
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda folder: half)
    trained = []
    monkeypatch.setattr(E, "run_point", lambda *a, **k: trained.append(a))
    assert E.started_elsewhere(points, tmp_path, made_on) == []
    assert E.started_elsewhere(points, tmp_path, resume_on) == [points[0].name]
    with pytest.raises(VscError, match=f"started on {'the CPU' if made_on == 'cpu' else 'a GPU'}.*fmnist-vae-d4"):
        E.run_grid(points, tmp_path, device=resume_on, progress=False)
    assert trained == []  # refused before any point trained
    E.run_grid(points, tmp_path, device=made_on, progress=False)
    assert [a[0].name for a in trained] == [points[0].name]
    # fully trained, its result not yet written: only evaluation is left, which runs anywhere
    half["iteration"] = 1000
    assert E.started_elsewhere(points, tmp_path, resume_on) == []


_BARRIER = None


def _init_worker(counter, gpus, barrier):
    global _BARRIER
    E._take_gpu(counter, gpus)
    _BARRIER = barrier


def _visible_gpu(_):
    import os

    _BARRIER.wait(timeout=120)  # each of the three tasks holds its worker until all three workers have one
    return os.environ["CUDA_VISIBLE_DEVICES"]


def test_spawned_workers_each_see_their_gpu():
    """The pool run_grid starts with --device cuda: spawned workers, each initialised with the next GPU."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=ctx, initializer=_init_worker,
                             initargs=(ctx.Value("i", 0), ["4", "7"], ctx.Barrier(3))) as pool:
        seen = sorted(pool.map(_visible_gpu, range(3)))
    assert seen == ["4", "4", "7"]  # three workers over two GPUs, in turn


def test_jobs_take_the_gpus_in_turn(monkeypatch):
    import multiprocessing
    import os

    counter = multiprocessing.get_context("spawn").Value("i", 0)
    seen = []
    for _ in range(5):
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        E._take_gpu(counter, ["0", "2", "3"])
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["0", "2", "3", "0", "2"]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a real GPU")
def test_tiny_sweep_on_the_gpu(shared_data, tmp_path):
    import torch

    out = tmp_path / "sweep"
    result = run("experiment", "dims", "--data", "fmnist", "--dims", "4,8", "--models", "vae,vsc:0.2",
                 "--iterations", 30, "--train-size", 1500, "--labelled", 300, "--data-dir", shared_data,
                 "--out", out, "--quiet", "--device", "cuda", "--jobs", 3)
    assert result.exit_code == 0 and "4 of 4 points done" in result.output, result.output
    for r in E.collect(E.grid_points("dims", "fmnist", dims=(4, 8), models=("vae", "vsc:0.2")), out):
        assert r["device"] == torch.cuda.get_device_name(0) and r["backend"] in ("cuda", "torch"), r


def test_results_of_an_older_default_are_not_taken_for_todays(tmp_path, monkeypatch):
    """A folder made with `--recipe default` before default-2 existed holds default-1's points (their options
    say "default"): `--recipe default` now refuses the folder, `--recipe default-1` finds its results."""
    points = E.grid_points("alpha", "fmnist", alphas=(0.01,))
    folder = tmp_path / "points" / points[0].name
    folder.mkdir(parents=True)
    (folder / E.RESULT).write_text(json.dumps({"options": {"iterations": 20000, "recipe": "default"}}))
    trained = []
    monkeypatch.setattr(E, "run_point", lambda *a, **k: trained.append(a))
    args = ["experiment", "alpha", "--data", "fmnist", "--alphas", "0.01", "--out", tmp_path, "--quiet"]
    result = run(*args, "--recipe", "default")
    assert result.exit_code == 1 and f"recipe=default-1, not {DEFAULT} (--recipe default-1 finds it)" in result.output
    assert "Traceback" not in result.output
    result = run(*args, "--recipe", "default-1", "--list")
    assert result.exit_code == 0 and "done" in result.output, result.output
    import dataclasses

    E.run_grid([dataclasses.replace(p, options={"iterations": 20000, "recipe": "default-1"}) for p in points],
               tmp_path, progress=False)
    assert trained == []  # found, not retrained
    # a sweep run today records the recipe's number, which a later default will not take for its own
    result = run(*args[:-3], "--out", tmp_path / "new", "--quiet", "--recipe", "default")
    assert result.exit_code == 0, result.output
    assert trained[0][0].options["recipe"] == DEFAULT and E.point_config(trained[0][0]).rate_weight == 3.0


def test_a_sweep_with_the_conv_network(shared_data, tmp_path):
    out = tmp_path / "conv"
    result = run("experiment", "dims", "--data", "fmnist", "--dims", "4", "--models", "vsc:0.2", "--iterations", 5,
                 "--train-size", 300, "--labelled", 100, "--set", "network=conv", "--set", "channels=4,8",
                 "--data-dir", shared_data, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    point = json.loads((out / "points" / "fmnist-vsc-d4-a0.2" / "result.json").read_text())
    assert point["options"]["network"] == "conv" and point["options"]["channels"] == [4, 8]
    assert point["accuracy"][0]["labelled"] == 100 and 0 < point["accuracy"][0]["accuracy_mean"] <= 1
