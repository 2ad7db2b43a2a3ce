"""Spike-and-slab kernels for vsc, installed under the import name `vsc_kernels`.

`reference` holds the pure-torch definition that every compiled backend is tested against.
"""
from .reference import (  # noqa: F401
    ALPHA_FLOOR,
    SpikeSlab,
    SpikeSlabPrior,
    c_schedule,
    kl_slab,
    kl_spike,
    kl_terms,
    log_gamma_from_v,
    spike_slab_ref,
)

BACKENDS = ("torch",)


def spike_slab(mu, logvar, v, eps, eta, c: float, alpha: float, backend: str = "torch"):
    """The fused op: (z, kl_slab_rows, kl_spike_rows) of `spike_slab_ref`, by the chosen backend."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown spike-slab backend {backend!r}; available: {', '.join(BACKENDS)}")
    return spike_slab_ref(mu, logvar, v, eps, eta, c, alpha)
