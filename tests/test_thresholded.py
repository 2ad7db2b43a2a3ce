"""The thresholded Gaussian family (Fallah & Rozell 2022; vsc_cli/models/thresholded.py) against slow references."""
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from naive import gaussian_kl_loop, threshold_loop
from vsc_kernels import kl_slab
from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.models.distributions import draw_and_kl
from vsc_cli.models.vae import VAE
from vsc_cli.models.schedule import Step
from vsc_cli.models.thresholded import Thresholded, ThresholdedPrior, threshold_ref, threshold_sample


def inputs(B=6, J=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(B, J, generator=g, dtype=torch.float64)
    logvar = torch.randn(B, J, generator=g, dtype=torch.float64) - 1.0
    eps = torch.randn(B, J, generator=g, dtype=torch.float64)
    return mu, logvar, eps


def test_threshold_matches_the_loop_and_is_zero_exactly_below_lambda():
    mu, logvar, eps = inputs()
    for lam in (0.0, 0.2, 0.52, 3.0):
        z = threshold_sample(mu, logvar, eps, lam)
        torch.testing.assert_close(z, threshold_loop(mu, logvar, eps, lam), rtol=1e-12, atol=1e-12)
        n = torch.exp(0.5 * logvar) * eps
        assert torch.equal(z == 0, n.abs() <= lam)
    assert (threshold_sample(mu, logvar, eps, 100.0) == 0).all()


def test_straight_through_gradient_is_exact_where_the_draw_is_not_zero():
    mu, logvar, eps = inputs(B=20)
    lam = 0.3
    m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    z = threshold_sample(m, lv, eps, lam)
    gm, glv = torch.autograd.grad(z.sum(), (m, lv))
    m2, lv2 = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    gm2, glv2 = torch.autograd.grad(threshold_ref(m2, lv2, eps, lam).sum(), (m2, lv2))  # exact derivative
    on = z.detach() != 0
    assert on.any() and (~on).any()
    torch.testing.assert_close(gm[on], gm2[on])
    torch.testing.assert_close(glv[on], glv2[on])
    # where z = 0 the exact derivative is 0 and the base sample's (1, eps sigma / 2) passes straight through
    assert (gm2[~on] == 0).all() and (gm[~on] == 1).all()
    torch.testing.assert_close(glv[~on], (0.5 * torch.exp(0.5 * logvar) * eps)[~on])


def test_kl_is_the_gaussian_kl_with_its_gradient():
    """The family's KL, vsc_kernels.kl_slab at the prior's variance: KL(N(mu, sigma^2) || N(0, s))."""
    mu, logvar, _ = inputs()
    for s in (0.1, 1.0):
        torch.testing.assert_close(kl_slab(mu, logvar, s).sum(-1), gaussian_kl_loop(mu, logvar, s),
                                   rtol=1e-12, atol=1e-12)
        ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, torch.exp(0.5 * logvar)),
                                                torch.distributions.Normal(0.0, math.sqrt(s)))
        torch.testing.assert_close(kl_slab(mu, logvar, s), ref)
    args = [t[:2, :3].clone().requires_grad_() for t in (mu, logvar)]
    assert torch.autograd.gradcheck(lambda m, lv: kl_slab(m, lv, 0.1), args)


def test_gamma_is_the_probability_of_a_non_zero_draw_and_mean_is_the_expectation():
    mu = torch.tensor([[0.7, -1.2, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[math.log(0.09), 0.0, math.log(4.0)]], dtype=torch.float64)
    q = Thresholded(mu, logvar, 0.52)
    z = q.rsample((200_000,), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close((z != 0).double().mean(0), q.gamma, atol=4e-3, rtol=0)
    torch.testing.assert_close(z.mean(0), q.mean, atol=1.5e-2, rtol=0)


def test_pair_reports_the_base_kl_and_a_measured_active_fraction():
    mu, logvar, _ = inputs()
    q, p = Thresholded(mu, logvar, 0.4), ThresholdedPrior(0.1, 0.4, (5,))
    z, kl = draw_and_kl(q, p, None, Step.evaluation(1.0), torch.Generator().manual_seed(3))
    torch.testing.assert_close(kl["kl_slab"], gaussian_kl_loop(mu, logvar, 0.1))
    assert set(kl) == set(Thresholded.terms) == {"kl_slab"}  # no spike term
    torch.testing.assert_close(q.active_fraction(z), (z != 0).double().mean(-1))
    draws = p.sample((100_000,), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = math.erfc(0.4 / math.sqrt(0.1) / math.sqrt(2))  # P(|N(0, 0.1)| > 0.4)
    assert abs(float((draws != 0).double().mean()) - want) < 5e-3


def test_model_with_the_thresholded_posterior():
    cfg = TrainConfig(model="thresholded", dim=6, hidden=(8,), threshold=0.3, prior_variance=0.1, dtype="float64")
    torch.manual_seed(0)
    net = VAE(cfg, 12).double()
    assert net.encoder[-1].out_features == 12  # mu and log sigma^2 only
    x = torch.rand(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    terms = net.elbo_terms(x, Step(50.0, 1.0, cfg.alpha), torch.Generator().manual_seed(1))
    mu, logvar = net.encode(x)  # no spike head
    eps = torch.randn(mu.shape, dtype=mu.dtype, generator=torch.Generator().manual_seed(1))
    z = threshold_loop(mu.detach(), logvar.detach(), eps, 0.3)
    torch.testing.assert_close(terms["recon"], net.decoder.log_likelihood(x, z))
    torch.testing.assert_close(terms["kl_slab"], gaussian_kl_loop(mu.detach(), logvar.detach(), 0.1))
    torch.testing.assert_close(terms["active"], (z != 0).double().mean(-1))
    assert "gamma" not in terms
    prior = net.sample_prior(50_000, torch.Generator().manual_seed(2))
    assert abs(float((prior != 0).double().mean()) - math.erfc(0.3 / math.sqrt(0.2))) < 1e-2


@pytest.mark.parametrize("args, message", [
    (["--model", "thresholded", "--threshold", "-1"], "--threshold"),
    (["--model", "thresholded", "--prior-variance", "0"], "--prior-variance"),
    (["--model", "thresholded", "--rate-weight", "3"], "--rate-weight is a setting of VSC (--model vsc)"),
    (["--model", "thresholded", "--prior", "pseudo-inputs"], "--prior is a setting of VSC (--model vsc)"),
    (["--model", "vae", "--pretrain", "3"], "--pretrain is a setting of VSC (--model vsc)"),
    (["--model", "vsc", "--k", "3"], "--k is a setting of Top-k (--model topk)"),
    (["--network", "conv", "--hidden", "400"], "--hidden is a setting of MLP network (--network mlp)"),
    (["--kl-weight", "0"], "--kl-weight"),
])
def test_settings_that_make_no_sense_are_refused_in_one_line(tmp_path, args, message):
    r = CliRunner().invoke(main, ["train", "--data", "fmnist", "--out", str(tmp_path / "r"), *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_a_thresholded_run_trains_and_its_codes_are_read(tmp_path, shared_data):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", "fmnist", "--data-dir", str(shared_data), "--model",
                                  "thresholded", "--dim", "16", "--iterations", "60", "--train-size", "600",
                                  "--test-size", "300", "--out", str(out), "--quiet", "--backend", "torch"])
    assert r.exit_code == 0, r.output
    assert "not an ELBO" in r.output
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["objective_is_elbo"] is False and metrics["elbo_is_bound"] is False
    assert 0 < metrics["test_sparsity"] < 1  # measured: the non-zero elements of the test draws
    from vsc_cli.pipelines.api import load

    run = load(out)
    x = np.random.default_rng(0).random((5, 784)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    codes = run.encode(x)
    q = run.model.posterior(torch.from_numpy(x))
    torch.testing.assert_close(codes.gamma, q.gamma)
    torch.testing.assert_close(codes.code, q.gamma * q.mu)
    r = CliRunner().invoke(main, ["sparsity", str(out), "--data-dir", str(shared_data), "--quiet"])
    assert r.exit_code == 0, r.output


def test_families_grid_points():
    from vsc_cli.trainers.recipes import recipe_name
    from vsc_cli.pipelines.experiment import grid_points, point_config

    points = grid_points("families", "mnist", dims=(64, 256), models=("vae", "paper", "default", "thresholded"),
                         alphas=(0.01,), options={"iterations": 100})
    assert [p.name for p in points][::2] == ["mnist-vae-d64", "mnist-paper-d64-a0.01", "mnist-default-d64-a0.01",
                                             "mnist-thresholded-d64"]
    cfgs = {p.family: point_config(p) for p in points if p.dim == 256}
    assert cfgs["paper"].rate_weight == 0 and cfgs["paper"].pretrain == 0
    assert cfgs["default"].rate_weight > 0 and cfgs["default"].centre  # today's default recipe, numbered
    assert points[4].options["recipe"] == recipe_name("default")
    assert cfgs["thresholded"].model == "thresholded" and cfgs["vae"].model == "vae"
    assert {c.iterations for c in cfgs.values()} == {100} and {c.dim for c in cfgs.values()} == {256}


def test_families_sweep_runs_and_reports(tmp_path, shared_data):
    out = tmp_path / "fam"
    args = ["experiment", "families", "--data", "fmnist", "--data-dir", str(shared_data), "--iterations", "20",
            "--train-size", "300", "--labelled", "100", "--dims", "4", "--models", "vae,thresholded",
            "--out", str(out), "--quiet"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    report = (out / "report.md").read_text()
    assert "| vae | 4 |" in report and "| thresholded | 4 |" in report
    for png in ("sse-vs-dims.png", "accuracy-vs-dims.png"):  # the claim's plot and accuracy, linked from the report
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png})" in report
    import csv

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [row["family"] for row in rows] == ["vae", "thresholded"]
    vae, thr = rows
    assert float(vae["nonzero_rate"]) == 1.0 and float(vae["active_mean"]) == 4.0  # a Gaussian draw is never 0
    assert 0 <= float(thr["nonzero_rate"]) < 1 and thr["objective_is_elbo"] == "False"
    r = CliRunner().invoke(main, [*args[:-1], "--alphas", "0.1,0.2"])
    assert r.exit_code == 2 and "one alpha" in r.output


def test_a_sweeps_setting_is_for_the_points_that_have_it_and_one_no_point_has_fails_before_training(tmp_path):
    from vsc_cli.pipelines.experiment import point_config

    r = CliRunner().invoke(main, ["experiment", "families", "--set", "k=3", "--out", str(tmp_path / "f"), "--list"])
    assert r.exit_code == 2 and "--k is a setting of Top-k (--model topk)" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "f").exists()
    r = CliRunner().invoke(main, ["experiment", "families", "--set", "rate_weight=3", "--out", str(tmp_path / "f"),
                                  "--list"])
    assert r.exit_code == 0, r.output
    from vsc_cli.pipelines.experiment import grid_points as points

    configs = {p.family: point_config(p) for p in points("families", "fmnist", options={"rate_weight": 3.0})}
    assert configs["paper"].rate_weight == 3.0 and "rate_weight" not in configs["thresholded"]
    assert "rate_weight" not in configs["vae"]
    from vsc_cli.pipelines.experiment import grid_points

    assert [p.family for p in grid_points("families", "fmnist")][::3] == ["vae", "paper", "default", "thresholded"]
    with pytest.raises(Exception, match="unknown family"):
        grid_points("families", "fmnist", models=("vae", "vsc:0.5"))
