"""The decoder's Gaussian log-likelihood as one fused op (reference, autograd Function, kernels, dispatcher).

The decoder's network gives out = [mean | raw], shape (B, 2P), for data x of shape (B, P); with
    logvar = min_logvar + softplus(raw - min_logvar)            (a soft floor on the log-variance)
the per-row log-likelihood is
    ll_b = -1/2 sum_j (log 2 pi + logvar_j + (x_j - mean_j)^2 exp(-logvar_j)).
`gaussian_loglik(out, x, min_logvar, backend)` returns ll (B,):
  * backend "torch": `gaussian_loglik_ref`, eager torch (exactly Decoder.log_likelihood's expression),
                     autograd does the backward;
  * backend "numba": one Numba CPU pass per row computes ll_b and the local derivatives of ll_b
                     with respect to out (saved for the backward, which is one multiply);
  * backend "cuda":  the numba.cuda twins (one block per row), on torch's current stream
                     (or, under NUMBA_ENABLE_CUDASIM=1, on CPU tensors, for testing);
  * backend "auto":  _plumbing.default_backend(device).
The gradient flows to `out` only. x is data: if x requires grad, the reference runs instead (it
differentiates with respect to both). The compiled backends are once-differentiable (no double backward).
Without a gradient to compute (torch.no_grad(), or out not requiring grad) the kernels skip the derivatives.

Local derivatives (with d = raw - min_logvar, q = (x - mean)^2 exp(-logvar), S the sigmoid):
    d ll / d mean = (x - mean) exp(-logvar)
    d ll / d raw  = -1/2 (1 - q) S(d)
Numerics: softplus(d) = max(d, 0) + log1p(exp(-|d|)) and S(d) = 1 / (1 + e) for d >= 0, e / (1 + e)
otherwise, e = exp(-|d|): no overflow for any d. The reference uses torch's F.softplus, which returns d
itself for d > 20; the kernels' exact softplus differs from it there by log1p(e**-d) < 2.1e-9 in logvar and
by a factor S(d) > 1 - 2.1e-9 in d ll / d raw (logvar > min_logvar + 20: sigma > 148 with the default floor).
float32 (CPU): exp and log are fastmath.py's vectorisable polynomials (a few ulp) and log1p(e) is
log(1 + e): its absolute error (~1 ulp of 1) is far below that of logvar = min_logvar + softplus, which
is rounded at the scale of |min_logvar|. exp is clamped at e**-87, so where the true sigmoid is below
1.6e-38 the kernel gives about 1.6e-38 (an absolute error of that size). min_logvar must exceed -87
(float32) for exp(-logvar) to stay finite; the reference overflows there too. NaN in out or x gives a
NaN row, as in the reference (training's non-finite check relies on it).
Row sums (CPU): each chunk of _CHUNK = 256 elements is summed in the kernel's dtype (vectorised: 16
partial sums on AVX-512), the chunk sums in float64. Measured on decoder-like rows (P = 784, 3072, 12288;
float32), the worst error of ll in units of u * sum_j |term_j| (u = 2**-24): 0.26-0.62 chunked, 0.24-0.46
with a float64 accumulator, 1.6-2.5 with a float32 one, 0.47-0.79 for torch's eager float32 sum. A float64
accumulator halves the vector width (float32 terms converted to 8 float64 lanes): the value kernel took
2x as long; the chunked sum costs nothing measurable. (The derivatives involve no sum at all.)
On the GPU a thread sums P / 256 elements and the block tree-reduces the partial sums (a pairwise sum),
so float32 accumulation is accurate there.
"""
from __future__ import annotations

import functools
import math
import numbers

import torch
from torch.nn import functional as F

from . import config
from ._plumbing import BACKENDS, DTYPES, NP_DTYPE, addresses, check_backend_device, default_backend, launch_cuda
from ._plumbing import instance as _instance

LOG_2PI = math.log(2 * math.pi)
_CHUNK = 256  # CPU kernels: sum chunks of this many elements in the dtype, the chunk sums in float64


# ------------------------------------------------------------------------------ the reference
def gaussian_loglik_ref(out: torch.Tensor, x: torch.Tensor, min_logvar: float) -> torch.Tensor:
    """Pure torch: Decoder.log_likelihood's own expression, term for term (so bit-identical to it).
    out (..., 2P) = [mean | raw], x (..., P); returns (...,). Autograd does the backward."""
    mean, raw = out.chunk(2, dim=-1)
    logvar = min_logvar + F.softplus(raw - min_logvar)
    return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar)).sum(-1)


# ------------------------------------------------------------------------------ per-element math
def _element_functions(jit, exp, log1p, dtype):
    """The element's forward (term, d/dmean, d/draw) and value-only forward, compiled with `jit`
    (numba.njit or numba.cuda.jit(device=True)) around the given exp and log1p, constants of `dtype`.
    term = logvar + q; the row's ll is -1/2 (P log 2 pi + sum of terms)."""
    zero, one, half = dtype(0.0), dtype(1.0), dtype(0.5)

    @jit
    def _logvar(r, min_logvar):
        d = r - min_logvar
        e = exp(-abs(d))
        # max(d, 0) written so that a NaN d stays NaN (and -inf gives 0, as torch's softplus)
        relu = zero if d <= zero else d
        return d, e, min_logvar + (relu + log1p(e))

    @jit
    def loglik_element(m, r, xj, min_logvar):
        d, e, lv = _logvar(r, min_logvar)
        iv = exp(-lv)
        diff = xj - m
        g_mean = diff * iv
        q = diff * g_mean
        inv = one / (one + e)
        sig = e * inv if d < zero else inv
        return lv + q, g_mean, -half * (one - q) * sig

    @jit
    def loglik_element_value(m, r, xj, min_logvar):
        d, e, lv = _logvar(r, min_logvar)
        diff = xj - m
        return lv + diff * (diff * exp(-lv))  # the same roundings as loglik_element's q

    return loglik_element, loglik_element_value


# ------------------------------------------------------------------------------ Numba CPU kernels
# The kernels and their address entry points are written once below as plain functions ("templates") and
# compiled per dtype by _cpu(), which hands each copy its dependencies (the element function, the constants,
# the pointer cast, ...) as globals rather than as closure variables: Numba's on-disk cache keys a
# closure by its pickled cell contents, and a dispatcher pickles with a per-process id, so a kernel closing
# over another jitted function misses the cache in every new process (and adds a cache file each time).
# Row slices rather than out[b, j]: 1-D unit-stride views, which LLVM vectorises (16 float32 lanes on AVX-512).
def _gaussian_loglik_fwd(out, x, min_logvar, ll, grad):
    P = x.shape[1]
    for b in prange(x.shape[0]):  # noqa: F821 (prange, ACC, ZERO, CHUNK, elem: globals given by _cpu)
        out_b, grad_b, x_b = out[b], grad[b], x[b]
        acc = ACC(0.0)  # noqa: F821
        for start in range(0, P, CHUNK):  # noqa: F821
            stop = min(start + CHUNK, P)  # noqa: F821
            # slices of the chunk, indexed from 0: with j in range(start, stop) Numba's negative-index
            # handling keeps the loop scalar (20-40x slower)
            mean, raw, xc = out_b[start:stop], out_b[P + start:P + stop], x_b[start:stop]
            g_mean, g_raw = grad_b[start:stop], grad_b[P + start:P + stop]
            part = ZERO  # noqa: F821
            for j in range(stop - start):
                t, gm, gr = elem(mean[j], raw[j], xc[j], min_logvar)  # noqa: F821
                g_mean[j] = gm
                g_raw[j] = gr
                part += t
            acc += part
        ll[b] = ACC(-0.5) * (ACC(P * LOG_2PI) + acc)  # noqa: F821


def _gaussian_loglik_value(out, x, min_logvar, ll):
    P = x.shape[1]
    for b in prange(x.shape[0]):  # noqa: F821
        out_b, x_b = out[b], x[b]
        acc = ACC(0.0)  # noqa: F821
        for start in range(0, P, CHUNK):  # noqa: F821
            stop = min(start + CHUNK, P)  # noqa: F821
            mean, raw, xc = out_b[start:stop], out_b[P + start:P + stop], x_b[start:stop]
            part = ZERO  # noqa: F821
            for j in range(stop - start):
                part += elem_value(mean[j], raw[j], xc[j], min_logvar)  # noqa: F821
            acc += part
        ll[b] = ACC(-0.5) * (ACC(P * LOG_2PI) + acc)  # noqa: F821


def _entry_fwd(a, B, P, min_logvar):
    """Addresses (out, x, ll, grad) and sizes in, the kernel run on views of that memory."""
    kernel(carray(ptr(a[0]), (B, 2 * P)), carray(ptr(a[1]), (B, P)), DT(min_logvar),  # noqa: F821
           carray(ptr(a[2]), (B,)), carray(ptr(a[3]), (B, 2 * P)))  # noqa: F821


def _entry_value(a, B, P, min_logvar):
    kernel(carray(ptr(a[0]), (B, 2 * P)), carray(ptr(a[1]), (B, P)), DT(min_logvar),  # noqa: F821
           carray(ptr(a[2]), (B,)))  # noqa: F821


@functools.lru_cache(maxsize=None)
def _cpu():
    """Compile the CPU kernels' dispatchers on first use (importing this module never imports numba).
    Returns {dtype name: {kind: (serial entry, parallel entry)}}; the kernels compile at their first call."""
    import numpy as np
    from numba import carray, njit, prange
    from numba import types as nbtypes

    from ._plumbing import pointer_cast as _pointer_cast
    from .fastmath import exp_f32, log_f32

    @njit(inline="always", fastmath=True, error_model="numpy")
    def log1p_f32(e):  # for e in (0, 1]; see the module doc for why log(1 + e) is accurate enough here
        return log_f32(np.float32(1.0) + e)

    @njit(inline="always", error_model="numpy")
    def log1p_f64(e):
        return math.log1p(e)

    # float32: reassociation (so the row sum vectorises) but no nnan/ninf, so that NaN and inf propagate
    f32_flags = {"reassoc", "contract", "arcp", "nsz", "afn"} if config.CPU_FASTMATH else False
    specs = {"float32": (exp_f32, log1p_f32, np.float32, nbtypes.float32, f32_flags),
             "float64": (math.exp, log1p_f64, np.float64, nbtypes.float64, False)}
    entries = {}
    for name, (exp, log1p, dtype, nbtype, fastmath) in specs.items():
        elem, elem_value = _element_functions(njit(inline="always", fastmath=fastmath, error_model="numpy"),
                                              exp, log1p, dtype)
        opts = dict(fastmath=fastmath, cache=True, nogil=True, error_model="numpy")
        entries[name] = {}
        # the choices that globals carry are not in Numba's cache key: put them in the names
        tag = f"{name}_chunk{_CHUNK}{'_fast' if fastmath else ''}"
        for kind, template, entry in (("fwd", _gaussian_loglik_fwd, _entry_fwd),
                                      ("value", _gaussian_loglik_value, _entry_value)):
            pair = []
            for variant, parallel in (("serial", False), ("parallel", True)):
                kernel = njit(parallel=parallel, **opts)(_instance(
                    template, f"{template.__name__}_{variant}_{tag}", prange=prange, elem=elem,
                    elem_value=elem_value, ACC=np.float64, ZERO=dtype(0.0), CHUNK=_CHUNK))
                pair.append(njit(cache=True, nogil=True, error_model="numpy")(_instance(
                    entry, f"_loglik{entry.__name__}_{variant}_{tag}", kernel=kernel, carray=carray,
                    ptr=_pointer_cast(nbtype), DT=dtype)))
            entries[name][kind] = tuple(pair)
    return entries


def run_loglik_at_addresses(kind: str, dtype: str, addresses: tuple, B: int, P: int, min_logvar: float):
    """Run CPU kernel `kind` ("fwd": addresses of out, x, ll, grad; "value": out, x, ll) on C-contiguous
    memory of `dtype` ("float32" or "float64"); rows in parallel from config.CPU_PARALLEL_MIN_ELEMENTS."""
    serial, parallel = _cpu()[dtype][kind]
    entry = parallel if B * 2 * P >= config.CPU_PARALLEL_MIN_ELEMENTS else serial
    entry(addresses, B, P, float(min_logvar))


def gaussian_loglik_fwd_cpu(out, x, min_logvar, ll, grad=None):
    """Host driver for numpy arrays: out (B, 2P), x (B, P) of one float dtype, C-contiguous; fills
    ll (B,) and, unless grad is None, grad (B, 2P) = d ll_b / d out."""
    import numpy as np

    B, P = x.shape
    arrays = (out, x, ll) + (() if grad is None else (grad,))
    shapes = [(B, 2 * P), (B, P), (B,), (B, 2 * P)]
    for a, shape in zip(arrays, shapes):
        if (not isinstance(a, np.ndarray) or a.dtype != x.dtype or a.dtype.name not in ("float32", "float64")
                or not a.flags.c_contiguous or a.shape != shape):
            raise ValueError(f"expected C-contiguous float32 or float64 arrays of shapes {shapes[:len(arrays)]}")
    run_loglik_at_addresses("value" if grad is None else "fwd", x.dtype.name, tuple(a.ctypes.data for a in arrays),
                            B, P, min_logvar)


# ------------------------------------------------------------------------------ numba.cuda kernels
# Templates again (same names and arguments as the CPU kernels), compiled by _gpu() with their dependencies as
# globals. `cuda` must be a global of the kernel: Numba's simulator swaps its fake module in by that name.
def _block_sum(acc):
    """The sum of `acc` over the block's threads (a power of two of them), valid in thread 0."""
    tid = cuda.threadIdx.x  # noqa: F821 (cuda, NBTYPE, MAX_THREADS: globals given by _gpu)
    sh = cuda.shared.array(MAX_THREADS, NBTYPE)  # noqa: F821
    sh[tid] = acc
    cuda.syncthreads()  # noqa: F821
    step = cuda.blockDim.x // 2  # noqa: F821
    while step > 0:
        if tid < step:
            sh[tid] += sh[tid + step]
        cuda.syncthreads()  # noqa: F821
        step //= 2
    return sh[0]


def _gaussian_loglik_fwd_cuda(out, x, min_logvar, ll, grad):
    # one block per row b; its threads stride over the row's P (mean, raw) pairs
    b = cuda.blockIdx.x  # noqa: F821
    P = x.shape[1]
    acc = ZERO  # noqa: F821
    for j in range(cuda.threadIdx.x, P, cuda.blockDim.x):  # noqa: F821
        t, g_mean, g_raw = elem(out[b, j], out[b, P + j], x[b, j], min_logvar)  # noqa: F821
        grad[b, j] = g_mean
        grad[b, P + j] = g_raw
        acc += t
    total = block_sum(acc)  # noqa: F821
    if cuda.threadIdx.x == 0:  # noqa: F821
        ll[b] = MINUS_HALF * (P * LOG_2PI_T + total)  # noqa: F821


def _gaussian_loglik_value_cuda(out, x, min_logvar, ll):
    b = cuda.blockIdx.x  # noqa: F821
    P = x.shape[1]
    acc = ZERO  # noqa: F821
    for j in range(cuda.threadIdx.x, P, cuda.blockDim.x):  # noqa: F821
        acc += elem_value(out[b, j], out[b, P + j], x[b, j], min_logvar)  # noqa: F821
    total = block_sum(acc)  # noqa: F821
    if cuda.threadIdx.x == 0:  # noqa: F821
        ll[b] = MINUS_HALF * (P * LOG_2PI_T + total)  # noqa: F821


@functools.lru_cache(maxsize=None)
def _gpu():
    """The numba.cuda kernels, built on first use: {dtype name: {"fwd": kernel, "value": kernel}}."""
    import numpy as np
    from numba import cuda, float32, float64

    @cuda.jit(device=True)
    def log1p(e):
        return math.log1p(e)

    kernels = {}
    for name, dtype, nbtype in (("float32", np.float32, float32), ("float64", np.float64, float64)):
        elem, elem_value = _element_functions(cuda.jit(device=True), math.exp, log1p, dtype)
        deps = dict(cuda=cuda, MAX_THREADS=config.CUDA_MAX_THREADS, NBTYPE=nbtype)
        block_sum = cuda.jit(device=True)(_instance(_block_sum, f"_block_sum_{name}", **deps))
        deps.update(block_sum=block_sum, elem=elem, elem_value=elem_value, ZERO=dtype(0.0),
                    MINUS_HALF=dtype(-0.5), LOG_2PI_T=dtype(LOG_2PI))
        jit = cuda.jit(fastmath=dtype is np.float32)
        # named like their CPU twins
        kernels[name] = {"fwd": jit(_instance(_gaussian_loglik_fwd_cuda, "_gaussian_loglik_fwd", **deps)),
                         "value": jit(_instance(_gaussian_loglik_value_cuda, "_gaussian_loglik_value", **deps))}
    return kernels


def _gpu_threads(P: int, threads: int | None) -> int:
    t = threads or (config.CUDA_FWD_THREADS_SMALL_J if P <= 128 else config.CUDA_FWD_THREADS)
    if t & (t - 1) or not 1 <= t <= config.CUDA_MAX_THREADS:
        raise ValueError(f"block size must be a power of two <= {config.CUDA_MAX_THREADS}, got {t}")
    return t


def gaussian_loglik_fwd_gpu(out, x, min_logvar, ll, grad=None, stream=0, threads=None):
    """Host driver: device arrays (or, simulated, numpy arrays) out (B, 2P), x (B, P), ll (B,) and,
    unless None, grad (B, 2P); one block per row."""
    kernels = _gpu()[str(x.dtype)]
    B, P = x.shape
    cfg = (B, _gpu_threads(P, threads), stream)
    mlv = x.dtype.type(min_logvar)
    if grad is None:
        kernels["value"][cfg](out, x, mlv, ll)
    else:
        kernels["fwd"][cfg](out, x, mlv, ll, grad)


# ------------------------------------------------------------------------------ autograd and dispatch
def _launch(backend: str, out, x, min_logvar: float, ll, grad=None):
    """Run the forward kernel of `backend` on C-contiguous tensors without copying them."""
    tensors = (out, x, ll) + (() if grad is None else (grad,))
    B, P = x.shape
    if backend == "numba":
        run_loglik_at_addresses("value" if grad is None else "fwd", NP_DTYPE[x.dtype], addresses(tensors), B, P,
                                min_logvar)
        return
    launch_cuda(gaussian_loglik_fwd_gpu, tensors, min_logvar, n_before=2)


class GaussianLogLikFunction(torch.autograd.Function):
    """Forward: ll (B,) and d ll_b / d out (B, 2P) from one kernel pass; backward: grad_ll[:, None] * that.

    Inputs: out (B, 2P) and x (B, P), C-contiguous, same float dtype and device; min_logvar a float;
    backend "numba" or "cuda". The gradient goes to out only (x gets None).
    """

    @staticmethod
    def forward(ctx, out, x, min_logvar, backend):
        ll = out.new_empty(x.shape[0])
        local = torch.empty_like(out)
        _launch(backend, out, x, min_logvar, ll, local)
        ctx.save_for_backward(local)
        return ll

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ll):
        (local,) = ctx.saved_tensors
        return local * grad_ll.unsqueeze(-1), None, None, None


def _check(out, x, min_logvar, backend):
    if backend not in BACKENDS:
        raise ValueError(f"unknown log-likelihood backend {backend!r}; choose one of {', '.join(BACKENDS)}, auto")
    for name, t in (("out", out), ("x", x)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if x.dim() < 1 or tuple(out.shape) != (*x.shape[:-1], 2 * x.shape[-1]):
        raise ValueError(f"out must have shape (..., 2P) for x of shape (..., P); got out {tuple(out.shape)}, "
                         f"x {tuple(x.shape)}")
    if out.dtype not in DTYPES:
        raise TypeError(f"gaussian_loglik supports float32 and float64, got {out.dtype}")
    if x.dtype != out.dtype:
        raise TypeError(f"x is {x.dtype} but out is {out.dtype}: they must match")
    if x.device != out.device:
        raise ValueError(f"x is on {x.device} but out is on {out.device}: they must match")
    if isinstance(min_logvar, bool) or not isinstance(min_logvar, numbers.Real) or not math.isfinite(min_logvar):
        raise ValueError(f"min_logvar must be a finite number, got {min_logvar!r}")
    check_backend_device(backend, out.device)


def gaussian_loglik(out: torch.Tensor, x: torch.Tensor, min_logvar: float, backend: str = "torch") -> torch.Tensor:
    """Per-row Gaussian log-likelihood log p(x | out) (see the module doc), by `backend`
    ("torch", "numba", "cuda", or "auto": `default_backend` for the tensors' device).

    out (..., 2P) = [mean | raw] and x (..., P): same dtype (float32 or float64) and device; any strides
    (non-contiguous inputs are copied). Returns (...,). With x requiring grad, or P = 0, the torch
    reference runs whatever the backend.
    """
    if backend == "auto":
        backend = default_backend(getattr(out, "device", "cpu"))
    _check(out, x, min_logvar, backend)
    min_logvar = float(min_logvar)
    if backend == "torch" or x.numel() == 0 or (x.requires_grad and torch.is_grad_enabled()):
        return gaussian_loglik_ref(out, x, min_logvar)
    lead, P = x.shape[:-1], x.shape[-1]
    out2, x2 = out.reshape(-1, 2 * P).contiguous(), x.detach().reshape(-1, P).contiguous()
    if out.requires_grad and torch.is_grad_enabled():
        ll = GaussianLogLikFunction.apply(out2, x2, min_logvar, backend)
    else:  # nothing to differentiate: the value-only kernel, no derivatives written
        ll = out2.new_empty(x2.shape[0])
        _launch(backend, out2.detach(), x2, min_logvar, ll)
    return ll if x.dim() == 2 else ll.reshape(lead)
