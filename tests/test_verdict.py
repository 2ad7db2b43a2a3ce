"""A collapsed or dense run is never reported or drawn without a word: the rule (verdict.py), its advice (never a
setting the run has), its numbers against a naive computation, and the two commands that print it."""
import json

import numpy as np
import torch
from click.testing import CliRunner

from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.evaluation.verdict import SHARED, COLLAPSED, DENSE, check_run, verdict
from vsc_cli.models.vae import VAE


def cfg(**kw):
    return TrainConfig(**{"data": "fmnist", "dim": 200, "iterations": 20_000, "alpha": 0.1, **kw})


def test_the_rule():
    assert verdict(cfg(), 8.0, 0.4) is None  # sparse and reconstructing
    assert "collapsed" in verdict(cfg(), 8.0, COLLAPSED)  # no better than the mean image
    assert "no element is on" in verdict(cfg(), 0.0, None)
    assert "dense: 120 of 200" in verdict(cfg(alpha=0.5), 120.0, 0.3)
    assert verdict(cfg(alpha=0.5), DENSE * 200, 0.3) is None  # at the line: not yet dense
    assert verdict(cfg(model="vae"), 200.0, 0.3) is None  # a dense family is not "dense"
    assert "collapsed" in verdict(cfg(model="vae"), 200.0, 1.2)
    # the same few elements for every image (the paper's recipe at alpha 0.01: Jaccard 0.98)
    assert "nearly the same elements (mean Jaccard 0.90" in verdict(cfg(iterations=300), 5.4, 0.42, 0.90)
    assert verdict(cfg(), 8.0, 0.4, SHARED - 0.01) is None and verdict(cfg(), 8.0, 0.4, None) is None
    assert verdict(cfg(model="vae"), 200.0, 0.3, 1.0) is None  # all on: a VAE's code is dense by design
    shared = verdict(cfg(iterations=300), 5.4, 0.42, 0.9)
    assert "more iterations than 300" in shared and "more iterations" not in verdict(cfg(), 5.4, 0.42, 0.9)


def test_the_advice_is_never_what_the_run_has():
    plain = verdict(cfg(iterations=1000, alpha=0.01), 0.0, 1.3)
    assert "--logvar-init data" in plain and "more iterations than 1,000" in plain and "--alpha than 0.01" in plain
    has_it = verdict(cfg(iterations=20_000, alpha=0.3, logvar_init=-2.0), 0.0, 1.3)
    assert "--logvar-init" not in has_it and "more iterations" not in has_it and "--alpha" not in has_it
    assert "--spike-entropy 1" in plain and "--spike-entropy" not in verdict(cfg(spike_entropy=0.5), 0.0, 1.3)
    # the spike's view of the slab's magnitude: offered to a run without it; with it, pre-training is what to drop
    assert "--gate-magnitude 2" in plain and "--gate-magnitude" not in verdict(cfg(gate_magnitude=2.0), 0.0, 1.3)
    shared_gate = verdict(cfg(gate_magnitude=2.0, pretrain=2000), 30.0, 0.02, 0.75)
    assert "--pretrain 0" in shared_gate and "--gate-magnitude 2" not in shared_gate
    assert "--gate-magnitude 2" in verdict(cfg(pretrain=2000), 0.1, 0.87, 0.8)
    assert "--pretrain 0" not in verdict(cfg(gate_magnitude=2.0, pretrain=0), 30.0, 0.02, 0.75)
    assert "--alpha 0.1" in verdict(cfg(alpha=0.5), 150.0, 0.3)
    assert "--alpha 0.01" in verdict(cfg(alpha=0.1), 150.0, 0.3)
    assert "--alpha" not in verdict(cfg(alpha=0.01), 150.0, 0.3)
    # a fixed decoder noise has no learned variance to start (vsc train refuses --logvar-init with it)
    fixed = verdict(cfg(iterations=1000, noise_std=0.05), 0.0, 1.3)
    assert "--logvar-init" not in fixed and "a smaller --noise-std than 0.05" in fixed


class FakeRun:
    def __init__(self, model):
        self.model, self.cfg = model, model.cfg


def test_check_run_measures_what_it_says():
    torch.manual_seed(0)
    c = TrainConfig(data="fmnist", dim=12, hidden=(16,), alpha=0.5, iterations=100)
    model = VAE(c, 30).eval()
    x = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    line = check_run(FakeRun(model), x, limit=25)
    # the naive reference: image by image, the active elements (gamma > 0.5) and the squared errors
    on, err, base = [], 0.0, 0.0
    rows = x[:25].astype(np.float64)
    mean = rows.mean(0)
    with torch.no_grad():
        for r in rows:
            q = model.posterior(torch.tensor(r[None], dtype=torch.float32))
            gamma, mu = q.gamma[0].double(), q.mu[0].double()
            on.append(int((gamma > 0.5).sum()))
            recon = model.decoder.mean((gamma * mu).float()[None])[0].double().numpy()
            err += float(((r - recon) ** 2).sum())
            base += float(((r - mean) ** 2).sum())
    assert line == verdict(c, float(np.mean(on)), err / base)


def test_sparsity_and_figure_say_it(shared_data, tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", "fmnist", "--data-dir", str(shared_data), "--dim", "10",
                                  "--train-size", "300", "--test-size", "100", "--batch-size", "50",
                                  "--iterations", "10", "--alpha", "0.9", "--paper", "--out", str(run), "--quiet"])
    assert r.exit_code == 0, r.output
    s = CliRunner().invoke(main, ["sparsity", str(run), "--data-dir", str(shared_data), "--json",
                                                  "--quiet"])
    assert s.exit_code == 0, s.output
    numbers = json.loads(s.stdout)
    expected = verdict(TrainConfig.from_dict(_config(run)), numbers["active_mean"],
                       numbers["reconstruction_error"])
    assert expected is not None  # 10 iterations at alpha 0.9: dense, or collapsed
    assert numbers["verdict"] == expected and s.stderr.strip() == expected
    f = CliRunner().invoke(main, ["figure", "codes", str(run), "-o", str(tmp_path / "c.png"),
                                                  "--data-dir", str(shared_data)])
    assert f.exit_code == 0, f.output
    assert f.stderr.startswith("warning: ")


def _config(run):
    from vsc_cli.trainers.checkpoint import load_checkpoint

    return load_checkpoint(run)["config"]
