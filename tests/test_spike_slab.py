"""The spike-and-slab family's options beyond the paper (vsc_cli/models/spike_slab.py): the sigmoid spike, spike
pre-training's slab-scaled sample, --gamma-init, against references written from their definitions; and the fused
op and the torch reference agreeing on the model's terms under every option."""
import pytest
import torch

from vsc_cli.common.config import TrainConfig
from vsc_cli.models.schedule import Step
from vsc_cli.models.vae import VAE
from vsc_kernels import log_gamma_sigmoid, spike_slab_ref, spike_slab_sample_scaled

from conftest import rand
from naive import sample_loop


def test_sigmoid_spike_is_log_sigmoid_without_a_flat_region():
    v = torch.tensor([-50.0, -3.0, 0.0, 2.0, 30.0], dtype=torch.float64, requires_grad=True)
    lg = log_gamma_sigmoid(v)
    torch.testing.assert_close(lg, torch.log(torch.sigmoid(v.detach())), rtol=1e-12, atol=1e-15)
    (g,) = torch.autograd.grad(lg.sum(), v)
    torch.testing.assert_close(g, 1 - torch.sigmoid(v.detach()))  # d log S(v) / dv = 1 - S(v) > 0
    assert (g > 0).all()


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
    zero = torch.zeros_like(bias)
    gamma = model.family.from_heads((zero, zero, bias), model.cfg).gamma  # q(z|x)'s gamma where v = the bias
    torch.testing.assert_close(gamma, torch.full((7,), 0.3), rtol=0, atol=1e-6)


@pytest.mark.parametrize("spike", ["min", "sigmoid"])
def test_gate_magnitude_adds_the_slabs_magnitude_to_v_without_gradient_into_mu(spike):
    """--gate-magnitude s: log gamma is eq. 12's (or the sigmoid's) of v + s |mu|, the same for mu and -mu, and
    the gate's gradient reaches v only (mu learns from the slab's terms alone)."""
    mu, v = rand(4, 6, seed=7).requires_grad_(), rand(4, 6, seed=8).requires_grad_()
    logvar = rand(4, 6, seed=9)
    cfg = TrainConfig(dim=6, spike=spike, gate_magnitude=0.7)
    q = VAE(cfg, 10).family.from_heads((mu, logvar, v), cfg)
    shifted = (v + 0.7 * mu.abs()).detach()
    want = torch.clamp(shifted, max=0) if spike == "min" else torch.log(torch.sigmoid(shifted))
    torch.testing.assert_close(q.log_gamma, want, rtol=1e-12, atol=1e-14)
    flipped = VAE(cfg, 10).family.from_heads((-mu, logvar, v), cfg)
    torch.testing.assert_close(flipped.log_gamma, q.log_gamma, rtol=0, atol=0)
    (gmu, gv) = torch.autograd.grad(q.log_gamma.sum(), (mu, v), allow_unused=True)
    assert gmu is None or bool((gmu == 0).all())
    assert bool((gv != 0).any())
    plain = VAE(TrainConfig(dim=6, spike=spike), 10).family.from_heads((mu, logvar, v), cfg.replace(gate_magnitude=0.0))
    torch.testing.assert_close(plain.log_gamma, torch.clamp(v, max=0) if spike == "min" else torch.log(torch.sigmoid(v)))


@pytest.mark.parametrize("spike", ["min", "sigmoid"])
def test_gate_gradient_is_the_gates_own_gradient_into_mu(spike):
    """--gate-gradient: the same log gamma, and its gradient into mu is d log gamma / d(v + s|mu|) * s sign(mu),
    written out by hand (float64)."""
    mu, v = rand(4, 6, seed=7).requires_grad_(), rand(4, 6, seed=8).requires_grad_()
    logvar = rand(4, 6, seed=9)
    cfg = TrainConfig(dim=6, spike=spike, gate_magnitude=0.7, gate_gradient=True)
    q = VAE(cfg, 10).family.from_heads((mu, logvar, v), cfg)
    shifted = (v + 0.7 * mu.abs()).detach()
    want = torch.clamp(shifted, max=0) if spike == "min" else torch.log(torch.sigmoid(shifted))
    torch.testing.assert_close(q.log_gamma, want, rtol=1e-12, atol=1e-14)
    gmu, gv = torch.autograd.grad(q.log_gamma.sum(), (mu, v))
    # d/du min(u, 0) = [u < 0]; d/du log sigmoid(u) = 1 - sigmoid(u)
    outer = (shifted < 0).double() if spike == "min" else 1 - torch.sigmoid(shifted)
    torch.testing.assert_close(gv, outer, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gmu, outer * 0.7 * torch.sign(mu.detach()), rtol=1e-12, atol=1e-14)
