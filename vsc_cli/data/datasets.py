"""MNIST and Fashion-MNIST: find, download, verify (md5 of the decompressed idx bytes) and load.

Sources, in order: the cache dir (`--data-dir`, env VSC_DATA_DIR, default ./data), a folder the
user names (`--from DIR`), Debian's /usr/share/datasets/fashion-mnist/, the official URLs.
The cache layout is `<data_dir>/<folder>/<file>.gz`, the same as ../shared/data, so
VSC_DATA_DIR can point straight at a read-only copy.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsc_cli.common.errors import VscError, WriteError
from vsc_cli.common.safeio import atomic_output, atomic_write

FILES = {  # split -> (images file, labels file), without .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # the name users type
    folder: str  # sub-folder of the cache dir
    urls: tuple  # base URLs tried in order
    md5: dict  # md5 of the *decompressed* idx files (hold for official and Debian copies)
    debian_dir: str | None = None  # where Debian's dataset package puts the files, if any


DATASETS = {
    "mnist": DatasetSpec(
        "mnist",
        "mnist",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        {
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
    ),
    "fmnist": DatasetSpec(
        "fmnist",
        "fashion-mnist",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        debian_dir="/usr/share/datasets/fashion-mnist",
    ),
}
ALIASES = {"fashion-mnist": "fmnist", "fashion_mnist": "fmnist"}
# the classes' names, by label (Fashion-MNIST's README; MNIST's are its digits)
CLASS_NAMES = {"fmnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                          "Ankle boot")}
NORMALISATIONS = ("unit", "01", "none")
DOWNLOAD_TIMEOUT_S = 60


IMAGE_DATASETS = ("celeba",)  # not idx files: see celeba.py
IMAGE_SHAPES = {"mnist": (1, 28, 28), "fmnist": (1, 28, 28), "celeba": (3, 32, 32)}  # (channels, height, width)


def class_name(data: str, label) -> str:
    """'7 Sneaker' for a named class of a built-in set, else the label as it is."""
    names = CLASS_NAMES.get(ALIASES.get(str(data), str(data)), ())
    try:
        return f"{label} {names[int(label)]}" if 0 <= int(label) < len(names) else str(label)
    except (TypeError, ValueError):
        return str(label)


def canonical(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS and key not in IMAGE_DATASETS:
        raise VscError(f"unknown dataset {name!r}; choose one of {', '.join([*DATASETS, *IMAGE_DATASETS])}")
    return key


def image_shape(name: str, pixels: int) -> tuple[int, int, int]:
    """(channels, height, width) of a dataset's images, checked against the flattened size."""
    shape = IMAGE_SHAPES.get(ALIASES.get(name.lower(), name.lower()))
    if shape is None or int(np.prod(shape)) != pixels:
        side = int(round(pixels ** 0.5))
        if side * side == pixels:
            return (1, side, side)
        if pixels % 3 == 0 and (s := int(round((pixels // 3) ** 0.5))) ** 2 * 3 == pixels:
            return (3, s, s)
        raise VscError(f"cannot tell the image shape of {pixels} pixels of {name!r}")
    return shape


def spec(name: str) -> DatasetSpec:
    key = canonical(name)
    if key not in DATASETS:
        raise VscError(f"{name} is not an idx dataset")
    return DATASETS[key]


def default_data_dir() -> Path:
    return Path(os.environ.get("VSC_DATA_DIR") or "data")


# ---------------------------------------------------------------------------- idx format
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(raw: bytes, what: str = "idx data") -> np.ndarray:
    """Parse the idx format (LeCun): magic 0x0000 <dtype> <ndim>, ndim big-endian uint32 sizes, data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise VscError(f"{what}: not an idx file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise VscError(f"{what}: truncated idx header")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "has trailing bytes"
        raise VscError(f"{what}: idx file {kind} ({len(raw)} bytes, header says {expected})")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_raw(path: Path) -> bytes:
    """Bytes of an idx file, decompressing .gz; errors name the file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        if Path(path).suffix == ".gz" and head != b"\x1f\x8b":
            raise VscError(f"{path}: not a gzip file (truncated or damaged)")
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; zlib.error: bad deflate data
        raise VscError(f"{path}: cannot read ({exc})") from None


def verify(raw: bytes, expected_md5: str, what: str) -> None:
    got = hashlib.md5(raw).hexdigest()
    if got != expected_md5:
        raise VscError(f"{what}: checksum mismatch (md5 {got}, expected {expected_md5}); "
                       "the file is corrupt or not the official one")


def _candidates(folder: Path, stem: str):
    return [folder / f"{stem}.gz", folder / stem]


def _find_valid(folder: Path, ds: DatasetSpec, stem: str) -> Path | None:
    for path in _candidates(folder, stem):
        if path.is_file():
            verify(read_raw(path), ds.md5[stem], str(path))
            return path
    return None


# ---------------------------------------------------------------------------- fetching
def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def _download(url: str, dst: Path, stem: str, ds: DatasetSpec, progress: bool) -> None:
    """Download to a hidden `.NAME.partial-PID`, verify the decompressed md5, then rename into place."""
    from vsc_cli.common.progress import tqdm

    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(dst) as part:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dst.name, disable=not progress, leave=False) as bar:
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
        verify(read_raw(part), ds.md5[stem], url)


def mirrors(ds: DatasetSpec) -> tuple:
    """Base URLs to try: $VSC_MIRROR (one URL, for a local or institutional mirror) first, then the official ones."""
    extra = os.environ.get("VSC_MIRROR")
    return ((extra.rstrip("/") + "/",) if extra else ()) + ds.urls


def fetch(name: str, data_dir: Path | None = None, source: Path | None = None, progress: bool = True) -> Path:
    """Make sure the four verified files of `name` are in the cache; return the cache folder."""
    ds = spec(name)
    cache = Path(data_dir or default_data_dir()) / ds.folder
    for split in FILES.values():
        for stem in split:
            if _find_valid(cache, ds, stem):
                continue
            got = False
            for folder in [source and Path(source), source and Path(source) / ds.folder,
                           ds.debian_dir and Path(ds.debian_dir)]:
                if folder and (found := _find_valid(folder, ds, stem)):
                    _atomic_copy(found, cache / found.name)
                    got = True
                    break
            errors = []
            for base in mirrors(ds) if not got else ():
                try:
                    _download(base + stem + ".gz", cache / f"{stem}.gz", stem, ds, progress)
                    got = True
                    break
                except WriteError:
                    raise  # a full disk: another mirror will not help
                except (urllib.error.URLError, OSError, VscError) as exc:
                    errors.append(f"{base}: {getattr(exc, 'reason', exc)}")
            if not got:
                hint = " or `apt-get install dataset-fashion-mnist`" if ds.debian_dir else ""
                raise VscError(
                    f"cannot get {ds.name} file {stem}: not in {cache}, no local copy, and download failed "
                    f"({'; '.join(errors)}); if the files are elsewhere, give that folder with --data-dir DIR (or "
                    f"VSC_DATA_DIR), or copy them with `vsc download {ds.name} --from DIR`{hint}"
                )
    return cache


# ---------------------------------------------------------------------------- loading
def normalise(images: np.ndarray, how: str) -> np.ndarray:
    """uint8 images (N, ...) -> float32 (N, M): 'unit' L2 norm per image (paper D.2), '01', or 'none'."""
    x = images.reshape(len(images), -1).astype(np.float32)
    if how == "unit":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norms > 0, norms, 1.0)  # an all-black image stays zero
    if how == "01":
        return x / 255.0
    if how == "none":
        return x
    raise VscError(f"unknown normalisation {how!r}; choose one of {', '.join(NORMALISATIONS)}")


def load_split(name: str, split: str, data_dir: Path | None = None, normalisation: str = "unit",
               limit: int | None = None, fetch_missing: bool = True, progress: bool = True,
               image_size: int | None = None):
    """Return (x float32 (N, pixels), labels int64 (N,)) for split 'train' or 'test' (image_size: CelebA's side).
    The data layer's reader of the built-in sets: the layers above read every set through sources.open_images."""
    if canonical(name) == "celeba":
        from vsc_cli.data import celeba

        images, labels = celeba.load_split(split, Path(data_dir or default_data_dir()), limit, progress, image_size)
        return normalise(images, normalisation), labels
    ds = spec(name)
    cache = fetch(name, data_dir, progress=progress) if fetch_missing else Path(data_dir or default_data_dir()) / ds.folder
    arrays = []
    for stem in FILES[split]:
        path = next((p for p in _candidates(cache, stem) if p.is_file()), None)
        if path is None:
            raise VscError(f"{ds.name}: {stem} missing from {cache}; run `vsc download {ds.name}`")
        raw = read_raw(path)
        verify(raw, ds.md5[stem], str(path))
        arrays.append(parse_idx(raw, str(path)))
    images, labels = arrays
    if len(images) != len(labels):
        raise VscError(f"{ds.name} {split}: {len(images)} images but {len(labels)} labels")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return normalise(images, normalisation), labels.astype(np.int64)
