"""The priors' KL terms against slow references written from their definitions, values and gradients: the general
spike-and-slab KL (eq. 9 with a per-element prior), the Bernoulli KL, the learned pseudo-input prior and its
mixture form (vsc_cli/models/pseudo_inputs.py); and the learned prior's own samples."""
import math

import pytest
import torch
from torch.distributions import Bernoulli, kl_divergence

from vsc_cli.common.config import TrainConfig
from vsc_cli.models.pseudo_inputs import PseudoInputPrior, PseudoMixturePrior
from vsc_cli.models.vae import VAE
from vsc_kernels import SpikeSlab, kl_bernoulli, kl_spike, kl_spike_slab, kl_slab, log_gamma_sigmoid

from conftest import rand
from naive import kl_general_loop, pseudo_input_kl_loop


def bind(prior, encode):
    """The prior's components through `encode` (x -> the (mu, logvar, v) heads), v read as the sigmoid spike."""
    def posterior(x):
        mu, logvar, v = encode(x)
        return SpikeSlab(mu, logvar, log_gamma_sigmoid(v))

    return prior.bind(posterior)


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


def _prior_inputs(B=3, K=2, J=4, pixels=5):
    torch.manual_seed(0)
    prior = PseudoInputPrior(pixels, K, J, alpha=0.1, sharpness=10.0).double()
    enc = torch.nn.Linear(pixels, 3 * J).double()

    def encode(x):
        return enc(x).chunk(3, dim=-1)

    bind(prior, encode)

    return prior, encode, rand(B, pixels, seed=7)


def test_pseudo_input_prior_matches_loop():
    prior, encode, x = _prior_inputs()
    mu, logvar, v = encode(x)
    lg = log_gamma_sigmoid(v)
    slab, spike, rate = prior.kl(x, SpikeSlab(mu, logvar, lg))
    with torch.no_grad():
        s = torch.sigmoid(x @ prior.select.weight.T + prior.select.bias)  # the selection weights, by definition
        w = s / s.sum(-1, keepdim=True)
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


def test_pseudo_mixture_bound_matches_loop_and_bounds_the_true_kl():
    from naive import mixture_kl_loop

    torch.manual_seed(0)
    B, K, J, pixels = 3, 4, 5, 6
    prior = PseudoMixturePrior(pixels, K, J, alpha=0.1, sharpness=10.0).double()
    enc = torch.nn.Linear(pixels, 3 * J).double()

    def encode(x):
        return enc(x).chunk(3, dim=-1)

    bind(prior, encode)
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
    prior = PseudoMixturePrior(4, 3, 3, alpha=0.1, sharpness=10.0).double()
    enc = torch.nn.Linear(4, 9).double()

    def encode(x):
        return enc(x).chunk(3, dim=-1)

    bind(prior, encode)

    x = rand(2, 4, seed=3)
    inputs = [t.detach().clone().requires_grad_() for t in encode(x)]
    assert torch.autograd.gradcheck(
        lambda m, lv, v: prior.kl(x, SpikeSlab(m, lv, log_gamma_sigmoid(v))), inputs)


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
