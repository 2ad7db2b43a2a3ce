"""Numba CPU kernels of the fused spike-and-slab op (twins of gpu.py: same names and arguments).

Private kernels see only arrays; `spike_slab_fwd_cpu` / `spike_slab_bwd_cpu` are the host drivers
for numpy arrays (validated); the autograd Function calls `run_at_addresses` with tensor addresses.
Rows are spread over threads (prange); the loop over a row's J elements is branch-free and, in
float32, uses the polynomial exp/log of fastmath.py so that LLVM vectorises it (8 lanes on AVX2).
float64 uses libm (exact enough for gradcheck).
"""
import math

import numpy as np
from numba import carray, njit, prange
from numba import types as nbtypes

from . import config
from ._element import element_functions
from .fastmath import exp_f32, log_f32, one_minus_exp_f32
from ._plumbing import instance as _instance
from ._plumbing import pointer_cast as _pointer_cast


@njit(inline="always")
def _one_minus_exp_f64(x, exp_x):
    return -math.expm1(x)


def _jit_element(fastmath):
    return njit(inline="always", fastmath=fastmath, error_model="numpy")  # no ZeroDivision branch


# The kernels and their address entry points are written once below as plain functions ("templates") and
# compiled per dtype, each copy seeing its dependencies (the element functions, constants, the pointer cast)
# as globals rather than as closure variables: Numba's on-disk cache keys a closure by its pickled cell
# contents, and a dispatcher pickles with a per-process id, so a kernel closing over another jitted function
# misses the cache in every new process (4 s of compiling at each start, and a new cache file each time).
# Row slices (mu[b]) rather than mu[b, j]: with 1-D views LLVM sees unit strides and vectorises.
def _spike_slab_fwd(mu, logvar, v, eps, eta, c, log_alpha, log1m_alpha, z, kl_slab, kl_spike):
    for b in prange(mu.shape[0]):
        mu_b, logvar_b, v_b, eps_b, eta_b, z_b = mu[b], logvar[b], v[b], eps[b], eta[b], z[b]
        acc_slab, acc_spike = ZERO, ZERO  # noqa: F821 (ZERO, elem_*: globals given by _instance)
        for j in range(mu_b.shape[0]):
            zj, slab_j, spike_j = elem_fwd(mu_b[j], logvar_b[j], v_b[j], eps_b[j], eta_b[j], c,  # noqa: F821
                                           log_alpha, log1m_alpha)
            z_b[j] = zj
            acc_slab += slab_j
            acc_spike += spike_j
        kl_slab[b] = acc_slab
        kl_spike[b] = acc_spike


def _spike_slab_bwd(mu, logvar, v, eps, eta, c, log_alpha, log1m_alpha, gz, gsl, gsp, g_mu, g_logvar, g_v):
    for b in prange(mu.shape[0]):
        mu_b, logvar_b, v_b, eps_b, eta_b, gz_b = mu[b], logvar[b], v[b], eps[b], eta[b], gz[b]
        g_mu_b, g_logvar_b, g_v_b = g_mu[b], g_logvar[b], g_v[b]
        gsl_b, gsp_b = gsl[b], gsp[b]
        for j in range(mu_b.shape[0]):
            g_mu_b[j], g_logvar_b[j], g_v_b[j] = elem_bwd(  # noqa: F821
                mu_b[j], logvar_b[j], v_b[j], eps_b[j], eta_b[j], c, log_alpha, log1m_alpha,
                gz_b[j], gsl_b, gsp_b)


# The "saving" pair: the forward also writes the 7 local derivatives (P, shape (7, B, J)) and the
# backward only multiplies them by the incoming gradients. More memory traffic, no transcendental
# recomputed: the faster choice while the arrays stay in cache (config.CPU_SAVE_PARTIALS_MAX_ELEMENTS).
def _spike_slab_fwd_saving(mu, logvar, v, eps, eta, c, log_alpha, log1m_alpha, z, kl_slab, kl_spike, P):
    for b in prange(mu.shape[0]):
        mu_b, logvar_b, v_b, eps_b, eta_b, z_b = mu[b], logvar[b], v[b], eps[b], eta[b], z[b]
        p0, p1, p2, p3, p4, p5, p6 = P[0, b], P[1, b], P[2, b], P[3, b], P[4, b], P[5, b], P[6, b]
        acc_slab, acc_spike = ZERO, ZERO  # noqa: F821
        for j in range(mu_b.shape[0]):
            (z_b[j], slab_j, spike_j, p0[j], p1[j], p2[j], p3[j], p4[j], p5[j], p6[j]) = elem_fwd_partials(  # noqa
                mu_b[j], logvar_b[j], v_b[j], eps_b[j], eta_b[j], c, log_alpha, log1m_alpha)
            acc_slab += slab_j
            acc_spike += spike_j
        kl_slab[b] = acc_slab
        kl_spike[b] = acc_spike


def _spike_slab_bwd_saved(P, gz, gsl, gsp, g_mu, g_logvar, g_v):
    for b in prange(gz.shape[0]):
        p0, p1, p2, p3, p4, p5, p6 = P[0, b], P[1, b], P[2, b], P[3, b], P[4, b], P[5, b], P[6, b]
        gz_b, g_mu_b, g_logvar_b, g_v_b = gz[b], g_mu[b], g_logvar[b], g_v[b]
        gsl_b, gsp_b = gsl[b], gsp[b]
        for j in range(gz_b.shape[0]):
            g = gz_b[j]
            g_mu_b[j] = g * p0[j] + gsl_b * p1[j]
            g_logvar_b[j] = g * p2[j] + gsl_b * p3[j]
            g_v_b[j] = g * p4[j] + gsl_b * p5[j] + gsp_b * p6[j]


TEMPLATES = {"fwd": _spike_slab_fwd, "bwd": _spike_slab_bwd, "fwd_saving": _spike_slab_fwd_saving,
             "bwd_saved": _spike_slab_bwd_saved}


def _make_kernels(exp, log, one_minus_exp, dtype, fastmath):
    """{kind: (serial kernel, parallel kernel)} for one dtype; they compile at their first call."""
    elem_fwd, elem_bwd, elem_fwd_partials = element_functions(_jit_element(fastmath), exp, log, one_minus_exp, dtype)
    deps = dict(prange=prange, ZERO=dtype(0.0), elem_fwd=elem_fwd, elem_bwd=elem_bwd,
                elem_fwd_partials=elem_fwd_partials)
    opts = dict(fastmath=fastmath, cache=True, nogil=True, error_model="numpy")
    # what the globals carry is not in Numba's cache key: the dtype and the flags go into the names
    tag = f"{np.dtype(dtype).name}{'_fast' if fastmath else ''}"
    return {kind: tuple(njit(parallel=parallel, **opts)(_instance(template, f"{template.__name__}_{variant}_{tag}",
                                                                  **deps))
                        for variant, parallel in (("serial", False), ("parallel", True)))
            for kind, template in TEMPLATES.items()}


_KERNELS = {
    np.dtype(np.float32): _make_kernels(exp_f32, log_f32, one_minus_exp_f32, np.float32, config.CPU_FASTMATH),
    np.dtype(np.float64): _make_kernels(math.exp, math.log, _one_minus_exp_f64, np.float64, False),
}


def _entry_fwd(a, B, J, c, la, l1a):
    s2, s1 = (B, J), (B,)
    kernel(carray(ptr(a[0]), s2), carray(ptr(a[1]), s2), carray(ptr(a[2]), s2), carray(ptr(a[3]), s2),  # noqa
           carray(ptr(a[4]), s2), DT(c), DT(la), DT(l1a),  # noqa: F821 (kernel, ptr, DT: globals)
           carray(ptr(a[5]), s2), carray(ptr(a[6]), s1), carray(ptr(a[7]), s1))  # noqa: F821


def _entry_bwd(a, B, J, c, la, l1a):
    s2, s1 = (B, J), (B,)
    kernel(carray(ptr(a[0]), s2), carray(ptr(a[1]), s2), carray(ptr(a[2]), s2), carray(ptr(a[3]), s2),  # noqa
           carray(ptr(a[4]), s2), DT(c), DT(la), DT(l1a),  # noqa: F821
           carray(ptr(a[5]), s2), carray(ptr(a[6]), s1), carray(ptr(a[7]), s1),  # noqa: F821
           carray(ptr(a[8]), s2), carray(ptr(a[9]), s2), carray(ptr(a[10]), s2))  # noqa: F821


def _entry_fwd_saving(a, B, J, c, la, l1a):
    s2, s1 = (B, J), (B,)
    kernel(carray(ptr(a[0]), s2), carray(ptr(a[1]), s2), carray(ptr(a[2]), s2), carray(ptr(a[3]), s2),  # noqa
           carray(ptr(a[4]), s2), DT(c), DT(la), DT(l1a),  # noqa: F821
           carray(ptr(a[5]), s2), carray(ptr(a[6]), s1), carray(ptr(a[7]), s1),  # noqa: F821
           carray(ptr(a[8]), (7, B, J)))  # noqa: F821


def _entry_bwd_saved(a, B, J, c, la, l1a):
    s2, s1 = (B, J), (B,)
    kernel(carray(ptr(a[0]), (7, B, J)), carray(ptr(a[1]), s2), carray(ptr(a[2]), s1),  # noqa: F821
           carray(ptr(a[3]), s1), carray(ptr(a[4]), s2), carray(ptr(a[5]), s2), carray(ptr(a[6]), s2))  # noqa


ENTRIES = {"fwd": _entry_fwd, "bwd": _entry_bwd, "fwd_saving": _entry_fwd_saving, "bwd_saved": _entry_bwd_saved}


def _address_entries(kernels, dtype, nbtype):
    """Entry points that take raw addresses (torch's data_ptr()) and sizes instead of arrays.

    They call the same kernels; they only save the caller from building up to 12 numpy views per
    call (about 1.5 us each, a fifth of the op's time at the training size). The caller (the
    autograd Function) guarantees C-contiguous tensors of this dtype and of the stated shapes.
    """
    opts = dict(cache=True, nogil=True, error_model="numpy")
    tag = f"{np.dtype(dtype).name}{'_fast' if dtype == np.float32 and config.CPU_FASTMATH else ''}"
    return {kind: tuple(njit(**opts)(_instance(entry, f"_spike_slab{entry.__name__}_{variant}_{tag}", kernel=k,
                                               carray=carray, ptr=_pointer_cast(nbtype), DT=dtype))
                        for variant, k in zip(("serial", "parallel"), kernels[kind]))
            for kind, entry in ENTRIES.items()}


_ADDRESS_ENTRIES = {np.dtype(np.float32): _address_entries(_KERNELS[np.dtype(np.float32)], np.float32, nbtypes.float32),
                    np.dtype(np.float64): _address_entries(_KERNELS[np.dtype(np.float64)], np.float64, nbtypes.float64)}


def run_at_addresses(kind: str, dtype, addresses: tuple, B: int, J: int, c=0.0, log_alpha=0.0, log1m_alpha=0.0):
    """Run kernel `kind` on memory given by addresses (see _address_entries for the order)."""
    serial, parallel = _ADDRESS_ENTRIES[np.dtype(dtype)][kind]
    entry = parallel if B * J >= config.CPU_PARALLEL_MIN_ELEMENTS else serial
    entry(addresses, B, J, c, log_alpha, log1m_alpha)


def _addresses(arrays, dtype, shapes):
    """Validate numpy arrays (dtype, C-contiguity, shapes) and return their addresses."""
    for a, shape in zip(arrays, shapes):
        if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous or a.shape != shape:
            raise ValueError(f"expected C-contiguous {np.dtype(dtype).name} arrays of shapes {shapes}")
    return tuple(a.ctypes.data for a in arrays)


def spike_slab_fwd_cpu(mu, logvar, v, eps, eta, c, log_alpha, log1m_alpha, z, kl_slab, kl_spike):
    """Host driver: C-contiguous (B, J) arrays of one float dtype in, z (B, J) and row KLs (B,) out."""
    B, J = mu.shape
    arrays = (mu, logvar, v, eps, eta, z, kl_slab, kl_spike)
    run_at_addresses("fwd", mu.dtype, _addresses(arrays, mu.dtype, [(B, J)] * 6 + [(B,)] * 2), B, J,
                     c, log_alpha, log1m_alpha)


def spike_slab_bwd_cpu(mu, logvar, v, eps, eta, c, log_alpha, log1m_alpha, gz, gsl, gsp, g_mu, g_logvar, g_v):
    """Host driver of the backward: fills g_mu, g_logvar, g_v (B, J) from the upstream gradients."""
    B, J = mu.shape
    arrays = (mu, logvar, v, eps, eta, gz, gsl, gsp, g_mu, g_logvar, g_v)
    run_at_addresses("bwd", mu.dtype, _addresses(arrays, mu.dtype, [(B, J)] * 6 + [(B,)] * 2 + [(B, J)] * 3), B, J,
                     c, log_alpha, log1m_alpha)
