"""The linear decoder (`--decoder linear`: x's mean = D z + b) for every family."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.common.registry import FAMILIES
from vsc_cli.evaluation.consistency import consistency
from vsc_cli.models.vae import VAE


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_the_linear_decoders_mean_is_affine_in_the_code(likelihood):
    torch.manual_seed(0)
    net = VAE(TrainConfig(decoder="linear", dim=5, hidden=(16,), likelihood=likelihood), 12).double()
    assert [type(m).__name__ for m in net.decoder.net] == ["Linear"]  # one layer, whatever --hidden says
    logits = lambda z: net.decoder(z)[0]  # noqa: E731 (the mean, or the Bernoulli logits)
    z1, z2, zero = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64), torch.zeros(3, 5)
    torch.testing.assert_close(logits(2 * z1 + z2) - logits(zero.double()),
                               2 * (logits(z1) - logits(zero.double())) + (logits(z2) - logits(zero.double())))
    # so an element's pixel change is the same wherever it is on: consistency 1
    codes = np.random.default_rng(0).standard_normal((40, 5))
    if likelihood == "gaussian":
        assert consistency(net, codes, np.ones((40, 5), bool))["consistency"] == pytest.approx(1.0)


@pytest.mark.parametrize("model", ["vsc", "vae", "thresholded", "topk"])
def test_every_family_trains_with_it(model, tmp_path):
    assert model in FAMILIES
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 256, (60, 5, 5), dtype=np.uint8))
    args = ["train", "--data", str(tmp_path / "x.npy"), "--model", model, "--decoder", "linear", "--dim", "6",
            "--hidden", "8", "--iterations", "5", "--batch-size", "20", "--out", str(tmp_path / "run"), "--quiet"]
    if model == "topk":
        args += ["--k", "2"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    import vsc_cli

    run = vsc_cli.load(tmp_path / "run")
    assert run.model.cfg.decoder == "linear" and len(run.model.decoder.net) == 1
