"""The rate-distortion setting (`--noise-std`: the Gaussian decoder's noise fixed to sigma_x): its log-likelihood
and gradients against torch.distributions in float64, what it refuses, and a run that reopens."""
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vsc_cli.cli import main
from vsc_cli.common.errors import VscError
from vsc_cli.models.vae import VAE
from vsc_cli.trainers.recipes import resolve


@pytest.mark.parametrize("decoder, network", [("mlp", "mlp"), ("linear", "mlp"), ("mlp", "conv")])
def test_the_fixed_noise_likelihood_and_its_gradients_are_a_normals(decoder, network):
    torch.manual_seed(0)
    own = dict(channels=(4, 8)) if network == "conv" else dict(hidden=(8,))
    cfg = resolve(data="fmnist", dim=4, decoder=decoder, network=network, noise_std=0.05, **own)
    pixels = 64 if network == "conv" else 12
    net = VAE(cfg.replace(image_shape=(1, 8, 8)) if network == "conv" else cfg, pixels).double()
    z, x = torch.randn(5, 4, dtype=torch.float64), torch.rand(5, pixels, dtype=torch.float64)
    assert net.decoder.net(z).shape == (5, pixels)  # the means alone: no variance to learn
    got = net.decoder.log_likelihood(x, z)
    params = [p for p in net.decoder.parameters()]
    g_got = torch.autograd.grad(got.sum(), params)
    mean = net.decoder.net(z)
    want = torch.distributions.Normal(mean, torch.full_like(mean, 0.05)).log_prob(x).sum(-1)
    g_want = torch.autograd.grad(want.sum(), params)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-9)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-9)
    m, logvar = net.decoder(z)
    torch.testing.assert_close(m, mean)
    assert torch.all(logvar == 2 * math.log(0.05))


def test_it_refuses_what_does_not_apply_and_skips_the_learned_variances_start():
    with pytest.raises(VscError, match="Bernoulli likelihood has none"):
        resolve(data="fmnist", likelihood="bernoulli", noise_std=0.1)
    with pytest.raises(VscError, match="--logvar-init .* does not apply"):
        resolve(data="fmnist", logvar_init=-6.0, noise_std=0.1)
    assert resolve(data="celeba", network="conv").logvar_init == "data"  # the conv network's start ...
    assert resolve(data="celeba", network="conv", noise_std=0.1).logvar_init is None  # ... not with a fixed noise
    assert resolve(data="fmnist").noise_std is None  # the paper's learned per-pixel variance by default
    r = CliRunner().invoke(main, ["train", "--noise-std", "0", "--iterations", "1"])
    assert r.exit_code == 2 and "--noise-std" in r.output


def small_set(tmp_path):
    runner = CliRunner()
    x = tmp_path / "x.npz"
    assert runner.invoke(main, ["synth", "sparse-linear", "-o", str(x), "--images", "600", "--factors", "12",
                                "--active", "3", "--side", "6", "--noise", "0.0"]).exit_code == 0
    return runner, x


def test_a_run_with_it_reopens_with_it(tmp_path):
    import vsc_cli as vsc

    runner, x = small_set(tmp_path)
    assert runner.invoke(main, ["train", "--data", str(x), "--normalise", "01", "--dim", "8", "--hidden", "16",
                                "--noise-std", "0.1", "--iterations", "20", "--batch-size", "50", "--out",
                                str(tmp_path / "run"), "--quiet"]).exit_code == 0
    assert "noise_std = 0.1" in (tmp_path / "run" / "config.toml").read_text()
    run = vsc.load(tmp_path / "run")
    assert run.opened.model.decoder.noise_std == 0.1
    images, _ = vsc.dataset(str(x), "test", normalisation="01")
    assert np.isfinite(run.decode(run.encode(images).code).numpy()).all()
