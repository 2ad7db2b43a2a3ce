"""Property-based fuzzing of the idx reader (raw and gzip) and the HDF5 codes reader.

Every mutated input must give either the correct data or the project's VscError: never another
exception or a crash. There is no per-case deadline (a loaded machine can stall any case for seconds, which
is not a failure); a hang still fails the run through the test session's own time limit.
"""
import gzip
import os
import struct

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vsc_cli.evaluation.codes import HDF5_LIBVER, _write_split, read_features, read_gamma
from vsc_cli.common.config import TrainConfig
from vsc_cli.data.datasets import _IDX_DTYPES, parse_idx, read_raw
from vsc_cli.common.errors import VscError
from vsc_cli.models.vae import VAE

# deadline=None: a per-case wall-clock limit measures the machine's load, not the reader (cases took over
# 5 s on a loaded 2-core machine); the number of cases, and so the power of each test, is unchanged
FUZZ = settings(max_examples=int(os.environ.get("VSC_FUZZ_EXAMPLES", 300)),  # cases per fuzz test
                deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
         np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def naive_idx(raw: bytes):
    """The obvious reading of an idx file, used to say what 'correct data' is for any input."""
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    return np.frombuffer(raw[4 + 4 * ndim:], dtype).reshape(shape)


arrays = st.tuples(st.sampled_from(list(CODES)), st.lists(st.integers(0, 5), min_size=1, max_size=3),
                   st.integers(0, 2**32 - 1))  # dtype, shape, seed of the content


def mutate(draw, blob: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "append"]))
    if kind == "truncate" and blob:
        return blob[:draw(st.integers(0, len(blob) - 1))]
    if kind == "append":
        return blob + draw(st.binary(min_size=1, max_size=16))
    out = bytearray(blob)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(out) - 1))
        out[pos] ^= 1 << draw(st.integers(0, 7))
    return bytes(out)


def make_array(spec):
    dtype, shape, seed = spec
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8).view(dtype).reshape(shape)


@FUZZ
@given(spec=arrays, data=st.data())
def test_fuzz_parse_idx(spec, data):
    array = make_array(spec)
    raw = idx_bytes(array)
    # the intact file gives the array back exactly (mutate always alters the bytes, so this is checked here,
    # for every case, not only when the mutated bytes happen to equal the original)
    intact = parse_idx(raw)
    assert intact.shape == array.shape and intact.tobytes() == array.astype(intact.dtype).tobytes()
    mutated = mutate(data.draw, raw)
    try:
        got = parse_idx(mutated)
    except VscError:
        return
    want = naive_idx(mutated)  # whatever the (possibly altered) header describes, read exactly
    assert got.shape == want.shape and got.tobytes() == want.astype(want.dtype.newbyteorder("=")).tobytes()


@FUZZ
@given(spec=arrays, data=st.data())
def test_fuzz_gzip_idx_file(spec, data, tmp_path):
    """A damaged .gz is detected by gzip's CRC and length checks: exact bytes back, or VscError."""
    raw = idx_bytes(make_array(spec))
    packed = gzip.compress(raw, mtime=0)
    path = tmp_path / "f.gz"
    path.write_bytes(mutate(data.draw, packed))
    try:
        back = read_raw(path)
    except VscError:
        return
    assert back == raw


@pytest.fixture(scope="module")
def codes_file(tmp_path_factory):
    """A small codes file written by the real writer, and the arrays it must give back."""
    path = tmp_path_factory.mktemp("h5") / "codes.h5"
    torch.manual_seed(0)
    model = VAE(TrainConfig(dim=6, hidden=(8,), backend="torch"), 16)
    rng = np.random.default_rng(0)
    labels = {}
    with h5py.File(path, "w", libver=HDF5_LIBVER) as f:
        f.attrs["alpha"] = 0.5
        for split, n in (("train", 30), ("test", 20)):
            x = rng.random((n, 16)).astype(np.float32)
            labels[split] = rng.integers(0, 10, n)
            _write_split(f.create_group(split), model, x / np.linalg.norm(x, axis=1, keepdims=True),
                         labels[split], 8, 0.5, False)
    features, gamma = read_features(path, "test"), read_gamma(path, "test")
    # the reference the damaged files are compared with: the intact file's contents, checked here against
    # what was written (else a reader returning nothing for every file would pass the fuzz test)
    assert features[0].shape == (20, 6) and np.array_equal(features[1], labels["test"])
    assert gamma[0].shape == (20, 6) and ((gamma[0] >= 0) & (gamma[0] <= 1)).all() and gamma[1] == 0.5
    return path, path.read_bytes(), features, gamma


@FUZZ
@given(data=st.data())
def test_fuzz_hdf5_codes_reader(codes_file, tmp_path, data):
    path, blob, (x, y), (gamma, alpha) = codes_file
    bad = tmp_path / "codes.h5"
    bad.write_bytes(mutate(data.draw, blob))
    readers = ((lambda: read_features(bad, "test"), (x, y)), (lambda: read_gamma(bad, "test"), (gamma, alpha)))
    for reader, want in readers:
        try:
            got = reader()
        except VscError:
            continue
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
