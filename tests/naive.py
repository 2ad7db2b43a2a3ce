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
            # (1 - gamma) log((1 - gamma) / (1 - alpha)), 0 at gamma = 1 (its limit); at alpha = 1 the
            # prior has no atom at 0, so any gamma < 1 gives +inf (the paper's eq. 9 as written)
            if one_m_g == 0:
                off = 0.0
            elif alpha == 1:
                off = math.inf
            else:
                off = one_m_g * (math.log(one_m_g) - math.log(1 - alpha))
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


def kl_general_loop(mu, logvar, log_gamma, mu_p, logvar_p, gamma_p):
    """Eq. 9 against a per-element spike-and-slab prior N(mu_p, sigma_p^2), gamma_p, element by element:
    (gamma KL(N(mu, s^2) || N(mu_p, s_p^2)), KL(Bern(gamma) || Bern(gamma_p))), each (B, J)."""
    slab = torch.empty(mu.shape, dtype=torch.float64)
    spike = torch.empty(mu.shape, dtype=torch.float64)
    for i in range(mu.shape[0]):
        for j in range(mu.shape[1]):
            m, s2 = float(mu[i, j]), math.exp(float(logvar[i, j]))
            mp, s2p = float(mu_p[i, j]), math.exp(float(logvar_p[i, j]))
            g, gp = math.exp(float(log_gamma[i, j])), float(gamma_p[i, j])
            kl_normal = 0.5 * (math.log(s2p / s2) + (s2 + (m - mp) ** 2) / s2p - 1)
            slab[i, j] = g * kl_normal
            off = (1 - g) * math.log((1 - g) / (1 - gp)) if g < 1 else 0.0
            spike[i, j] = g * math.log(g / gp) + off
    return slab, spike


def pseudo_input_kl_loop(w, mu, logvar, log_gamma, mu_p, logvar_p, gamma_p, alpha):
    """The pseudo-input prior's per-image terms from their definition (priors.py), image by image:
    sum_k w_bk sum_j [slab, spike] against component k, and J KL(Bern(r_b) || Bern(alpha)) with
    r_b = mean_j sum_k w_bk gamma_p[k, j]."""
    B, J = mu.shape
    K = mu_p.shape[0]
    slab, spike, rate = [], [], []
    for b in range(B):
        s1 = s2 = 0.0
        for k in range(K):
            sl, sp = kl_general_loop(mu[b:b + 1], logvar[b:b + 1], log_gamma[b:b + 1], mu_p[k:k + 1],
                                     logvar_p[k:k + 1], gamma_p[k:k + 1])
            s1 += float(w[b, k]) * float(sl.sum())
            s2 += float(w[b, k]) * float(sp.sum())
        r = sum(float(w[b, k]) * float(gamma_p[k, j]) for k in range(K) for j in range(J)) / J
        slab.append(s1)
        spike.append(s2)
        rate.append(J * (r * math.log(r / alpha) + (1 - r) * math.log((1 - r) / (1 - alpha))))
    return [torch.tensor(t, dtype=torch.float64) for t in (slab, spike, rate)]


def mixture_kl_loop(mu, logvar, log_gamma, mu_p, logvar_p, gamma_p):
    """-log (1/K) sum_k exp(-KL(q_b || p_k)) per image b, with each KL(q_b || p_k) from kl_general_loop."""
    B, K = mu.shape[0], mu_p.shape[0]
    out = []
    for b in range(B):
        kls = []
        for k in range(K):
            sl, sp = kl_general_loop(mu[b:b + 1], logvar[b:b + 1], log_gamma[b:b + 1], mu_p[k:k + 1],
                                     logvar_p[k:k + 1], gamma_p[k:k + 1])
            kls.append(float(sl.sum() + sp.sum()))
        m = min(kls)
        out.append(m - math.log(sum(math.exp(-(x - m)) for x in kls) / K))
    return torch.tensor(out, dtype=torch.float64)


def aggregate_rate_loop(gamma, target):
    """sum_j KL(Bern(gbar_j) || Bern(target)), gbar_j = the mean over rows of gamma[:, j], with Python floats
    (0 log 0 = 0). Returns (value, gradient with respect to every gamma[b, j])."""
    rows, cols = len(gamma), len(gamma[0])
    value, grad = 0.0, [[0.0] * cols for _ in range(rows)]
    for j in range(cols):
        g = sum(float(gamma[b][j]) for b in range(rows)) / rows
        on = g * math.log(g / target) if g > 0 else 0.0
        off = (1 - g) * math.log((1 - g) / (1 - target)) if g < 1 else 0.0
        value += on + off
        # d KL / d gbar = log(gbar / target) - log((1 - gbar) / (1 - target)), spread over the rows' 1/B
        slope = math.log(g / target) - math.log((1 - g) / (1 - target)) if 0 < g < 1 else math.nan
        for b in range(rows):
            grad[b][j] = slope / rows
    return value, grad


def threshold_loop(mu, logvar, eps, lam):
    """Fallah & Rozell's thresholded draw element by element: n = sigma eps; 0 if |n| <= lam, else
    mu + sign(n) (|n| - lam)."""
    out = torch.zeros_like(mu, dtype=torch.float64)
    for i in range(mu.shape[0]):
        for j in range(mu.shape[1]):
            n = math.exp(0.5 * float(logvar[i, j])) * float(eps[i, j])
            if abs(n) > lam:
                out[i, j] = float(mu[i, j]) + math.copysign(abs(n) - lam, n)
    return out.to(mu.dtype)


def gaussian_kl_loop(mu, logvar, variance):
    """Row sums of KL(N(mu, sigma^2) || N(0, variance)) with Python floats."""
    rows = []
    for i in range(mu.shape[0]):
        total = 0.0
        for j in range(mu.shape[1]):
            m, s2 = float(mu[i, j]), math.exp(float(logvar[i, j]))
            total += 0.5 * (math.log(variance / s2) + (s2 + m * m) / variance - 1.0)
        rows.append(total)
    return torch.tensor(rows, dtype=torch.float64)


def topk_loop(pre, k: int):
    """The top-k code, plainly: per image, the k largest pre-activations through a ReLU, 0 elsewhere."""
    z = torch.zeros_like(pre)
    for i in range(pre.shape[0]):
        for j in torch.argsort(pre[i], descending=True)[:k].tolist():
            z[i, j] = torch.relu(pre[i, j])
    return z


def auxk_loop(decode, x, pre, k: int, k_aux: int, dead):
    """AuxK's loss (Gao et al. 2024, through a decoder), image by image: the k_aux largest pre-activations among the
    dead latents, through a ReLU, added to the top-k code; ||x - dec(z + z_aux)||^2 / ||x - dec(z)||^2, weighted 1/32
    and averaged over the images."""
    total = 0.0
    z = topk_loop(pre, k)
    for i in range(pre.shape[0]):
        cand = [j for j in torch.argsort(pre[i], descending=True).tolist() if dead[j]][:k_aux]
        z_aux = torch.zeros_like(pre[i])
        for j in cand:
            z_aux[j] = torch.relu(pre[i, j])
        missed = ((x[i] - decode(z[i:i + 1])[0]) ** 2).sum()
        total = total + ((x[i] - decode(z[i:i + 1] + z_aux[None])[0]) ** 2).sum() / missed
    return total / pre.shape[0] / 32
