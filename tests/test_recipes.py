"""Terms beyond the paper (spike pre-training, the sigmoid spike, the pseudo-input prior) against slow
references written from their definitions, values and gradients; and the recipe options."""
import math

import pytest
import torch
from click.testing import CliRunner
from torch.distributions import Bernoulli, kl_divergence

from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.models.vae import VAE
from vsc_cli.models.pseudo_inputs import PseudoInputPrior
from vsc_cli.models.schedule import Step, lambda_schedule
from vsc_kernels import (SpikeSlab, kl_bernoulli, kl_spike, kl_spike_slab, kl_slab, log_gamma_sigmoid,
                         spike_slab, spike_slab_ref, spike_slab_sample_scaled)

from naive import kl_general_loop, pseudo_input_kl_loop, sample_loop


def rand(*shape, seed=0, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_general_kl_matches_loop_and_reduces_to_eq9():
    mu, logvar, v = rand(4, 6, seed=1), rand(4, 6, seed=2), rand(4, 6, seed=3)
    lg = log_gamma_sigmoid(v)
    mu_p, logvar_p, a = rand(4, 6, seed=4), rand(4, 6, seed=5), rand(4, 6, seed=6, scale=2)
    slab, spike = kl_spike_slab(mu, logvar, lg, mu_p, logvar_p, torch.nn.functional.logsigmoid(a),
                                torch.nn.functional.logsigmoid(-a))
    want_slab, want_spike = kl_general_loop(mu, logvar, lg, mu_p, logvar_p, torch.sigmoid(a))
    torch.testing.assert_close(slab, want_slab, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(spike, want_spike, rtol=1e-12, atol=1e-12)
    # the paper's prior: mu_p = 0, logvar_p = 0, gamma_p = alpha gives eq. 9's two terms exactly
    lg_min = torch.clamp(v, max=0)
    alpha = 0.2
    slab, spike = kl_spike_slab(mu, logvar, lg_min, 0.0, 0.0, math.log(alpha), math.log(1 - alpha))
    torch.testing.assert_close(slab, torch.exp(lg_min) * kl_slab(mu, logvar), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(spike, kl_spike(lg_min, alpha), rtol=1e-13, atol=1e-13)


def test_general_kl_gradcheck():
    args = [rand(3, 4, seed=s).requires_grad_() for s in range(6)]

    def f(mu, logvar, v, mu_p, logvar_p, a):
        return kl_spike_slab(mu, logvar, log_gamma_sigmoid(v), mu_p, logvar_p,
                             torch.nn.functional.logsigmoid(a), torch.nn.functional.logsigmoid(-a))

    assert torch.autograd.gradcheck(f, args)


def test_kl_bernoulli_matches_torch_distributions():
    p = torch.tensor([0.0, 1e-9, 0.3, 0.5, 0.999, 1.0], dtype=torch.float64)
    for alpha in (0.01, 0.5, 0.9):
        want = kl_divergence(Bernoulli(probs=p), Bernoulli(probs=torch.full_like(p, alpha)))
        torch.testing.assert_close(kl_bernoulli(p, alpha), want, rtol=1e-9, atol=1e-12)
    q = torch.tensor([0.2, 0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: kl_bernoulli(t, 0.05), (q,))


def test_sigmoid_spike_is_log_sigmoid_without_a_flat_region():
    v = torch.tensor([-50.0, -3.0, 0.0, 2.0, 30.0], dtype=torch.float64, requires_grad=True)
    lg = log_gamma_sigmoid(v)
    torch.testing.assert_close(lg, torch.log(torch.sigmoid(v.detach())), rtol=1e-12, atol=1e-15)
    (g,) = torch.autograd.grad(lg.sum(), v)
    torch.testing.assert_close(g, 1 - torch.sigmoid(v.detach()))  # d log S(v) / dv = 1 - S(v) > 0
    assert (g > 0).all()


def test_lambda_schedule():
    got = [lambda_schedule(i, 3, 4) for i in range(9)]
    assert got == [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1]
    assert [lambda_schedule(i, 2, 0) for i in range(4)] == [0, 0, 1, 1]
    assert lambda_schedule(0, 0, 0) == 1.0


def test_scaled_sample_matches_loop_and_eq24():
    mu, logvar, v, eps = rand(3, 5, seed=1), rand(3, 5, seed=2), rand(3, 5, seed=3), rand(3, 5, seed=4)
    eta = torch.rand(3, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    lg = torch.clamp(v, max=0)
    for lam in (0.0, 0.3, 1.0):
        z = spike_slab_sample_scaled(mu, logvar, lg, eps, eta, 50.0, lam)
        torch.testing.assert_close(z, sample_loop(lam * mu, lam * logvar, v, eps, eta, 50.0), rtol=1e-12,
                                   atol=1e-12)
    z_ref = spike_slab_ref(mu, logvar, v, eps, eta, 50.0, 0.3)[0]
    torch.testing.assert_close(spike_slab_sample_scaled(mu, logvar, lg, eps, eta, 50.0, 1.0), z_ref)
    args = [t.clone().requires_grad_() for t in (mu, logvar, v)]
    assert torch.autograd.gradcheck(
        lambda m, lv, vv: spike_slab_sample_scaled(m, lv, torch.clamp(vv, max=0), eps, eta, 5.0, 0.4), args)


def _prior_inputs(B=3, K=2, J=4, pixels=5):
    torch.manual_seed(0)
    prior = PseudoInputPrior(pixels, K, J, alpha=0.1, sharpness=10.0).double()
    enc = torch.nn.Linear(pixels, 3 * J).double()

    def encode(x):
        return enc(x).chunk(3, dim=-1)

    prior.bind(encode, log_gamma_sigmoid)

    return prior, encode, rand(B, pixels, seed=7)


def test_pseudo_input_prior_matches_loop():
    prior, encode, x = _prior_inputs()
    mu, logvar, v = encode(x)
    lg = log_gamma_sigmoid(v)
    slab, spike, rate = prior.kl(x, SpikeSlab(mu, logvar, lg))
    with torch.no_grad():
        w = prior.weights(x)
        mu_p, logvar_p, v_p = encode(prior.u)
        gamma_p = torch.sigmoid(10.0 * (torch.sigmoid(v_p) - 0.5))  # the sharpened spike, by definition
        want = pseudo_input_kl_loop(w, mu, logvar, lg, mu_p, logvar_p, gamma_p, 0.1)
    for got, ref in zip((slab, spike, rate), want):
        torch.testing.assert_close(got.detach(), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(w.sum(1), torch.ones(3, dtype=torch.float64))
    assert (w > 0).all()


def test_pseudo_input_prior_gradcheck():
    prior, encode, x = _prior_inputs(B=2, K=2, J=3, pixels=4)
    mu, logvar, v = [t.detach().clone().requires_grad_() for t in encode(x)]
    params = [prior.u, prior.select.weight]

    def f(mu, logvar, v, u, w_sel):
        with torch.no_grad():
            prior.u.copy_(u)
            prior.select.weight.copy_(w_sel)
        # functional re-evaluation so gradcheck sees u and w_sel as inputs
        s = torch.sigmoid(x @ w_sel.T + prior.select.bias)
        w = s / s.sum(-1, keepdim=True)
        mu_p, logvar_p, v_p = encode(u)
        a = 10.0 * (torch.sigmoid(v_p) - 0.5)
        sl, sp = kl_spike_slab(mu[:, None], logvar[:, None], log_gamma_sigmoid(v)[:, None], mu_p[None],
                               logvar_p[None], torch.nn.functional.logsigmoid(a)[None],
                               torch.nn.functional.logsigmoid(-a)[None])
        # and the module's own result must be the same function
        got = prior.kl(x, SpikeSlab(mu, logvar, log_gamma_sigmoid(v)))
        return got[0] + got[1] + got[2], torch.einsum("bk,bkj->b", w, sl + sp)

    inputs = (mu, logvar, v, *[p.detach().clone().requires_grad_() for p in params])
    out = f(*inputs)
    torch.testing.assert_close(out[0] - prior.kl(x, SpikeSlab(mu, logvar, log_gamma_sigmoid(v)))[2], out[1])
    assert torch.autograd.gradcheck(lambda *a: prior.kl(x, SpikeSlab(a[0], a[1], log_gamma_sigmoid(a[2]))), inputs[:3])


@pytest.mark.parametrize("spike", ["min", "sigmoid"])
@pytest.mark.parametrize("prior", ["spike-slab", "pseudo-inputs", "pseudo-mixture"])
def test_model_backends_agree_with_new_options(spike, prior):
    """The fused numba op and the pure-torch reference give the same terms and gradients, for every
    spike parameterisation and prior, during spike pre-training too."""
    x = torch.rand(16, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    results = []
    for backend in ("torch", "numba"):
        torch.manual_seed(0)
        cfg = TrainConfig(dim=6, hidden=(8,), alpha=0.1, spike=spike, prior=prior, pseudo_inputs=3,
                          backend=backend, dtype="float64")
        model = VAE(cfg, 12).double()
        for lam in (0.0, 0.5, 1.0):
            terms = model.elbo_terms(x, Step(50.0, lam, model.cfg.alpha), torch.Generator().manual_seed(1))
            loss = -terms.get("objective", terms["elbo"]).mean()
            grads = torch.autograd.grad(loss, list(model.parameters()))
            results.append(({k: t.detach() for k, t in terms.items()}, grads))
    half = len(results) // 2
    for (t_torch, g_torch), (t_numba, g_numba) in zip(results[:half], results[half:]):
        assert t_torch.keys() == t_numba.keys()
        for k in t_torch:
            torch.testing.assert_close(t_numba[k], t_torch[k], rtol=1e-10, atol=1e-10)
        for a, b in zip(g_numba, g_torch):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    if prior == "pseudo-inputs":  # its objective adds the rate term; elbo_paper_prior uses eq. 4
        terms = results[0][0]
        torch.testing.assert_close(terms["objective"], terms["elbo"] - terms["kl_rate"])


def test_pretraining_sample_ignores_mu_at_lambda_zero():
    """At lambda = 0 the sample (so the reconstruction) does not depend on mu: no gradient reaches mu's
    weights through the decoder, only through the KL."""
    torch.manual_seed(0)
    cfg = TrainConfig(dim=5, hidden=(8,), alpha=0.1, dtype="float64", backend="numba")
    model = VAE(cfg, 10).double()
    x = torch.rand(8, 10, dtype=torch.float64)
    mu, logvar, v = model.encode(x)
    mu.retain_grad()
    eps_gen = torch.Generator().manual_seed(3)
    eps = torch.randn(mu.shape, dtype=mu.dtype, generator=eps_gen)
    eta = torch.rand(mu.shape, dtype=mu.dtype, generator=eps_gen)
    z = spike_slab_sample_scaled(mu, logvar, torch.clamp(v, max=0), eps, eta, 50.0, 0.0)
    (g,) = torch.autograd.grad(model.decoder.log_likelihood(x, z).sum(), mu, allow_unused=True)
    assert g is None or bool((g == 0).all())


@pytest.mark.parametrize("spike", ["min", "sigmoid"])
def test_gamma_init_for_each_spike(spike):
    """--gamma-init sets v's bias so that gamma(bias) is the asked value, for either parameterisation."""
    model = VAE(TrainConfig(dim=7, hidden=(8,), gamma_init=0.3, spike=spike), 10)
    bias = model.encoder[-1].bias.detach()[14:]
    torch.testing.assert_close(model.gamma(bias), torch.full((7,), 0.3), rtol=0, atol=1e-6)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_recipe_options_on_the_command_line(tmp_path):
    result = run("train", "--paper", "--pretrain", 100, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "--paper" in result.output and "--pretrain" in result.output
    result = run("train", "--prior", "gaussian", "--out", tmp_path / "r")
    assert result.exit_code == 2
    result = run("train", "--help-all")
    assert "a different model from the paper's" in " ".join(result.output.split())
    for bad in ({"spike": "max"}, {"pretrain": -1}, {"prior": "x"}, {"prior_sharpness": 0}):
        with pytest.raises(Exception, match="out of range"):
            TrainConfig.from_dict({**TrainConfig().to_dict(), **bad})


def test_alpha_schedule():
    from vsc_cli.models.schedule import alpha_schedule

    got = [alpha_schedule(i, 0.01, 0.16, 4) for i in range(6)]
    assert got == pytest.approx([0.16, 0.08, 0.04, 0.02, 0.01, 0.01])  # geometric: halves each step here
    assert alpha_schedule(0, 0.3, None, 100) == 0.3 and alpha_schedule(5, 0.3, 0.5, 0) == 0.3
    held = [alpha_schedule(i, 0.01, 0.16, 4, hold=3) for i in range(9)]
    assert held == pytest.approx([0.16, 0.16, 0.16, 0.16, 0.08, 0.04, 0.02, 0.01, 0.01])


@pytest.mark.parametrize("prior", ["spike-slab", "pseudo-inputs", "pseudo-mixture"])
def test_annealed_alpha_is_the_kl_of_that_alpha(prior):
    """A step whose alpha is a is exactly the model whose config says alpha = a (same weights, same noise)."""
    x = torch.rand(8, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = []
    for alpha, override in ((0.01, 0.2), (0.2, None)):
        torch.manual_seed(0)
        model = VAE(TrainConfig(dim=6, hidden=(8,), alpha=alpha, prior=prior, pseudo_inputs=3, dtype="float64"),
                    12).double()
        out.append(model.elbo_terms(x, Step(50.0, 1.0, alpha if override is None else override),
                                    torch.Generator().manual_seed(1)))
    assert out[0].keys() == out[1].keys()
    for k in out[1]:
        torch.testing.assert_close(out[0][k], out[1][k], rtol=1e-12, atol=1e-12)


def test_pseudo_mixture_bound_matches_loop_and_bounds_the_true_kl():
    from naive import mixture_kl_loop

    torch.manual_seed(0)
    B, K, J, pixels = 3, 4, 5, 6
    prior = PseudoInputPrior(pixels, K, J, alpha=0.1, sharpness=10.0, weights="posterior").double()
    enc = torch.nn.Linear(pixels, 3 * J).double()

    def encode(x):
        return enc(x).chunk(3, dim=-1)

    prior.bind(encode, log_gamma_sigmoid)
    x = rand(B, pixels, seed=7)
    mu, logvar, v = encode(x)
    lg = log_gamma_sigmoid(v)
    slab, spike, rate = prior.kl(x, SpikeSlab(mu, logvar, lg))
    with torch.no_grad():
        mu_p, logvar_p, v_p = encode(prior.u)
        gamma_p = torch.sigmoid(10.0 * (torch.sigmoid(v_p) - 0.5))
        want = mixture_kl_loop(mu, logvar, lg, mu_p, logvar_p, gamma_p)
    torch.testing.assert_close((slab + spike).detach(), want, rtol=1e-10, atol=1e-10)
    assert not hasattr(prior, "select")  # no selection network in this mode
    # an upper bound on the KL to the equal-weight mixture: check by Monte Carlo for one 1-D case
    gen = torch.Generator().manual_seed(0)
    n = 400_000
    q = (0.3, -1.0, math.log(0.7))  # mu, logvar, log gamma of q
    comps = [(0.0, 0.0, 0.9), (1.0, -0.5, 0.2)]  # (mu_p, logvar_p, gamma_p)
    on = torch.rand(n, generator=gen, dtype=torch.float64) < math.exp(q[2])
    z = q[0] + math.exp(0.5 * q[1]) * torch.randn(n, generator=gen, dtype=torch.float64)

    def log_density(z, on, m, lv, g):  # w.r.t. Lebesgue plus a unit atom at 0
        normal = -0.5 * (math.log(2 * math.pi) + lv + (z - m) ** 2 / math.exp(lv))
        return torch.where(on, math.log(g) + normal, torch.full_like(z, math.log(1 - g)))

    log_q = log_density(z, on, *q[:2], math.exp(q[2]))
    log_p = torch.logsumexp(torch.stack([log_density(z, on, *c) for c in comps]), 0) - math.log(2)
    true_kl = float((log_q - log_p).mean())
    t = lambda *a: torch.tensor([[v] for v in a], dtype=torch.float64)  # noqa: E731
    bound = float(mixture_kl_loop(t(q[0]), t(q[1]), t(q[2]), t(*[c[0] for c in comps]),
                                  t(*[c[1] for c in comps]), t(*[c[2] for c in comps]))[0])
    assert true_kl <= bound + 0.01, (true_kl, bound)
    assert bound - true_kl < 1.0  # and not a loose one here


def test_pseudo_mixture_gradcheck():
    torch.manual_seed(0)
    prior = PseudoInputPrior(4, 3, 3, alpha=0.1, sharpness=10.0, weights="posterior").double()
    enc = torch.nn.Linear(4, 9).double()

    def encode(x):
        return enc(x).chunk(3, dim=-1)

    prior.bind(encode, log_gamma_sigmoid)

    x = rand(2, 4, seed=3)
    inputs = [t.detach().clone().requires_grad_() for t in encode(x)]
    assert torch.autograd.gradcheck(
        lambda m, lv, v: prior.kl(x, SpikeSlab(m, lv, log_gamma_sigmoid(v))), inputs)


def test_recipe_settings_scale_with_the_run():
    from vsc_cli.common.config import PAPER_RECIPE, TrainConfig, recipe_settings

    d = recipe_settings("default-1", 20_000, 0.01)
    assert d == {"spike": "sigmoid", "pretrain": 8_000, "pretrain_ramp": 4_000, "alpha_start": 0.1,
                 "alpha_hold": 8_000, "alpha_anneal": 6_000, "prior": "spike-slab", "rate_weight": 0.0,
                 "rate_target": None, "centre": False, "kl_warmup": 0, "encoder_scale": None}
    # default-2 (today's default): default-1 plus the aggregate spike-rate term and the centred input
    assert recipe_settings("default", 20_000, 0.01) == recipe_settings("default-2", 20_000, 0.01) == \
        {**d, "rate_weight": 3.0, "rate_target": 0.05, "centre": True}
    # at alpha 0.05 and above the term's target is the prior's alpha of each iteration
    assert recipe_settings("default", 20_000, 0.2)["rate_target"] is None
    assert recipe_settings("default", 2_000, 0.01)["pretrain"] == 800
    assert recipe_settings("default", 20_000, 0.1)["alpha_start"] is None  # nothing to anneal from
    assert recipe_settings("paper", 20_000, 0.01) == PAPER_RECIPE
    paper = TrainConfig()  # the dataclass defaults are the paper's recipe (old checkpoints mean it)
    assert all(getattr(paper, k) == v for k, v in PAPER_RECIPE.items())


def test_experiment_points_take_the_recipe_then_the_explicit_settings():
    from vsc_cli.pipelines import experiment as E

    points = E.grid_points("dims", "fmnist", dims=(8,), models=("vae", "vsc:0.01"),
                           options={"iterations": 100, "recipe": "default", "pretrain": 7})
    vae, vsc = (E.point_config(p) for p in points)
    from vsc_cli.common.config import TrainConfig

    # the VAE has no spike: the recipe does not apply (the paper's, i.e. TrainConfig's defaults)
    assert vae == TrainConfig(data="fmnist", model="vae", dim=8, alpha=1.0, iterations=100, pretrain=7)
    assert vsc.spike == "sigmoid" and vsc.pretrain == 7 and vsc.alpha_anneal == 30 and vsc.iterations == 100
    paper = E.point_config(E.grid_points("alpha", "fmnist", options={"iterations": 100})[0])
    assert paper.spike == "min" and paper.pretrain == 0 and paper.alpha_start is None


def test_train_uses_the_default_recipe_unless_paper(shared_data, tmp_path):
    from vsc_cli.trainers.checkpoint import load_checkpoint

    base = ["train", "--data", "fmnist", "--data-dir", shared_data, "--dim", 4, "--alpha", 0.01, "--iterations", 10,
            "--train-size", 300, "--test-size", 50, "--batch-size", 50, "--quiet"]
    assert run(*base, "--out", tmp_path / "d").exit_code == 0
    cfg = load_checkpoint(tmp_path / "d")["config"]
    assert (cfg["spike"], cfg["pretrain"], cfg["pretrain_ramp"], cfg["alpha_start"], cfg["alpha_hold"],
            cfg["alpha_anneal"], cfg["rate_weight"], cfg["rate_target"], cfg["centre"]) == \
        ("sigmoid", 4, 2, 0.1, 4, 3, 3.0, 0.05, True)  # default-2
    assert run(*base, "--recipe", "default-1", "--out", tmp_path / "d1").exit_code == 0
    cfg1 = load_checkpoint(tmp_path / "d1")["config"]
    assert cfg1 == {**cfg, "rate_weight": 0.0, "rate_target": None, "centre": False}
    for bad, message in ((["--paper", "--recipe", "default-1"], "--paper is --recipe paper"),
                         (["--recipe", "paper", "--pretrain", 3], "cannot be combined with --pretrain"),
                         (["--recipe", "paper", "--resume", tmp_path / "d"], "drop --paper / --recipe")):
        result = run(*base, *bad)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert run(*base, "--paper", "--out", tmp_path / "p").exit_code == 0
    cfg = load_checkpoint(tmp_path / "p")["config"]
    assert (cfg["spike"], cfg["pretrain"], cfg["alpha_start"], cfg["prior"]) == ("min", 0, None, "spike-slab")
    result = run(*base, "--pretrain", 3, "--out", tmp_path / "o")  # one setting given: the rest from the recipe
    assert result.exit_code == 0, result.output
    cfg = load_checkpoint(tmp_path / "o")["config"]
    assert cfg["pretrain"] == 3 and cfg["spike"] == "sigmoid"


def test_a_learned_prior_is_sampled_from_itself_by_the_api_and_the_figure(tmp_path):
    """--prior pseudo-inputs: model.sample_prior draws from the pseudo-inputs' components (not eq. 4), and
    Run.sample_prior and `vsc figure prior` draw there."""
    import numpy as np

    import vsc_cli as vsc
    from vsc_cli.evaluation import figures
    from vsc_cli.trainers.checkpoint import CHECKPOINT, save_checkpoint

    cfg = TrainConfig(dim=6, hidden=(8,), alpha=0.5, spike="sigmoid", prior="pseudo-inputs", pseudo_inputs=1,
                      prior_sharpness=10.0, data="fmnist")
    torch.manual_seed(0)
    model = VAE(cfg, 16)
    with torch.no_grad():  # one pseudo-input whose components are known: elements 0-2 on, 3-5 off
        model.encoder[-1].weight.zero_()
        model.encoder[-1].bias.copy_(torch.tensor([3.0, -1, 0, 0, 0, 0,  # mu
                                                   -2.0, 0, 0, 0, 0, 0,  # log sigma^2
                                                   9, 9, 9, -9, -9, -9]))  # v: gamma ~ 1 or ~ 0
    mu_p, logvar_p, lg_p, _ = model.prior.components()
    z = model.sample_prior(20000, torch.Generator().manual_seed(3))
    rate = (z != 0).double().mean(0)
    torch.testing.assert_close(rate, torch.exp(lg_p[0]).double(), atol=0.01, rtol=0)
    on = z[:, 0][z[:, 0] != 0]  # the slab of element 0: N(mu_p, sigma_p^2) = N(3, e^-2)
    assert abs(float(on.mean()) - 3.0) < 0.02 and abs(float(on.std()) - math.exp(-1.0)) < 0.02
    assert float(rate[3:].max()) < 0.01  # eq. 4 at alpha 0.5 would switch these on half the time
    # a run folder of this model: the API and the figure sample the same learned prior
    state = {"vsc_version": "test", "config": cfg.to_dict(), "pixels": 16, "iteration": 1,
             "model": model.state_dict(), "optimizer": {"state": {}, "param_groups": []},
             "perm": torch.arange(3), "pos": 0, "seconds": 0.0,
             "rng": {"data": torch.Generator().get_state(), "noise": torch.Generator().get_state()},
             "log_window": {"sums": {}, "count": 0}}
    state["config"]["image_shape"] = None
    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / CHECKPOINT, state)
    run = vsc.load(tmp_path / "run")
    _, codes = run.sample_prior(2000, seed=4, return_codes=True)
    assert float((codes[:, 3:] != 0).double().mean()) < 0.01 and float((codes[:, :3] != 0).double().mean()) > 0.99
    seen = []
    original = VAE.sample_prior

    def spy(self, n, generator=None):
        out = original(self, n, generator)
        seen.append(out)
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(VAE, "sample_prior", spy)
        loaded = figures.load(tmp_path / "run", None, need_data=False)
        figures._prior(loaded, 16, np.random.default_rng(0))
    assert len(seen) == 1 and float((seen[0][:, 3:] != 0).double().mean()) < 0.05


def test_a_run_started_with_data_settings_resumes_with_them(shared_data, tmp_path):
    """--encoder-scale data / --logvar-init data are resolved to numbers when training starts and the checkpoint
    keeps the numbers; resuming with the same words is the same run (and a vsc experiment point too)."""
    from vsc_cli.trainers.checkpoint import load_checkpoint
    from vsc_cli.common.config import same_setting

    base = ["--data", "fmnist", "--data-dir", shared_data, "--dim", 4, "--train-size", 300, "--test-size", 50,
            "--batch-size", 50, "--quiet", "--encoder-scale", "data", "--logvar-init", "data"]
    result = run("train", *base, "--iterations", 4, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    cfg = load_checkpoint(tmp_path / "r")["config"]
    assert isinstance(cfg["encoder_scale"], float) and cfg["encoder_scale"] > 1
    result = run("train", "--resume", tmp_path / "r", "--encoder-scale", "data", "--logvar-init", "data",
                 "--data-dir", shared_data, "--quiet")
    assert result.exit_code == 0, result.output
    result = run("train", "--resume", tmp_path / "r", "--encoder-scale", 3, "--data-dir", shared_data, "--quiet")
    assert result.exit_code == 2 and "differs from the run being resumed" in result.output
    assert same_setting(12.5, "data") and same_setting(None, None) and not same_setting(None, "data")
    assert not same_setting(12.5, 3.0)


def test_a_run_folder_holds_a_config_file_that_trains_it_again(shared_data, tmp_path):
    """vsc train writes RUN/config.toml (every setting); `vsc train --config RUN/config.toml` builds the same
    config, options given beside it win, and a bad file is one line, exit 2."""
    from vsc_cli.trainers.checkpoint import load_checkpoint
    from vsc_cli.common.config import TrainConfig, from_toml, to_toml

    base = ["--data-dir", shared_data, "--quiet"]
    result = run("train", "--data", "fmnist", "--dim", 4, "--alpha", 0.2, "--iterations", 3, "--train-size", 200,
                 "--test-size", 50, "--batch-size", 50, "--out", tmp_path / "a", *base)
    assert result.exit_code == 0, result.output
    first = load_checkpoint(tmp_path / "a")["config"]
    # the file holds the backend asked for (auto), so that it trains on another device too; the checkpoint the one used
    assert TrainConfig(**from_toml((tmp_path / "a" / "config.toml").read_text())).to_dict() == \
        {**first, "backend": "auto"}
    result = run("train", "--config", tmp_path / "a" / "config.toml", "--out", tmp_path / "b", *base)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "b")["config"] == first
    assert (tmp_path / "a" / "log.csv").read_text().splitlines()[1].split(",")[:-1] == \
        (tmp_path / "b" / "log.csv").read_text().splitlines()[1].split(",")[:-1]  # the same run again
    result = run("train", "--config", tmp_path / "a" / "config.toml", "--seed", 5, "--out", tmp_path / "c", *base)
    assert result.exit_code == 0 and load_checkpoint(tmp_path / "c")["config"]["seed"] == 5
    # every kind of value survives the round trip, None included
    cfg = TrainConfig(hidden=(3, 2), rate_target=0.05, centre=True, encoder_scale=12.5, data="/x/my data \"q\"")
    assert TrainConfig(**from_toml(to_toml(cfg))) == cfg
    for text, message in (("dims = 3\n", "unknown setting 'dims'"), ("alpha = 2.0\n", "alpha = 2.0"),
                          ("alpha = \n", "not TOML")):
        (tmp_path / "bad.toml").write_text(text)
        result = run("train", "--config", tmp_path / "bad.toml", "--out", tmp_path / "d", *base)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
