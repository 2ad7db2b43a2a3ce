"""CelebA (paper appendix D.2): aligned faces, centre-cropped and downsampled to 32x32 RGB (or another size:
`--image-size`; the conv network's default is 64x64).

Source: the official `img_align_celeba.zip` (202,599 JPEGs of 178x218 under `img_align_celeba/`),
its extracted folder, or any zip/folder with the same layout at another resolution, such as
../shared/data/celeba/img_align_celeba_subset.zip (10,000 images at 89x109). Looked for in
`<data_dir>/celeba/`. The official files sit behind a Google Drive page that scripts cannot rely on,
so `vsc download celeba --from DIR` copies a zip you downloaded (after checking it holds images).

Crop: the square of side 148/178 of the width whose top-left corner is at (15/178 of the width,
40/218 of the height), i.e. rows 40..188 and columns 15..163 of an official image: the face,
without most of the background. It is then averaged down (box filter) to 32x32 (or S x S) and, like the other
sets, scaled to unit L2 norm per image by `data.normalise`. The prepared uint8 array is cached in
$VSC_CACHE_DIR (default ~/.cache/vsc), never beside the source, which may be a read-only copy.

Split: no partition file comes with the subset, so the split is by file name, deterministic and
the same on every machine: images sorted by name, the last 10% (rounded up) are the test split.
For the official 202,599 images that is 20,260 test images (the official test partition has 19,962).
CelebA has no classes: labels are -1.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from vsc_cli.common.errors import VscError
from vsc_cli.common.safeio import atomic_write

FOLDER = "celeba"
SIZE = 32  # output images are SIZE x SIZE RGB unless another size is asked for
CROP_LEFT, CROP_TOP, CROP_SIDE = 15 / 178, 40 / 218, 148 / 178  # fractions of width, height, width
TEST_FRACTION = 0.1
SOURCES = ("img_align_celeba.zip", "img_align_celeba", "img_align_celeba_subset.zip")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CACHE_VERSION = 1  # bump when the preprocessing changes


def crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the face square for an image of this size."""
    side = max(1, round(CROP_SIDE * width))
    left, top = round(CROP_LEFT * width), round(CROP_TOP * height)
    left, top = min(left, width - side), min(top, max(0, height - side))
    return left, top, left + side, top + min(side, height)


def preprocess(data: bytes, what: str, size: int = SIZE) -> np.ndarray:
    """JPEG/PNG bytes -> uint8 (3, size, size): crop the face, average down to size x size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            im = im.crop(crop_box(*im.size)).resize((size, size), Image.Resampling.BOX)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise VscError(f"{what}: not a readable image ({exc})") from None


def find_source(data_dir: Path) -> Path:
    folder = Path(data_dir) / FOLDER
    for name in SOURCES:
        if (folder / name).exists():
            return folder / name
    zips = sorted(folder.glob("*.zip")) if folder.is_dir() else []
    if zips:
        return zips[0]
    raise VscError(f"celeba: no img_align_celeba.zip (or its folder) in {folder}; if it is elsewhere, give "
                   "that cache folder with --data-dir DIR (or VSC_DATA_DIR); else download it from "
                   "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, then `vsc download celeba --from DIR`")


def _entries(source: Path):
    """Sorted (name, read-bytes function) of the images in a zip or folder."""
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return [(str(p.relative_to(source)), p.read_bytes) for p in files], None
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise VscError(f"{source}: not a readable zip file ({exc})") from None
    names = sorted(n for n in zf.namelist() if n.lower().endswith(IMAGE_SUFFIXES) and not n.endswith("/"))
    return [(n, lambda n=n: zf.read(n)) for n in names], zf


def check_source(source: Path) -> int:
    """Number of images in a zip or folder; VscError if there are none."""
    entries, zf = _entries(source)
    if zf is not None:
        zf.close()
    if not entries:
        raise VscError(f"{source}: no .jpg or .png images inside")
    return len(entries)


def cache_dir() -> Path:
    """Where prepared arrays are kept: $VSC_CACHE_DIR, else $XDG_CACHE_HOME/vsc or ~/.cache/vsc.
    Never the data folder: it may be a shared, read-only copy."""
    if os.environ.get("VSC_CACHE_DIR"):
        return Path(os.environ["VSC_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vsc"


def _cache_path(source: Path, size: int = SIZE) -> Path:
    st = source.stat()
    key = f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{size}|{CROP_LEFT}|{CROP_TOP}|{CROP_SIDE}|{CACHE_VERSION}"
    return cache_dir() / f"celeba-{size}px-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"


def load_images(data_dir: Path, progress: bool = True, size: int | None = None) -> np.ndarray:
    """uint8 (N, 3, size, size) of every image (size None: SIZE), in name order; cached in cache_dir() per size."""
    size = int(size or SIZE)
    from vsc_cli.common.progress import tqdm

    source = find_source(data_dir)
    cache = _cache_path(source, size) if source.is_file() else None
    if cache is not None and cache.is_file():
        try:
            images = np.load(cache, allow_pickle=False)
            if images.dtype == np.uint8 and images.ndim == 4 and images.shape[1:] == (3, size, size):
                return images
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt
    entries, zf = _entries(source)
    if not entries:
        raise VscError(f"{source}: no .jpg or .png images inside")
    images = np.empty((len(entries), 3, size, size), np.uint8)
    try:
        for i, (name, read) in enumerate(tqdm(entries, desc="preparing celeba", unit="img", disable=not progress,
                                               leave=False)):
            try:
                data = read()
            except (zipfile.BadZipFile, OSError, EOFError) as exc:  # e.g. a bad CRC-32
                raise VscError(f"{source}: entry {name} cannot be read ({exc})") from None
            images[i] = preprocess(data, f"{source}: entry {name}", size)
    finally:
        if zf is not None:
            zf.close()
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)

            def write(tmp):
                with open(tmp, "wb") as fh:
                    np.save(fh, images, allow_pickle=False)

            atomic_write(cache, write)
        except (OSError, VscError):
            pass  # no room or no permission for the cache: it only saves time
    return images


def split_indices(n: int, split: str) -> np.ndarray:
    """Deterministic split by name order: the last ceil(10%) are the test images."""
    n_test = math.ceil(TEST_FRACTION * n) if n > 1 else 0
    if split == "train":
        return np.arange(0, n - n_test)
    if split == "test":
        return np.arange(n - n_test, n)
    raise VscError(f"unknown split {split!r}; choose train or test")


def load_split(split: str, data_dir: Path, limit: int | None = None, progress: bool = True, size: int | None = None):
    """(images uint8 (N, 3, size, size), labels int64 (N,) of -1) for split train or test (size None: SIZE)."""
    images = load_images(data_dir, progress, size)
    idx = split_indices(len(images), split)
    if limit is not None:
        idx = idx[:limit]
    return images[idx], np.full(len(idx), -1, np.int64)


def fetch(data_dir: Path, source: Path | None) -> Path:
    """Make sure a CelebA zip or folder is in <data_dir>/celeba; copy --from's after checking it."""
    import shutil

    folder = Path(data_dir) / FOLDER
    if source is None:
        found = find_source(data_dir)
        check_source(found)
        return found
    source = Path(source)
    candidates = [source] if source.is_file() else [source / n for n in SOURCES] + sorted(source.glob("*.zip"))
    found = next((c for c in candidates if c.exists()), None)
    if found is None:
        raise VscError(f"{source}: no img_align_celeba.zip, img_align_celeba/ or other zip inside")
    check_source(found)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / found.name
    if found.is_dir():
        if not dest.exists():
            shutil.copytree(found, folder / f".{found.name}.partial-{os.getpid()}")
            os.replace(folder / f".{found.name}.partial-{os.getpid()}", dest)
    elif not dest.exists() or dest.stat().st_size != found.stat().st_size:
        atomic_write(dest, lambda tmp: shutil.copyfile(found, tmp))
    return dest
