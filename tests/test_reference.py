"""The pure-torch reference (kernels/reference.py) against the paper's equations."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vsc_kernels import SpikeSlab, SpikeSlabPrior, kl_spike, spike_slab_ref

from naive import kl_loop, kl_monte_carlo, sample_loop


def inputs(b=5, j=7, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, j, generator=g, dtype=dtype)
    logvar = torch.randn(b, j, generator=g, dtype=dtype)
    v = 2 * torch.randn(b, j, generator=g, dtype=dtype)
    eps = torch.randn(b, j, generator=g, dtype=dtype)
    eta = torch.rand(b, j, generator=g, dtype=dtype)
    return mu, logvar, v, eps, eta


@pytest.mark.parametrize("mu,sigma,gamma,alpha", [
    (0.0, 1.0, 0.5, 0.5), (1.5, 0.3, 0.9, 0.2), (-2.0, 2.0, 0.1, 0.01), (0.7, 0.05, 0.99, 0.5),
    (0.3, 1.2, 0.02, 0.8),
])
def test_closed_form_kl_matches_monte_carlo_with_hard_spike(mu, sigma, gamma, alpha):
    closed = SpikeSlab(torch.tensor(mu, dtype=torch.float64), torch.tensor(2 * math.log(sigma), dtype=torch.float64),
                       torch.tensor(math.log(gamma), dtype=torch.float64))
    kl = float(kl_divergence(closed, SpikeSlabPrior(alpha)))
    est, se = kl_monte_carlo(mu, sigma, gamma, alpha, 400_000, torch.Generator().manual_seed(1))
    assert abs(kl - est) < 5 * se + 1e-3, (kl, est, se)


def test_kl_equals_log_prob_difference_under_q():
    """The distributions' own log_prob agrees with the closed form (hard draws, MC)."""
    q = SpikeSlab(torch.tensor([0.4, -1.0]), torch.tensor([-0.5, 0.3]), torch.tensor([-0.7, -0.1]))
    p = SpikeSlabPrior(0.3)
    torch.manual_seed(3)
    z = q.sample((200_000,))
    est = (q.log_prob(z) - p.log_prob(z)).mean(0)
    assert torch.allclose(est, kl_divergence(q, p), atol=0.02)


def test_vae_limit_gamma_alpha_one_is_gaussian_kl():
    mu, logvar, _, eps, eta = inputs()
    v = torch.rand_like(mu) + 0.01  # v > 0: gamma = 1 exactly
    _, slab, spike = spike_slab_ref(mu, logvar, v, eps, eta, 200.0, 1.0)
    want = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    assert torch.equal(spike, torch.zeros_like(spike))
    torch.testing.assert_close(slab, want)


def test_values_match_elementwise_loops():
    mu, logvar, v, eps, eta = inputs()
    for c, alpha in [(50.0, 0.5), (200.0, 0.01), (123.0, 1.0)]:
        z, slab, spike = spike_slab_ref(mu, logvar, v, eps, eta, c, alpha)
        want_slab, want_spike = kl_loop(mu, logvar, v, alpha)
        torch.testing.assert_close(z, sample_loop(mu, logvar, v, eps, eta, c))
        torch.testing.assert_close(slab, want_slab)
        finite = torch.isfinite(want_spike)
        torch.testing.assert_close(spike[finite], want_spike[finite])
        if alpha < 1:
            assert finite.all()
        else:
            # alpha = 1: eq. 9 is +inf wherever gamma < 1; the implementation's one departure (the floor
            # on 1 - alpha) keeps it finite and large, at least 10 nats per unit of (1 - gamma)
            assert (~finite).any() and torch.isfinite(spike).all()
            one_m_gamma = -torch.expm1(torch.clamp(v, max=0.0)).sum(-1)
            assert (spike[~finite] > 10 * one_m_gamma[~finite]).all()


@pytest.mark.parametrize("gamma", [0.05, 0.3, 0.8])
def test_large_c_nonzero_fraction_matches_gamma(gamma):
    n = 200_000
    g = torch.Generator().manual_seed(0)
    mu = torch.ones(n, 1, dtype=torch.float64)  # with eps = 0 the slab is exactly 1, so z is the selection
    eps, eta = torch.zeros_like(mu), torch.rand(mu.shape, generator=g, dtype=torch.float64)
    v = torch.full_like(mu, math.log(gamma))
    tol = 4 * math.sqrt(gamma * (1 - gamma) / n)
    z, _, _ = spike_slab_ref(mu, torch.zeros_like(mu), v, eps, eta, 1e5, 0.5)
    # "non-zero": above 1e-6; for c = 1e5 that admits eta within 1.4e-4 of the threshold 1 - gamma
    assert abs(float((z > 1e-6).double().mean()) - gamma) < tol + 2e-4
    # a small c is visibly not a hard spike: many more elements are pushed away from 0
    z50, _, _ = spike_slab_ref(mu, torch.zeros_like(mu), v, eps, eta, 50.0, 0.5)
    assert float((z50 > 1e-6).double().mean()) > gamma + 0.1


def test_exact_sample_has_atom_at_zero_with_mass_one_minus_gamma():
    q = SpikeSlab(torch.zeros(100_000), torch.zeros(100_000), torch.full((100_000,), math.log(0.25)))
    torch.manual_seed(0)
    z = q.sample()
    assert abs(float((z == 0).float().mean()) - 0.75) < 0.01
    assert abs(float(z[z != 0].std()) - 1.0) < 0.02


@pytest.mark.parametrize("v_value", [5.0, 0.0, -1e-30, -1e-6, -30.0, -90.0, -1e4])
def test_gradients_finite_at_gamma_edges(v_value):
    for dtype in (torch.float32, torch.float64):
        mu, logvar, _, eps, eta = inputs(dtype=dtype)
        v = torch.full_like(mu, v_value)
        for t in (mu, logvar, v):
            t.requires_grad_(True)
        w = torch.randn(mu.shape, dtype=dtype, generator=torch.Generator().manual_seed(9))
        z, slab, spike = spike_slab_ref(mu, logvar, v, eps, eta, 200.0, 0.5)
        loss = (w * z).sum() + slab.sum() + spike.sum()
        assert torch.isfinite(loss)
        grads = torch.autograd.grad(loss, (mu, logvar, v))
        for g in grads:
            assert torch.isfinite(g).all()
        if v_value >= 0:  # gamma = 1 exactly: eq. 12 passes no gradient to v
            assert torch.equal(grads[2], torch.zeros_like(grads[2]))


def test_spike_kl_gradient_is_logit_difference():
    """d KL_spike / d v = gamma (logit gamma - logit alpha) for v < 0 (derived from eq. 9, 12)."""
    v = torch.tensor([-3.0, -0.5, -1e-3], dtype=torch.float64, requires_grad=True)
    alpha = 0.2
    (grad,) = torch.autograd.grad(kl_spike(torch.minimum(v, torch.zeros_like(v)), alpha).sum(), v)
    g = torch.exp(v.detach())
    want = g * (torch.log(g / (1 - g)) - math.log(alpha / (1 - alpha)))
    torch.testing.assert_close(grad, want)


def test_gradcheck_reference_float64():
    mu, logvar, v, eps, eta = inputs(3, 4)
    v = v.clamp(max=-0.05)  # away from the kink of min(v, 0), where gradcheck's finite difference is one-sided
    args = [t.clone().requires_grad_(True) for t in (mu, logvar, v)]
    assert torch.autograd.gradcheck(lambda a, b, c_: spike_slab_ref(a, b, c_, eps, eta, 70.0, 0.3), args)


def test_prior_validates_alpha_and_samples_sparsely():
    with pytest.raises(ValueError):
        SpikeSlabPrior(0.0)
    with pytest.raises(ValueError):
        SpikeSlabPrior(1.5)
    z = SpikeSlabPrior(0.2, (100_000,)).sample(generator=torch.Generator().manual_seed(0))
    assert abs(float((z != 0).float().mean()) - 0.2) < 0.01
