"""The model every family shares (paper section 3, appendix A): an encoder ending in the family's heads, a
decoder, and the ELBO's terms. What differs between families is asked of the family's posterior class
(models/distributions.py), found by the `--model` value in common.registry.FAMILIES."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vsc_kernels import gaussian_loglik

from vsc_cli.common.config import TrainConfig
from vsc_cli.common.errors import VscError
from vsc_cli.common.registry import FAMILIES
from vsc_cli.models import networks
from vsc_cli.models.distributions import draw_and_kl
from vsc_cli.models.schedule import Step


class Decoder(nn.Module):
    """p(x|z): a network (networks.py: the MLP of --hidden, the conv network's mirror, or with network="linear" one
    linear layer, so that x's mean = D z + b, a dictionary: classic sparse coding; Fallah & Rozell's dictionary
    experiment) giving the per-pixel mean and log-variance of a Gaussian (A.1), or Bernoulli logits.

    The Gaussian's log-variance has a soft floor, min_logvar + softplus(raw - min_logvar): pixels
    that are zero in every image (MNIST's border) otherwise let the variance go to 0 and the
    likelihood to +infinity. With -10 the floor is a standard deviation of 0.0067, small beside
    unit-norm pixel values (up to about 0.15).
    """

    def __init__(self, dim: int, hidden, pixels: int, likelihood: str, min_logvar: float,
                 logvar_init: float | None = None, network: str = "mlp", shape=None, channels=None):
        super().__init__()
        self.likelihood, self.min_logvar = likelihood, min_logvar
        groups = 2 if likelihood == "gaussian" else 1
        self.net = networks.decoder(network, shape, dim, hidden, channels, pixels, groups)
        if likelihood == "gaussian" and logvar_init is not None:
            # start the log-variance near logvar_init instead of about 0 (sigma = 1, far above unit-norm
            # pixels of ~0.02, which makes the reconstruction gradient tiny beside the KL's early on)
            target = torch.tensor(max(float(logvar_init) - min_logvar, 1e-3))
            bias = self.net.logvar_bias() if hasattr(self.net, "logvar_bias") else self.net[-1].bias[pixels:]
            with torch.no_grad():
                bias.fill_(float(min_logvar + torch.log(torch.expm1(target))))

    def forward(self, z):
        out = self.net(z)
        if self.likelihood == "gaussian":
            mean, raw = out.chunk(2, dim=-1)
            return mean, self.min_logvar + F.softplus(raw - self.min_logvar)
        return out, None

    def log_likelihood(self, x, z, backend: str = "torch"):
        """log p(x|z) summed over pixels, per image (backend: the fused Gaussian op's)."""
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
        shape = cfg.image_shape  # (C, H, W): filled in when training starts; the conv network needs it
        if cfg.network == "conv" and (shape is None or math.prod(shape) != pixels):
            raise VscError(f"the conv network needs the images' shape (channels, height, width) of {pixels} pixels; "
                           f"the config has {shape}")
        self.encoder = networks.encoder(cfg.network, shape, pixels, cfg.hidden, cfg.channels,
                                        len(self.family.heads) * cfg.dim)
        self.family.init_encoder(networks.heads_layer(self.encoder), cfg)
        init = cfg.logvar_init if isinstance(cfg.logvar_init, (int, float)) else None
        decoder = "linear" if cfg.decoder == "linear" else cfg.network
        self.decoder = Decoder(cfg.dim, cfg.hidden, pixels, cfg.likelihood, cfg.min_logvar, init, decoder, shape,
                               cfg.channels)
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

        Returns a dict of (B,) tensors: recon = log p(x|z), kl_slab, kl_spike, elbo, and `active`, the expected
        fraction of non-zero latent elements (mean gamma; 1 for the VAE), and the family's batch outputs (the
        VSC's (B, J) `gamma`, the one entry that is not per image).
        step (schedule.py): how to draw (c, slab scale) and the KL's alpha; Step.evaluation(alpha) gives the
        estimate of the true ELBO of q (the exact spike draw of eq. 25); evaluation uses it.
        The draw and the KL come from the (posterior, prior) pair's registered function (distributions.py).
        A pair may add named terms: the pseudo-input prior adds `kl_rate` (its average-rate term) and `kl_paper`
        (the KL under the paper's prior), reported as `objective` = elbo - kl_rate, what training maximises,
        and `elbo_paper_prior`, the ELBO of the same q and decoder under eq. 4, so that recipes compare.
        """
        q = self.posterior(x)
        z, kl = draw_and_kl(q, self.prior, x, step, generator, self.cfg.backend)
        recon = self.decoder.log_likelihood(x, z, self.cfg.backend)
        terms = {"elbo": recon - kl["kl_slab"] - kl["kl_spike"], "recon": recon, "kl_slab": kl["kl_slab"],
                 "kl_spike": kl["kl_spike"], "active": q.active_fraction(z), **q.batch_terms()}
        if "kl_rate" in kl:
            terms.update(elbo_paper_prior=recon - kl["kl_paper"], kl_rate=kl["kl_rate"],
                         objective=terms["elbo"] - kl["kl_rate"])
        return terms
