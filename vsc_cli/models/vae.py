"""The model every family shares (paper section 3, appendix A): an encoder ending in the family's heads, a
decoder, and the ELBO's terms. What differs between families is asked of the family's posterior class
(models/distributions.py), found by the `--model` value in common.registry.FAMILIES."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vsc_kernels import gaussian_loglik
from vsc_kernels.loglik import LOG_2PI

from vsc_cli.common.config import TrainConfig
from vsc_cli.common.errors import VscError
from vsc_cli.common.registry import FAMILIES, NETWORKS
from vsc_cli.models.distributions import draw_and_kl
from vsc_cli.models.schedule import Step


def networks_of(cfg) -> tuple:
    """The run's encoder network class and its decoder's: the encoder's mirrored, or a decoder-only one named by
    --decoder (the linear dictionary)."""
    network = NETWORKS[cfg.network]
    return network, NETWORKS[cfg.decoder] if cfg.decoder in NETWORKS.tagged("decoder-only") else network


class Decoder(nn.Module):
    """p(x|z): a network (networks.py: the MLP of --hidden, the conv network's mirror, or with network="linear" one
    linear layer, so that x's mean = D z + b, a dictionary: classic sparse coding; Fallah & Rozell's dictionary
    experiment) giving the per-pixel mean and log-variance of a Gaussian (A.1), or Bernoulli logits.

    The Gaussian's log-variance has a soft floor, min_logvar + softplus(raw - min_logvar): pixels
    that are zero in every image (MNIST's border) otherwise let the variance go to 0 and the
    likelihood to +infinity. With -10 the floor is a standard deviation of 0.0067, small beside
    unit-norm pixel values (up to about 0.15).

    With cfg.noise_std = sigma_x (the rate-distortion setting) the network outputs the means alone and every pixel's
    variance is sigma_x^2, fixed: log p(x|z) = -1/2 sum(log 2 pi + log sigma_x^2 + (x - mean)^2 / sigma_x^2).
    """

    def __init__(self, cfg, pixels: int, network, shape=None):
        super().__init__()
        likelihood, min_logvar = cfg.likelihood, cfg.min_logvar
        logvar_init = cfg.logvar_init if isinstance(cfg.logvar_init, (int, float)) else None
        self.likelihood, self.min_logvar = likelihood, min_logvar
        self.noise_std = getattr(cfg, "noise_std", None) if likelihood == "gaussian" else None
        groups = 2 if likelihood == "gaussian" and self.noise_std is None else 1
        self.fixed_logvar = None if self.noise_std is None else 2.0 * math.log(self.noise_std)
        self.net = network.decoder(cfg, shape, pixels, groups)  # network: a models.networks.Network class
        if groups == 2 and logvar_init is not None:
            # start the log-variance near logvar_init instead of about 0 (sigma = 1, far above unit-norm
            # pixels of ~0.02, which makes the reconstruction gradient tiny beside the KL's early on)
            target = torch.tensor(max(float(logvar_init) - min_logvar, 1e-3))
            bias = network.logvar_bias(self.net, pixels)
            with torch.no_grad():
                bias.fill_(float(min_logvar + torch.log(torch.expm1(target))))

    def forward(self, z):
        out = self.net(z)
        if self.noise_std is not None:
            return out, torch.full_like(out, self.fixed_logvar)
        if self.likelihood == "gaussian":
            mean, raw = out.chunk(2, dim=-1)
            return mean, self.min_logvar + F.softplus(raw - self.min_logvar)
        return out, None

    def log_likelihood(self, x, z, backend: str = "torch"):
        """log p(x|z) summed over pixels, per image (backend: the fused Gaussian op's)."""
        if self.noise_std is not None:  # the fixed variance: a scaled squared error and a constant
            mean = self.net(z)
            return -0.5 * (mean.shape[-1] * (LOG_2PI + self.fixed_logvar)
                           + ((x.to(mean.dtype) - mean) ** 2).sum(-1) / self.noise_std ** 2)
        if self.likelihood == "gaussian":
            # one fused pass over the (B, 2P) output for the value and its gradient (vsc_kernels.gaussian_loglik;
            # backend "torch" is the plain expression -0.5 sum(log 2 pi + logvar + (x - mean)^2 exp(-logvar)))
            out = self.net(z)
            backend = backend if out.dtype in (torch.float32, torch.float64) else "torch"
            return gaussian_loglik(out, x.to(out.dtype), self.min_logvar, backend=backend)
        mean, _ = self(z)
        return -F.binary_cross_entropy_with_logits(mean, x, reduction="none").sum(-1)

    def mean(self, z):
        """The decoded image: the Gaussian mean, or the Bernoulli probabilities."""
        mean, _ = self(z)
        return mean if self.likelihood == "gaussian" else torch.sigmoid(mean)


class VAE(nn.Module):
    """Encoder, decoder and prior of a run. One encoder network outputs the family's heads (mu, log sigma^2, and
    v for the VSC: eq. 5, A.2); `posterior(x)` is q(z|x), `prior` is p(z), both distributions of the family's
    (cfg.model: the VSC, the standard VAE, the thresholded family, or one registered in FAMILIES)."""

    def __init__(self, cfg: TrainConfig, pixels: int):
        super().__init__()
        self.cfg, self.pixels = cfg, pixels
        self.family = FAMILIES[cfg.model]  # q(z|x)'s class: everything the model asks of a family
        network, decoder = networks_of(cfg)
        shape = cfg.image_shape  # (C, H, W): filled in when training starts; the conv network needs it
        for net in {network, decoder}:
            if net.needs_shape and (shape is None or math.prod(shape) != pixels):
                raise VscError(f"the {net.describe(cfg)} needs the images' shape (channels, height, width) of "
                               f"{pixels} pixels; the config has {shape}")
        self.encoder = network.encoder(cfg, shape, pixels, len(self.family.heads) * cfg.dim)
        self.family.init_encoder(network.heads_layer(self.encoder), cfg)
        self.decoder = Decoder(cfg, pixels, decoder, shape)
        for name, value in self.family.buffers(cfg).items():  # the family's state between steps, if any
            self.register_buffer(name, value)
        if cfg.centre:  # the encoder sees x - x_mean (set from the training images when training starts)
            self.register_buffer("x_mean", torch.zeros(pixels))
        # p(z), a distribution with its registered pair (distributions.py); a learned one is a submodule
        self.prior = self.family.make_prior(cfg, pixels, self.posterior)

    @torch.no_grad()
    def sample_prior(self, n: int, generator=None) -> torch.Tensor:
        """n ancestral draws z ~ p(z) of the run's prior (eq. 4; N(0, 1) for the VAE; the learned one of a
        pseudo-input run), (n, J) float64 on the CPU. The API and `vsc figure prior` draw here."""
        return self.prior.sample((n,), generator=generator, dtype=torch.float64)

    def encode(self, x) -> tuple:
        """The encoder's outputs, one (B, J) tensor per head of the family (mu, logvar[, v]). With cfg.centre the
        network sees x minus the training mean: when the mean image dominates the spread, elements otherwise split
        into always-on ones (aligned with the mean) and dead ones. cfg.encoder_scale then multiplies it."""
        if self.cfg.centre:
            x = x - self.x_mean
        if isinstance(self.cfg.encoder_scale, (int, float)):  # resolved from "data" when training starts
            x = x * self.cfg.encoder_scale
        return self.encoder(x).chunk(len(self.family.heads), dim=-1)

    def posterior(self, x):
        """q(z|x) as the family's distribution: mu, logvar, gamma (P(z_j != 0)) and mean (E[z], the code)."""
        return self.family.from_heads(self.encode(x), self.cfg)

    def forward(self, x, step: Step, generator=None):
        """The ELBO terms (elbo_terms); DistributedDataParallel synchronises gradients through forward."""
        return self.elbo_terms(x, step, generator)

    def elbo_terms(self, x, step: Step, generator=None):
        """One-sample ELBO estimate (eq. 11), per image, as named terms.

        Returns a dict of (B,) tensors: recon = log p(x|z), the family's KL terms (`family.terms`: the VSC's
        kl_slab and kl_spike, the VAE's kl_slab, none for the top-k autoencoder), elbo = recon less those, and
        `active`, the expected fraction of non-zero latent elements (mean gamma; 1 for the VAE), and the family's
        batch outputs (the VSC's (B, J) `gamma`, the one entry that is not per image).
        step (schedule.py): how to draw (c, slab scale) and the KL's alpha; Step.evaluation(alpha) gives the
        estimate of the true ELBO of q (the exact spike draw of eq. 25); evaluation uses it.
        The draw and the KL come from the (posterior, prior) pair's registered function (distributions.py).
        A pair may return further terms, which its prior declares (`penalties`, `other_elbos`): each penalty is
        kept and subtracted from the ELBO in `objective`, what training maximises (the pseudo-input prior's rate
        term kl_rate); each other ELBO is recon less a KL of the pair's, the ELBO of the same q and decoder under
        another prior (the pseudo-input prior's elbo_paper_prior, under eq. 4, so that recipes compare).
        """
        q = self.posterior(x)
        z, kl = draw_and_kl(q, self.prior, x, step, generator, self.cfg.backend)
        recon = self.decoder.log_likelihood(x, z, self.cfg.backend)
        elbo = recon
        for k in self.family.terms:
            elbo = elbo - kl[k]
        terms = {"elbo": elbo, "recon": recon, **{k: kl[k] for k in self.family.terms},
                 "active": q.active_fraction(z), **q.batch_terms()}
        for name, k in self.other_elbos.items():
            terms[name] = recon - kl[k]
        if self.penalties:
            objective = elbo
            for k in self.penalties:
                terms[k] = kl[k]
                objective = objective - kl[k]
            terms["objective"] = objective
        return terms

    @property
    def penalties(self) -> tuple:
        """The prior's terms subtracted from the ELBO in training's objective (none for eq. 4)."""
        return getattr(self.prior, "penalties", ())

    @property
    def other_elbos(self) -> dict:
        """The prior's other ELBOs: name -> the pair's KL term it subtracts from recon (none for eq. 4)."""
        return getattr(self.prior, "other_elbos", {})

    @property
    def loss_terms(self) -> tuple:
        """The per-image terms the training loss is made of: recon, the family's KL terms, the prior's penalties."""
        return ("recon", *self.family.terms, *self.penalties)
