"""A family with a setting of its own and a network of one's own, each defined in this file and registered with one
line (no library file touched): their options appear in `vsc train --help` under their headings, another family's
or network's setting is refused in one line, and each trains a few steps through `vsc_cli.fit` and `vsc train`,
and encodes and decodes through the API. Also: `vsc --help` imports no torch; old flat configs still load."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import vsc_cli as vsc
from vsc_cli.cli import main
from vsc_cli.common.config import Int, SETTINGS, TrainConfig, setting
from vsc_cli.common.registry import FAMILIES, NETWORKS
from vsc_cli.models.gaussian import Normal
from vsc_cli.models.networks import Network


class ScaledNormal(Normal):
    """The VAE's posterior with its sigma multiplied by --spread / 10: a family with one setting of its own."""

    title = "Scaled"
    settings = {"spread": setting(10, "Ten times the factor on sigma.", Int(1, 100), "model", settable=True)}

    @classmethod
    def from_heads(cls, heads, cfg):
        mu, logvar = heads
        return cls(mu, logvar + 2 * float(np.log(cfg.spread / 10)))


class Bottleneck(Network):
    """An MLP of one hidden layer of --width units, a network of one's own."""

    title = "Bottleneck network"
    settings = {"width": setting(6, "Its one hidden layer's units.", Int(1, 1000), "model", settable=True)}

    @classmethod
    def encoder(cls, cfg, shape, pixels, outputs):
        return nn.Sequential(nn.Linear(pixels, cfg.width), nn.ReLU(), nn.Linear(cfg.width, outputs))

    @classmethod
    def decoder(cls, cfg, shape, pixels, groups):
        return nn.Sequential(nn.Linear(cfg.dim, cfg.width), nn.ReLU(), nn.Linear(cfg.width, groups * pixels))

    @classmethod
    def describe(cls, cfg):
        return f"bottleneck {cfg.width}"


@pytest.fixture
def toys():
    FAMILIES.register("scaled", ScaledNormal, "the VAE with a scaled sigma")  # the one line each takes
    NETWORKS.register("bottleneck", Bottleneck, "one narrow hidden layer")
    yield
    FAMILIES.unregister("scaled")
    NETWORKS.unregister("bottleneck")


@pytest.fixture
def images(tmp_path):
    np.save(tmp_path / "images.npy", np.random.default_rng(0).random((60, 8, 8)).astype(np.float32))
    return str(tmp_path / "images.npy")


def test_the_toys_settings_are_theirs_alone(toys):
    cfg = TrainConfig(model="scaled", network="bottleneck", spread=20, width=3)
    assert (cfg.spread, cfg.width) == (20, 3) and "hidden" not in cfg and "pretrain" not in cfg
    assert set(cfg.to_dict()) >= {"spread", "width"} and TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert [n for r, n in SETTINGS.owners("spread")] == ["scaled"]
    with pytest.raises(Exception, match=r"--spread is a setting of Scaled \(--model scaled\)"):
        TrainConfig(model="vsc", spread=20)
    with pytest.raises(Exception, match=r"--width is a setting of Bottleneck network \(--network bottleneck\)"):
        TrainConfig(network="mlp", width=3)


def test_the_toys_train_through_fit_and_encode_and_decode_through_the_api(toys, images, tmp_path):
    cfg = vsc.train_config(model="scaled", network="bottleneck", data=images, dim=4, iterations=5, spread=5,
                           batch_size=20, log_every=5, checkpoint_every=5)
    metrics = vsc.fit(cfg, tmp_path / "run", data_dir=tmp_path, progress=False)
    assert np.isfinite(metrics["test_elbo"])
    run = vsc.load(tmp_path / "run")
    assert run.model.encoder[0].out_features == 6 and run.opened.cfg.spread == 5  # the network's default width
    x = torch.from_numpy(np.load(images)[:3].reshape(3, -1))
    codes = run.encode(x, normalise=True)
    assert tuple(run.decode(codes.code).shape) == (3, 1, 8, 8)


def test_the_toys_options_show_and_train_through_the_command_line(toys, images, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["train", "--help"])
    assert "Scaled (--model scaled):" in r.output and "Bottleneck network (--network bottleneck):" in r.output
    r = runner.invoke(main, ["train", "--model", "scaled", "--help"])
    assert "--spread INTEGER RANGE" in r.output and "Ten times the factor on sigma." in r.output
    assert "Top-k (--model topk)" not in r.output and "VSC (--model vsc)" not in r.output
    r = runner.invoke(main, ["train", "--model", "vsc", "--spread", "3", "--data", images])
    assert r.exit_code == 2 and "--spread is a setting of Scaled (--model scaled)" in r.output
    r = runner.invoke(main, ["train", "--model", "scaled", "--network", "bottleneck", "--width", "4", "--spread",
                             "7", "--data", images, "--dim", "3", "--iterations", "4", "--batch-size", "20",
                             "--data-dir", str(tmp_path), "--out", str(tmp_path / "cli"), "--quiet"])
    assert r.exit_code == 0, r.output
    cfg = vsc.load(tmp_path / "cli").opened.cfg
    assert (cfg.model, cfg.network, cfg.width, cfg.spread) == ("scaled", "bottleneck", 4, 7)


def test_vsc_help_imports_no_torch():
    code = ("import sys\nfrom vsc_cli.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_a_flat_config_of_an_earlier_version_loads_without_the_other_families_settings():
    old = {**TrainConfig(model="vae", network="conv", image_shape=[1, 8, 8]).to_dict(), "k": 10, "threshold": 0.52,
           "pretrain": 0, "hidden": [400], "aux_k": None}  # earlier versions wrote every family's settings
    cfg = TrainConfig.from_dict(old)
    assert cfg.model == "vae" and "k" not in cfg and "hidden" not in cfg and cfg.channels == (32, 64, 128, 256)
