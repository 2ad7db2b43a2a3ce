"""Spike-and-slab kernels for vsc, installed under the import name `vsc_kernels`.

_plumbing.py  what the ops share (backends, devices, dtype maps, CUDA streams, launching, Numba's naming
              trick): a leaf module, so the package's imports have no cycle
reference.py  the pure-torch definition that every compiled backend is tested against
function.py   `spike_slab(..., backend)`: the dispatcher and the torch.autograd.Function
cpu.py        Numba CPU kernels; gpu.py their numba.cuda twins (imported only when used)
fastmath.py   vectorisable float32 exp/log; _element.py the per-element math, written once
loglik.py     `gaussian_loglik(out, x, min_logvar, backend)`: the decoder's Gaussian log-likelihood fused
              (reference, Numba CPU kernel and numba.cuda twin, autograd Function)
config.py     tunables
"""
from .reference import (  # noqa: F401
    ALPHA_FLOOR,
    SpikeSlab,
    SpikeSlabPrior,
    kl_bernoulli,
    kl_slab,
    kl_spike_slab,
    kl_spike,
    kl_terms,
    log_gamma_from_v,
    log_gamma_sigmoid,
    spike_slab_sample_scaled,
    spike_slab_ref,
)
from ._plumbing import (  # noqa: F401,E402
    BACKENDS,
    BackendUnavailable,
    available_backends,
    cuda_problem,
    default_backend,
)
from .function import SpikeSlabFunction, spike_slab  # noqa: F401,E402
from .loglik import (  # noqa: F401,E402
    GaussianLogLikFunction,
    gaussian_loglik,
    gaussian_loglik_ref,
)
