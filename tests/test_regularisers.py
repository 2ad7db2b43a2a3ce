"""Training terms beyond the ELBO (vsc_cli/models/regularisers.py): the aggregate spike-rate term and the
KL's weight (warm-up, beta), against slow references; and how training adds them to the loss."""
import dataclasses
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vsc_cli.models import regularisers as R
from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.trainers.dist import World, global_mean
from vsc_cli.models.vae import VAE
from vsc_cli.models.schedule import Schedule, Step, kl_weight

from naive import aggregate_rate_loop

# hand-made spike probabilities: rows are images, columns elements; one element always on, one never
# (almost), one on for one image, the rest in between
GAMMA = [[1.0, 1e-9, 0.9, 0.2, 0.5],
         [1.0, 1e-9, 0.0, 0.3, 0.5],
         [1.0, 1e-9, 0.0, 0.1, 0.25],
         [1.0, 1e-9, 0.0, 0.6, 0.75]]


@pytest.mark.parametrize("target", [0.01, 0.2, 0.5])
def test_aggregate_rate_matches_the_loop_on_hand_made_gamma(target):
    gamma = torch.tensor(GAMMA, dtype=torch.float64, requires_grad=True)
    got = R.aggregate_rate_kl(gamma, target)
    want, want_grad = aggregate_rate_loop(GAMMA, target)
    assert float(got.detach()) == pytest.approx(want, rel=1e-12)
    got.backward()
    # the always-on column sits where the KL's slope is infinite: the term's value is exact there
    # (ln(1/target)); its gradient is taken as the finite one-sided part, so only the other columns compare
    np.testing.assert_allclose(gamma.grad[:, 1:].numpy(), np.array(want_grad)[:, 1:], rtol=1e-9)
    # an element on for every image costs ln(1/target) whatever the rest does; a dead one about nothing
    one = R.aggregate_rate_kl(torch.tensor([[1.0], [1.0]], dtype=torch.float64), target)
    assert float(one) == pytest.approx(math.log(1 / target), rel=1e-12)


def test_aggregate_rate_prefers_spread_rates():
    """Same number of active elements per image: one shared subset pays more than each image its own."""
    shared = torch.zeros(4, 8, dtype=torch.float64)
    shared[:, :2] = 1.0
    spread = torch.zeros(4, 8, dtype=torch.float64)
    for b in range(4):
        spread[b, 2 * b:2 * b + 2] = 1.0
    assert float(R.aggregate_rate_kl(spread, 0.01)) < float(R.aggregate_rate_kl(shared, 0.01))


def test_aggregate_rate_gradcheck():
    gamma = torch.rand(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    gamma.requires_grad_()
    assert torch.autograd.gradcheck(lambda g: R.aggregate_rate_kl(g, 0.05), (gamma,))
    assert torch.autograd.gradgradcheck(lambda g: R.aggregate_rate_kl(g, 0.05), (gamma,))


def test_global_mean_makes_averaged_gradients_those_of_the_whole_batch(monkeypatch):
    """Two processes simulated in one: each computes R at the global gbar through global_mean; averaging their
    parameter gradients (what DistributedDataParallel does) gives the gradient of R on the joined batch."""
    torch.manual_seed(0)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    xs = [torch.randn(5, 3, dtype=torch.float64) for _ in range(2)]
    gbars = [torch.sigmoid(x @ w).mean(0).detach() for x in xs]
    monkeypatch.setattr("vsc_cli.trainers.dist.all_mean", lambda world, t, device: (gbars[0] + gbars[1]) / 2)
    mean = global_mean(World(rank=0, size=2), "cpu")
    grads = []
    for x in xs:
        (g,) = torch.autograd.grad(R.aggregate_rate_kl(torch.sigmoid(x @ w), 0.1, mean), w)
        grads.append(g)
    (want,) = torch.autograd.grad(R.aggregate_rate_kl(torch.sigmoid(torch.cat(xs) @ w), 0.1), w)
    torch.testing.assert_close((grads[0] + grads[1]) / 2, want, rtol=1e-12, atol=1e-14)
    value = R.aggregate_rate_kl(torch.sigmoid(xs[0] @ w), 0.1, mean)
    assert float(value.detach()) == pytest.approx(float(R.aggregate_rate_kl(torch.sigmoid(torch.cat(xs) @ w), 0.1)))


def test_penalty_follows_the_config_and_the_annealed_alpha():
    cfg = TrainConfig(dim=5, hidden=(8,), rate_weight=2.5)
    terms = {"gamma": torch.tensor(GAMMA, dtype=torch.float64)[:, 1:]}
    pen = R.penalty_of(cfg)
    assert float(pen(terms, Step(50.0, 1.0, 0.1))) == pytest.approx(2.5 * aggregate_rate_loop([r[1:] for r in GAMMA], 0.1)[0])
    fixed = R.penalty_of(TrainConfig(dim=5, rate_weight=1.0, rate_target=0.3))
    assert float(fixed(terms, Step(50.0, 1.0, 0.1))) == pytest.approx(aggregate_rate_loop([r[1:] for r in GAMMA], 0.3)[0])
    assert R.penalty_of(TrainConfig()) is None and R.penalty_of(TrainConfig(model="vae")) is None


def test_training_step_adds_the_penalty_to_the_loss():
    """The step's gradient is that of -ELBO + beta R (same weights, same noise), and the log keeps the ELBO."""
    from vsc_cli.trainers.log import Log
    from vsc_cli.trainers.train import training_step

    cfg = TrainConfig(dim=6, hidden=(8,), rate_weight=3.0, alpha=0.05, backend="torch", dtype="float64")
    x = torch.rand(10, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = []
    for penalty in (R.penalty_of(cfg), None):
        torch.manual_seed(0)
        model = VAE(cfg, 12).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # no update: only the gradients are compared
        training_step(model, model, opt, x, Step(50.0, 1.0, 0.05), torch.Generator().manual_seed(2),
                      Log(None, None), 1, None, penalty)
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.manual_seed(0)
    model = VAE(cfg, 12).double()
    terms = model.elbo_terms(x, Step(50.0, 1.0, model.cfg.alpha), generator=torch.Generator().manual_seed(2))
    loss = -terms["elbo"].mean() + 3.0 * R.aggregate_rate_kl(terms["gamma"], 0.05)
    want = torch.autograd.grad(loss, list(model.parameters()))
    for g, w in zip(grads[0], want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert any(not torch.equal(a, b) for a, b in zip(grads[0], grads[1]))  # the penalty changes the gradient


def test_options_on_the_command_line_and_their_errors(tmp_path):
    bad = CliRunner().invoke(main, ["train", "--paper", "--rate-weight", "1"])
    assert bad.exit_code == 2 and "--rate-weight" in bad.output and "Traceback" not in bad.output
    bad = CliRunner().invoke(main, ["train", "--paper", "--centre"])
    assert bad.exit_code == 2 and "--centre" in bad.output
    bad = CliRunner().invoke(main, ["train", "--encoder-scale", "big"])
    assert bad.exit_code == 2 and "--encoder-scale" in bad.output
    bad = CliRunner().invoke(main, ["train", "--paper", "--kl-warmup", "10"])
    assert bad.exit_code == 2 and "--kl-warmup" in bad.output
    bad = CliRunner().invoke(main, ["train", "--rate-weight", "-1"])
    assert bad.exit_code == 2 and "--rate-weight" in bad.output
    bad = CliRunner().invoke(main, ["train", "--rate-target", "1"])
    assert bad.exit_code == 2 and "--rate-target" in bad.output
    bad = CliRunner().invoke(main, ["experiment", "alpha", "--set", "centre=maybe", "--list"])
    assert bad.exit_code == 2 and "centre" in bad.output
    ok = CliRunner().invoke(main, ["experiment", "alpha", "--set", "centre=true", "--set", "rate_weight=2",
                                   "--list", "--out", str(tmp_path / "x")])
    assert ok.exit_code == 0, ok.output
    assert "--rate-weight" in CliRunner().invoke(main, ["train", "--help"]).output


def test_old_configs_mean_both_off():
    """A checkpoint config written before these settings existed rebuilds with both off (the paper's)."""
    d = TrainConfig().to_dict()
    for k in ("rate_weight", "rate_target", "centre", "kl_warmup", "encoder_scale"):
        d.pop(k)
    cfg = TrainConfig.from_dict(d)
    assert cfg.rate_weight == 0.0 and cfg.rate_target is None and cfg.centre is False and cfg.kl_warmup == 0
    assert cfg.encoder_scale is None
    assert R.penalty_of(cfg) is None and "x_mean" not in VAE(cfg, 4).state_dict()
    for bad in ({"rate_weight": -1.0}, {"rate_target": 1.0}, {"centre": "yes"}, {"kl_warmup": -1},
                {"encoder_scale": 0.0}, {"encoder_scale": "mean"}):
        with pytest.raises(Exception, match="out of range"):
            TrainConfig.from_dict({**d, **bad})


def test_kl_warmup_weights_the_kl_by_iteration():
    """With warm-up over W iterations the step's gradient is that of -(recon - (t / W) KL) at 1-based step t,
    then of -ELBO; with the rate term as well, both are added."""
    from vsc_cli.trainers.log import Log
    from vsc_cli.trainers.train import training_step

    assert [kl_weight(t, 4) for t in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0] and kl_weight(3, 0) == 1.0
    assert [Schedule(TrainConfig(kl_warmup=4))(it).kl_weight for it in (0, 3, 8)] == [0.25, 1.0, 1.0]
    x = torch.rand(10, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for model_kind, rate in (("vsc", 0.0), ("vae", 0.0), ("vsc", 2.0)):
        cfg = TrainConfig(model=model_kind, dim=6, hidden=(8,), kl_warmup=4, alpha=0.05, backend="torch",
                          dtype="float64", **({"rate_weight": rate} if model_kind == "vsc" else {}))
        for t in (1, 3, 4):
            torch.manual_seed(0)
            model = VAE(cfg, 12).double()
            opt = torch.optim.SGD(model.parameters(), lr=0.0)
            training_step(model, model, opt, x, dataclasses.replace(Schedule(cfg)(t - 1), c=50.0),
                          torch.Generator().manual_seed(2), Log(None, None), t, None, R.penalty_of(cfg))
            got = [p.grad.clone() for p in model.parameters()]
            torch.manual_seed(0)
            model = VAE(cfg, 12).double()
            terms = model.elbo_terms(x, Step(50.0, 1.0, model.cfg.alpha), generator=torch.Generator().manual_seed(2))
            w = min(1.0, t / 4)
            loss = -(terms["recon"] - w * sum(terms[k] for k in model.family.terms)).mean()  # the family's KL terms
            if rate:
                loss = loss + rate * R.aggregate_rate_kl(terms["gamma"], 0.05)
            want = torch.autograd.grad(loss, list(model.parameters()))
            for g, wnt in zip(got, want):
                torch.testing.assert_close(g, wnt, rtol=1e-10, atol=1e-12)


def test_kl_weight_and_warmup_multiply():
    """--kl-weight beta with --kl-warmup W: the step's gradient is that of -(recon - (t / W) beta KL) (one term, the
    weights multiply; never a negative weight), for the spike-and-slab and the thresholded families."""
    from vsc_cli.trainers.log import Log
    from vsc_cli.trainers.train import training_step

    x = torch.rand(10, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for model_kind, warmup, beta in (("vsc", 4, 0.01), ("thresholded", 0, 0.1), ("thresholded", 4, 3.0), ("vae", 0, 1.0)):
        cfg = TrainConfig(model=model_kind, dim=6, hidden=(8,), kl_warmup=warmup, kl_weight=beta, alpha=0.05,
                          backend="torch", dtype="float64")
        for t in (1, 3, 5):
            step = dataclasses.replace(Schedule(cfg)(t - 1), c=50.0)
            torch.manual_seed(0)
            model = VAE(cfg, 12).double()
            opt = torch.optim.SGD(model.parameters(), lr=0.0)
            training_step(model, model, opt, x, step, torch.Generator().manual_seed(2), Log(None, None), t, None,
                          R.penalty_of(cfg))
            got = [p.grad.clone() for p in model.parameters()]
            torch.manual_seed(0)
            model = VAE(cfg, 12).double()
            terms = model.elbo_terms(x, step, generator=torch.Generator().manual_seed(2))
            w = (min(1.0, t / warmup) if warmup else 1.0) * beta
            loss = -(terms["recon"] - w * sum(terms[k] for k in model.family.terms)).mean()  # the family's KL terms
            want = torch.autograd.grad(loss, list(model.parameters()))
            for g, wnt in zip(got, want):
                torch.testing.assert_close(g, wnt, rtol=1e-10, atol=1e-12)


def test_spike_entropy_is_the_bernoulli_entropy_with_its_gradient():
    """The spike-entropy term's per-image sum_j H(Bern(gamma_j)) against torch.distributions in float64, values
    and gradients, on hand-made gamma away from 0 and 1 (where the entropy's slope is infinite)."""
    g = torch.tensor([[0.9, 0.2, 0.5, 0.01], [0.3, 0.6, 0.75, 0.999]], dtype=torch.float64, requires_grad=True)
    got = R.spike_entropy(g)
    ref_g = g.detach().clone().requires_grad_(True)
    want = torch.distributions.Bernoulli(probs=ref_g).entropy().sum(-1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(g.grad, ref_g.grad, rtol=1e-9, atol=0)
    # at 0 and 1 the entropy is 0 and finite in value and gradient (1 - gamma floored inside the log)
    edge = torch.tensor([[0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    h = R.spike_entropy(edge)
    h.sum().backward()
    assert float(h) == pytest.approx(0.0, abs=1e-5) and bool(torch.isfinite(edge.grad).all())


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.5])
def test_spike_entropy_at_weight_1_leaves_the_spike_cost_linear_in_gamma(alpha):
    """Eq. 9's spike KL plus the term at weight 1 is gamma ln(1/alpha) + (1 - gamma) ln(1/(1 - alpha)): linear in
    gamma, so each image's cheapest spike is 0 or 1 (sparse coding's L0 cost), never alpha."""
    from vsc_kernels import kl_bernoulli

    g = torch.linspace(0.01, 0.99, 25, dtype=torch.float64).reshape(1, -1)
    term = R.DecisiveSpike(1.0)({"gamma": g}, None)
    kl = kl_bernoulli(g, alpha).sum()
    want = (g * math.log(1 / alpha) + (1 - g) * math.log(1 / (1 - alpha))).sum()
    assert float(kl + term) == pytest.approx(float(want), rel=1e-9)
    weighted = R.DecisiveSpike(0.3)({"gamma": g}, None)
    assert float(weighted) == pytest.approx(0.3 * float(R.spike_entropy(g).mean()), rel=1e-12)


def test_training_adds_the_spike_entropy_term_to_the_loss_only():
    from vsc_cli.models.spike_slab import SpikeSlabPosterior

    cfg = TrainConfig(data="fmnist", dim=4, iterations=10).replace(spike_entropy=0.5)
    terms = SpikeSlabPosterior.training_terms(cfg)
    assert [type(t) for t in terms] == [R.DecisiveSpike] and terms[0].weight == 0.5
    assert SpikeSlabPosterior.training_terms(TrainConfig(data="fmnist", dim=4)) == []
    both = SpikeSlabPosterior.training_terms(cfg.replace(rate_weight=3.0))
    assert [type(t) for t in both] == [R.AggregateRate, R.DecisiveSpike]
