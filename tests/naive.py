"""Brute-force references, written independently of vsc_kernels (float64, plain formulas)."""
import math

import torch


def kl_monte_carlo(mu, sigma, gamma, alpha, n, generator):
    """KL(q || p) for one latent element by sampling q with a hard (non-relaxed) spike.

    q = gamma N(mu, sigma^2) + (1 - gamma) delta(0), p = alpha N(0, 1) + (1 - alpha) delta(0).
    Densities are with respect to Lebesgue measure plus a unit atom at 0, so a spike-off draw
    contributes log((1 - gamma) / (1 - alpha)) and a spike-on draw log(gamma N(z; mu, sigma) /
    (alpha N(z; 0, 1))). Returns (estimate, standard error).
    """
    on = torch.rand(n, generator=generator, dtype=torch.float64) < gamma
    z = mu + sigma * torch.randn(n, generator=generator, dtype=torch.float64)
    log_n_q = -0.5 * math.log(2 * math.pi) - math.log(sigma) - 0.5 * ((z - mu) / sigma) ** 2
    log_n_p = -0.5 * math.log(2 * math.pi) - 0.5 * z ** 2
    on_term = math.log(gamma) + log_n_q - math.log(alpha) - log_n_p
    off_term = torch.full_like(z, math.log(1 - gamma) - math.log(1 - alpha) if gamma < 1 else 0.0)
    samples = torch.where(on, on_term, off_term)
    return float(samples.mean()), float(samples.std() / math.sqrt(n))


def kl_loop(mu, logvar, v, alpha):
    """Eq. 9 element by element with Python floats: (slab row sums, spike row sums)."""
    slab, spike = [], []
    for i in range(mu.shape[0]):
        s1 = s2 = 0.0
        for j in range(mu.shape[1]):
            m, lv, vv = float(mu[i, j]), float(logvar[i, j]), float(v[i, j])
            g = math.exp(min(vv, 0.0))
            s1 += g * 0.5 * (m * m + math.exp(lv) - 1 - lv)
            one_m_g = -math.expm1(min(vv, 0.0))
            off = one_m_g * (math.log(one_m_g) - math.log(max(1 - alpha, 1e-6))) if one_m_g > 0 else 0.0
            s2 += g * (min(vv, 0.0) - math.log(alpha)) + off
        slab.append(s1)
        spike.append(s2)
    return torch.tensor(slab, dtype=torch.float64), torch.tensor(spike, dtype=torch.float64)


def sample_loop(mu, logvar, v, eps, eta, c):
    """Eq. 24 element by element: z = S(c (eta - 1 + gamma)) (mu + sigma eps)."""
    out = torch.empty(mu.shape, dtype=torch.float64)
    for i in range(mu.shape[0]):
        for j in range(mu.shape[1]):
            g = math.exp(min(float(v[i, j]), 0.0))
            y = c * (float(eta[i, j]) - 1 + g)
            sel = 1 / (1 + math.exp(-y)) if y > -700 else 0.0
            out[i, j] = sel * (float(mu[i, j]) + math.exp(0.5 * float(logvar[i, j])) * float(eps[i, j]))
    return out
