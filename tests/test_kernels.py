"""Compiled backends (Numba CPU, numba.cuda) against the pure-torch reference: values and gradients."""
import contextlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from numba import config as numba_config
from numba import njit

from conftest import assert_within, recording
from vsc_kernels import ALPHA_FLOOR, config, cuda_problem, function, spike_slab
from vsc_kernels.fastmath import exp_f32, log_f32, one_minus_exp_f32

SIMULATED = bool(numba_config.ENABLE_CUDASIM)  # what numba really runs (tests/conftest.py sets it to 1 by default)
CUDA_PROBLEM = cuda_problem()  # None when the cuda backend can run here (the simulator, or a usable GPU)
CUDA_DEVICE = "cpu" if SIMULATED else "cuda"  # where the cuda backend's tensors live: the simulator takes CPU tensors

# ------------------------------------------------------------------------------ tolerances
# The compiled kernels are compared element by element with the pure-torch reference evaluated in float64 on
# float64 copies of the same inputs and upstream weights. An element passes when
#     |kernel - reference| <= TERM_ULPS u M + SIGMOID_ULPS c u M_s                      (rounding)
#                             + S_MIN M[s := 1] + G_MIN M[gamma := 1] + 1024 tiny      (the kernels' clamps)
#                             + REF_ULP (the terms the float64 reference rounds at the scale of 1; d/dv only)
# with u the unit roundoff of the kernel's dtype (2**-24, 2**-53), M the sum of the absolute values of the terms
# that the kernel adds up for that element (kernels/_element.py, see `summand_sizes`) and M_s the part of M that
# holds the sigmoid s or s' = s (1 - s). Without cancellation M = |reference|: the bound is then relative,
# 64 u = 3.8e-6 in float32 (more with the sigmoid), never scaled by the tensor's largest value. Why these terms:
#   TERM_ULPS = 64: each term is a product of a few rounded factors (exp/log of fastmath.py: a few ulp; CUDA's
#       fast __expf: up to 2 + 1.2 |x| ulp), and the row sums add up to J <= 300 such terms;
#       measured worst: 4.4 u (float32), 12 u (float64, a row sum of kl_spike).
#   SIGMOID_ULPS = 10: the sigmoid's argument y = c (eta - 1 + gamma) is rounded at the scale of 1, an absolute
#       error of ~3 ulp(1) times c that changes s, s' and e**-y by up to that much, relatively (3.6e-5 at c = 200);
#       measured worst: 1.4 c u (float32, numba; 0.3 c u under the simulator).
#   S_MIN = 2 S(-40): the kernels clamp |y| at Y_MAX = 40, so where the true S(y) or S'(y) is below S(-40) =
#       4.2e-18 they use about S(-40) (z of a spike that is off is ~1e-17 instead of ~1e-50);
#   G_MIN = 2 e**-87 (float32 only): the float32 exp (fastmath.exp_f32; __expf with flush-to-zero on a GPU)
#       clamps at e**-87 = 1.6e-38, so a gamma below that comes out as e**-87 or 0; 1024 tiny (1.2e-35 in float32):
#       results below the smallest normal number may be flushed to zero (CUDA fastmath), a few of them per row;
#   REF_ULP = 4 * 2**-53: the reference's own rounding where torch's backward loses the small result of a
#       difference from 1 (see `reference_and_bounds`).
# So a kernel that is off by 1% fails wherever the element's terms do not cancel to below ~1% of their sizes
# and its value is above the clamp floors (~1e-17): test_bounds_catch_a_one_percent_error.
TERM_ULPS, SIGMOID_ULPS = 64, 10
UNIT_ROUNDOFF = {torch.float32: 2.0 ** -24, torch.float64: 2.0 ** -53}
Y_MAX = 40.0  # the clamp of kernels/_element.py, fixed here so that lowering it there fails these tests
S_MIN = 2.0 / (1.0 + math.exp(Y_MAX))
G_MIN = {torch.float32: 2.0 * math.exp(-87.0), torch.float64: 0.0}
REF_ULP = 4 * 2.0 ** -53
OUTPUTS = ("z", "kl_slab", "kl_spike")
GRADS = ("mu", "logvar", "v")


def make_inputs(b, j, dtype, seed=0, v_scale=2.0, logvar_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, j, generator=g, dtype=torch.float64)
    logvar = logvar_scale * torch.randn(b, j, generator=g, dtype=torch.float64)
    v = v_scale * torch.randn(b, j, generator=g, dtype=torch.float64)
    eps = torch.randn(b, j, generator=g, dtype=torch.float64)
    eta = torch.rand(b, j, generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (mu, logvar, v, eps, eta)]


def upstream_weights(shape, dtype, seed=1, use=("z", "slab", "spike")):
    """The random weights of the loss: drawn in float64 (always all three, in this order), rounded to `dtype`
    (the kernel's, so that a float64 reference sees the very same numbers), zero for the unused terms."""
    g = torch.Generator().manual_seed(seed)
    drawn = {k: torch.randn(s, generator=g, dtype=torch.float64).to(dtype)
             for k, s in (("z", shape), ("slab", shape[:-1]), ("spike", shape[:-1]))}
    return {k: w if k in use else torch.zeros_like(w) for k, w in drawn.items()}


def run_op(backend, mu, logvar, v, eps, eta, c, alpha, seed=1, use=("z", "slab", "spike"), weight_dtype=None):
    """Forward, then backward of sum(w * z) + sum(a * slab) + sum(b * spike) with random weights (rounded to
    weight_dtype, default the inputs' dtype). Returns the outputs and gradients on the CPU."""
    params = [t.detach().clone().requires_grad_(True) for t in (mu, logvar, v)]
    z, slab, spike = spike_slab(*params, eps, eta, c, alpha, backend=backend)
    weights = upstream_weights(tuple(mu.shape), weight_dtype or mu.dtype, seed, use)
    terms = {"z": z, "slab": slab, "spike": spike}
    loss = sum((weights[k].to(t.dtype).to(t.device) * t).sum() for k, t in terms.items() if k in use)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]  # unused: zero
    return tuple(t.detach().cpu() for t in (z, slab, spike)), [g.cpu() for g in grads]


def summand_sizes(x, w, c, alpha, s, s_prime, gamma):
    """For each output and gradient element: the sum of the absolute values of the terms the kernel adds up
    (kernels/_element.py), in float64, for given sigmoid s, its derivative s_prime = s (1 - s) and gamma."""
    mu, logvar, v, eps, eta = x
    gz, gsl, gsp = w["z"].abs(), w["slab"].abs()[..., None], w["spike"].abs()[..., None]
    lg = torch.clamp(v, max=0.0)
    omg = -torch.expm1(lg)
    # + 1: near gamma = 0, 1 - gamma is rounded at the scale of 1, so its log is accurate to a few ulp(1) only
    log_omg = torch.log(torch.where(omg > 0, omg, torch.ones_like(omg))).abs() + 1.0
    log_a, log_1a = abs(math.log(alpha)), abs(math.log(max(1.0 - alpha, ALPHA_FLOOR)))
    sigma = torch.exp(0.5 * logvar)
    slab = mu.abs() + sigma * eps.abs()  # mu + sigma eps
    k = 0.5 * (mu * mu + sigma * sigma + 1.0 + logvar.abs())  # kl_slab / gamma
    return {
        "z": s * slab,
        "kl_slab": (gamma * k).sum(-1),
        "kl_spike": (gamma * (lg.abs() + log_a) + omg * (log_omg + log_1a)).sum(-1),
        "mu": gz * s + gsl * gamma * mu.abs(),
        "logvar": 0.5 * (gz * s * eps.abs() * sigma + gsl * gamma * (sigma * sigma + 1.0)),
        "v": (v < 0) * gamma * (gz * slab * c * s_prime + gsl * k + gsp * (lg.abs() + log_a + log_omg + log_1a)),
    }


def reference_and_bounds(inputs, c, alpha, dtype, seed=1, use=("z", "slab", "spike")):
    """The float64 reference (outputs and gradients, a dict by name) and each element's error bound for a
    kernel of `dtype` (see "tolerances" above)."""
    x = [t.detach().cpu().double() for t in inputs]
    outs, grads = run_op("torch", *x, c, alpha, seed=seed, use=use, weight_dtype=dtype)
    ref = dict(zip(OUTPUTS + GRADS, (*outs, *grads)))
    w = {k: t.double() for k, t in upstream_weights(tuple(x[0].shape), dtype, seed, use).items()}
    gamma = torch.exp(torch.clamp(x[2], max=0.0))
    y = c * (x[4] - 1.0 + gamma)
    s, s_prime = torch.sigmoid(y), torch.sigmoid(y) * torch.sigmoid(-y)
    sizes = summand_sizes(x, w, c, alpha, s, s_prime, gamma)
    sigmoid_terms = {k: sizes[k] - m for k, m in summand_sizes(x, w, c, alpha, 0.0, 0.0, gamma).items()}
    s_one = summand_sizes(x, w, c, alpha, 1.0, 1.0, gamma)
    g_one = summand_sizes(x, w, c, alpha, s, s_prime, 1.0)
    u = UNIT_ROUNDOFF[dtype]
    bounds = {k: TERM_ULPS * u * sizes[k] + SIGMOID_ULPS * c * u * sigmoid_terms[k] + S_MIN * s_one[k]
              + G_MIN[dtype] * g_one[k] + 1024 * torch.finfo(dtype).tiny for k in sizes}
    # The reference's own rounding, where torch's backward rounds at the scale of 1 rather than of the result:
    # S'(y) = S (1 - S) for S near 1, and d(1 - gamma)/dv = -gamma as (expm1(v) + 1) for v << 0; both are off
    # by up to ~1 ulp(1), times the other factors of their terms (in d/dv only).
    ref_rounding = summand_sizes(x, w, c, alpha, s, 1.0, gamma)["v"]
    omg = -torch.expm1(torch.clamp(x[2], max=0.0))
    log_omg = torch.log(torch.where(omg > 0, omg, torch.ones_like(omg))).abs()
    log_1a = abs(math.log(max(1.0 - alpha, ALPHA_FLOOR)))
    ref_rounding += (x[2] < 0) * w["spike"].abs()[..., None] * (log_omg + 1.0 + log_1a)  # gsp d kl_spike / d(1 - gamma)
    bounds["v"] = bounds["v"] + REF_ULP * ref_rounding
    return ref, bounds


def expected_calls(backend, inputs):
    if backend == "cuda":
        return ["cuda:fwd", "cuda:bwd"]
    saving = inputs[0].numel() <= config.CPU_SAVE_PARTIALS_MAX_ELEMENTS
    return ["numba:fwd_saving", "numba:bwd_saved"] if saving else ["numba:fwd", "numba:bwd"]


@contextlib.contextmanager
def kernel_calls():
    """Record every launch of a compiled kernel ("numba:<kind>", "cuda:fwd", "cuda:bwd") and every call of the
    torch reference ("torch") through the dispatcher, so a test can tell a kernel from a silent fall-back."""
    from vsc_kernels import cpu

    calls = []

    def spy(fn, name):
        return recording(calls, fn, name)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cpu, "run_at_addresses", spy(cpu.run_at_addresses, lambda a: f"numba:{a[0]}"))
        mp.setattr(function, "spike_slab_ref", spy(function.spike_slab_ref, lambda a: "torch"))
        if CUDA_PROBLEM is None:
            from vsc_kernels import gpu

            mp.setattr(gpu, "spike_slab_fwd_gpu", spy(gpu.spike_slab_fwd_gpu, lambda a: "cuda:fwd"))
            mp.setattr(gpu, "spike_slab_bwd_gpu", spy(gpu.spike_slab_bwd_gpu, lambda a: "cuda:bwd"))
        yield calls


def assert_matches_reference(backend, inputs, c, alpha, **kw):
    dtype = inputs[0].dtype
    with kernel_calls() as calls:
        got_out, got_grad = run_op(backend, *inputs, c, alpha, **kw)
    assert calls == expected_calls(backend, inputs), f"{backend} did not run its kernels: {calls}"
    ref, bounds = reference_and_bounds(inputs, c, alpha, dtype, **kw)
    for name, got in zip(OUTPUTS + GRADS, (*got_out, *got_grad)):
        label = f"{backend} {dtype} {name if name in OUTPUTS else 'd/d' + name}"
        assert got.dtype == dtype and got.shape == ref[name].shape, label
        assert_within(label, got, ref[name], bounds[name])


# ------------------------------------------------------------------------------ fast float32 math
def test_fastmath_exp_log_expm1_accuracy():
    @njit
    def apply(x):
        out = np.empty((3, x.size), np.float32)
        for i in range(x.size):
            e = exp_f32(x[i])
            out[0, i] = e
            out[1, i] = log_f32(e)
            out[2, i] = one_minus_exp_f32(min(x[i], np.float32(0)), exp_f32(min(x[i], np.float32(0))))
        return out

    x = np.concatenate([np.linspace(-86, 87, 200_001), -np.logspace(-30, 0, 2001)]).astype(np.float32)
    out = apply(x).astype(np.float64)
    xd = x.astype(np.float64)
    assert np.max(np.abs(out[0] / np.exp(xd) - 1)) < 4e-7
    e = out[0]
    assert np.max(np.abs(out[1] - np.log(e)) / np.maximum(np.abs(np.log(e)), 1)) < 4e-7
    neg = np.minimum(xd, 0)
    want = -np.expm1(neg)
    nz = want > 0
    assert np.max(np.abs(out[2][nz] / want[nz] - 1)) < 4e-7  # relative, even for x = -1e-30
    assert np.all(out[2][~nz] == 0)


# ------------------------------------------------------------------------------ numba backend
@pytest.fixture(params=["save-partials", "recompute"])
def numba_strategy(request, monkeypatch):
    """Run a test under both backward strategies of the numba backend."""
    if request.param == "recompute":
        monkeypatch.setattr(config, "CPU_SAVE_PARTIALS_MAX_ELEMENTS", 0)
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(256, 200), (1, 13), (300, 100)])  # (1, 13): the serial kernels; others parallel
def test_numba_matches_reference(dtype, shape, numba_strategy):
    assert_matches_reference("numba", make_inputs(*shape, dtype), 120.0, 0.3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [0.01, 0.5, 1.0])
@pytest.mark.parametrize("c", [50.0, 200.0])
def test_numba_alpha_c_grid(dtype, alpha, c, numba_strategy):
    assert_matches_reference("numba", make_inputs(17, 33, dtype, seed=int(alpha * 100 + c)), c, alpha)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["gamma_one", "gamma_near_zero", "large_logvar", "v_near_zero"])
def test_numba_edge_cases(dtype, case, numba_strategy):
    mu, logvar, v, eps, eta = make_inputs(8, 40, dtype, seed=3)
    if case == "gamma_one":
        v = v.abs() + 0.1
    elif case == "gamma_near_zero":
        v = -(v.abs() * 20 + 20)  # gamma down to e^-100 and below
    elif case == "large_logvar":
        logvar = logvar.sign() * (10 + 5 * logvar.abs())  # |log sigma^2| from 10 to ~25
    elif case == "v_near_zero":
        v = -torch.logspace(-30, -1, v.numel(), dtype=torch.float64).reshape(v.shape).to(dtype)
    assert_matches_reference("numba", [mu, logvar, v, eps, eta], 200.0, 0.5)
    if case == "gamma_one":  # eq. 12 passes no gradient to v when v > 0
        _, grads = run_op("numba", mu, logvar, v, eps, eta, 200.0, 0.5)
        assert torch.equal(grads[2], torch.zeros_like(grads[2]))


def test_numba_noncontiguous_and_unused_outputs(numba_strategy):
    base = make_inputs(40, 12, torch.float32)
    transposed = [t.t().contiguous().t() for t in base]  # same values, column-major strides
    assert not transposed[0].is_contiguous()
    assert_matches_reference("numba", transposed, 80.0, 0.2)
    for use in (("z",), ("slab",), ("spike",), ("z", "spike")):
        assert_matches_reference("numba", base, 80.0, 0.2, use=use)


def test_numba_leading_dimensions():
    inputs = [t.reshape(2, 5, 9) for t in make_inputs(10, 9, torch.float32)]
    (z, slab, spike), _ = run_op("numba", *inputs, 60.0, 0.4)
    assert z.shape == (2, 5, 9) and slab.shape == (2, 5) and spike.shape == (2, 5)
    assert_matches_reference("numba", inputs, 60.0, 0.4)


def test_numba_gradcheck_float64(numba_strategy):
    mu, logvar, v, eps, eta = make_inputs(4, 6, torch.float64, seed=5)
    v = torch.where(v.abs() < 0.05, v - 0.1, v)  # keep clear of the kink of min(v, 0)
    args = [t.clone().requires_grad_(True) for t in (mu, logvar, v)]

    def op(a, b, c_):
        return spike_slab(a, b, c_, eps, eta, 30.0, 0.3, backend="numba")

    with kernel_calls() as calls:
        torch.autograd.gradcheck(op, args, eps=1e-6, atol=1e-6)  # raises on a mismatch
    assert calls and set(calls) == set(expected_calls("numba", args)), calls  # the kernels, never the reference


def test_input_validation():
    mu, logvar, v, eps, eta = make_inputs(3, 4, torch.float32)
    with pytest.raises(ValueError, match="backend"):
        spike_slab(mu, logvar, v, eps, eta, 50.0, 0.5, backend="fortran")
    with pytest.raises(ValueError, match="must all match"):
        spike_slab(mu, logvar, v[:, :2], eps, eta, 50.0, 0.5, backend="numba")
    with pytest.raises(ValueError, match="must all match"):
        spike_slab(mu, logvar.double(), v, eps, eta, 50.0, 0.5, backend="numba")
    with pytest.raises(TypeError, match="float32 and float64"):
        spike_slab(*(t.half() for t in (mu, logvar, v, eps, eta)), 50.0, 0.5, backend="numba")
    with pytest.raises(ValueError, match="alpha"):
        spike_slab(mu, logvar, v, eps, eta, 50.0, 0.0, backend="numba")
    with pytest.raises(ValueError, match="positive"):
        spike_slab(mu, logvar, v, eps, eta, -1.0, 0.5, backend="numba")


# ------------------------------------------------------------------------------ cuda backend
# Under the simulator (CI) the cuda backend takes CPU tensors; with NUMBA_ENABLE_CUDASIM=0 on a GPU the same tests
# run the real kernels on CUDA tensors (run_op moves the weights to the outputs' device and brings the results back
# to the CPU, where they are compared).
needs_cuda_backend = pytest.mark.skipif(CUDA_PROBLEM is not None,
                                        reason=f"the cuda backend cannot run here: {CUDA_PROBLEM}")
needs_real_gpu = pytest.mark.skipif(
    SIMULATED or CUDA_PROBLEM is not None,
    reason="the real-device launch (cuda.as_cuda_array, external stream, cuda.gpus) needs a GPU and "
           "NUMBA_ENABLE_CUDASIM=0; " + ("here the CUDA simulator is on" if SIMULATED else f"here: {CUDA_PROBLEM}"))


def to_device(inputs):
    return [t.to(CUDA_DEVICE) for t in inputs]  # keeps the strides (non-contiguous stays non-contiguous)


@needs_cuda_backend
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_reference_several_blocks(dtype, monkeypatch):
    # small blocks so that a small problem still spans several blocks and strides within a row
    monkeypatch.setattr(config, "CUDA_FWD_THREADS_SMALL_J", 16)
    monkeypatch.setattr(config, "CUDA_BWD_THREADS", 32)
    for case, (b, j) in {"normal": (5, 37), "batch_of_one": (1, 20)}.items():
        inputs = make_inputs(b, j, dtype, seed=b)
        inputs[2][0, :3] = torch.tensor([0.5, 0.0, -1e-20], dtype=dtype)  # gamma = 1, v = 0, gamma ~ 1
        inputs[2][-1, -2:] = torch.tensor([-90.0, -40.0], dtype=dtype)  # gamma ~ 0
        assert_matches_reference("cuda", to_device(inputs), 200.0 if b > 1 else 50.0, 0.01 if b > 1 else 1.0)


@needs_cuda_backend
def test_cuda_noncontiguous_input(monkeypatch):
    monkeypatch.setattr(config, "CUDA_FWD_THREADS_SMALL_J", 8)
    inputs = to_device([t.t().contiguous().t() for t in make_inputs(3, 10, torch.float32, seed=7)])
    assert not inputs[0].is_contiguous()
    assert_matches_reference("cuda", inputs, 50.0, 0.5)


@needs_real_gpu
def test_cuda_on_a_real_gpu_uses_torch_memory_stream_and_device(monkeypatch):
    """The real-device branch of _plumbing.launch_cuda for the spike-and-slab op: the kernels get zero-copy views of torch's memory
    (cuda.as_cuda_array), run on torch's current stream (cuda.external_stream) and on the tensors' GPU
    (cuda.gpus[index]; the last GPU, which on a multi-GPU machine is not the default one)."""
    from numba import cuda

    from vsc_kernels import gpu

    device = torch.device("cuda", torch.cuda.device_count() - 1)
    inputs = [t.to(device) for t in make_inputs(64, 300, torch.float32, seed=21)]
    launches = []

    def spy(driver):
        def wrapper(*args, stream, **kwargs):
            launches.append((int(stream), cuda.get_current_device().id, args[3].__cuda_array_interface__["data"][0]))
            return driver(*args, stream=stream, **kwargs)
        return wrapper

    monkeypatch.setattr(gpu, "spike_slab_fwd_gpu", spy(gpu.spike_slab_fwd_gpu))
    monkeypatch.setattr(gpu, "spike_slab_bwd_gpu", spy(gpu.spike_slab_bwd_gpu))
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        assert_matches_reference("cuda", inputs, 200.0, 0.3)
    # forward and backward: on `side`, on `device`, and eps (args[3]) is torch's own buffer, not a copy
    assert launches == [(side.cuda_stream, device.index, inputs[3].data_ptr())] * 2


def test_cuda_without_gpu_is_a_clear_error():
    """In a fresh interpreter with no simulator: importing works, asking for cuda raises a clear error."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = ("import torch, vsc_kernels as k\n"
            "x = torch.zeros(2, 3)\n"
            "assert 'cuda' not in k.available_backends() and k.default_backend('cpu') == 'numba'\n"
            "try:\n    k.spike_slab(x, x, x, x, x, 50.0, 0.5, backend='cuda')\n"
            "except k.BackendUnavailable as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "cuda backend cannot run here" in out.stdout and "numba" in out.stdout


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_host_drivers_match_reference(dtype):
    from vsc_kernels.cpu import spike_slab_bwd_cpu, spike_slab_fwd_cpu

    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tensors = make_inputs(6, 9, tdtype, seed=11)
    ref, bounds = reference_and_bounds(tensors, 90.0, 0.3, tdtype)
    a = [t.numpy() for t in tensors]
    z, slab, spike = np.empty((6, 9), dtype), np.empty(6, dtype), np.empty(6, dtype)
    spike_slab_fwd_cpu(*a, 90.0, math.log(0.3), math.log(0.7), z, slab, spike)
    up = [w.numpy() for w in upstream_weights((6, 9), tdtype).values()]  # the weights the reference used
    out = [np.empty((6, 9), dtype) for _ in range(3)]
    spike_slab_bwd_cpu(*a, 90.0, math.log(0.3), math.log(0.7), *up, *out)
    for name, got in zip(OUTPUTS + GRADS, (z, slab, spike, *out)):
        assert_within(f"numpy driver {name}", torch.from_numpy(got), ref[name], bounds[name])
    with pytest.raises(ValueError, match="C-contiguous"):  # same shapes, Fortran order: only the layout is wrong
        spike_slab_fwd_cpu(*[np.asfortranarray(x) for x in a], 90.0, 0.0, 0.0, z, slab, spike)


def test_default_backend_follows_the_device(monkeypatch):
    from vsc_kernels import _plumbing, default_backend

    assert default_backend("cpu") == "numba"
    monkeypatch.setattr(_plumbing, "cuda_problem", lambda: "no GPU")
    assert default_backend("cuda") == "torch"  # never numba for CUDA tensors
    monkeypatch.setattr(_plumbing, "cuda_problem", lambda: None)
    assert default_backend("cuda") == "cuda"


def test_auto_backend_uses_the_default_for_the_device():
    inputs = make_inputs(4, 6, torch.float32)
    with kernel_calls() as calls:
        got, _ = run_op("auto", *inputs, 70.0, 0.4)
    assert calls == expected_calls("numba", inputs)  # the numba kernels, not the torch reference
    want, _ = run_op("numba", *inputs, 70.0, 0.4)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------ the comparison itself
def test_kernel_calls_sees_a_fall_back_to_the_reference(monkeypatch):
    """The spy that the comparisons rely on: a backend that quietly ran the torch reference is caught."""
    inputs = make_inputs(4, 6, torch.float32)
    with kernel_calls() as calls:
        run_op("torch", *inputs, 70.0, 0.4)
    assert calls == ["torch"]
    monkeypatch.setattr(function.SpikeSlabFunction, "apply", lambda *a: function.spike_slab_ref(*a[:7]))
    with pytest.raises(AssertionError, match="did not run its kernels"):
        assert_matches_reference("numba", inputs, 70.0, 0.4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bounds_catch_a_one_percent_error(dtype):
    """The bounds are tight enough that a kernel off by 1% fails: every output and gradient scaled by 1.01 is
    rejected, and a 1% error of a single element goes unseen only where the element's terms cancel to below 1%
    of their sizes, or where its value is below the clamp floors (~1e-17; z of a spike that is off)."""
    inputs = make_inputs(256, 200, dtype)
    ref, bounds = reference_and_bounds(inputs, 120.0, 0.3, dtype)
    for name in OUTPUTS + GRADS:
        want, bound = ref[name], bounds[name]
        with pytest.raises(pytest.fail.Exception, match="out of bounds"):
            assert_within(name, want * 1.01, want, bound)
        visible = want.abs() > 1e-15
        hidden = (0.01 * want.abs() <= bound) & visible
        assert hidden.sum() <= 0.01 * visible.sum(), f"{name}: a 1% error hides in {int(hidden.sum())} elements"


def test_cpu_kernels_hit_numba_cache_in_a_new_process():
    """The spike-and-slab kernels see their element functions as globals, not closures (a closure over a
    dispatcher pickles with a per-process id, so Numba's cache missed in every process: 4 s of compiling at each
    start): a fresh interpreter loads them, and their address entries, from disk."""
    code = ("import json, torch\nfrom vsc_kernels import spike_slab, cpu\n"
            "mu = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)\n"
            "z, a, b = spike_slab(mu, mu * 0, mu * 0, torch.randn(3, 4, dtype=torch.float64), "
            "torch.rand(3, 4, dtype=torch.float64), 50.0, 0.5, backend='numba')\n"
            "(z.sum() + a.sum() + b.sum()).backward()\n"
            "import numpy as np\nused = [d for kind in cpu._ADDRESS_ENTRIES[np.dtype('float64')].values() for d in kind"
            " if d.signatures]\n"
            "kernels = [d.py_func.__globals__['kernel'] for d in used]\n"
            "print(json.dumps([len(used), sum(len(d.stats.cache_misses) for d in used + kernels),"
            " sum(len(d.stats.cache_hits) for d in used)]))\n")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
            for _ in range(2)]  # the first may compile (and write the cache); the second must only load
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    used, misses, hits = json.loads(runs[1].stdout.strip().splitlines()[-1])
    # the forward's and the backward's entries loaded (the kernels they call are linked into them), none compiled
    assert used >= 2 and misses == 0 and hits == used, runs[1].stdout
