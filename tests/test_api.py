"""The Python API (vsc_cli.pipelines.api) and its guide, docs/api.md, whose example runs here."""
import re

import numpy as np
import pytest
import torch

import vsc_cli as vsc
from vsc_cli.common.config import TrainConfig
from vsc_cli.common.errors import VscError
from vsc_cli.trainers.train import train

from conftest import ROOT


@pytest.fixture(scope="module")
def run_dir(shared_data, tmp_path_factory):
    """A small run where the guide expects `vsc train --data fmnist --dim 200 --alpha 0.01` to leave one."""
    root = tmp_path_factory.mktemp("guide")
    out = root / "runs" / "fmnist-vsc-d200-a0.01-s0"
    cfg = TrainConfig(data="fmnist", dim=200, alpha=0.01, hidden=(64,), iterations=60, train_size=1000,
                      test_size=200, batch_size=100, checkpoint_every=60, log_every=20)
    train(cfg, out, data_dir=shared_data, progress=False)
    return out


def test_the_guides_example_runs(run_dir, shared_data, monkeypatch):
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(run_dir.parents[1])  # the example's paths are relative to where `vsc train` ran
    monkeypatch.setenv("VSC_DATA_DIR", str(shared_data))
    exec(compile(blocks[0], "docs/api.md", "exec"), {})


def test_encode_matches_the_model_and_the_cli_codes(run_dir, shared_data):
    from vsc_cli.evaluation.codes import encode as encode_h5
    import h5py

    run = vsc.load(run_dir)
    x, labels = vsc.dataset("fmnist", "test", data_dir=shared_data, limit=50)
    assert x.shape == (50, 1, 28, 28) and labels.shape == (50,) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x.reshape(50, -1), axis=1), 1.0, rtol=1e-5)
    codes = run.encode(x)
    mu, logvar, v = run.model.encode(torch.from_numpy(x.reshape(50, -1)))
    torch.testing.assert_close(codes.mu, mu.detach())
    torch.testing.assert_close(codes.gamma, torch.exp(torch.clamp(v.detach(), max=0)))  # eq. 12 (paper recipe)
    torch.testing.assert_close(codes.code, codes.gamma * codes.mu)
    assert not codes.code.requires_grad
    # the same numbers `vsc encode` writes; every accepted layout and numpy/tensor input gives them too
    encode_h5(run_dir, run_dir / "codes.h5", data_dir=shared_data, limit=50)
    with h5py.File(run_dir / "codes.h5") as f:
        np.testing.assert_allclose(f["test/code"][:], codes.numpy()["code"], rtol=1e-5, atol=1e-6)
    for layout in (x.reshape(50, 28, 28), x.reshape(50, 784), torch.from_numpy(x)):
        torch.testing.assert_close(run.encode(layout, batch_size=7).code, codes.code)
    raw, _ = vsc.dataset("fmnist", "test", data_dir=shared_data, limit=50, normalisation="none")
    assert raw.max() > 200
    torch.testing.assert_close(run.encode(raw, normalise=True).code, codes.code, rtol=1e-4, atol=1e-5)
    assert len(run.encode(x[:0])) == 0


def test_decode_and_samples(run_dir):
    run = vsc.load(run_dir)
    z = torch.randn(3, 200)
    images = run.decode(z)
    want = run.model.decoder.mean(z).detach().reshape(3, 1, 28, 28)
    torch.testing.assert_close(images, want)
    prior, zp = run.sample_prior(400, seed=1, return_codes=True)
    assert prior.shape == (400, 1, 28, 28)
    assert abs(float((zp != 0).double().mean()) - 0.01) < 0.004  # eq. 4: N(0, 1) with probability alpha
    torch.testing.assert_close(run.sample_prior(400, seed=1), prior)  # seeded: reproducible
    x = torch.rand(2, 784)
    x = x / x.norm(dim=1, keepdim=True)
    active = run.encode(x).active(0.3)
    cond, zc = run.sample_conditional(x, 6, threshold=0.3, seed=0, return_codes=True)
    assert cond.shape == (2, 6, 1, 28, 28) and zc.shape == (2, 6, 200)
    assert torch.equal(zc != 0, active[:, None, :].expand(2, 6, 200))  # exactly the active elements move
    torch.testing.assert_close(cond.reshape(12, 1, 28, 28), run.decode(zc.reshape(12, 200)))


def test_config_metrics_and_errors(run_dir, tmp_path):
    run = vsc.load(run_dir / "checkpoint.safetensors")
    assert run.config["dim"] == 200 and run.config["alpha"] == 0.01 and run.iteration == 60
    assert run.metrics["iterations"] == 60 and "test_elbo" in run.metrics and "fmnist" in repr(run)
    with pytest.raises(VscError, match="no checkpoint"):
        vsc.load(tmp_path)
    (tmp_path / "checkpoint.safetensors").write_bytes(b"junk")
    with pytest.raises(VscError):
        vsc.load(tmp_path)
    with pytest.raises(VscError, match="do not fit this run"):
        run.encode(np.zeros((2, 27, 28), np.float32))
    with pytest.raises(VscError, match="normalise=True"):
        run.encode(np.zeros((2, 784), np.uint8))
    with pytest.raises(VscError, match=r"give \(N, 200\)"):
        run.decode(np.zeros((2, 199), np.float32))
    with pytest.raises(VscError, match="threshold"):
        run.sample_conditional(np.zeros((1, 784), np.float32), 2, threshold=1.5)
    if not torch.cuda.is_available():
        with pytest.raises(VscError, match="CUDA"):
            vsc.load(run_dir, device="cuda")


def test_the_api_and_the_cli_build_the_same_model(shared_data, tmp_path):
    """The same settings through `vsc train` and through vsc.train_config + vsc.fit: the same config (the
    default recipe's fields included) and, trained here, the same weights bit for bit (one machine, one run)."""
    from click.testing import CliRunner

    from vsc_cli.trainers.checkpoint import load_checkpoint
    from vsc_cli.cli import main

    args = dict(data="fmnist", dim=6, alpha=0.01, iterations=30, train_size=300, test_size=50, batch_size=50,
                rate_weight=1.0, hidden=(16,))
    result = CliRunner().invoke(main, [
        "train", "--data", "fmnist", "--dim", "6", "--alpha", "0.01", "--iterations", "30", "--train-size", "300",
        "--test-size", "50", "--batch-size", "50", "--rate-weight", "1", "--hidden", "16",
        "--data-dir", str(shared_data), "--out", str(tmp_path / "cli"), "--quiet"])
    assert result.exit_code == 0, result.output
    cfg = vsc.train_config(**args)
    assert cfg.spike == "sigmoid" and cfg.pretrain == 12  # the default recipe, as the CLI's
    vsc.fit(cfg, tmp_path / "api", data_dir=shared_data, progress=False)
    a, b = load_checkpoint(tmp_path / "cli"), load_checkpoint(tmp_path / "api")
    assert a["config"] == b["config"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    paper = vsc.train_config("paper", **args)
    assert paper == TrainConfig(**args)  # the paper's recipe: the dataclass's defaults
    with pytest.raises(VscError, match="unknown setting"):
        vsc.train_config(dims=3)
    with pytest.raises(VscError, match="recipe"):
        vsc.train_config("fancy")
    # paper D.1's MLP, as `vsc train --data celeba --network mlp`
    assert vsc.train_config(data="celeba", network="mlp").hidden == (2000, 2000)
    assert vsc.train_config(data="celeba", network="mlp").lr == 1e-4  # the 2x2000 MLP's; the conv network's 1e-3
    assert vsc.train_config(data="celeba").lr == 1e-3 and vsc.train_config(data="celeba", lr=0.01).lr == 0.01
