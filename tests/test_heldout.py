"""The validation split carved from training, the best checkpoint it picks, early stopping, augmentation (each
against a plain loop), aspect-keeping resizing, the time estimate's line and the memorisation warning."""
import csv
import json
import signal

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.data import sources
from vsc_cli.trainers.report import memorisation
from vsc_cli.trainers import train as train_module
from vsc_cli.trainers.augment import augment
from vsc_cli.trainers.checkpoint import load_checkpoint
from vsc_cli.trainers.recipes import resolve
from vsc_cli.trainers.run import Run
from vsc_cli.trainers.stops import TrainingInterrupted
from vsc_cli.trainers.train import estimate_line, train

from test_stops import signal_at
from test_train import log_rows


def photos(tmp_path, n=200, side=8, seed=0):
    """n small RGB images whose rows differ (a pattern per image), as an .npy file."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    path = tmp_path / "x.npy"
    np.save(path, x)
    return path


# ------------------------------------------------------------------------------------------ the split
@pytest.mark.parametrize("n,fraction", [(270, 0.1), (9, 0.1), (1000, 0.25), (5, 0.5), (2, 0.1), (100, 0.0)])
def test_carve_spreads_the_validation_split_evenly_and_disjointly(n, fraction):
    train_idx, held = sources.carve(n, fraction)
    assert sorted([*train_idx, *held]) == list(range(n))  # a partition of the training split
    expected = 0 if fraction == 0 else max(1, round(fraction * n)) if n > 1 else 0
    assert len(held) == min(expected, n - 1)
    if len(held) > 1:  # evenly spread: gaps differ by at most one image
        gaps = np.diff(held)
        assert gaps.max() - gaps.min() <= 1


def test_own_data_have_three_disjoint_splits_and_the_test_split_is_unchanged(tmp_path):
    path = photos(tmp_path, n=200)
    every = sources.open_own(path, None, "unit")
    rows = {s: every[np.arange(len(every))] for s in ["all"]}["all"]

    def ids(split, **kw):
        x = sources.open_images(str(path), split, **kw)
        return {int(np.flatnonzero((rows == r).all(1))[0]) for r in x[np.arange(len(x))]}

    test_before = ids("test")
    train, val, test = (ids(s, validation=0.1) for s in ("train", "validation", "test"))
    assert test == test_before == {i for i in range(200) if i % 10 == 9}
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(val) == 18 and len(train) + len(val) == 180
    with pytest.raises(Exception, match="no validation split"):
        sources.open_images(str(path), "validation")


def test_builtin_sets_keep_the_papers_protocol_and_small_sets_hold_out():
    assert not resolve(data="fmnist").validation and not resolve(data="fmnist").patience
    assert resolve(data="fmnist") == resolve(data="fmnist", validation=None, patience=None)
    assert resolve(data="celeba").validation == 0.1 and resolve(data="celeba").patience == 5
    assert not resolve("paper", data="celeba").validation
    assert resolve(data="celeba", validation=0.2, patience=0).patience == 0
    assert TrainConfig().validation is None  # a checkpoint of vsc before the split: none


# ------------------------------------------------------------------------------------------ the loop
def small(path, **kw):
    base = dict(data=str(path), dim=6, network="mlp", hidden=(16,), iterations=60, batch_size=32, log_every=10,
                validate_every=10, validation=0.1, patience=0, alpha=0.2)
    base.update(kw)
    return resolve(**base)


def test_validation_rows_the_best_checkpoint_and_what_commands_open(tmp_path):
    path = photos(tmp_path)
    cfg = small(path)
    assert (cfg.pretrain, cfg.pretrain_ramp) == (24, 12)  # the default recipe: the objective settles at 36
    metrics = train(cfg, tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "validation.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["iteration"]) for r in rows] == [10, 20, 30, 40, 50, 60]
    # evaluations during spike pre-training and its ramp are written, not compared
    assert [r["best_iteration"] for r in rows[:3]] == ["", "", ""]
    elbos = [float(r["elbo"]) for r in rows]
    best = 3 + int(np.argmax(elbos[3:]))
    assert metrics["best_iteration"] == int(rows[best]["iteration"])
    assert load_checkpoint(tmp_path / "run" / "best.safetensors")["iteration"] == metrics["best_iteration"]
    assert load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")["iteration"] == 60
    # the best checkpoint's validation ELBO is the row's (the same evaluation: same model, same draws)
    assert metrics["validation_elbo"] == pytest.approx(elbos[best], rel=1e-9)
    # commands open a run at its best checkpoint; its checkpoint file names the last
    assert Run.open(tmp_path / "run").iteration == metrics["best_iteration"]
    assert Run.open(tmp_path / "run" / "checkpoint.safetensors").iteration == 60
    # the run's splits reopen as trained: the validation split's size, disjoint from training
    run = Run.open(tmp_path / "run")
    assert len(run.images("validation")) == 18 and len(run.images("train")) == 162
    assert (tmp_path / "run" / "reconstructions.png").is_file()
    for key in ("train_elbo", "train_reconstruction_error", "validation_reconstruction_error",
                "test_reconstruction_error", "elbo_gap"):
        assert metrics[key] is not None, key
    assert metrics["elbo_gap"] == pytest.approx(metrics["train_elbo"] - metrics["test_elbo"])


def test_reconstruction_error_in_metrics_is_the_reference_on_the_test_split(tmp_path):
    """metrics.json's test_reconstruction_error against a plain computation: decode E[z] = gamma mu of every test
    image, squared error over that of the training images' mean image."""
    path = photos(tmp_path)
    metrics = train(small(path, validation=0.0, patience=0), tmp_path / "run", progress=False)
    run = Run.open(tmp_path / "run")
    model = run.model.double()
    x_train = run.images("train")
    x_test = run.images("test")
    train_rows = np.stack([x_train[[i]][0] for i in range(len(x_train))]).astype(np.float64)
    mean = train_rows.mean(0)
    err = base = 0.0
    with torch.no_grad():
        for i in range(len(x_test)):
            x = torch.from_numpy(x_test[[i]].astype(np.float64))
            q = model.posterior(x)
            recon = model.decoder.mean(q.gamma * q.mu).numpy()
            err += float(((x.numpy() - recon) ** 2).sum())
            base += float(((x.numpy() - mean) ** 2).sum())
    assert metrics["test_reconstruction_error"] == pytest.approx(err / base, rel=1e-4)


def test_patience_stops_early_and_resume_has_nothing_to_do(tmp_path, monkeypatch):
    path = photos(tmp_path)
    cfg = small(path, iterations=400, patience=2, lr=0.05, pretrain=0, pretrain_ramp=0)  # settled from the start
    # the validation ELBO a run sees: better twice, then never again
    values = iter([1.0, 2.0, 1.5, 1.4, 1.3, 1.2])
    real = train_module.evaluate

    def fake(model, x, seed=0, c=float("inf"), progress=False, mean_image=None):
        out = real(model, x, seed, c, progress, mean_image)
        if len(x) == 18 and not progress and mean_image is not None and fake.during:
            out["elbo"] = next(values)
        return out

    fake.during = True
    monkeypatch.setattr(train_module, "evaluate", fake)
    real_final = train_module._final_metrics

    def final(*a, **k):
        fake.during = False
        return real_final(*a, **k)

    monkeypatch.setattr(train_module, "_final_metrics", final)
    metrics = train(cfg, tmp_path / "run", progress=False)
    assert metrics["stopped_early_at"] == 40 and metrics["best_iteration"] == 20 and metrics["iterations"] == 40
    assert load_checkpoint(tmp_path / "run")["iteration"] == 40
    monkeypatch.undo()
    r = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 0 and "stopped early at iteration 40" in r.output and "nothing to train" in r.output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_then_resume_is_bit_identical_with_validation_and_augmentation(tmp_path, monkeypatch, signum):
    path = photos(tmp_path)
    cfg = small(path, iterations=60, flip=True, crop=1, weight_decay=1e-3, patience=3)
    train(cfg, tmp_path / "full", progress=False)
    signal_at(monkeypatch, 27, signum)
    with pytest.raises(TrainingInterrupted):
        train(cfg, tmp_path / "cut", progress=False)
    monkeypatch.undo()
    train(None, tmp_path / "cut", progress=False, resume=True)
    for name in ("checkpoint.safetensors", "best.safetensors"):
        a, b = load_checkpoint(tmp_path / "full" / name), load_checkpoint(tmp_path / "cut" / name)
        assert a["iteration"] == b["iteration"]
        for k in a["model"]:
            assert torch.equal(a["model"][k], b["model"][k]), (name, k)
    assert [r["elbo"] for r in log_rows(tmp_path / "full")] == [r["elbo"] for r in log_rows(tmp_path / "cut")]
    assert (tmp_path / "full" / "validation.csv").read_text().splitlines()[0] == \
        (tmp_path / "cut" / "validation.csv").read_text().splitlines()[0]
    full = [r.split(",")[:6] for r in (tmp_path / "full" / "validation.csv").read_text().splitlines()]
    cut = [r.split(",")[:6] for r in (tmp_path / "cut" / "validation.csv").read_text().splitlines()]
    assert full == cut  # every column but the wall time
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    for key in ("test_elbo", "validation_elbo", "train_elbo", "best_iteration", "test_reconstruction_error"):
        assert a[key] == b[key], key


def test_weight_decay_uses_adamw_and_zero_keeps_adam(tmp_path):
    from vsc_cli.trainers.state import make_optimizer

    net = torch.nn.Linear(3, 2)
    assert type(make_optimizer(net, 1e-3)) is torch.optim.Adam
    opt = make_optimizer(net, 1e-3, 0.01)
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["weight_decay"] == 0.01


# ------------------------------------------------------------------------------------------ augmentation
def naive_augment(x, shape, flips, shifts, p, unit):
    """One image at a time, pixel by pixel: mirror, then read each pixel from the edge-clamped shifted position."""
    c, h, w = shape
    out = np.empty_like(x)
    for n in range(len(x)):
        img = x[n].reshape(c, h, w)
        if flips is not None and flips[n]:
            img = img[:, :, ::-1]
        new = np.empty_like(img)
        dy, dx = (shifts[n] if shifts is not None else (0, 0))
        for i in range(h):
            for j in range(w):
                new[:, i, j] = img[:, min(max(i + dy, 0), h - 1), min(max(j + dx, 0), w - 1)]
        row = new.reshape(-1)
        if unit and p:
            norm = np.sqrt((row.astype(np.float64) ** 2).sum())
            row = row / norm if norm > 0 else row
        out[n] = row
    return out


@pytest.mark.parametrize("flip,crop", [(True, 0), (False, 2), (True, 1)])
def test_augmentation_matches_a_plain_loop(flip, crop):
    shape = (3, 5, 7)
    rng = np.random.default_rng(1)
    x = rng.random((6, 105))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cfg = TrainConfig(flip=flip, crop=crop, normalisation="unit")
    gen = torch.Generator().manual_seed(5)
    got = augment(torch.from_numpy(x), shape, cfg, gen).numpy()
    gen = torch.Generator().manual_seed(5)  # the same draws, in the same order
    flips = (torch.rand(6, generator=gen) < 0.5).numpy() if flip else None
    shifts = torch.randint(-crop, crop + 1, (6, 2), generator=gen).numpy() if crop else None
    np.testing.assert_allclose(got, naive_augment(x, shape, flips, shifts, crop, True), rtol=1e-12, atol=1e-15)
    if crop:
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-12)


def test_no_augmentation_leaves_the_batch_alone():
    x = torch.rand(4, 12)
    assert augment(x, (1, 3, 4), TrainConfig(), torch.Generator()) is x


# ------------------------------------------------------------------------------------------ aspect
def test_image_size_crops_the_centred_square_or_stretches(tmp_path):
    from PIL import Image

    folder = tmp_path / "wide"
    folder.mkdir()
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, 10:30] = 200  # a bright centred square 20 x 20 in a 20 x 40 image, dark sides
    Image.fromarray(a).save(folder / "a.png")
    crop = sources.Folder(folder, 10, "none", aspect="crop")[[0]].reshape(3, 10, 10)
    stretch = sources.Folder(folder, 10, "none", aspect="stretch")[[0]].reshape(3, 10, 10)
    np.testing.assert_allclose(crop, 200.0)  # only the centred square, all bright
    assert stretch[:, :, 0].max() < 100 and stretch[:, :, 5].min() == pytest.approx(200.0)  # squashed sides
    arr = sources.resize(np.transpose(a[None].astype(np.float32), (0, 3, 1, 2)), 10, "crop")
    np.testing.assert_allclose(arr, 200.0)
    assert resolve(data=str(folder), image_size=10).aspect == "crop"


# ------------------------------------------------------------------------------------------ the start
def test_the_estimate_line_names_the_time_and_what_fits():
    line = estimate_line(0.5, 20_000, "cpu", cuda_available=False)
    assert "about 2 h 46 min for the 20,000 iterations left on cpu" in line and "fewer --iterations" in line
    assert "--device cuda" in estimate_line(0.5, 20_000, "cpu", cuda_available=True)
    assert ";" not in estimate_line(0.01, 20_000, "cuda", cuda_available=True)  # short on a GPU: no advice
    # the advice fits the run: its own network's half width, never a setting it already has
    conv = resolve(data="celeba", network="conv")
    line = estimate_line(0.5, 20_000, "cpu", False, conv)
    assert "--channels 16,32,64,128" in line and "--hidden" not in line
    mlp = resolve(data="celeba", network="mlp")
    line = estimate_line(0.5, 20_000, "cpu", False, mlp)
    assert "--hidden 1000,1000" in line and "--channels" not in line
    assert mlp.validation and mlp.patience and "--patience 5" not in line and f"in {mlp.patience} evaluations" in line
    nostop = resolve(data="celeba", network="mlp", patience=0)
    assert "--patience 5" in estimate_line(0.5, 20_000, "cpu", False, nostop)
    assert "--patience" not in estimate_line(0.5, 20_000, "cpu", False, resolve(data="fmnist"))  # no validation split


def test_a_long_run_prints_its_estimate_once(tmp_path, capsys):
    path = photos(tmp_path)
    cfg = small(path, iterations=200_000, validation=0.0, patience=0)
    train(cfg, tmp_path / "run", progress=True, stop_at=20)
    err = capsys.readouterr().err
    assert err.count("estimated time: about") == 1 and "200,000" not in err.split("estimated")[0]


# ------------------------------------------------------------------------------------------ memorisation
def test_memorisation_warning_and_its_advice():
    cfg = resolve(data="celeba", flip=True, crop=0)
    m = {"train_reconstruction_error": 0.177, "test_reconstruction_error": 0.404}
    w = memorisation(m, cfg)
    assert "2.3x" in w and "--flip" not in w and "--crop 2" in w and "--validation" not in w
    assert "--flip" not in memorisation(m, resolve(data="celeba")) and "--crop" not in memorisation(m, resolve(data="celeba"))
    assert memorisation({"train_reconstruction_error": 0.30, "test_reconstruction_error": 0.31}, cfg) is None
    assert memorisation({}, cfg) is None
    assert "--validation 0.1" in memorisation(m, resolve(data="fmnist"))


# ------------------------------------------------------------------------------------------ the API
def test_the_api_reopens_a_photo_runs_data_at_its_size_and_gives_pixels(tmp_path):
    import vsc_cli as vsc
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):  # 12 x 16 colour photos, resized to 8 x 8 by the run
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    cfg = vsc.train_config(data=str(folder), image_size=8, dim=4, network="mlp", hidden=(8,), iterations=5,
                           batch_size=8)
    vsc.fit(cfg, tmp_path / "run", progress=False)
    run = vsc.load(tmp_path / "run")
    x, labels = run.dataset("test")
    assert x.shape == (4, 3, 8, 8) and run.encode(x).code.shape == (4, 4)
    xv, _ = vsc.dataset(run, "validation")
    assert xv.shape == (4, 3, 8, 8)  # a tenth of the 36 training images
    px = run.to_pixels(run.reconstruct(x))
    assert px.shape == (4, 8, 8, 3) and px.dtype == np.uint8
    # the plain definition: clip at 0, each image over its own maximum, times 255, rounded
    rec = np.clip(run.reconstruct(x).numpy().astype(np.float64), 0, None)
    expect = np.rint(rec / rec.reshape(4, -1).max(1)[:, None, None, None] * 255).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(px, expect.astype(np.uint8))
    raw = vsc.dataset(str(folder), "test", normalisation="01", image_size=8)[0]
    assert np.abs(vsc.to_pixels(raw, "01").astype(int) - np.rint(raw * 255).transpose(0, 2, 3, 1)).max() == 0


def test_device_auto_is_cuda_only_where_torch_sees_a_gpu(monkeypatch, tmp_path):
    from vsc_cli.trainers.dist import auto_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto_device("auto", "auto", None) == "cpu" and auto_device("cuda", "auto", None) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto_device("auto", "auto", None) == "cuda" and auto_device("auto", "numba", None) == "cpu"
    path = photos(tmp_path)
    train(small(path, iterations=2, backend="numba"), tmp_path / "run", progress=False)
    assert auto_device("auto", "auto", tmp_path / "run") == "cpu"  # a numba run resumes on the CPU


def test_the_schedule_settles_after_pretraining_annealing_and_warmup():
    from vsc_cli.models.schedule import Schedule

    # default-3 at alpha 0.01: pre-training 8,000 + ramp 4,000; alpha held 8,000 then annealed over 6,000
    assert Schedule(resolve("default-3", alpha=0.01, iterations=20_000)).settled == 14_000
    assert Schedule(resolve("default-3", alpha=0.2, iterations=20_000)).settled == 12_000  # nothing to anneal
    # default-4 (the default): the same phases at any length from 5,000: 2,000 + 1,000; 2,000 + 1,500
    assert Schedule(resolve("default-4", alpha=0.01, iterations=20_000)).settled == 3_500
    assert Schedule(resolve("default-4", alpha=0.2, iterations=20_000)).settled == 3_000
    assert Schedule(resolve("paper", iterations=20_000)).settled == 0
    assert Schedule(resolve("paper", iterations=20_000, kl_warmup=500)).settled == 500
    schedule = Schedule(resolve(alpha=0.01, iterations=20_000))
    settled = schedule.settled
    for it in (settled, settled + 1000):  # the steps from there on (0-based) differ only in c
        step = schedule(it)
        assert (step.slab_scale, step.alpha, step.kl_weight) == (1.0, 0.01, 1.0)


def test_a_fresh_run_in_the_folder_leaves_no_stale_best_checkpoint(tmp_path):
    path = photos(tmp_path)
    train(small(path), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "best.safetensors").is_file()
    train(small(path, validation=0.0, patience=0, iterations=20), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "best.safetensors").exists() and not (tmp_path / "run" / "validation.csv").exists()
    assert Run.open(tmp_path / "run").iteration == 20  # the new run's, not the old best


def test_sparsity_shows_the_splits_and_warns_of_memorisation(tmp_path):
    path = photos(tmp_path)
    train(small(path), tmp_path / "run", progress=False)
    metrics_file = tmp_path / "run" / "metrics.json"
    m = json.loads(metrics_file.read_text())
    r = CliRunner().invoke(main, ["sparsity", str(tmp_path / "run"), "--json", "--quiet"])
    out = json.loads(r.stdout)
    assert out["splits"] == {s: m[f"{s}_reconstruction_error"] for s in ("train", "validation", "test")}
    m.update(train_reconstruction_error=0.1, test_reconstruction_error=0.4)  # as a memorising run's
    metrics_file.write_text(json.dumps(m))
    r = CliRunner().invoke(main, ["sparsity", str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 0 and "training / validation / test (metrics.json)" in r.stdout
    assert "this run memorises its training images" in r.stderr and "4.0x" in r.stderr


def test_photographs_are_flipped_and_shifted_by_default_and_nothing_else_is(tmp_path):
    rgb = photos(tmp_path)
    grey = tmp_path / "grey.npy"
    np.save(grey, np.zeros((20, 8, 8), np.uint8))
    assert (resolve(data=str(rgb)).flip, resolve(data=str(rgb)).crop) == (True, 2)
    assert (resolve(data="celeba").flip, resolve(data="celeba").crop) == (True, 2)
    for cfg in (resolve(data=str(grey)), resolve(data="fmnist"), resolve(data="mnist"), resolve("paper", data="celeba"),
                resolve(data=str(rgb), flip=False, crop=0)):
        assert (cfg.flip, cfg.crop) == (False, 0)
