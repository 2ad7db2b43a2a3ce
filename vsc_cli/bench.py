"""Timing of the spike-and-slab op per backend (`vsc bench`) and of whole training steps (`--train`).

Every figure is the median of `repeats` timed calls after `warmup` untimed ones, all in one process,
so that the ratios between implementations are taken under the same machine load.
"""
from __future__ import annotations

import platform
import statistics
import time

import torch

from vsc_kernels import available_backends, spike_slab, spike_slab_ref

ANCHORS = ("torch-eager", "torch-compile")  # the reference, as plain eager torch and compiled


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _median_seconds(fn, repeats: int, warmup: int, device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth(device="cpu", nbytes: int = 1 << 28, repeats: int = 7) -> float:
    """Measured copy bandwidth in GB/s: bytes read plus bytes written by dst.copy_(src), per second."""
    n = nbytes // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    t = _median_seconds(lambda: dst.copy_(src), repeats, 2, device)
    return 2 * nbytes / t / 1e9


def bytes_moved(b: int, j: int, itemsize: int) -> int:
    """Least traffic of forward + backward: forward reads mu, logvar, v, eps, eta and writes z (+ two
    row sums); backward reads the five again and dz, writes three gradients (+ reads two row grads)."""
    return (15 * b * j + 4 * b) * itemsize


def _op(impl: str):
    if impl == "torch-eager":
        return spike_slab_ref
    if impl == "torch-compile":
        return torch.compile(spike_slab_ref, dynamic=False)
    return lambda *a: spike_slab(*a, backend=impl)


def _op_inputs(b: int, j: int, device, dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, uniform=False):
        t = torch.rand(*shape, generator=g) if uniform else torch.randn(*shape, generator=g)
        return t.to(device=device, dtype=dtype)

    params = tuple(rnd(b, j).requires_grad_(True) for _ in range(3))
    noise = (rnd(b, j), rnd(b, j, uniform=True))
    grads = (rnd(b, j), rnd(b), rnd(b))
    return params, noise, grads


def _op_step(impl: str, params, noise, grads):
    """One forward + backward of the op (c = 120, alpha = 0.5), gradients returned, not accumulated."""
    op = _op(impl)

    def step():
        out = op(*params, *noise, 120.0, 0.5)
        torch.autograd.grad(out, params, grads)

    return step


def _interleaved(steps: dict, repeats: int, warmup: int, device, rounds: int = 5) -> dict:
    """Median seconds per step, timed in `rounds` alternating blocks so that all steps see the same
    machine load (the machines are shared: a block of one implementation alone can land in a quiet
    or a busy second)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    samples = {name: [] for name in steps}
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for name, step in steps.items():
            _sync(device)
            for _ in range(per_round):
                t0 = time.perf_counter()
                step()
                _sync(device)
                samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in samples.items()}


def run_op_bench(sizes, impls=None, device="cpu", dtype=torch.float32, repeats=50, warmup=5, progress=None):
    """Rows of {size, impl, ms, speedup (over torch eager), gbps, bound_ratio} plus the machine facts."""
    impls = list(impls or [*ANCHORS, *[b for b in available_backends() if b != "torch"]])
    if torch.device(device).type == "cpu":  # cuda on CPU tensors is the simulator: nothing to time
        impls = [i for i in impls if i != "cuda"]
    bandwidth = copy_bandwidth(device)
    itemsize = torch.empty((), dtype=dtype).element_size()
    rows = []
    for b, j in sizes:
        if progress:
            progress(f"{b}x{j}")
        inputs = _op_inputs(b, j, device, dtype)
        steps, errors = {}, {}
        for impl in impls:
            try:
                steps[impl] = _op_step(impl, *inputs)
                steps[impl]()  # compiles (numba, torch.compile) and fails early if it cannot run
            except Exception as exc:  # e.g. torch.compile without a working C++ compiler
                steps.pop(impl, None)
                errors[impl] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        times = _interleaved(steps, repeats, warmup, device)
        eager = times.get("torch-eager")
        moved = bytes_moved(b, j, itemsize)
        for impl in impls:
            if impl in errors:
                rows.append({"size": f"{b}x{j}", "impl": impl, "error": errors[impl]})
                continue
            t = times[impl]
            rows.append({
                "size": f"{b}x{j}", "impl": impl, "ms": t * 1e3,
                "speedup_vs_eager": (eager / t) if eager else None,
                "gbps": moved / t / 1e9,
                "x_bandwidth_bound": t / (moved / (bandwidth * 1e9)),
            })
    return {"machine": machine(device), "copy_bandwidth_gbps": bandwidth, "dtype": str(dtype).replace("torch.", ""),
            "repeats": repeats, "warmup": warmup, "rows": rows}


def run_train_bench(backends=None, device="cpu", dim=200, batch_size=256, repeats=50, warmup=10, progress=None):
    """Training iterations per second of the paper's network (784-400-dim) per backend, random data.

    The backends' steps are timed in alternating blocks (see _interleaved)."""
    from .config import TrainConfig
    from .model import VAE

    backends = list(backends or [b for b in available_backends() if b != "cuda" or device == "cuda"])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size * 8, 784, generator=g)
    x = (x / x.norm(dim=1, keepdim=True)).to(device)
    steps = {}
    for backend in backends:
        torch.manual_seed(0)
        cfg = TrainConfig(dim=dim, batch_size=batch_size, backend=backend)
        model = VAE(cfg, 784).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        noise = torch.Generator(device=device).manual_seed(1)

        def step(model=model, opt=opt, noise=noise, counter=iter(range(1 << 62))):
            i = next(counter) % 8  # cycle through 8 fixed batches
            loss = -model.elbo_terms(x[i * batch_size:(i + 1) * batch_size], 120.0, generator=noise)["elbo"].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        steps[backend] = step
    if progress:
        progress("training steps")
    times = _interleaved(steps, repeats, warmup, device)
    rows = [{"backend": b, "ms_per_iteration": t * 1e3, "iterations_per_second": 1 / t} for b, t in times.items()]
    return {"machine": machine(device), "dim": dim, "batch_size": batch_size, "repeats": repeats, "rows": rows}


def machine(device="cpu") -> dict:
    info = {"platform": platform.platform(), "processor": _cpu_name(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_threads"] = numba.config.NUMBA_NUM_THREADS
        info["numba_threading_layer"] = numba.config.THREADING_LAYER
    except ImportError:  # pragma: no cover
        pass
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
