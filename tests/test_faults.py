"""Faults a long run meets: SIGKILL at random moments, a full disk, a second writer, NaNs, bad files.

Each case checks the exit code, a one-line message, and that no file was lost or left half-written.
"""
import functools
import http.server
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import torch
from click.testing import CliRunner

from vsc_cli.trainers.checkpoint import CHECKPOINT, load_checkpoint
from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.common.errors import NonFiniteStep
from vsc_cli.models.vae import VAE
from vsc_cli.common.safeio import OutputLock
from vsc_cli.trainers.train import train

PY = [sys.executable, "-m", "vsc_cli.cli"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, code=1):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def train_args(data, out, iterations=300, every=1):
    return ["train", "--data", "fmnist", "--dim", "8", "--hidden", "32", "--iterations", str(iterations),
            "--train-size", "600", "--test-size", "100", "--batch-size", "50", "--checkpoint-every", str(every),
            "--log-every", "5", "--backend", "torch", "--data-dir", str(data), "--out", str(out), "--quiet"]


def checkpointed(run_dir) -> int:
    """Iteration of the run's checkpoint (0 when there is none), from the file's header alone.

    The checkpoint is replaced by an atomic rename, so the file opened is always a complete one; anything
    but a missing file is an error of the product and propagates."""
    try:
        with open(run_dir / CHECKPOINT, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
    except FileNotFoundError:
        return 0
    return json.loads(header["__metadata__"]["vsc"])["iteration"]


def read_all(fh) -> str:
    fh.flush()
    fh.seek(0)
    return fh.read()


def wait_for_checkpoint(run_dir, proc, iteration: int, err, timeout: float = 600) -> None:
    """Return once the run's checkpoint is at `iteration` or later, `proc` still running.

    A deterministic condition, polled gently (50 ms: the poller must not take the CPU the training needs
    on a loaded machine), with a generous overall limit; running out of it, or the process ending, fails
    the test with the process's messages (`err`, its stderr file) instead of killing at some other moment."""
    deadline = time.monotonic() + timeout
    while checkpointed(run_dir) < iteration:
        if proc.poll() is not None:
            pytest.fail(f"vsc train ended (exit code {proc.returncode}) before checkpointing iteration "
                        f"{iteration}: {read_all(err)[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no checkpoint of iteration {iteration} within {timeout:.0f} s "
                        f"(it is at {checkpointed(run_dir)})")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    subprocess.run(PY + train_args(shared_data, out), check=True, capture_output=True)
    return out


KILL_SEEDS = [int(s) for s in os.environ.get("VSC_KILL_SEEDS", "6").split(",")]  # more seeds: more kill points


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_sigkill_at_random_points_then_resume_is_bit_identical(shared_data, uninterrupted, tmp_path, seed):
    """Kill `vsc train` (checkpointing every iteration, so kills land inside checkpoint writes too)
    at 4 random moments; resume each time; the final parameters equal an uninterrupted run's."""
    out, rnd = tmp_path / "run", random.Random(seed)
    targets = sorted(rnd.sample(range(20, 281, 20), 4))  # 20 apart: each kill is after progress
    killed_at = []
    for target in targets:
        resume = (out / CHECKPOINT).exists()
        args = train_args(shared_data, out) if not resume else ["train", "--resume", str(out), "--quiet",
                                                                "--data-dir", str(shared_data)]
        # stderr to a file: an unread pipe could fill and stall the run; the kill condition is the checkpoint
        # of the target iteration (or of one past the last kill, should a slow poll have let the run overtake
        # the target), not a moment in a tight polling loop that a loaded machine can stretch at will
        goal = max(target, killed_at[-1] + 1 if killed_at else 1)
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(PY + args, stdout=subprocess.DEVNULL, stderr=err)
            try:
                wait_for_checkpoint(out, proc, goal, err)
                time.sleep(rnd.random() * 0.02)  # a random moment of an iteration (or of its checkpoint write)
                proc.send_signal(signal.SIGKILL)
            finally:
                proc.kill()
                proc.wait()
            assert proc.returncode == -signal.SIGKILL, (proc.returncode, read_all(err)[-2000:])  # killed, not ended
        killed_at.append(load_checkpoint(out)["iteration"])
        assert killed_at[-1] >= goal, (killed_at, goal)  # the kill lost no written checkpoint
    # (4 distinct kill points, in order: each kill came after a checkpoint past the previous one, asserted above)
    subprocess.run(PY + ["train", "--resume", str(out), "--quiet", "--data-dir", str(shared_data)], check=True,
                   capture_output=True)
    a, b = load_checkpoint(uninterrupted), load_checkpoint(out)
    assert b["iteration"] == 300
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for idx, entry in a["optimizer"]["state"].items():
        for key, value in entry.items():
            assert torch.equal(value, b["optimizer"]["state"][idx][key]), (idx, key)
    strip = [line.rsplit(",", 1)[0] for line in (uninterrupted / "log.csv").read_text().splitlines()]
    assert strip == [line.rsplit(",", 1)[0] for line in (out / "log.csv").read_text().splitlines()]
    leftovers = [p.name for p in out.iterdir() if p.name not in ("checkpoint.safetensors", "config.toml", "log.csv",
                                                                   "metrics.json", ".lock")]
    assert leftovers == [], leftovers  # partial files of killed writers are cleaned up


def test_second_writer_is_refused(shared_data, tmp_path):
    out = tmp_path / "run"
    err = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(PY + train_args(shared_data, out, iterations=100_000, every=20),
                            stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for_checkpoint(out, proc, 20, err)  # the run is under way and holds the lock
        for args in (["--resume", out], ["--out", out, "--force", "--iterations", 100_000]):
            msg = one_line_error(run("train", "--data-dir", shared_data, "--quiet", *args))
            assert f"{out} is being written by another process (pid {proc.pid}: vsc train)" in msg, msg
        with OutputLock(tmp_path / "codes.h5", "test"):  # the same lock for `vsc encode`
            msg = one_line_error(run("encode", out, "-o", tmp_path / "codes.h5", "--data-dir", shared_data))
            assert "being written by another process" in msg
    finally:
        proc.kill()
        proc.wait()
        err.close()
    assert (out / CHECKPOINT).exists() and load_checkpoint(out)["iteration"] % 20 == 0


# ---------------------------------------------------------------------------- numerical faults
class NanGrad(torch.autograd.Function):
    """Identity whose backward returns NaN: a gradient fault that leaves the loss finite."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


def inject(monkeypatch, at: int, term: str, how: str):
    original, calls = VAE.elbo_terms, [0]

    @functools.wraps(original)
    def faulty(self, *a, **k):
        terms = original(self, *a, **k)
        calls[0] += 1
        if calls[0] >= at:  # from then on, as a real fault of those weights would be: training rebuilds the step
            terms[term] = terms[term] * float("nan") if how == "value" else NanGrad.apply(terms[term])
            terms["elbo"] = terms["recon"] - terms["kl_slab"] - terms["kl_spike"]
        return terms

    monkeypatch.setattr(VAE, "elbo_terms", faulty)


def small(**kw):
    return TrainConfig(**{**dict(data="fmnist", dim=6, hidden=(16,), iterations=20, batch_size=50, train_size=300,
                                 test_size=50, checkpoint_every=5, log_every=5, backend="torch"), **kw})


@pytest.mark.parametrize("how,term,expect", [
    ("value", "recon", "non-finite loss at iteration 7 (term: recon)"),
    ("value", "kl_spike", "non-finite loss at iteration 7 (term: kl_spike)"),
    ("grad", "kl_slab", "non-finite gradient at iteration 7 (term: kl_slab; parameters: encoder.0.weight"),
])
def test_nan_stops_with_iteration_and_term_and_keeps_checkpoint(shared_data, tmp_path, monkeypatch, how, term, expect):
    inject(monkeypatch, 7, term, how)
    with pytest.raises(NonFiniteStep) as err:  # a VscError of its own type: the loop adds the images' scale to it
        train(small(), tmp_path / "run", data_dir=shared_data, progress=False)
    assert expect in str(err.value) and "last good checkpoint (iteration 5) is kept" in str(err.value)
    state = load_checkpoint(tmp_path / "run")
    assert state["iteration"] == 5 and all(torch.isfinite(t).all() for t in state["model"].values())


def test_detect_anomaly_names_the_operation(shared_data, tmp_path, monkeypatch):
    result = run(*train_args(shared_data, tmp_path / "ok", iterations=4, every=2), "--detect-anomaly")
    assert result.exit_code == 0 and "test ELBO per image" in result.output, result.output  # no fault: trains
    inject(monkeypatch, 3, "kl_slab", "grad")
    result = run(*train_args(shared_data, tmp_path / "run", iterations=10, every=2), "--detect-anomaly")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "NanGradBackward" in errors[0] and "iteration 3" in errors[0], result.output
    # the point of the flag: autograd's warning shows where the faulty operation was called in the forward
    assert "Traceback of forward call that caused the error" in result.output and "faulty" in result.output


# ---------------------------------------------------------------------------- full disk, bad paths
def limit_file_size(nbytes):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))  # python ignores SIGXFSZ: writes fail EFBIG
    return preexec


def test_full_disk_during_checkpoint_keeps_previous(shared_data, tmp_path):
    out = tmp_path / "run"
    subprocess.run(PY + train_args(shared_data, out, iterations=20, every=10), check=True, capture_output=True)
    before = (out / CHECKPOINT).read_bytes()
    # start the run again (--force) under a file-size limit below the checkpoint's size: its first write fails
    r = subprocess.run(PY + train_args(shared_data, out, iterations=20, every=10) + ["--force"],
                       capture_output=True, text=True, preexec_fn=limit_file_size(len(before) // 2))
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "disk is full" in errors[0] and "Traceback" not in r.stderr, r.stderr
    assert (out / CHECKPOINT).read_bytes() == before  # the previous complete checkpoint is untouched
    assert not list(out.glob(".*partial*"))


def test_full_disk_during_encode_keeps_previous_file(shared_data, tmp_path):
    """HDF5 itself can crash closing a file after a failed write; the encoder hides the failure from it,
    stops, and reports it (checked at a limit hit while writing data and one hit while growing the file)."""
    run_dir = tmp_path / "run"
    subprocess.run(PY + train_args(shared_data, run_dir, iterations=10, every=10), check=True, capture_output=True)
    out = tmp_path / "codes.h5"
    args = PY + ["encode", str(run_dir), "-o", str(out), "--data-dir", str(shared_data), "--quiet", "--limit", "20000"]
    subprocess.run(args, check=True, capture_output=True)
    before = out.read_bytes()
    for limit in (300_000, 3_000_000):
        r = subprocess.run(args + ["--force"], capture_output=True, text=True, preexec_fn=limit_file_size(limit))
        assert r.returncode == 1, r.stderr[-3000:]
        errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "disk is full" in errors[0] and str(out) in errors[0], r.stderr[-3000:]
        assert out.read_bytes() == before and not list(tmp_path.glob(".codes.h5.partial*"))


def test_output_paths_that_cannot_be_written(shared_data, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    msg = one_line_error(run(*train_args(shared_data, a_file / "run", iterations=5)))
    assert "cannot create run folder" in msg
    run_dir = tmp_path / "run"
    subprocess.run(PY + train_args(shared_data, run_dir, iterations=5, every=5), check=True, capture_output=True)
    msg = one_line_error(run("encode", run_dir, "-o", tmp_path / "missing" / "c.h5"))
    assert "folder" in msg and "does not exist" in msg
    msg = one_line_error(run("encode", run_dir, "-o", "/proc/c.h5"))  # unwritable even for root
    assert "is not writable" in msg
    msg = one_line_error(run("encode", run_dir, "-o", tmp_path), 2)
    assert "is a directory" in msg


def test_unknown_option_and_bad_data_files(shared_data, tmp_path):
    assert "No such option" in one_line_error(run("train", "--frobnicate"), 2)
    data = tmp_path / "data" / "fashion-mnist"
    shutil.copytree(shared_data / "fashion-mnist", data)
    target = data / "t10k-images-idx3-ubyte.gz"
    blob = target.read_bytes()
    target.write_bytes(blob[: len(blob) // 3])
    msg = one_line_error(run(*train_args(tmp_path / "data", tmp_path / "r1", iterations=5)))
    assert "t10k-images-idx3-ubyte.gz" in msg, msg
    flipped = bytearray(blob)
    flipped[len(flipped) // 2] ^= 0x10
    target.write_bytes(bytes(flipped))
    msg = one_line_error(run(*train_args(tmp_path / "data", tmp_path / "r2", iterations=5)))
    assert "t10k-images-idx3-ubyte.gz" in msg, msg


# ---------------------------------------------------------------------------- downloads
class SlowHandler(http.server.SimpleHTTPRequestHandler):
    delay = 0.0

    def copyfile(self, source, outputfile):
        while chunk := source.read(1 << 16):
            outputfile.write(chunk)
            time.sleep(self.delay)

    def log_message(self, *a):
        pass


@pytest.fixture
def mirror(shared_data):
    handler = functools.partial(SlowHandler, directory=str(shared_data / "mnist"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_killed_download_leaves_no_complete_looking_file(mirror, tmp_path):
    env = dict(os.environ, VSC_MIRROR=mirror)
    cache = tmp_path / "cache"
    SlowHandler.delay = 0.05  # about 8 s for the 9.9 MB training images
    proc = subprocess.Popen(PY + ["download", "mnist", "--data-dir", str(cache), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, started = time.monotonic() + 300, False  # killed mid-download: over 1 MiB of the file is in
    while not started and proc.poll() is None and time.monotonic() < deadline:
        parts = list((cache / "mnist").glob(".train-images-idx3-ubyte.gz.partial-*"))
        try:
            started = bool(parts) and parts[0].stat().st_size > 1 << 20
        except FileNotFoundError:  # renamed in between: the download completed, caught below
            pass
        time.sleep(0.05)
    ended = proc.poll()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert started and ended is None, (started, ended, proc.stderr.read().decode()[-2000:])
    assert [p.name for p in (cache / "mnist").iterdir() if not p.name.startswith(".")] == []
    # a full disk on the retry: one line, still nothing complete-looking
    SlowHandler.delay = 0.0
    r = subprocess.run(PY + ["download", "mnist", "--data-dir", str(cache), "--quiet"], env=env, capture_output=True,
                       text=True, preexec_fn=limit_file_size(1 << 20))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert [p.name for p in (cache / "mnist").iterdir() if not p.name.startswith(".")] == []
    # and a clean retry completes, verifies, and removes the killed download's partial file
    r = subprocess.run(PY + ["download", "mnist", "--data-dir", str(cache), "--quiet"], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(
        f"{s}.gz" for s in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                            "t10k-labels-idx1-ubyte"))
