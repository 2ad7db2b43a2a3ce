"""Compiled backends (Numba CPU, numba.cuda) against the pure-torch reference: values and gradients."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from numba import njit

from vsc_kernels import config, spike_slab
from vsc_kernels.fastmath import exp_f32, log_f32, one_minus_exp_f32

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
TOL = {torch.float32: dict(rtol=2e-4, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


def make_inputs(b, j, dtype, seed=0, v_scale=2.0, logvar_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, j, generator=g, dtype=torch.float64)
    logvar = logvar_scale * torch.randn(b, j, generator=g, dtype=torch.float64)
    v = v_scale * torch.randn(b, j, generator=g, dtype=torch.float64)
    eps = torch.randn(b, j, generator=g, dtype=torch.float64)
    eta = torch.rand(b, j, generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (mu, logvar, v, eps, eta)]


def run_op(backend, mu, logvar, v, eps, eta, c, alpha, seed=1, use=("z", "slab", "spike")):
    """Forward, then backward of sum(w * z) + sum(a * slab) + sum(b * spike) with random weights."""
    params = [t.detach().clone().requires_grad_(True) for t in (mu, logvar, v)]
    z, slab, spike = spike_slab(*params, eps, eta, c, alpha, backend=backend)
    g = torch.Generator().manual_seed(seed)
    terms = {"z": z, "slab": slab, "spike": spike}
    loss = sum((torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype) * t).sum()
               for k, t in terms.items() if k in use)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]  # unused: zero
    return (z.detach(), slab.detach(), spike.detach()), grads


def assert_matches_reference(backend, inputs, c, alpha, **kw):
    dtype = inputs[0].dtype
    got_out, got_grad = run_op(backend, *inputs, c, alpha, **kw)
    want_out, want_grad = run_op("torch", *inputs, c, alpha, **kw)
    tol = TOL[dtype]
    for name, a, b in zip(("z", "kl_slab", "kl_spike"), got_out, want_out):
        scale = dict(tol, atol=tol["atol"] * max(1.0, float(b.abs().max())))
        torch.testing.assert_close(a, b, **scale, msg=lambda m: f"{backend} {name}: {m}")
    for name, a, b in zip(("mu", "logvar", "v"), got_grad, want_grad):
        scale = dict(tol, atol=tol["atol"] * max(1.0, float(b.abs().max())))
        torch.testing.assert_close(a, b, **scale, msg=lambda m: f"{backend} d/d{name}: {m}")


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
@pytest.mark.parametrize("shape", [(256, 200), (1, 13), (300, 100)])  # 300x100 takes the parallel path
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

    assert torch.autograd.gradcheck(op, args, eps=1e-6, atol=1e-6)


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
needs_sim = pytest.mark.skipif(not SIMULATED and not torch.cuda.is_available(),
                               reason="needs the CUDA simulator or a GPU")


def to_device(inputs):
    return inputs if SIMULATED else [t.cuda() for t in inputs]


@needs_sim
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


@needs_sim
def test_cuda_noncontiguous_input(monkeypatch):
    monkeypatch.setattr(config, "CUDA_FWD_THREADS_SMALL_J", 8)
    inputs = [t.t().contiguous().t() for t in make_inputs(3, 10, torch.float32, seed=7)]
    assert_matches_reference("cuda", to_device(inputs), 50.0, 0.5)


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

    tensors = make_inputs(6, 9, torch.float64, seed=11)
    (z_ref, slab_ref, spike_ref), grads_ref = run_op("torch", *tensors, 90.0, 0.3)
    a = [t.numpy().astype(dtype) for t in tensors]
    z, slab, spike = np.empty((6, 9), dtype), np.empty(6, dtype), np.empty(6, dtype)
    spike_slab_fwd_cpu(*a, 90.0, math.log(0.3), math.log(0.7), z, slab, spike)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(z, z_ref.numpy(), **tol)
    np.testing.assert_allclose(slab, slab_ref.numpy(), **tol)
    np.testing.assert_allclose(spike, spike_ref.numpy(), **tol)
    g = torch.Generator().manual_seed(1)  # the same upstream gradients as run_op draws
    up = [torch.randn(s, generator=g, dtype=torch.float64).numpy().astype(dtype) for s in ((6, 9), (6,), (6,))]
    out = [np.empty((6, 9), dtype) for _ in range(3)]
    spike_slab_bwd_cpu(*a, 90.0, math.log(0.3), math.log(0.7), *up, *out)
    for got, want in zip(out, grads_ref):
        np.testing.assert_allclose(got, want.numpy(), **tol)
    with pytest.raises(ValueError, match="C-contiguous"):
        spike_slab_fwd_cpu(*[x.T for x in a], 90.0, 0.0, 0.0, z, slab, spike)


def test_default_backend_follows_the_device(monkeypatch):
    from vsc_kernels import default_backend, function

    assert default_backend("cpu") == "numba"
    monkeypatch.setattr(function, "cuda_problem", lambda: "no GPU")
    assert default_backend("cuda") == "torch"  # never numba for CUDA tensors
    monkeypatch.setattr(function, "cuda_problem", lambda: None)
    assert default_backend("cuda") == "cuda"


def test_auto_backend_uses_the_default_for_the_device():
    inputs = make_inputs(4, 6, torch.float32)
    got, _ = run_op("auto", *inputs, 70.0, 0.4)
    want, _ = run_op("numba", *inputs, 70.0, 0.4)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
