"""idx parsing, checksums, the source order of `fetch`, and normalisation."""
import gzip
import hashlib
import io
import struct
import urllib.error

import numpy as np
import pytest

from vsc_cli.data import datasets as data
from vsc_cli.data.datasets import DatasetSpec, VscError, fetch, load_split, normalise, parse_idx


def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A 4-file dataset 'tiny' of 12 train / 5 test random images, with a 'mirror' folder of .gz files."""
    rng = np.random.default_rng(0)
    raw = {}
    for split, n in (("train", 12), ("test", 5)):
        img, lab = data.FILES[split]
        raw[img] = idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        raw[lab] = idx_bytes(rng.integers(0, 10, n, dtype=np.uint8))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for stem, b in raw.items():
        (mirror / f"{stem}.gz").write_bytes(gzip.compress(b))
    ds = DatasetSpec("tiny", "tiny", ("http://example.invalid/a/", "http://example.invalid/b/"),
                     {k: hashlib.md5(v).hexdigest() for k, v in raw.items()}, debian_dir=str(tmp_path / "debian"))
    monkeypatch.setitem(data.DATASETS, "tiny", ds)
    return ds, mirror, raw


class Resp(io.BytesIO):
    """A stand-in for urlopen's response: bytes, no headers, a context manager."""

    headers = {}

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def no_network(monkeypatch):
    def fail(*a, **k):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", fail)


def test_parse_idx_roundtrip_and_errors():
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(a)), a)
    b = np.array([1, -2, 70000], dtype=np.int32)
    np.testing.assert_array_equal(parse_idx(idx_bytes(b)), b)
    with pytest.raises(VscError, match="bad magic"):
        parse_idx(b"\x01\x02\x08\x01" + idx_bytes(a)[4:])
    with pytest.raises(VscError, match="bad magic"):
        parse_idx(b"")
    with pytest.raises(VscError, match="truncated"):
        parse_idx(idx_bytes(a)[:-1])
    with pytest.raises(VscError, match="truncated idx header"):
        parse_idx(idx_bytes(a)[:9])
    with pytest.raises(VscError, match="trailing"):
        parse_idx(idx_bytes(a) + b"\0")


def test_fetch_from_local_folder_then_cache(tiny, tmp_path, monkeypatch):
    ds, mirror, raw = tiny
    no_network(monkeypatch)
    cache = fetch("tiny", tmp_path / "cache", source=mirror, progress=False)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{k}.gz" for k in raw)
    # second call: everything already in the cache, the source is not needed
    assert fetch("tiny", tmp_path / "cache", progress=False) == cache
    x, y = load_split("tiny", "train", tmp_path / "cache", "none", fetch_missing=False)
    assert x.shape == (12, 784) and y.shape == (12,)
    np.testing.assert_array_equal(x[0], parse_idx(raw["train-images-idx3-ubyte"])[0].reshape(-1))


def test_fetch_from_debian_folder(tiny, tmp_path, monkeypatch):
    ds, mirror, raw = tiny
    no_network(monkeypatch)
    debian = tmp_path / "debian"
    debian.mkdir()
    for stem, b in raw.items():  # Debian recompresses: different .gz bytes, same content
        (debian / f"{stem}.gz").write_bytes(gzip.compress(b, compresslevel=1, mtime=12345))
    cache = fetch("tiny", tmp_path / "cache", progress=False)
    assert len(list(cache.iterdir())) == 4


def test_download_writes_part_then_verified_file(tiny, tmp_path, monkeypatch):
    ds, mirror, raw = tiny
    seen = []

    def urlopen(url, timeout):
        seen.append(url)
        if url.startswith(ds.urls[0]):  # the first mirror is down
            raise urllib.error.URLError("down")
        return Resp((mirror / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    cache = fetch("tiny", tmp_path / "cache", progress=False)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{k}.gz" for k in raw)  # no .part left
    assert any(u.startswith(ds.urls[1]) for u in seen)


def test_download_with_bad_checksum_leaves_nothing(tiny, tmp_path, monkeypatch):
    ds, mirror, raw = tiny

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: Resp(gzip.compress(b"garbage")))
    with pytest.raises(VscError, match="checksum mismatch"):
        fetch("tiny", tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache" / "tiny").iterdir()) == []


def test_no_network_no_copy_names_from_and_debian(tiny, tmp_path, monkeypatch):
    no_network(monkeypatch)
    with pytest.raises(VscError) as err:
        fetch("tiny", tmp_path / "cache", progress=False)
    msg = str(err.value)
    assert "--from" in msg and "dataset-fashion-mnist" in msg and "\n" not in msg


def test_corrupt_cached_file_is_refused(tiny, tmp_path, monkeypatch):
    ds, mirror, raw = tiny
    cache = tmp_path / "cache" / "tiny"
    cache.mkdir(parents=True)
    bad = bytearray(raw["train-images-idx3-ubyte"])
    bad[100] ^= 0xFF
    (cache / "train-images-idx3-ubyte").write_bytes(bytes(bad))
    with pytest.raises(VscError, match="checksum mismatch"):
        fetch("tiny", tmp_path / "cache", progress=False)
    (cache / "train-images-idx3-ubyte").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(VscError, match="cannot read"):
        fetch("tiny", tmp_path / "cache", progress=False)


def test_normalisations():
    imgs = np.array([[[3, 4]], [[0, 0]], [[255, 0]]], dtype=np.uint8)
    unit = normalise(imgs, "unit")
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0, 0], [1, 0]])
    np.testing.assert_allclose(normalise(imgs, "01"), imgs.reshape(3, 2) / 255.0)
    np.testing.assert_array_equal(normalise(imgs, "none"), imgs.reshape(3, 2).astype(np.float32))
    with pytest.raises(VscError):
        normalise(imgs, "zscore")


@pytest.mark.parametrize("name,folder", [("mnist", "mnist"), ("fmnist", "fashion-mnist")])
def test_real_files(shared_data, name, folder):
    for split, n in (("train", 60_000), ("test", 10_000)):
        x, y = load_split(name, split, shared_data, "none", fetch_missing=False)  # verifies md5
        assert x.shape == (n, 784) and x.dtype == np.float32
        assert y.shape == (n,) and set(np.unique(y)) == set(range(10))
        assert 0 <= x.min() and x.max() == 255
    x, _ = load_split(name, "test", shared_data, "unit", limit=100, fetch_missing=False)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)


def test_real_file_truncated_or_flipped(shared_data, tmp_path):
    src = shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(src.read_bytes())
    with pytest.raises(VscError, match="truncated"):
        parse_idx(raw[:-10])
    (tmp_path / "mnist").mkdir()
    for stem in ("t10k-images-idx3-ubyte.gz",):
        (tmp_path / "mnist" / stem).write_bytes((shared_data / "mnist" / stem).read_bytes())
    flipped = bytearray(raw)
    flipped[500] ^= 1
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(bytes(flipped))
    with pytest.raises(VscError, match="checksum mismatch"):
        load_split("mnist", "test", tmp_path, fetch_missing=False)
