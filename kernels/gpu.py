"""numba.cuda kernels of the fused spike-and-slab op (twins of cpu.py: same names and arguments).

Imported lazily, only when the cuda backend is asked for: importing vsc_kernels never needs a GPU
or a CUDA driver. Works on torch CUDA tensors without a copy (__cuda_array_interface__) and on
torch's current stream. Under Numba's simulator (NUMBA_ENABLE_CUDASIM=1, set before numba is
imported) the same kernels run in Python threads on CPU tensors: that is how CI tests them.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from . import config
from ._element import element_functions

def _device(fn):
    return cuda.jit(device=True)(fn)


@cuda.jit(device=True)
def _one_minus_exp(x, exp_x):
    return -math.expm1(x)


def _make_kernels(dtype, nbtype):
    elem_fwd, elem_bwd, _ = element_functions(_device, math.exp, math.log, _one_minus_exp, dtype)
    zero = dtype(0.0)
    max_threads = config.CUDA_MAX_THREADS

    @cuda.jit(fastmath=dtype is np.float32)
    def _spike_slab_fwd(mu, logvar, v, eps, eta, c, log_alpha, log1m_alpha, z, kl_slab, kl_spike):
        # one block per row b; its threads stride over the row, then a tree reduction in shared memory
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        acc_slab = zero
        acc_spike = zero
        for j in range(tid, mu.shape[1], nt):
            zj, slab_j, spike_j = elem_fwd(mu[b, j], logvar[b, j], v[b, j], eps[b, j], eta[b, j], c,
                                           log_alpha, log1m_alpha)
            z[b, j] = zj
            acc_slab += slab_j
            acc_spike += spike_j
        sh_slab = cuda.shared.array(max_threads, nbtype)
        sh_spike = cuda.shared.array(max_threads, nbtype)
        sh_slab[tid] = acc_slab
        sh_spike[tid] = acc_spike
        cuda.syncthreads()
        step = nt // 2
        while step > 0:
            if tid < step:
                sh_slab[tid] += sh_slab[tid + step]
                sh_spike[tid] += sh_spike[tid + step]
            cuda.syncthreads()
            step //= 2
        if tid == 0:
            kl_slab[b] = sh_slab[0]
            kl_spike[b] = sh_spike[0]

    @cuda.jit(fastmath=dtype is np.float32)
    def _spike_slab_bwd(mu, logvar, v, eps, eta, c, log_alpha, log1m_alpha, gz, gsl, gsp, g_mu, g_logvar, g_v):
        # one thread per element, a 1-D grid over the B x J elements
        i = cuda.grid(1)
        J = mu.shape[1]
        if i < mu.shape[0] * J:
            b = i // J
            j = i - b * J
            dm, dl, dv = elem_bwd(mu[b, j], logvar[b, j], v[b, j], eps[b, j], eta[b, j], c, log_alpha,
                                  log1m_alpha, gz[b, j], gsl[b], gsp[b])
            g_mu[b, j] = dm
            g_logvar[b, j] = dl
            g_v[b, j] = dv

    return _spike_slab_fwd, _spike_slab_bwd


_KERNELS = {np.dtype(np.float32): _make_kernels(np.float32, float32),
            np.dtype(np.float64): _make_kernels(np.float64, float64)}


def _fwd_threads(J: int, threads: int | None) -> int:
    t = threads or (config.CUDA_FWD_THREADS_SMALL_J if J <= 128 else config.CUDA_FWD_THREADS)
    if t & (t - 1) or not 1 <= t <= config.CUDA_MAX_THREADS:
        raise ValueError(f"forward block size must be a power of two <= {config.CUDA_MAX_THREADS}, got {t}")
    return t


def spike_slab_fwd_gpu(mu, logvar, v, eps, eta, c, log_alpha, log1m_alpha, z, kl_slab, kl_spike,
                       stream=0, threads=None):
    """Host driver: device arrays (or, simulated, numpy arrays) of shape (B, J) and (B,)."""
    t = mu.dtype.type
    fwd, _ = _KERNELS[np.dtype(mu.dtype)]
    fwd[mu.shape[0], _fwd_threads(mu.shape[1], threads), stream](
        mu, logvar, v, eps, eta, t(c), t(log_alpha), t(log1m_alpha), z, kl_slab, kl_spike)


def spike_slab_bwd_gpu(mu, logvar, v, eps, eta, c, log_alpha, log1m_alpha, gz, gsl, gsp, g_mu, g_logvar, g_v,
                       stream=0, threads=None):
    t = mu.dtype.type
    _, bwd = _KERNELS[np.dtype(mu.dtype)]
    threads = threads or config.CUDA_BWD_THREADS
    blocks = (mu.shape[0] * mu.shape[1] + threads - 1) // threads
    bwd[blocks, threads, stream](mu, logvar, v, eps, eta, t(c), t(log_alpha), t(log1m_alpha), gz, gsl, gsp,
                                 g_mu, g_logvar, g_v)
