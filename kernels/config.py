"""Tunables of the spike-and-slab kernels, all in one place."""

# Numba CPU kernels
CPU_FASTMATH = True  # float32 kernels: let LLVM reassociate the row sums so they vectorise
CPU_PARALLEL_MIN_ELEMENTS = 16_384  # below this, the serial kernel wins (thread start-up costs ~10 us)
CPU_SAVE_PARTIALS_MAX_ELEMENTS = 1 << 19  # up to this many B*J, the forward saves 7 local derivatives
# and the backward only multiply-adds (faster while they stay in cache); above, the backward recomputes

# numba.cuda kernels
CUDA_FWD_THREADS = 256  # forward: one block per row, its threads stride over the J elements
CUDA_FWD_THREADS_SMALL_J = 128  # ... fewer when J <= 128, so fewer threads sit idle
CUDA_BWD_THREADS = 256  # backward: one thread per element, 1-D grid
CUDA_MAX_THREADS = 256  # size of the shared-memory reduction buffers (>= any block size above)
