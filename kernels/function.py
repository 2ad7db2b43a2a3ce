"""The fused op as a torch.autograd.Function over the compiled kernels, and the public dispatcher.

`spike_slab(mu, logvar, v, eps, eta, c, alpha, backend)` returns (z, kl_slab_rows, kl_spike_rows)
exactly as `reference.spike_slab_ref` defines them:
  * backend "torch": the reference itself, autograd does the backward;
  * backend "numba": Numba CPU kernels (cpu.py), one pass over memory forward and one backward;
  * backend "cuda":  numba.cuda kernels (gpu.py) on CUDA tensors, on torch's current stream
                     (or, under NUMBA_ENABLE_CUDASIM=1, on CPU tensors, for testing).
The gradient flows to mu, logvar and v; eps and eta are noise and get none.
"""
from __future__ import annotations

import math

import torch

from . import config
from ._plumbing import BACKENDS, DTYPES, NP_DTYPE, addresses, check_backend_device, default_backend, launch_cuda
from .reference import ALPHA_FLOOR, spike_slab_ref


def _log_alphas(alpha: float):
    return math.log(alpha), math.log(max(1.0 - alpha, ALPHA_FLOOR))


def _launch(backend: str, kind: str, tensors, scalars, outputs):
    """Hand torch tensors to the kernels as arrays without copying, and run them."""
    if backend == "numba":
        from . import cpu  # compiled on first use: importing vsc_kernels does not compile the CPU kernels

        B, J = tensors[0].shape
        cpu.run_at_addresses(kind, NP_DTYPE[tensors[0].dtype], addresses((*tensors, *outputs)), B, J, *scalars)
        return
    from . import gpu

    launch_cuda(gpu.spike_slab_fwd_gpu if kind == "fwd" else gpu.spike_slab_bwd_gpu, (*tensors, *outputs),
                *scalars, n_before=5)


class SpikeSlabFunction(torch.autograd.Function):
    """Forward: z and the row KLs from one kernel; backward: d mu, d logvar, d v from one kernel.

    What backward needs is saved, nothing more: either the five inputs (the backward recomputes
    sigma, gamma and the sigmoid: least memory traffic, best for large inputs and GPUs), or, for
    small CPU inputs, the seven local derivatives the forward computed anyway (the backward is then
    three multiply-adds per element instead of four exp/log recomputations).
    """

    @staticmethod
    def forward(ctx, mu, logvar, v, eps, eta, c, alpha, backend):
        log_alpha, log1m_alpha = _log_alphas(alpha)
        z = torch.empty_like(mu)
        kl_slab = mu.new_empty(mu.shape[0])
        kl_spike = mu.new_empty(mu.shape[0])
        ctx.scalars, ctx.backend = (c, log_alpha, log1m_alpha), backend
        ctx.saving = backend == "numba" and mu.numel() <= config.CPU_SAVE_PARTIALS_MAX_ELEMENTS
        if ctx.saving:
            from . import cpu

            partials = mu.new_empty((7, *mu.shape))
            cpu.run_at_addresses("fwd_saving", NP_DTYPE[mu.dtype],
                                 addresses((mu, logvar, v, eps, eta, z, kl_slab, kl_spike, partials)),
                                 *mu.shape, c, log_alpha, log1m_alpha)
            ctx.save_for_backward(partials)
        else:
            _launch(backend, "fwd", (mu, logvar, v, eps, eta), ctx.scalars, (z, kl_slab, kl_spike))
            ctx.save_for_backward(mu, logvar, v, eps, eta)
        return z, kl_slab, kl_spike

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_z, g_slab, g_spike):
        saved = ctx.saved_tensors
        ref = saved[0][0] if ctx.saving else saved[0]  # a (B, J) tensor
        g_z = torch.zeros_like(ref) if g_z is None else g_z.contiguous()
        g_slab = ref.new_zeros(ref.shape[0]) if g_slab is None else g_slab.contiguous()
        g_spike = ref.new_zeros(ref.shape[0]) if g_spike is None else g_spike.contiguous()
        grads = (torch.empty_like(ref), torch.empty_like(ref), torch.empty_like(ref))
        if ctx.saving:
            from . import cpu

            cpu.run_at_addresses("bwd_saved", NP_DTYPE[ref.dtype], addresses((saved[0], g_z, g_slab, g_spike, *grads)),
                                 *ref.shape)
        else:
            _launch(ctx.backend, "bwd", saved, ctx.scalars, (g_z, g_slab, g_spike, *grads))
        need = ctx.needs_input_grad
        return (grads[0] if need[0] else None, grads[1] if need[1] else None, grads[2] if need[2] else None,
                None, None, None, None, None)


def _check(mu, logvar, v, eps, eta, c, alpha, backend):
    if backend not in BACKENDS:
        raise ValueError(f"unknown spike-slab backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    tensors = {"mu": mu, "logvar": logvar, "v": v, "eps": eps, "eta": eta}
    shape, dtype, device = tuple(mu.shape), mu.dtype, mu.device
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if tuple(t.shape) != shape or t.dtype != dtype or t.device != device:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, {t.dtype} on {t.device}; mu has "
                             f"{shape}, {dtype} on {device}: they must all match")
    if mu.dim() < 1:
        raise ValueError("the inputs need at least one dimension (the latent elements J)")
    if mu.dtype not in DTYPES:
        raise TypeError(f"spike_slab supports float32 and float64, got {mu.dtype}")
    if not (c > 0):
        raise ValueError(f"the sigmoid scale c must be positive, got {c}")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    check_backend_device(backend, mu.device)


def spike_slab(mu, logvar, v, eps, eta, c: float, alpha: float, backend: str = "torch"):
    """Sparse sample z (eq. 24) and the per-row slab and spike KL terms (eq. 9), by `backend`
    ("auto": `default_backend` for the tensors' device).

    All five tensors share one shape (..., J), dtype (float32 or float64) and device; the KL terms
    are summed over the last dimension. c = inf gives the exact draw (the step of eq. 25), always
    by the reference (it has no useful gradient).
    """
    if backend == "auto":
        backend = default_backend(getattr(mu, "device", "cpu"))
    _check(mu, logvar, v, eps, eta, c, alpha, backend)
    if backend == "torch" or math.isinf(c) or mu.numel() == 0:
        return spike_slab_ref(mu, logvar, v, eps, eta, c, alpha)
    if mu.dim() == 2:  # the common case: no reshapes (each costs microseconds at these sizes)
        return SpikeSlabFunction.apply(mu.contiguous(), logvar.contiguous(), v.contiguous(), eps.contiguous(),
                                       eta.contiguous(), float(c), float(alpha), backend)
    lead, J = mu.shape[:-1], mu.shape[-1]
    flat = [t.reshape(-1, J).contiguous() for t in (mu, logvar, v, eps, eta)]
    z, kl_slab, kl_spike = SpikeSlabFunction.apply(*flat, float(c), float(alpha), backend)
    return z.reshape(mu.shape), kl_slab.reshape(lead), kl_spike.reshape(lead)
