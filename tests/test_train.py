"""Short real training runs: the loss falls, checkpoints resume exactly."""
import csv
import json

import pytest
import torch

from vsc_cli.common.config import TrainConfig
from vsc_cli.common.registry import FAMILIES
from vsc_cli.data.datasets import load_split
from vsc_cli.models.vae import VAE
from vsc_cli.trainers.checkpoint import build_model, load_checkpoint
from vsc_cli.trainers.train import evaluate, train


def small_cfg(**kw):
    base = dict(data="fmnist", dim=20, train_size=3000, test_size=500, batch_size=64, log_every=50,
                checkpoint_every=100, iterations=300)
    base.update(kw)
    return TrainConfig(**base)


# nats per test image by which a short run beats its initial weights (measured: 60 iterations gain ~1,800
# with the Gaussian decoder, ~160 with the Bernoulli one; a run whose updates do nothing gains 0)
MARGIN = {"gaussian": 500.0, "bernoulli": 50.0}


def log_rows(run):
    with open(run / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_short_run_lowers_negative_elbo(shared_data, tmp_path):
    metrics = train(small_cfg(), tmp_path / "run", data_dir=shared_data, progress=False)
    rows = log_rows(tmp_path / "run")
    assert [int(r["iteration"]) for r in rows] == [50, 100, 150, 200, 250, 300]
    first, last = float(rows[0]["elbo"]), float(rows[-1]["elbo"])
    assert last > first + 200, (first, last)  # per-image ELBO rises by hundreds of nats
    assert float(rows[-1]["c"]) == 200.0 and float(rows[0]["c"]) < 80
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test_elbo"] == metrics["test_elbo"]
    assert 0 < metrics["test_sparsity"] < 1
    state = load_checkpoint(tmp_path / "run")
    assert state["iteration"] == 300
    model = build_model(state)
    assert model.cfg.dim == 20 and model.family is FAMILIES["vsc"]  # the spike-and-slab family
    # the trained model beats its own initialisation (the same seed's weights) on the test split
    x_test = torch.from_numpy(load_split("fmnist", "test", shared_data, limit=500)[0])
    torch.manual_seed(model.cfg.seed)
    initial = evaluate(VAE(model.cfg, 784), x_test, model.cfg.seed)
    assert abs(evaluate(model, x_test, model.cfg.seed)["elbo"] - metrics["test_elbo"]) < 1e-3
    assert metrics["test_elbo"] > initial["elbo"] + 500, (initial["elbo"], metrics["test_elbo"])


def test_c_schedule_reaches_training(shared_data, tmp_path, monkeypatch):
    """C.2: c rises linearly from --c-start at the first iteration to --c-end at the last, one step per
    iteration; every training sample (eq. 24) uses that iteration's c, and log.csv records it."""
    import vsc_cli.models.spike_slab as model_module  # the paper pair calls the fused op there
    from click.testing import CliRunner

    from vsc_cli.cli import main

    used = []
    real = model_module.spike_slab

    def spy(mu, logvar, v, eps, eta, c, alpha, backend="auto"):
        used.append(c)
        return real(mu, logvar, v, eps, eta, c, alpha, backend=backend)

    monkeypatch.setattr(model_module, "spike_slab", spy)
    result = CliRunner().invoke(main, [
        "train", "--data", "fmnist", "--paper", "--dim", "4", "--hidden", "16", "--iterations", "101",
        "--c-start", "10", "--c-end", "110", "--batch-size", "32", "--train-size", "256", "--test-size", "64",
        "--log-every", "20", "--data-dir", str(shared_data), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    want = [10.0 + it for it in range(101)]  # (110 - 10) / (101 - 1) = 1 per iteration
    assert used[:101] == want and all(c == float("inf") for c in used[101:])  # then evaluation: exact draws
    rows = log_rows(tmp_path / "run")
    assert [float(r["c"]) for r in rows] == [want[int(r["iteration"]) - 1] for r in rows] == [29, 49, 69, 89, 109, 110]
    cfg = load_checkpoint(tmp_path / "run")["config"]
    assert (cfg["c_start"], cfg["c_end"]) == (10.0, 110.0)
    bad = CliRunner().invoke(main, ["train", "--c-start", "0", "--data-dir", str(shared_data)])
    assert bad.exit_code == 2 and "--c-start" in bad.output


@pytest.mark.parametrize("recipe", [{}, {"spike": "sigmoid", "pretrain": 50, "pretrain_ramp": 30,
                                     "prior": "pseudo-inputs", "pseudo_inputs": 4},
                                    {"spike": "sigmoid", "rate_weight": 2.0, "centre": True}])
def test_resume_is_bit_identical_to_uninterrupted(shared_data, tmp_path, recipe):
    # the paper's recipe, and every option beyond it at once (the stop falls inside the lambda ramp)
    cfg = small_cfg(iterations=120, checkpoint_every=40, log_every=20, train_size=500, batch_size=128, **recipe)
    train(cfg, tmp_path / "full", data_dir=shared_data, progress=False)
    # "killed" after iteration 70 (checkpoint there), resumed: the epoch boundary at 3 batches is crossed too
    assert train(cfg, tmp_path / "cut", data_dir=shared_data, progress=False, stop_at=70) is None
    assert load_checkpoint(tmp_path / "cut")["iteration"] == 70
    assert [int(r["iteration"]) for r in log_rows(tmp_path / "cut")] == [20, 40, 60]
    train(None, tmp_path / "cut", data_dir=shared_data, progress=False, resume=True)
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "cut")
    assert b["iteration"] == 120
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["elbo"] for r in log_rows(tmp_path / "full")] == [r["elbo"] for r in log_rows(tmp_path / "cut")]


@pytest.mark.parametrize("kw", [dict(model="vae", dim=8),
                                dict(likelihood="bernoulli", normalisation="01", hidden=(64, 32))])
def test_vae_and_bernoulli_runs_learn(shared_data, tmp_path, kw):
    """The VAE baseline and the Bernoulli decoder train: 60 iterations beat the same seed's initial weights."""
    cfg = small_cfg(iterations=60, **kw)
    m = train(cfg, tmp_path / "run", data_dir=shared_data, progress=False)
    x_test = torch.from_numpy(load_split("fmnist", "test", shared_data, cfg.normalisation, limit=500)[0])
    torch.manual_seed(cfg.seed)
    initial = evaluate(VAE(cfg, 784), x_test, cfg.seed)
    assert m["test_elbo"] > initial["elbo"] + MARGIN[cfg.likelihood], (initial["elbo"], m["test_elbo"])


def test_numba_backend_gives_the_torch_loss_curve(shared_data, tmp_path):
    """Same noise, same batches: the curves differ only by rounding inside the fused kernels.

    Training with a learned-variance Gaussian likelihood amplifies a rounding difference by about
    10x every 20 iterations, so float32 curves agree closely only for the first ~60 iterations;
    in float64 the whole 300-iteration curve agrees to 1e-3 (the first rows to all 6 logged digits). The
    amplified difference depends on the thread count and the instruction set: at one thread on torch's portable
    path the last row was 1.5e-4 apart, at two 1e-4.
    """
    curves = {}
    for backend in ("torch", "numba"):
        for dtype in ("float32", "float64"):
            cfg = small_cfg(iterations=300, log_every=20, backend=backend, dim=50, dtype=dtype)
            train(cfg, tmp_path / f"{backend}-{dtype}", data_dir=shared_data, progress=False)
            curves[backend, dtype] = torch.tensor([float(r["elbo"]) for r in log_rows(tmp_path / f"{backend}-{dtype}")],
                                                  dtype=torch.float64)
    torch.testing.assert_close(curves["numba", "float64"], curves["torch", "float64"], rtol=1e-3, atol=1e-3)
    # the first rows agree to the logged digits; summation order may differ with thread counts, so not bit-equal
    torch.testing.assert_close(curves["numba", "float64"][:6], curves["torch", "float64"][:6], rtol=1e-6, atol=1e-6)
    # float32: the first 40 iterations (at iteration 60, on torch's portable non-AVX path, the two curves were
    # 3.06 nats apart, rel. 3.3e-3: the amplified rounding difference depends on the CPU's instruction set)
    torch.testing.assert_close(curves["numba", "float32"][:2], curves["torch", "float32"][:2], rtol=1e-3, atol=0.5)
    assert curves["numba", "float32"][-1] > curves["numba", "float32"][0] + 1000  # and it trains


def test_logvar_init_sets_the_decoders_starting_variance():
    from vsc_cli.models.vae import VAE

    z = torch.randn(64, 8)
    for init, expect in ((-8.0, -8.0), (None, 0.0)):
        torch.manual_seed(0)
        model = VAE(TrainConfig(dim=8, hidden=(16,), logvar_init=init, backend="torch"), 30)
        with torch.no_grad():
            _, logvar = model.decoder(z)
        assert abs(float(logvar.mean()) - expect) < 0.5, (init, float(logvar.mean()))
    assert TrainConfig.from_dict(TrainConfig(logvar_init="data").to_dict()).logvar_init == "data"


def test_logvar_init_data_is_resolved_and_stored(shared_data, tmp_path):
    train(small_cfg(iterations=5, logvar_init="data", train_size=500), tmp_path / "run", data_dir=shared_data,
          progress=False)
    stored = load_checkpoint(tmp_path / "run")["config"]["logvar_init"]
    x = torch.from_numpy(__import__("vsc_cli.data.datasets", fromlist=["load_split"]).load_split(
        "fmnist", "train", shared_data, limit=500)[0]).double()
    assert abs(stored - float(torch.log(x.var(0, unbiased=False).mean()))) < 1e-6


def test_gamma_init_keeps_every_spike_probability_learnable():
    """Under PyTorch's default init about half the v outputs are > 0, where log gamma = min(v, 0) is flat:
    those elements sit at gamma = 1 with zero gradient. --gamma-init puts all of them below 0."""
    from vsc_cli.models.vae import VAE

    x = torch.rand(256, 784)
    x = x / x.norm(dim=1, keepdim=True)
    fractions = {}
    for init in (None, 0.5):
        torch.manual_seed(0)
        model = VAE(TrainConfig(dim=200, gamma_init=init, backend="torch"), 784)
        _, _, v = model.encode(x)
        fractions[init] = float((v > 0).float().mean())
        if init is not None:
            torch.testing.assert_close(model.posterior(x).gamma, torch.full_like(v, 0.5), atol=0.01, rtol=0)
    assert 0.3 < fractions[None] < 0.7 and fractions[0.5] == 0.0


def test_training_flushes_subnormals_and_restores_the_default():
    """flush_denormals: inside, arithmetic on a subnormal float gives 0 (x86's FTZ/DAZ, which keeps a run with
    switched-off elements at full speed); after it, the process's default (subnormals kept) is back."""
    from vsc_cli.trainers.train import flush_denormals

    tiny = torch.tensor([1e-39], dtype=torch.float32)  # below float32's smallest normal, 1.18e-38
    assert float(tiny * 1.0) != 0.0
    with flush_denormals() as _:
        flushed = float(tiny * 1.0)
    if torch.set_flush_denormal(False):  # a CPU with the flags (every x86-64 with SSE3)
        assert flushed == 0.0
    assert float(tiny * 1.0) != 0.0
