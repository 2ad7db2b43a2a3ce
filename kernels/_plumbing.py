"""What every fused op shares: backends and devices, dtype maps, the CUDA stream cache, the launch of a
kernel on torch tensors without copying, and the naming trick behind Numba's cache.

A leaf module: it imports torch and config only (numba inside functions, on first use), so that every op
module (function.py, loglik.py) and every kernel module (cpu.py, gpu.py) can import it, and none of them
imports another op module: the package's import graph has no cycle.
"""
from __future__ import annotations

import torch

BACKENDS = ("torch", "numba", "cuda")
DTYPES = (torch.float32, torch.float64)
NP_DTYPE = {torch.float32: "float32", torch.float64: "float64"}


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (e.g. cuda without a GPU)."""


def simulated() -> bool:
    """True under NUMBA_ENABLE_CUDASIM=1: the cuda kernels run in Python threads on CPU tensors."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def cuda_problem() -> str | None:
    """None when the cuda backend can run here, else why not (one line)."""
    if simulated():
        return None
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU"
    try:
        from numba import cuda

        if not cuda.is_available():
            return "numba.cuda finds no usable GPU or CUDA driver"
    except Exception as exc:  # a broken driver install raises from deep inside numba
        return f"numba.cuda cannot start ({exc})"
    return None


def available_backends() -> list[str]:
    return ["torch", "numba"] + (["cuda"] if cuda_problem() is None else [])


def default_backend(device="cpu") -> str:
    """numba for CPU tensors; cuda for CUDA tensors when numba.cuda can run there, else torch."""
    if torch.device(device).type != "cuda":
        return "numba"
    return "cuda" if cuda_problem() is None else "torch"


def check_backend_device(backend: str, device: torch.device) -> None:
    """A compiled backend can run on tensors of `device` here (every fused op's validation)."""
    if backend == "numba" and device.type != "cpu":
        raise ValueError("the numba backend runs on CPU tensors; use backend 'cuda' for CUDA tensors")
    if backend == "cuda":
        problem = cuda_problem()
        if problem:
            raise BackendUnavailable(f"the cuda backend cannot run here: {problem}; use backend 'numba'")
        if device.type != "cuda" and not simulated():
            raise ValueError("the cuda backend needs CUDA tensors (move the model with --device cuda)")


_STREAMS = {}


def launch_cuda(host_driver, tensors, *scalars, n_before: int):
    """Run `host_driver(*arrays[:n_before], *scalars, *arrays[n_before:], stream=...)` on `tensors` without
    copying: numba device arrays over CUDA tensors on torch's current stream, or, under the simulator, numpy
    views of CPU tensors (no stream)."""
    if not tensors[0].is_cuda:  # the simulator: numpy arrays stand in for device memory
        arrays = [t.detach().numpy() for t in tensors]
        host_driver(*arrays[:n_before], *scalars, *arrays[n_before:])
        return
    from numba import cuda

    device = tensors[0].device
    handle = torch.cuda.current_stream(device).cuda_stream
    with cuda.gpus[device.index]:
        key = (device.index, handle)  # the default stream's handle is 0 on every GPU: key by device too
        stream = _STREAMS.get(key) or _STREAMS.setdefault(key, cuda.external_stream(handle))
        arrays = [cuda.as_cuda_array(t.detach()) for t in tensors]
        host_driver(*arrays[:n_before], *scalars, *arrays[n_before:], stream=stream)


def addresses(tensors) -> tuple:
    """The tensors' data pointers, for the CPU kernels' address entry points."""
    return tuple(t.data_ptr() for t in tensors)


def instance(template, name: str, **deps):
    """A copy of `template` named `name` (Numba's cache is keyed by the name) that sees `deps` as globals.

    Numba's on-disk cache keys a closure by its pickled cell contents, and a dispatcher pickles with a
    per-process id, so a kernel closing over another jitted function would miss the cache in every new
    process: kernels are written once as plain functions and given their dependencies as globals."""
    import types

    fn = types.FunctionType(template.__code__, {**template.__globals__, **deps}, name)
    fn.__qualname__ = name
    return fn


def pointer_cast(nbtype):
    """A Numba intrinsic turning an integer address (torch's data_ptr()) into a typed pointer for carray."""
    from numba import types as nbtypes
    from numba.extending import intrinsic

    @intrinsic
    def as_pointer(typingctx, address):
        """An integer address (torch's data_ptr()) as a typed pointer, for numba.carray."""
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

        return nbtypes.CPointer(nbtype)(nbtypes.intp), codegen

    return as_pointer
