"""Several processes: `torchrun --no-python vsc train|encode` with gloo on the CPU (2 processes here)."""
import csv
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch.distributed import TCPStore

from conftest import shared_data_dir
from test_cli import run
from vsc_cli.trainers.checkpoint import load_checkpoint
from vsc_cli.common.config import TrainConfig
from vsc_cli.models.vae import VAE

VSC = shutil.which("vsc") or str(Path(sys.executable).with_name("vsc"))
SMALL = ["--dim", "10", "--batch-size", "64", "--train-size", "2048", "--test-size", "500", "--log-every", "10",
         "--checkpoint-every", "20", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small real subset (Fashion-MNIST) when the shared data are here, else generated images."""
    real = shared_data_dir()
    if real is not None:
        return "fmnist", {"VSC_DATA_DIR": str(real)}
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("own") / "images.npy"
    base = rng.integers(0, 256, (10, 28, 28))
    np.save(path, np.clip(base[rng.integers(0, 10, 4000)] + rng.integers(-20, 20, (4000, 28, 28)), 0, 255)
            .astype(np.uint8))
    return str(path), {}


def torchrun(args, env_extra, nproc=2, timeout=600, preexec_fn=None):
    env = {**os.environ, **env_extra, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "--no-python", VSC, *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)


def elbo_column(run_dir):
    with open(run_dir / "log.csv") as fh:
        return [float(r["elbo"]) for r in csv.DictReader(fh)]


def parameter_sha256(run_dir) -> str:
    """SHA-256 of the parameters a run saved, computed as each rank hashes the ones it holds (state.agree:
    name and bytes of every state_dict entry, in the model's order)."""
    state = load_checkpoint(run_dir)
    h = hashlib.sha256()
    for name in VAE(TrainConfig.from_dict(state["config"]), state["pixels"]).state_dict():
        h.update(name.encode())
        h.update(state["model"][name].contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def test_torchrun_train_two_processes(tmp_path, data, monkeypatch):
    name, env = data
    out2 = tmp_path / "two"
    proc = torchrun(["train", "--data", name, "--iterations", "60", "--out", out2, *SMALL], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("test ELBO per image") == 1  # rank 0 reports, once
    files = sorted(p.name for p in out2.iterdir() if not p.name.startswith("."))
    assert files == ["checkpoint.safetensors", "config.toml", "log.csv", "metrics.json"]  # one of each
    assert not [p for p in out2.iterdir() if "partial" in p.name]
    metrics = json.loads((out2 / "metrics.json").read_text())
    assert metrics["processes"] == 2
    # each rank hashed its own parameters at the end (train refuses to finish when they differ, so comparing the
    # two could never fail): both are the hash of the parameters saved in the checkpoint
    assert metrics["rank_parameter_sha256"] == [parameter_sha256(out2)] * 2
    assert load_checkpoint(out2)["world_size"] == 2 and len(load_checkpoint(out2)["rng"]["noise_ranks"]) == 1

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out1 = tmp_path / "one"
    result = run("train", "--data", name, "--iterations", "60", "--out", out1, *SMALL)
    assert result.exit_code == 0, result.output
    two, one = elbo_column(out2), elbo_column(out1)
    assert len(two) == len(one) == 6
    assert two[-1] > two[0] + 300 and one[-1] > one[0] + 300  # the ELBO rises (the loss falls) in both
    # twice the images per step: at least as good as one process, within the noise of a short run
    assert two[-1] > one[-1] - 0.1 * abs(one[-1] - one[0])


def gloo_threads() -> list[str]:
    """Names of this process's threads that belong to a gloo process group (pt_gloo_runloop: its workers,
    gloo_tcp_loop: its transport)."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            names.append(Path(f"/proc/self/task/{tid}/comm").read_text().strip())
        except OSError:  # the thread ended meanwhile
            pass
    return [n for n in names if "gloo" in n]


def _spawned(rank, world, port, cfg, out, kw, shared_gpu):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK="0" if shared_gpu else str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True")
    torch.set_num_threads(1)
    import torch.distributed as tdist

    from vsc_cli.trainers.dist import TIMEOUT
    from vsc_cli.trainers.train import train

    if shared_gpu:  # both processes on GPU 0: NCCL refuses two ranks on one device, gloo takes CUDA tensors
        from torch.distributed.nn import functional  # noqa: F401  imported first, as in vsc_cli.trainers.dist.setup

        tdist.init_process_group("gloo", timeout=TIMEOUT)  # train uses the group it finds
    try:
        train(cfg, out, progress=False, **kw)
    finally:
        if shared_gpu:
            tdist.destroy_process_group()
    # The process exits next, and the process group's threads must be gone by then: a gloo worker still
    # releasing the last collective's work during the interpreter's shutdown needs the GIL, and the process
    # dies with SIGABRT after a finished run ("process 1 terminated with signal SIGABRT", now and then under
    # load). They outlived destroy_process_group while an import kept the group: see vsc_cli.trainers.dist.setup.
    left = gloo_threads()
    assert not left, f"rank {rank}: the process group's threads outlive it: {left}"


def spawn(world, cfg, out, shared_gpu=False, **kw):
    """Run train(cfg, out, **kw) in `world` processes, as torchrun would.

    The rendezvous store is served from here, on a port the system picks when it binds it (port 0), so no
    other program can take it first; the processes connect to it as torchrun's workers connect to its agent's
    store (TORCHELASTIC_USE_AGENT_STORE). (A port found free here and bound later by rank 0 could be taken in
    between by anything else on a busy machine.) A new store for each run: its keys are per job."""
    store = TCPStore("127.0.0.1", 0, world, is_master=True, wait_for_workers=False)
    mp.spawn(_spawned, args=(world, store.port, cfg, out, kw, shared_gpu), nprocs=world, join=True)


def test_two_process_resume_is_exact(tmp_path, data, monkeypatch):
    """Stopped at iteration 12 and resumed: the same weights, Adam state and log as a run never stopped."""
    name, env = data
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = TrainConfig(data=name, dim=6, hidden=(32,), batch_size=32, iterations=24, train_size=1024, test_size=200,
                      log_every=4, checkpoint_every=8)
    spawn(2, cfg, tmp_path / "whole")
    spawn(2, cfg, tmp_path / "cut", stop_at=12)
    assert load_checkpoint(tmp_path / "cut")["iteration"] == 12
    shutil.copytree(tmp_path / "cut", tmp_path / "switch")
    spawn(2, None, tmp_path / "cut", resume=True)
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "cut")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for i in a["optimizer"]["state"]:
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(a["optimizer"]["state"][i][key], b["optimizer"]["state"][i][key])
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(tmp_path / "whole/log.csv"))]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"}
                     for r in csv.DictReader(open(tmp_path / "cut/log.csv"))]
    # a 2-process run goes on in one process (a new pass over the data; not bit-identical, but it runs)
    spawn(1, None, tmp_path / "switch", resume=True)
    state = load_checkpoint(tmp_path / "switch")
    assert state["iteration"] == 24 and state["world_size"] == 1


def test_torchrun_encode_equals_one_process(tmp_path, data, monkeypatch):
    name, env = data
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    run_dir = tmp_path / "run"
    result = run("train", "--data", name, "--dim", "8", "--hidden", "32", "--iterations", "5", "--train-size", "512",
                 "--test-size", "100", "--out", run_dir, "--quiet")
    assert result.exit_code == 0, result.output
    # each torchrun process computes with one thread (OMP_NUM_THREADS=1): the one-process encode does too, since
    # torch's kernels may sum in another order with more threads (seen on the portable, non-AVX CPU path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _encode_both_ways(tmp_path, run_dir, env)
    finally:
        torch.set_num_threads(threads)


def _encode_both_ways(tmp_path, run_dir, env):
    for limit in (2500, 500):  # 500: one chunk, so rank 1's shard is empty
        one, two = tmp_path / f"one-{limit}.h5", tmp_path / "two.h5"
        result = run("encode", run_dir, "-o", one, "--limit", limit, "--batch-size", "300", "--quiet")
        assert result.exit_code == 0, result.output
        proc = torchrun(["encode", run_dir, "-o", two, "--limit", limit, "--batch-size", "300", "--quiet", "--force"],
                        env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.count("wrote") == 1
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".two")) == [".two.h5.lock"]  # no parts
        with h5py.File(one) as f, h5py.File(two) as g:
            names = []
            f.visit(names.append)
            other = []
            g.visit(other.append)
            assert names == other
            for n in names:
                if isinstance(f[n], h5py.Dataset):
                    assert f[n].dtype == g[n].dtype and f[n].chunks == g[n].chunks, n
                    np.testing.assert_array_equal(f[n][()], g[n][()], err_msg=n)
            assert {k: v for k, v in f.attrs.items() if k != "created"} == \
                   {k: v for k, v in g.attrs.items() if k != "created"}
            assert g["train/mu"].shape[0] == limit
            assert g["train/code_csr/indptr"][-1] == len(g["train/code_csr/data"])
    # the disk fills while rank 0 joins the parts (a file-size limit above a part's size, below the whole's)
    full = tmp_path / "full.h5"
    size = (tmp_path / "one-2500.h5").stat().st_size
    proc = torchrun(["encode", run_dir, "-o", full, "--limit", 4096, "--quiet"], env,
                    preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size * 6 // 5, size * 6 // 5)))
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 2 and "rank 0 could not join the parts" in " ".join(errors), proc.stderr
    assert any("disk is full" in e and str(full) in e for e in errors), proc.stderr
    assert "vsc_cli" not in proc.stderr
    assert not full.exists() and not (tmp_path / ".full.h5.parts").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    # a failure on every rank (the file exists, no --force): one message per process, nothing written
    proc = torchrun(["encode", run_dir, "-o", two, "--limit", "100", "--quiet"], env)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 2 and "exists; pass --force" in errors[0] + errors[1]
    assert "vsc_cli" not in proc.stderr  # no traceback from vsc (torchrun prints its own failure summary)
    assert not (tmp_path / ".two.h5.parts").exists()


def test_cuda_kernels_under_ddp_match_torch(tmp_path, data, monkeypatch):
    """The numba.cuda kernels inside a 2-process DDP run give the same model as the pure-torch reference op
    (float64). Under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, conftest's default) on CPU tensors with
    gloo; with NUMBA_ENABLE_CUDASIM=0 on a machine with a GPU for real, with --device cuda: NCCL and one GPU
    per process (train's own set-up, as under torchrun), or both processes on the one GPU through gloo."""
    from vsc_kernels._plumbing import cuda_problem
    from vsc_kernels._plumbing import simulated as _simulated

    problem = cuda_problem()  # None under the simulator, or with a GPU that numba.cuda can use
    if problem is not None:
        pytest.skip(f"the cuda backend cannot run here: {problem}")
    device = "cpu" if _simulated() else "cuda"  # the simulator's kernels take CPU tensors
    shared_gpu = device == "cuda" and torch.cuda.device_count() < 2
    name, env = data
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    common = dict(data=name, dim=3, hidden=(8,), batch_size=4, iterations=3, train_size=64, test_size=10,
                  log_every=1, checkpoint_every=2, dtype="float64")
    for backend in ("cuda", "torch"):  # the same device for both: the noise is drawn by that device's generator
        spawn(2, TrainConfig(backend=backend, **common), tmp_path / backend, shared_gpu=shared_gpu, device=device)
    a, b = load_checkpoint(tmp_path / "cuda"), load_checkpoint(tmp_path / "torch")
    assert a["config"]["backend"] == "cuda" and b["config"]["backend"] == "torch" and a["world_size"] == 2
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-9, atol=1e-10)
    metrics = json.loads((tmp_path / "cuda" / "metrics.json").read_text())
    assert metrics["device"] == ("cuda:0" if device == "cuda" else "cpu")  # where rank 0 really trained
    assert metrics["rank_parameter_sha256"] == [parameter_sha256(tmp_path / "cuda")] * 2


def test_torchrun_trains_the_conv_network(tmp_path, data):
    name, env = data
    out = tmp_path / "conv"
    proc = torchrun(["train", "--data", name, "--network", "conv", "--channels", "4,8", "--iterations", "10",
                     "--out", out, *SMALL], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["rank_parameter_sha256"] == [parameter_sha256(out)] * 2
    assert TrainConfig.from_dict(load_checkpoint(out)["config"]).network == "conv"
