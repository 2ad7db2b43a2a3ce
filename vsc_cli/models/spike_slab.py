"""The paper's family: q(z|x) of eq. 5 and the prior of eq. 4, their draw and KL in one fused kernel (eq. 24, eq. 9)."""
from __future__ import annotations

import math

import torch

from vsc_kernels import SpikeSlab, SpikeSlabPrior, log_gamma_sigmoid, spike_slab, spike_slab_sample_scaled

from vsc_cli.common.config import C_END, C_START, Choice, Flag, Float, Int, setting
from vsc_cli.common.registry import PRIORS
from vsc_cli.models.distributions import Posterior, register
from vsc_cli.models.regularisers import AggregateRate, DecisiveSpike


class SpikeSlabPosterior(SpikeSlab, Posterior):
    """q(z|x) = gamma N(mu, sigma^2) + (1 - gamma) delta(0) per element (eq. 5; vsc_kernels.SpikeSlab), from the
    encoder's mu, log sigma^2 and v with log gamma = min(v, 0) (eq. 12), or -softplus(-v) with cfg.spike =
    "sigmoid" (then v holds log gamma itself, which min(., 0) leaves unchanged)."""

    heads = ("mu", "logvar", "v")
    terms = {"kl_slab": "slab KL", "kl_spike": "spike KL"}  # eq. 9's two terms (eq. 11: ELBO = recon - both)
    title = "VSC"
    uses_alpha = True
    takes_recipe = True
    settings = {  # the paper's schedule of c (C.2), and the settings beyond the paper that only a spike has
        "c_start": setting(C_START, "The sample's sigmoid scale c at the first iteration (eq. 24, C.2).",
                           Float(0, lo_open=True), "training", settable=True),
        "c_end": setting(C_END, "c at the last iteration, reached linearly (C.2).", Float(0, lo_open=True),
                         "training", settable=True),
        "c_ramp": setting(
            None, "Iterations over which c rises from --c-start to --c-end, then stays (None: the whole run, the "
            "paper's C.2). A number makes a longer run the shorter one continued. Not in the paper.", Int(1),
            "beyond the paper", settable=True, recipe=True, shown_default="the whole run"),
        "gamma_init": setting(
            None, "Start every spike probability near this value (with eq. 12 about half the elements otherwise "
            "start at gamma = 1 with zero gradient). Not in the paper.", Float(0, 1, lo_open=True, hi_open=True),
            "beyond the paper", settable=True, shown_default="PyTorch's init"),
        "spike": setting(
            "min", "log gamma from the encoder's v: min = min(v, 0) (eq. 12, the paper), sigmoid = -softplus(-v), "
            "which has no flat region.", Choice(("min", "sigmoid")), "beyond the paper", settable=True, recipe=True),
        "pretrain": setting(
            0, "Spike pre-training (the authors' UAI 2019 code): iterations whose sample uses lambda = 0, so the "
            "decoder sees only which elements are on.", Int(0), "beyond the paper", settable=True, recipe=True),
        "pretrain_ramp": setting(
            0, "After --pretrain, iterations over which lambda rises linearly to 1.", Int(0), "beyond the paper",
            settable=True, recipe=True),
        "alpha_start": setting(
            None, "Anneal the prior's alpha: start here, fall geometrically to --alpha over --alpha-anneal "
            "iterations; every reported ELBO uses --alpha.", Float(0, 1, lo_open=True), "beyond the paper",
            settable=True, recipe=True),
        "alpha_anneal": setting(0, "Iterations of that fall.", Int(0), "beyond the paper", settable=True,
                                recipe=True),
        "alpha_hold": setting(0, "Iterations at --alpha-start before the fall.", Int(0), "beyond the paper",
                              settable=True, recipe=True),
        "prior": setting("spike-slab", "The prior: " + PRIORS.help(" = ") + ".", Choice(PRIORS), "beyond the paper",
                         settable=True, recipe=True),
        "pseudo_inputs": setting(10, "Learned priors: number of pseudo-images K.", Int(1, 1 << 16),
                                 "beyond the paper", settable=True),
        "prior_sharpness": setting(
            10.0, "Learned priors: nu in gamma_p = S(nu (gamma - 1/2)), sharpening the pseudo-inputs' spikes.",
            Float(0, lo_open=True), "beyond the paper", settable=True),
        "rate_weight": setting(
            0.0, "Weight beta of the aggregate spike-rate term beta sum_j KL(Bern(gbar_j) || Bern(target)), gbar_j "
            "the batch's mean gamma of element j (regularisers.py): images switch on different elements. 0 = off.",
            Float(0, math.inf, hi_open=True), "beyond the paper", settable=True, recipe=True),
        "rate_target": setting(
            None, "That term's target rate (None: the prior's alpha at each iteration).",
            Float(0, 1, lo_open=True, hi_open=True), "beyond the paper", settable=True, recipe=True),
        "spike_entropy": setting(
            0.0, "Weight w of the spike-entropy term w sum_j H(Bern(gamma_j)) per image (regularisers.py): at 1 it "
            "cancels the entropy inside eq. 9's spike KL, so an element is on or off for each image instead of "
            "sitting at gamma = alpha for all of them, unused. 0 = off.",
            Float(0, math.inf, hi_open=True), "beyond the paper", settable=True, recipe=True),
        "gate_magnitude": setting(
            0.0, "Weight s of the slab's magnitude in the spike: the encoder's v becomes v + s |mu| (no gradient "
            "into mu), so that an element is as easily on for a negative value as for a positive one. 0 = off "
            "(the paper). Not in the paper.", Float(0, math.inf, hi_open=True), "beyond the paper", settable=True,
            recipe=True),
        "gate_gradient": setting(
            False, "With --gate-magnitude: let the gate's gradient reach mu too (the ELBO's own gradient for a gamma "
            "that depends on |mu|), so that the spike's KL also shrinks the slab's mean of an element it switches "
            "off. Off: mu learns from the slab's terms alone. Not in the paper.", Flag(), "beyond the paper",
            settable=True, recipe=True),
    }

    def __init__(self, mu, logvar, v):
        super().__init__(mu, logvar, v, validate_args=False)

    @classmethod
    def from_heads(cls, heads, cfg):
        mu, logvar, v = heads
        if cfg.get("gate_magnitude", 0.0):
            # a gate linear in the image is one-signed (on when w.x is large); a signed factor needs |w.x|, which
            # the slab's mean already is. Without gradient into mu, the slab still learns only from eq. 11's terms
            # (--gate-gradient keeps the gate's own gradient into mu: an element's spike KL then shrinks |mu| too)
            v = v + cfg.gate_magnitude * (mu if cfg.get("gate_gradient", False) else mu.detach()).abs()
        return cls(mu, logvar, v if cfg.spike == "min" else log_gamma_sigmoid(v))

    @classmethod
    def make_prior(cls, cfg, pixels, posterior):
        """Eq. 4, or a learned prior (--prior: common.registry.PRIORS)."""
        return PRIORS[cfg.prior].from_config(cfg, pixels, posterior)

    @classmethod
    def init_encoder(cls, layer, cfg):
        """With cfg.gamma_init, v starts at gamma's inverse and its weights small. log gamma = min(v, 0) has zero
        gradient wherever v > 0: an element that starts there sits at gamma = 1 until its v drifts below 0 by
        chance; starting v below 0 puts every element where its spike probability can learn."""
        if cfg.gamma_init is None:
            return
        with torch.no_grad():
            g, dim = cfg.gamma_init, cfg.dim
            layer.bias[2 * dim:] = math.log(g) if cfg.spike == "min" else math.log(g / (1 - g))
            layer.weight[2 * dim:] *= 0.1

    @classmethod
    def training_terms(cls, cfg, mean=None, model=None):
        """The aggregate spike-rate term and the spike-entropy term (regularisers.py), those with a weight > 0."""
        return ([AggregateRate(cfg.rate_weight, cfg.rate_target, mean)] if cfg.rate_weight else []) + \
            ([DecisiveSpike(cfg.spike_entropy)] if cfg.get("spike_entropy", 0.0) else [])

    def batch_terms(self):
        """The (B, J) spike probabilities, for training terms on the batch's rates (regularisers.py)."""
        return {"gamma": self.gamma}


class PaperPrior(SpikeSlabPrior):
    """Eq. 4: alpha N(0, 1) + (1 - alpha) delta(0) per element (vsc_kernels.SpikeSlabPrior), built from a config."""

    @classmethod
    def from_config(cls, cfg, pixels, posterior):
        return cls(cfg.alpha, (cfg.dim,))


@register(SpikeSlab, SpikeSlabPrior)
def _spike_slab_paper(q: SpikeSlab, p: SpikeSlabPrior, x, step, generator, backend):
    """The paper's pair, one fused kernel (vsc_kernels.spike_slab): z of eq. 24 (eq. 25 when step.exact) and
    eq. 9's two KL terms at the step's alpha. During spike pre-training (slab scale < 1) the sample is replaced by
    the slab-scaled one; the KL never depends on the slab scale."""
    eps = torch.randn(q.mu.shape, dtype=q.mu.dtype, device=q.mu.device, generator=generator)
    eta = torch.rand(q.mu.shape, dtype=q.mu.dtype, device=q.mu.device, generator=generator)
    z, kl_slab, kl_spike = spike_slab(q.mu, q.logvar, q.v, eps, eta, math.inf if step.exact else step.c,
                                      step.alpha, backend=backend)
    if step.slab_scale < 1.0 and not step.exact:
        z = spike_slab_sample_scaled(q.mu, q.logvar, q.log_gamma, eps, eta, step.c, step.slab_scale)
    return z, {"kl_slab": kl_slab, "kl_spike": kl_spike}
