"""The model's ELBO (eq. 11) assembled from independently written pieces: torch.distributions for the
decoder's likelihood (A.1) and the VAE's KL, the element-by-element loops of tests/naive.py for eq. 9 and
eq. 24. Every other training test compares the model with itself (backends, resumes, processes); these
compare it with the paper."""
import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from naive import kl_loop, sample_loop
from vsc_cli.common.config import TrainConfig
from vsc_cli.models.vae import VAE
from vsc_cli.models.schedule import Step

PIXELS, DIM, BATCH = 12, 5, 6


def model(**kw):
    torch.manual_seed(0)
    cfg = TrainConfig(data="fmnist", dim=DIM, hidden=(8,), dtype="float64", **kw)
    net = VAE(cfg, PIXELS).double()
    if "v" in net.family.heads:  # spread v around 0 so that both sides of eq. 12's kink are exercised
        with torch.no_grad():
            net.encoder[-1].bias[2 * DIM:] = torch.linspace(-2.0, 1.0, DIM, dtype=torch.float64)
    return net


def images():
    x = torch.rand(BATCH, PIXELS, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)  # unit L2 norm per image (D.2)


def test_gaussian_log_likelihood_is_normal_log_prob():
    net = model()
    z = torch.randn(BATCH, DIM, dtype=torch.float64)
    x = images()
    mean, logvar = net.decoder(z)
    want = Normal(mean, torch.exp(0.5 * logvar)).log_prob(x).sum(-1)
    torch.testing.assert_close(net.decoder.log_likelihood(x, z), want, rtol=1e-12, atol=1e-10)


def test_bernoulli_log_likelihood_is_bernoulli_log_prob():
    net = model(likelihood="bernoulli", normalisation="01")
    z = torch.randn(BATCH, DIM, dtype=torch.float64)
    logits, _ = net.decoder(z)
    for x in ((torch.rand(BATCH, PIXELS, dtype=torch.float64) > 0.5).double(),  # binary pixels
              torch.rand(BATCH, PIXELS, dtype=torch.float64)):  # grey levels: the same formula, continued
        want = Bernoulli(logits=logits, validate_args=False).log_prob(x).sum(-1)
        torch.testing.assert_close(net.decoder.log_likelihood(x, z), want, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(net.decoder.mean(z), torch.sigmoid(logits))


def noise(seed):
    """The model's noise, drawn in its documented order from one generator: eps (the slab), then eta (the spike)."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(BATCH, DIM, generator=g, dtype=torch.float64)
    eta = torch.rand(BATCH, DIM, generator=g, dtype=torch.float64)
    return eps, eta


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("spike", ["min", "sigmoid"])
@pytest.mark.parametrize("lam", [1.0, 0.3])
def test_vsc_elbo_is_eq_11(backend, spike, lam):
    """ELBO = E_q log p(x|z) - sum_j [gamma KL(slab) + KL(Bern(gamma) || Bern(alpha))], one sample of eq. 24."""
    alpha, c = 0.2, 120.0
    net = model(alpha=alpha, spike=spike, backend=backend)
    x = images()
    terms = net.elbo_terms(x, Step(c, lam, alpha), generator=torch.Generator().manual_seed(7))
    mu, logvar, v = (t.detach() for t in net.encode(x))
    # log gamma: eq. 12, or log sigmoid(v) for --spike sigmoid; both are <= 0, where the loops' min(., 0) is the identity
    lg = torch.clamp(v, max=0.0) if spike == "min" else torch.log(torch.sigmoid(v))
    eps, eta = noise(7)
    # spike pre-training (lam < 1): the sample's slab is N(lam mu, exp(lam log sigma^2)); the KL is untouched
    z = sample_loop(lam * mu, lam * logvar, lg, eps, eta, c)
    kl_slab, kl_spike = kl_loop(mu, logvar, lg, alpha)
    mean, dec_logvar = net.decoder(z)
    recon = Normal(mean, torch.exp(0.5 * dec_logvar)).log_prob(x).sum(-1)
    want = {"recon": recon, "kl_slab": kl_slab, "kl_spike": kl_spike, "elbo": recon - kl_slab - kl_spike,
            "active": torch.exp(lg).mean(-1)}
    for name, value in want.items():
        torch.testing.assert_close(terms[name].detach(), value, rtol=1e-9, atol=1e-9, msg=name)
    assert (kl_spike > 0.1).all() and (kl_slab > 0.01).all()  # both KL terms matter in the sum checked


def test_vae_elbo_is_gaussian_kl():
    net = model(model="vae")
    x = images()
    terms = net.elbo_terms(x, Step(50.0, 1.0, 1.0), generator=torch.Generator().manual_seed(3))
    assert net.family.heads == ("mu", "logvar")  # no spike head
    mu, logvar = net.encode(x)
    eps = torch.randn(BATCH, DIM, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * eps
    mean, dec_logvar = net.decoder(z)
    recon = Normal(mean, torch.exp(0.5 * dec_logvar)).log_prob(x).sum(-1)
    kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(terms["elbo"], recon - kl, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(terms["kl_slab"], kl, rtol=1e-9, atol=1e-9)
    assert "kl_spike" not in terms and net.family.terms == {"kl_slab": "KL"}  # the VAE's one KL term, no spike's


def test_hard_sample_is_exact_spike_draw():
    """Step.evaluation (the exact draw of eq. 25): the element is the slab draw where eta > 1 - gamma and exactly 0 elsewhere."""
    net = model(alpha=0.2)
    x = images()
    terms = net.elbo_terms(x, Step.evaluation(0.2), generator=torch.Generator().manual_seed(5))
    mu, logvar, v = (t.detach() for t in net.encode(x))
    eps, eta = noise(5)
    on = eta > 1 - torch.exp(torch.clamp(v, max=0.0))
    assert 0 < on.double().mean() < 1
    z = torch.where(on, mu + torch.exp(0.5 * logvar) * eps, torch.zeros_like(mu))
    mean, dec_logvar = net.decoder(z)
    recon = Normal(mean, torch.exp(0.5 * dec_logvar)).log_prob(x).sum(-1)
    torch.testing.assert_close(terms["recon"].detach(), recon, rtol=1e-9, atol=1e-9)
    assert math.isfinite(float(terms["elbo"].detach().sum()))
