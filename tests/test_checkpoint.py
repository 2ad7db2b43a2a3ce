"""Checkpoints are data: round trip, refusal of pickles, tampering and damage (with fuzzing)."""
import json
from pathlib import Path
import os
import pickle
import struct

import numpy as np

import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vsc_cli.trainers.checkpoint import (CHECKPOINT, build_model, load_checkpoint, read_safetensors, save_checkpoint,
                                write_safetensors)
from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.common.errors import VscError
from vsc_cli.models.schedule import Step
from vsc_cli.models.vae import VAE


def tiny_state(model="vsc", dim=4, pixels=16, hidden=(8,)):
    """A training state as `train` builds it, after one Adam step on random data."""
    cfg = TrainConfig(data="fmnist", model=model, dim=dim, hidden=hidden, iterations=10, backend="torch")
    torch.manual_seed(0)
    m = VAE(cfg, pixels)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    (-m.elbo_terms(torch.rand(5, pixels), Step(50.0, 1.0, cfg.alpha))["elbo"].mean()).backward()
    opt.step()
    data_gen = torch.Generator().manual_seed(1)
    return {"vsc_version": "test", "config": cfg.to_dict(), "pixels": pixels, "iteration": 3,
            "model": m.state_dict(), "optimizer": opt.state_dict(), "perm": torch.randperm(7, generator=data_gen),
            "pos": 2, "seconds": 1.5, "rng": {"data": data_gen.get_state(), "noise": torch.Generator().get_state()},
            "log_window": {"sums": {"elbo": 1.25}, "count": 1}}


def assert_same_state(a, b):
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for idx, entry in a["optimizer"]["state"].items():
        for key, value in entry.items():
            assert torch.equal(value, b["optimizer"]["state"][idx][key]), (idx, key)
    assert json.dumps(a["optimizer"]["param_groups"]) == json.dumps(b["optimizer"]["param_groups"])
    assert torch.equal(a["perm"], b["perm"])
    assert torch.equal(a["rng"]["data"], b["rng"]["data"]) and torch.equal(a["rng"]["noise"], b["rng"]["noise"])
    for key in ("config", "pixels", "iteration", "pos", "seconds", "log_window"):
        assert a[key] == b[key], key


def test_round_trip_keeps_every_tensor_and_counter(tmp_path):
    state = tiny_state()
    save_checkpoint(tmp_path / CHECKPOINT, state)
    back = load_checkpoint(tmp_path)
    assert_same_state(state, back)
    opt = torch.optim.Adam(build_model(back).parameters(), lr=1e-3)
    opt.load_state_dict(back["optimizer"])  # torch accepts the rebuilt optimiser state
    assert not list(tmp_path.glob(".*partial*"))


def test_file_is_plain_safetensors_layout(tmp_path):
    """8-byte little-endian header length, JSON header with dtype/shape/offsets, raw bytes: no pickle."""
    save_checkpoint(tmp_path / CHECKPOINT, tiny_state())
    blob = (tmp_path / CHECKPOINT).read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    w = header["model/encoder.0.weight"]
    assert w["dtype"] == "F32" and w["shape"] == [8, 16]
    begin, end = w["data_offsets"]
    raw = torch.frombuffer(bytearray(blob[8 + n + begin:8 + n + end]), dtype=torch.float32).reshape(8, 16)
    assert torch.equal(raw, tiny_state()["model"]["encoder.0.weight"])
    assert b"\x80\x04" not in blob[:8 + n]  # no pickle opcodes in the header


class Boom:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["pickle-as-safetensors", "torch-save-as-safetensors", "legacy-pt"])
def test_pickled_code_is_refused_without_running(tmp_path, how):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    run.mkdir()
    if how == "pickle-as-safetensors":
        (run / CHECKPOINT).write_bytes(pickle.dumps({"model": Boom(marker)}))
    elif how == "torch-save-as-safetensors":
        torch.save({"model": Boom(marker)}, run / CHECKPOINT)
    else:
        torch.save({"model": Boom(marker)}, run / "checkpoint.pt")
    for args in (["encode", run, "-o", tmp_path / "c.h5"], ["sparsity", run], ["train", "--resume", run]):
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code in (1, 2), result.output
        assert "Traceback" not in result.output
        assert ("pickle" in result.output), result.output
    assert not marker.exists()


FIXTURE_0_2 = Path(__file__).parent / "data" / "checkpoint-vsc0.2.safetensors"

_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "U8": np.uint8}


def read_fixture_independently(path) -> tuple[dict, dict]:
    """(tensors as numpy arrays, vsc metadata) read with struct, json and numpy only: an independent reader of
    the safetensors layout (8-byte little-endian header length, JSON header, raw little-endian bytes), so the
    loader is checked against what the file holds, not against what this machine would compute."""
    blob = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__")
    out = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(blob[8 + n + begin:8 + n + end], dtype=dtype).reshape(entry["shape"])
    return out, json.loads(meta["vsc"])


@pytest.mark.committed
def test_files_written_by_vsc_0_2_still_load(tmp_path):
    """tests/data/checkpoint-vsc0.2.safetensors, written by vsc 0.2's own writer (tensors by name) before the
    safetensors library took over, on another machine: it loads to exactly what the file holds (compared with
    an independent reader, never with numbers computed here: Adam's moments differ in the last bits between
    CPUs' instruction sets), and re-saves to a file that loads the same again."""
    state = load_checkpoint(FIXTURE_0_2)
    raw, info = read_fixture_independently(FIXTURE_0_2)
    for k, value in state["model"].items():
        np.testing.assert_array_equal(value.numpy(), raw[f"model/{k}"], err_msg=k)
    assert sorted(f"model/{k}" for k in state["model"]) == sorted(k for k in raw if k.startswith("model/"))
    opt_keys = sorted(k for k in raw if k.startswith("optimizer/state/"))
    assert opt_keys == sorted(f"optimizer/state/{i}/{key}" for i, entry in state["optimizer"]["state"].items()
                              for key in entry)
    for name in opt_keys:
        _, _, idx, key = name.split("/", 3)
        np.testing.assert_array_equal(state["optimizer"]["state"][int(idx)][key].numpy(), raw[name], err_msg=name)
    np.testing.assert_array_equal(state["perm"].numpy(), raw["perm"])
    np.testing.assert_array_equal(state["rng"]["data"].numpy(), raw["rng/data"])
    np.testing.assert_array_equal(state["rng"]["noise"].numpy(), raw["rng/noise"])
    assert state["optimizer"]["param_groups"] == info["optimizer"]["param_groups"]
    for key in ("pixels", "iteration", "pos", "seconds", "log_window"):
        assert state[key] == info[key], key
    save_checkpoint(tmp_path / CHECKPOINT, state)
    assert_same_state(state, load_checkpoint(tmp_path / CHECKPOINT))
    assert (tmp_path / CHECKPOINT).read_bytes() != FIXTURE_0_2.read_bytes()  # the library's layout differs


@pytest.mark.committed
def test_the_0_2_fixture_is_tiny_state():
    """The fixture is the state tiny_state() builds: the same config, tensors, shapes and counters, and values
    equal to float32 rounding (the CPU that wrote it may take another instruction-set path than this one)."""
    state, here = load_checkpoint(FIXTURE_0_2), tiny_state()
    assert state["config"] == here["config"]
    for key in ("pixels", "iteration", "pos", "seconds", "log_window"):
        assert state[key] == here[key], key
    assert torch.equal(state["perm"], here["perm"])  # integers from a seeded generator: exact on any CPU
    assert state["model"].keys() == here["model"].keys()
    for k in here["model"]:
        torch.testing.assert_close(state["model"][k], here["model"][k], rtol=1e-5, atol=1e-7, msg=k)
    assert state["optimizer"]["state"].keys() == here["optimizer"]["state"].keys()
    for idx, entry in here["optimizer"]["state"].items():
        assert state["optimizer"]["state"][idx].keys() == entry.keys()
        for key, value in entry.items():
            # exp_avg_sq is the squared gradient (about 1e-3 of exp_avg): an absolute floor scaled to it
            torch.testing.assert_close(state["optimizer"]["state"][idx][key], value, rtol=1e-5,
                                       atol=1e-6 * float(value.abs().max()) + 1e-12, msg=f"{idx} {key}")


def test_damaged_file_is_refused_naming_why(tmp_path):
    path = tmp_path / CHECKPOINT
    save_checkpoint(path, tiny_state())
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0x01  # one bit of one tensor
    path.write_bytes(bytes(blob))
    with pytest.raises(VscError, match="SHA-256 mismatch"):
        load_checkpoint(path)
    path.write_bytes(bytes(blob[:len(blob) // 2]))
    with pytest.raises(VscError, match="truncated"):
        load_checkpoint(path)


def _rewrite(path, edit):
    """Edit the metadata JSON and re-write with a fresh checksum, as a deliberate forger would."""
    tensors, meta = read_safetensors(path)
    info = json.loads(meta["vsc"])
    edit(info)
    meta["vsc"] = json.dumps(info)
    write_safetensors(path, tensors, meta)


def test_config_that_does_not_fit_the_tensors_is_refused(tmp_path):
    path = tmp_path / CHECKPOINT
    save_checkpoint(path, tiny_state(dim=4))
    _rewrite(path, lambda info: info["config"].update(dim=5))
    with pytest.raises(VscError, match=r"encoder.2.weight has shape \(12, 8\), but a vsc model with dim 5"):
        build_model(load_checkpoint(path))
    save_checkpoint(path, tiny_state(model="vae"))
    _rewrite(path, lambda info: info["config"].update(model="vsc"))
    with pytest.raises(VscError, match="but a vsc model"):
        build_model(load_checkpoint(path))
    _rewrite(path, lambda info: info["config"].update(model="gan"))
    with pytest.raises(VscError, match="config entry model='gan'"):
        load_checkpoint(path)
    _rewrite(path, lambda info: (info["config"].update(model="vae"), info.update(iteration=-3)))
    with pytest.raises(VscError, match="iteration"):
        load_checkpoint(path)


def test_resume_with_another_model_type_or_dim_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / CHECKPOINT, tiny_state())
    for opt, value in (("--model", "vae"), ("--dim", "9")):
        result = CliRunner().invoke(main, ["train", "--resume", str(run), opt, value])
        assert result.exit_code == 2 and f"{opt} {value} differs from the run being resumed" in result.output


@pytest.fixture(scope="module")
def valid_blob(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / CHECKPOINT
    state = tiny_state()
    save_checkpoint(path, state)
    return path.read_bytes(), state


FUZZ = settings(max_examples=int(os.environ.get("VSC_FUZZ_EXAMPLES", 300)),  # cases per fuzz test
                deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # no deadline: a loaded machine is slow, not wrong


def mutations(size):
    truncate = st.integers(0, size - 1).map(lambda n: ("truncate", n))
    flips = st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 7)), min_size=1, max_size=4)
    return st.one_of(truncate, flips.map(lambda f: ("flip", f)))


def apply(blob: bytes, mutation) -> bytes:
    kind, arg = mutation
    if kind == "truncate":
        return blob[:arg]
    out = bytearray(blob)
    for pos, bit in arg:
        out[pos] ^= 1 << bit
    return bytes(out)


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_reader(valid_blob, tmp_path, data):
    """Truncations and bit flips: the reader returns the exact state or raises VscError, nothing else."""
    blob, state = valid_blob
    mutated = apply(blob, data.draw(mutations(len(blob))))
    path = tmp_path / CHECKPOINT
    path.write_bytes(mutated)
    try:
        back = load_checkpoint(path)
    except VscError:
        return
    # accepted: then the bytes that matter are intact (the SHA-256 covers them), so the state is exact
    assert_same_state(state, back)


@pytest.mark.parametrize("stored, want", [("cuda", "numba"), ("numba", "numba"), ("torch", "torch")])
def test_a_run_rebuilt_on_the_cpu_gets_a_backend_that_runs_there(tmp_path, monkeypatch, stored, want):
    """A GPU run (cuda backend) encoded or evaluated on a CPU: the numba backend, same values (the simulator
    would let the cuda backend take CPU tensors and hide the problem, so the backend itself is checked)."""
    from vsc_cli.models import vae as vae_module

    state = tiny_state()
    state["config"]["backend"] = stored
    save_checkpoint(tmp_path / CHECKPOINT, state)
    model = build_model(load_checkpoint(tmp_path))
    assert model.cfg.backend == want
    x = torch.rand(5, 16)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    reference = tiny_state()["config"]
    ref_model = build_model({**load_checkpoint(tmp_path), "config": {**reference, "backend": "torch"}})
    decoder_backends = []  # the backend the decoder's fused log-likelihood is called with
    loglik = vae_module.gaussian_loglik
    monkeypatch.setattr(vae_module, "gaussian_loglik",
                        lambda *a, backend: decoder_backends.append(backend) or loglik(*a, backend=backend))
    got = model.elbo_terms(x, Step.evaluation(model.cfg.alpha), generator=gen())["elbo"]
    assert decoder_backends == [want]
    expected = ref_model.elbo_terms(x, Step.evaluation(model.cfg.alpha), generator=gen())["elbo"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("low_bytes", [b"\x80", b"PK"])
def test_a_header_length_that_starts_like_a_pickle_or_zip_still_loads(tmp_path, low_bytes):
    """The header length is the file's first 8 bytes (little-endian): one ending in 0x80 (a pickle's first byte)
    or in "PK" (a zip's) must not be taken for a pickle. Padding a config string makes such a length."""
    state = tiny_state()
    save_checkpoint(tmp_path / CHECKPOINT, state)
    (n,) = struct.unpack("<Q", (tmp_path / CHECKPOINT).read_bytes()[:8])
    want = int.from_bytes(low_bytes, "little")
    # each character added to the config's data string adds one byte to the header (digest and offsets keep
    # their lengths); tensor data offsets are relative to the header's end
    state["config"]["data"] += "x" * ((want - n) % (1 << (8 * len(low_bytes))))
    save_checkpoint(tmp_path / CHECKPOINT, state)
    assert (tmp_path / CHECKPOINT).read_bytes()[:len(low_bytes)] == low_bytes
    assert_same_state(state, load_checkpoint(tmp_path))
