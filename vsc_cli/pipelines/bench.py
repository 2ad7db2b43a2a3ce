"""Timing of the spike-and-slab op per backend (`vsc bench`) and of whole training steps (`--train`).

Every figure is the median of `repeats` timed calls after `warmup` untimed ones, all in one process,
so that the ratios between implementations are taken under the same machine load.
"""
from __future__ import annotations

import contextlib
import math
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


class ObviousVSC(torch.nn.Module):
    """VSC as an eager-PyTorch re-implementation first writes it: separate Linear heads for mu, log sigma^2 and the
    spike, the sample and the loss as plain elementwise torch (written for this comparison after reading the ICLR
    reproducibility re-implementation, Alfo5123/Variational-Sparse-Coding, src/models/vsc.py). Same network and
    likelihood as vsc's model; the yardstick of `vsc bench --train`."""

    def __init__(self, pixels: int, hidden: int, dim: int, likelihood: str, min_logvar: float = -10.0):
        super().__init__()
        nn = torch.nn
        self.likelihood, self.min_logvar = likelihood, min_logvar
        self.fc1 = nn.Linear(pixels, hidden)
        self.fc_mu, self.fc_logvar, self.fc_spike = nn.Linear(hidden, dim), nn.Linear(hidden, dim), nn.Linear(hidden, dim)
        self.fc3 = nn.Linear(dim, hidden)
        self.fc4 = nn.Linear(hidden, pixels * (2 if likelihood == "gaussian" else 1))

    def features(self, x):
        return torch.relu(self.fc1(x))

    def decode(self, z):
        return self.fc4(torch.relu(self.fc3(z)))

    def loss(self, x, c: float, alpha: float):
        F = torch.nn.functional
        h = self.features(x)
        mu, logvar, logspike = self.fc_mu(h), self.fc_logvar(h), -F.relu(-self.fc_spike(h))
        std = torch.exp(0.5 * logvar)
        eps, eta = torch.randn_like(std), torch.rand_like(std)
        z = torch.sigmoid(c * (eta + logspike.exp() - 1)) * (mu + eps * std)
        out = self.decode(z)
        if self.likelihood == "bernoulli":
            recon = F.binary_cross_entropy(torch.sigmoid(out), x, reduction="sum")
        else:
            mean, raw = out.chunk(2, dim=-1)
            logvar_x = self.min_logvar + F.softplus(raw - self.min_logvar)
            recon = 0.5 * torch.sum(math.log(2 * math.pi) + logvar_x + (x - mean) ** 2 / torch.exp(logvar_x))
        spike = torch.clamp(logspike.exp(), 1e-6, 1.0 - 1e-6)
        prior = (-0.5 * torch.sum(spike * (1 + logvar - mu.pow(2) - logvar.exp()))
                 + torch.sum((1 - spike) * torch.log((1 - spike) / (1 - alpha)) + spike * torch.log(spike / alpha)))
        return (recon + prior) / x.shape[0]


def _vsc_step(model, cfg, batches, device):
    """One call = one vsc training step (train.training_step, the loop's own) on the next of `batches`, mid-training
    (c 120, the slab on), with Adam as `vsc train` makes it."""
    from vsc_cli.models.schedule import Step
    from vsc_cli.trainers.log import Log
    from vsc_cli.trainers.state import make_optimizer
    from vsc_cli.trainers.train import training_step

    opt = make_optimizer(model, cfg.lr)
    noise = torch.Generator(device=device).manual_seed(1)
    log = Log(None, None, device=device)
    counter, at = iter(range(1 << 62)), Step(120.0, 1.0, cfg.alpha)

    def step():
        i = next(counter)
        training_step(model, model, opt, batches[i % len(batches)], at, noise, log, i + 1, None)
        if log.count >= 100:
            log.reset()

    return step


def _obvious_step(obvious, batches):
    """One call = one step of the obvious version (its loss, plain Adam at 1e-3) on the next of `batches`."""
    opt = torch.optim.Adam(obvious.parameters(), lr=1e-3)
    counter = iter(range(1 << 62))

    def step():
        loss = obvious.loss(batches[next(counter) % len(batches)], 120.0, 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


class ObviousConvVSC(ObviousVSC):
    """The same obvious VSC with the conv network (networks.py's layers, written out as nn.Sequential in NCHW):
    the yardstick of `vsc bench --train --network conv`."""

    def __init__(self, shape, channels, dim: int, likelihood: str, min_logvar: float = -10.0):
        torch.nn.Module.__init__(self)
        from vsc_cli.models.networks import ConvLayout

        nn = torch.nn
        self.likelihood, self.min_logvar = likelihood, min_logvar
        self.lay = lay = ConvLayout(shape, channels)
        enc, before = [], lay.c
        for w in lay.widths:
            enc += [nn.Conv2d(before, w, 4, 2, 1), nn.ReLU()]
            before = w
        self.enc = nn.Sequential(*enc, nn.Flatten())
        self.fc_mu, self.fc_logvar, self.fc_spike = (nn.Linear(lay.features, dim) for _ in range(3))
        self.fc3 = nn.Linear(dim, lay.features)
        dec, ws = [], lay.widths[::-1]
        for a, b in zip(ws[:-1], ws[1:]):
            dec += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.ReLU()]
        groups = 2 if likelihood == "gaussian" else 1
        self.dec = nn.Sequential(*dec, nn.ConvTranspose2d(ws[-1], groups * lay.c, 4, 2, 1))

    def features(self, x):
        return self.enc(x.reshape(-1, self.lay.c, self.lay.h, self.lay.w))

    def decode(self, z):
        h = torch.relu(self.fc3(z)).reshape(-1, self.lay.widths[-1], *self.lay.small)
        return self.dec(h).flatten(1)  # (B, groups*C*H*W): the means' channels, then the log-variances'


def _compute_only_step(model, x, device, dtype):
    """The training step's convolutions and matrix products alone: every Conv2d, ConvTranspose2d and Linear layer
    of `model` (found with forward hooks on one call with batch x, so the shapes are the step's), forward and
    backward (the weight gradient; the input gradient except for the layer that reads the data), on random tensors,
    bias, activations, loss and optimizer left out. Everything else a step does is the overhead measured against
    this."""
    from torch.nn import functional as F

    nn, shapes, hooks = torch.nn, [], []
    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            hooks.append(mod.register_forward_hook(
                lambda m, inp, out: shapes.append((m, tuple(inp[0].shape), tuple(out.shape)))))
    with torch.no_grad():
        model.encode(x)
        model.decoder(torch.zeros(len(x), model.cfg.dim, device=device, dtype=dtype))
    for h in hooks:
        h.remove()
    g = torch.Generator(device=device).manual_seed(0)
    r = lambda shape: torch.randn(*shape, generator=g, device=device, dtype=dtype)  # noqa: E731
    ops = []
    for i, (m, shape_in, shape_out) in enumerate(shapes):
        a, w, grad = r(shape_in), m.weight.detach().clone(), r(shape_out)
        if isinstance(m, nn.Linear):
            ops.append(lambda a=a, w=w, grad=grad, first=(i == 0): (
                torch.mm(a, w.t()), torch.mm(grad.t(), a), None if first else torch.mm(grad, w)))
        else:
            transposed = isinstance(m, nn.ConvTranspose2d)
            conv = F.conv_transpose2d if transposed else F.conv2d
            ops.append(lambda a=a, w=w, grad=grad, m=m, conv=conv, transposed=transposed, first=(i == 0): (
                conv(a, w, None, m.stride, m.padding),
                torch.ops.aten.convolution_backward(grad, a, w, None, m.stride, m.padding, m.dilation, transposed,
                                                    [0, 0], 1, [not first, True, False])))

    def step():
        for op in ops:
            op()

    return step


def run_conv_bench(device="cpu", dim=256, batch_size=64, shape=(3, 64, 64), channels=(32, 64, 128, 256),
                   repeats=30, warmup=5, progress=None, likelihood="gaussian", backend="numba"):
    """Training steps of the conv network (default: CelebA's 64x64 colour faces, batch 64, 256 dims): vsc's own
    step (train.training_step) in the layout PyTorch gives (NCHW) and with channels-last weights and activations,
    the same step's convolutions and matrix products alone (_compute_only_step), and the obvious eager version
    (ObviousConvVSC with Adam); timed in alternating blocks as run_train_bench."""
    from vsc_cli.common.config import TrainConfig
    from vsc_cli.models.vae import VAE

    pixels = int(shape[0] * shape[1] * shape[2])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size * 4, pixels, generator=g)
    x = (x / x.norm(dim=1, keepdim=True)).to(device)
    batches = [x[i * batch_size:(i + 1) * batch_size] for i in range(4)]
    cfg = TrainConfig(dim=dim, batch_size=batch_size, backend=backend, likelihood=likelihood, network="conv",
                      channels=tuple(channels), image_shape=list(shape))
    steps = {}
    for name, layout in (("vsc (NCHW)", torch.contiguous_format), ("vsc (channels-last)", torch.channels_last)):
        torch.manual_seed(0)
        model = VAE(cfg, pixels).to(device)
        if layout is torch.channels_last:
            model = model.to(memory_format=torch.channels_last)
        steps[name] = _vsc_step(model, cfg, batches, device)
    steps["convolutions + matrix products"] = _compute_only_step(model, batches[0], device, torch.float32)
    torch.manual_seed(0)
    steps["obvious eager"] = _obvious_step(ObviousConvVSC(shape, channels, dim, likelihood).to(device), batches)
    if progress:
        progress("conv training steps")
    times = _interleaved(steps, repeats, warmup, device)
    mm, obv = times["convolutions + matrix products"], times["obvious eager"]
    rows = [{"step": name, "ms_per_iteration": t * 1e3, "iterations_per_second": 1 / t,
             "x_matrix_products": t / mm, "speedup_vs_obvious": obv / t} for name, t in times.items()]
    return {"machine": machine(device), "network": "conv", "shape": list(shape), "channels": list(channels),
            "dim": dim, "batch_size": batch_size, "likelihood": likelihood, "backend": backend, "repeats": repeats,
            "rows": rows}


def _matmul_step(batch: int, layers, device, dtype):
    """The training step's matrix products alone, into preallocated outputs: per Linear layer (n_in -> n_out) the
    forward X W^T, the weight gradient G^T X and, except for the first layer (the data need none), the input
    gradient G W. Everything else a step does is the overhead measured against this."""
    g = torch.Generator(device=device).manual_seed(0)
    mats = []
    for i, (n_in, n_out) in enumerate(layers):
        r = lambda *shape: torch.randn(*shape, generator=g, device=device, dtype=dtype)  # noqa: E731
        mats.append((i, r(batch, n_in), r(n_out, n_in), r(batch, n_out), torch.empty(batch, n_out, device=device, dtype=dtype),
                     torch.empty(n_out, n_in, device=device, dtype=dtype), torch.empty(batch, n_in, device=device, dtype=dtype)))

    def step():
        for i, x, w, grad, y, gw, gx in mats:
            torch.mm(x, w.t(), out=y)
            torch.mm(grad.t(), x, out=gw)
            if i:
                torch.mm(grad, w, out=gx)

    return step


def run_train_bench(backends=None, device="cpu", dim=200, batch_size=256, repeats=50, warmup=10, progress=None,
                    likelihoods=("gaussian", "bernoulli"), hidden: int = 400, pixels: int = 784):
    """Training steps of the paper's network (pixels-hidden-dim), random unit-norm data, per likelihood:
    vsc's own step (train.training_step: the one the training loop runs) per backend, the same step's matrix
    products alone, and the obvious eager version (ObviousVSC with Adam). All timed in alternating blocks in one
    process (see _interleaved); rows give ms, the ratio to the matrix products and the speed-up over the
    obvious version."""
    from vsc_cli.common.config import TrainConfig
    from vsc_cli.models.vae import VAE

    backends = list(backends or [b for b in available_backends() if b != "cuda" or device == "cuda"])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size * 8, pixels, generator=g)
    x = (x / x.norm(dim=1, keepdim=True)).to(device)
    batches = [x[i * batch_size:(i + 1) * batch_size] for i in range(8)]
    steps, kinds = {}, {}
    for likelihood in likelihoods:
        out_pixels = pixels * (2 if likelihood == "gaussian" else 1)
        name = f"matrix products ({likelihood})"
        steps[name] = _matmul_step(batch_size, [(pixels, hidden), (hidden, 3 * dim), (dim, hidden),
                                                (hidden, out_pixels)], device, torch.float32)
        kinds[name] = (likelihood, "matmul")
        for backend in backends:
            torch.manual_seed(0)
            cfg = TrainConfig(dim=dim, batch_size=batch_size, backend=backend, likelihood=likelihood, hidden=(hidden,))
            model = VAE(cfg, pixels).to(device)
            name = f"vsc {backend} ({likelihood})"
            steps[name], kinds[name] = _vsc_step(model, cfg, batches, device), (likelihood, "vsc")
        torch.manual_seed(0)
        name = f"obvious eager ({likelihood})"
        steps[name] = _obvious_step(ObviousVSC(pixels, hidden, dim, likelihood).to(device), batches)
        kinds[name] = (likelihood, "obvious")
    if progress:
        progress("training steps")
    times = _interleaved(steps, repeats, warmup, device)
    rows = []
    for name, t in times.items():
        likelihood, kind = kinds[name]
        mm = times[f"matrix products ({likelihood})"]
        rows.append({"step": name, "likelihood": likelihood, "kind": kind, "ms_per_iteration": t * 1e3,
                     "iterations_per_second": 1 / t, "x_matrix_products": t / mm,
                     "speedup_vs_obvious": times[f"obvious eager ({likelihood})"] / t})
    return {"machine": machine(device), "dim": dim, "hidden": hidden, "pixels": pixels, "batch_size": batch_size,
            "repeats": repeats, "rows": rows}


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


# `vsc bench --train --network N`: the step benchmark of each network and its latent dimensions
TRAIN_BENCHES = {"mlp": (run_train_bench, 200), "conv": (run_conv_bench, 256)}
TRAIN_DEFAULT = "mlp"


def check(device: str, impls, train_mode: bool, network: str) -> None:
    """OptionsError for `vsc bench` choices that do not go together or cannot run here."""
    from vsc_cli.common.errors import OptionsError
    from vsc_cli.trainers.dist import check_device

    if network != TRAIN_DEFAULT and not train_mode:
        raise OptionsError("--network is for --train")
    check_device(device)
    if device == "cpu" and impls and "cuda" in impls:
        raise OptionsError("--impls cuda needs --device cuda")


@contextlib.contextmanager
def threads(n: int | None):
    """torch's and numba's CPU threads set to n for the block (None: as they are), then as before (`vsc bench`
    may run inside another program, e.g. a test)."""
    if not n:
        yield
        return
    import numba

    before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


def run(sizes, impls=None, no_compile=False, repeats=50, warmup=5, dtype="float32", device="cpu",
        train_mode=False, network="mlp", dim=None, progress=None) -> dict:
    """`vsc bench`'s measurement: the op per implementation (without torch.compile when no_compile), or with
    train_mode whole training steps of the MLP or the conv network (dim: 200, or 256 for the conv network)."""
    if train_mode:
        bench, default_dim = TRAIN_BENCHES[network]
        return bench(device=device, dim=dim or default_dim, repeats=repeats, warmup=warmup, progress=progress)
    if no_compile and impls is None:
        impls = [i for i in [*ANCHORS, "numba", "cuda"] if i != "torch-compile"]
    elif no_compile:
        impls = [i for i in impls if i != "torch-compile"]
    return run_op_bench(sizes, impls, device, getattr(torch, dtype), repeats, warmup, progress=progress)


def table(result: dict, repeats: int, train_mode: bool = False, network: str = "mlp") -> dict:
    """`vsc bench`'s table of a result of `run` (with the same train_mode and network): {title, columns, rows
    (lists of strings), caption}."""
    m = result["machine"]
    title = f"{m.get('gpu') or m['processor']} | torch {m['torch']} | {m['torch_threads']} threads"
    if train_mode:  # training steps
        conv = "channels" in result  # the conv network's step (run_conv_bench)
        net = (f"conv network {'x'.join(map(str, result['shape']))} ({','.join(map(str, result['channels']))})"
               if conv else f"{result['pixels']}-{result['hidden']}")
        base = "convolutions + matrix products" if conv else "matrix products"
        ms, per_s = (".1f", ".2f") if conv else (".2f", ".1f")  # a conv step is ~0.2 s, an MLP step ~20 ms
        alone = ("its layers' forward and backward alone" if conv
                 else "its matrix products' alone (1.00 = nothing else costs)")
        return {"title": f"training step, {net}-{result['dim']}, batch {result['batch_size']}, median of "
                         f"{repeats}: {title}",
                "columns": ["step", "ms / iteration", "iterations / s", f"x {base}", "x obvious eager"],
                "rows": [[r["step"], format(r["ms_per_iteration"], ms), format(r["iterations_per_second"], per_s),
                          f"{r['x_matrix_products']:.2f}", f"{r['speedup_vs_obvious']:.2f}"] for r in result["rows"]],
                "caption": f"x {base}: the step's time over {alone}; x obvious eager: the obvious version's time "
                           "over this step's"}
    rows = []
    for r in result["rows"]:
        if "error" in r:
            rows.append([r["size"], r["impl"], "error", "", "", r["error"][:40]])
            continue
        rows.append([r["size"], r["impl"], f"{r['ms']:.3f}",
                     f"{r['speedup_vs_eager']:.1f}" if r["speedup_vs_eager"] else "",
                     f"{r['gbps']:.1f}", f"{r['x_bandwidth_bound']:.2f}"])
    return {"title": f"spike-slab op, forward + backward, {result['dtype']}, median of {repeats}: {title}",
            "columns": ["size", "impl", "ms", "x eager", "GB/s", "x bandwidth bound"], "rows": rows,
            "caption": f"copy bandwidth measured: {result['copy_bandwidth_gbps']:.1f} GB/s"}
