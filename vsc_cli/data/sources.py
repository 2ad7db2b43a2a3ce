"""Images read in blocks: the built-in sets (held in memory) and users' own data (streamed from disk).

`--data PATH` accepts
  * a folder of images (PNG, JPEG, BMP, GIF, WebP, TIFF), searched recursively. When images sit in
    sub-folders, the first-level sub-folder names are the classes (labels 0..K-1 in name order, like
    torchvision's ImageFolder); images directly in PATH are then refused. Files with other extensions,
    hidden files and hidden folders are skipped; a file with an image extension that cannot be decoded is an error
    naming it. Images of different sizes need --image-size.
  * an .npy file, or an .npz with an `images` (or `x`) array and optional `labels` (or `y`)
  * an HDF5 file with an `images` dataset and optional `labels`
Arrays may be (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1, 3 (or 4: the alpha channel is
dropped); uint8 / uint16 values or floats in [0, 1] (others are refused). A folder's images become grey
if every one is grey, RGB otherwise; --image-size S makes each S x S: aspect "crop" (a new run's) first cuts the
largest centred square, so that faces are not squashed; "stretch" (runs of vsc before it) resizes the whole image.
Both resize bilinearly with antialiasing.
Normalisation is then as for the built-in sets (paper D.2: unit L2 norm per image by default).

Own data have no official split: every tenth image (positions 9, 19, 29, ... in file / sorted-path
order) is the test split, the rest the training split. A validation split (any data set) is carved from the
training split (`carve`): a fraction of it spread evenly over it, so that every class of a folder has its share.

Only the rows asked for are read (os.pread for .npy and uncompressed .npz, HDF5 hyperslabs, one
file per image for folders), so a dataset larger than memory trains in bounded memory. Every read
goes through `Images._read`, which refuses more than LOAD_CAP_ROWS rows at once when that is set.
np.savez_compressed members cannot be read in pieces: they are loaded whole.
"""
from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from vsc_cli.common.errors import VscError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
DEEP_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # grey with 16-bit integer (or float in [0, 1]) pixels
TEST_EVERY = 10  # own data: positions k*TEST_EVERY - 1 are the test split
READ_BLOCK = 1000  # rows per read when going through a split in order (evaluation, encoding)
LOAD_CAP_ROWS: int | None = None  # a test sets this to show that nothing reads more rows at once


def is_path(data: str) -> bool:
    """True when --data names a file or folder rather than a built-in dataset."""
    from vsc_cli.data.datasets import ALIASES, DATASETS, IMAGE_DATASETS

    key = ALIASES.get(str(data).lower(), str(data).lower())
    return key not in DATASETS and key not in IMAGE_DATASETS


def own_split(n: int, split: str) -> np.ndarray:
    """Indices of `split` among n own images: every TEST_EVERY-th is a test image."""
    is_test = (np.arange(n) % TEST_EVERY) == TEST_EVERY - 1
    if split == "train":
        return np.flatnonzero(~is_test)
    if split == "test":
        return np.flatnonzero(is_test)
    raise VscError(f"unknown split {split!r}; choose train or test")


SPLITS = ("train", "validation", "test")


def carve(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) positions among n training images: round(fraction * n) of them (at least 1 when
    fraction > 0 and n > 1), spread evenly (positions floor((k + 1/2) n / m)), are the validation split."""
    m = int(round(fraction * n)) if fraction else 0
    m = min(max(m, 1 if fraction and n > 1 else 0), n - 1 if n > 1 else 0)
    held = np.floor((np.arange(m) + 0.5) * n / m).astype(np.int64) if m else np.zeros(0, np.int64)
    keep = np.ones(n, bool)
    keep[held] = False
    return np.flatnonzero(keep), held


def pick_split(n: int, split: str, validation: float) -> np.ndarray:
    """Positions of `split` (train or validation) among n images of the training split."""
    train, held = carve(n, validation)
    return held if split == "validation" else train


class Images:
    """N images as float32 rows (N, C*H*W), normalised; `labels` int64 (N,), -1 when unlabelled.

    Indexing with an int array or a slice returns those rows (numpy); `take` returns a torch tensor."""

    shape: tuple  # (channels, height, width)
    labels: np.ndarray
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def pixels(self) -> int:
        return int(np.prod(self.shape))

    def _read(self, idx: np.ndarray) -> np.ndarray:  # rows idx (sorted, unique) -> float32 (B, pixels)
        raise NotImplementedError

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            r = range(len(self))[key]
            idx = np.arange(r.start, r.stop, r.step, dtype=np.int64)
        else:
            idx = np.asarray(key, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"image index out of range 0..{len(self) - 1}")
        if LOAD_CAP_ROWS is not None and len(idx) > LOAD_CAP_ROWS:
            raise VscError(f"{self.name}: asked to load {len(idx)} images at once, more than the cap "
                           f"of {LOAD_CAP_ROWS}")
        if not len(idx):
            return np.zeros((0, self.pixels), np.float32)
        uniq, inverse = np.unique(idx, return_inverse=True)
        rows = self._read(uniq)
        return rows if len(uniq) == len(idx) and (np.diff(idx) > 0).all() else rows[inverse]

    def take(self, idx, device="cpu", dtype=None):
        import torch

        idx = idx.cpu().numpy() if hasattr(idx, "cpu") else idx
        return torch.from_numpy(self[idx]).to(device=device, dtype=dtype or torch.float32)

    def blocks(self, size: int = READ_BLOCK):
        """(start, rows) in order, `size` rows at a time."""
        for start in range(0, len(self), size):
            yield start, self[start:start + size]

    def subset(self, idx: np.ndarray) -> "Images":
        return Subset(self, np.asarray(idx, dtype=np.int64))


class Memory(Images):
    """Rows already in memory (the built-in datasets)."""

    def __init__(self, x: np.ndarray, labels: np.ndarray, shape: tuple, name: str):
        self.x, self.labels, self.shape, self.name = x, labels, tuple(shape), name
        self._device_copy = None

    def _read(self, idx):
        return self.x[idx]

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.x[key]
        return super().__getitem__(key)

    def take(self, idx, device="cpu", dtype=None):  # keeps one copy on the device: indexing stays on it
        import torch

        dtype = dtype or torch.float32
        if self._device_copy is None or self._device_copy.device != torch.device(device) \
                or self._device_copy.dtype != dtype:
            self._device_copy = torch.from_numpy(self.x).to(device=device, dtype=dtype)
        return self._device_copy[idx.to(self._device_copy.device) if hasattr(idx, "to") else idx]


class Subset(Images):
    def __init__(self, base: Images, idx: np.ndarray):
        self.base, self.idx = base, idx
        self.labels, self.shape, self.name = base.labels[idx], base.shape, base.name

    def _read(self, idx):
        return self.base[self.idx[idx]]


# ------------------------------------------------------------------------------- pixel handling
class _Pixels:
    """Turns raw blocks (B, ...) of an array into normalised float32 rows: layout, channels, size, scale."""

    def __init__(self, shape: tuple, dtype: np.dtype, image_size: int | None, normalisation: str, what: str,
                 aspect: str = "stretch"):
        self.normalisation, self.image_size, self.what, self.aspect = normalisation, image_size, what, aspect
        if len(shape) == 3:
            self.layout, (h, w), c = "hw", shape[1:], 1
        elif len(shape) == 4 and shape[3] in (1, 3, 4) and shape[1] in (1, 3, 4):
            raise VscError(f"{what}: images of shape {tuple(shape)} could be (N, H, W, C) or (N, C, H, W); "
                           "store them as (N, H, W, C) with H and W above 4")
        elif len(shape) == 4 and shape[3] in (1, 3, 4):
            self.layout, (h, w, c) = "hwc", shape[1:]
        elif len(shape) == 4 and shape[1] in (1, 3, 4):
            self.layout, (c, h, w) = "chw", shape[1:]
        else:
            raise VscError(f"{what}: images of shape {tuple(shape)}; expected (N, H, W), (N, H, W, C) or "
                           "(N, C, H, W) with C = 1, 3 or 4")
        if min(h, w) < 1:
            raise VscError(f"{what}: empty images of shape {tuple(shape)}")
        if dtype.kind not in "uif" and dtype.kind != "b":
            raise VscError(f"{what}: pixel type {dtype} is not numeric")
        self.dtype, self.channels = np.dtype(dtype), min(c, 3)
        self.in_hw = (h, w)
        side = image_size
        self.shape = (self.channels, side or h, side or w)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        from vsc_cli.data.datasets import normalise

        x = raw
        if self.layout == "hw":
            x = x[:, None]
        elif self.layout == "hwc":
            x = np.moveaxis(x, 3, 1)
        x = x[:, :3]  # drop an alpha channel
        kind = {"f": "float", "b": "bool"}.get(self.dtype.kind, "16bit" if self.dtype.itemsize == 2 else "8bit")
        x = to_255(x, kind, self.what)
        if self.image_size and self.in_hw != (self.image_size, self.image_size):
            x = resize(x, self.image_size, self.aspect)
        return normalise(x, self.normalisation)


def to_255(x: np.ndarray, kind: str, what: str) -> np.ndarray:
    """Pixel values on the 0..255 scale of 8-bit images: 'float' in [0, 1] (others refused), '16bit'
    0..65535, 'bool', or '8bit' (and wider integers) as they are."""
    if kind == "float":
        if x.size and not (np.nanmin(x) >= 0 and np.nanmax(x) <= 1 and np.isfinite(x).all()):
            raise VscError(f"{what}: floating-point pixels must lie in [0, 1] (found "
                           f"{np.nanmin(x):g}..{np.nanmax(x):g}); store uint8 0..255, or divide by 255")
        return x.astype(np.float32) * np.float32(255.0)
    if kind == "16bit":
        return x.astype(np.float32) / np.float32(257.0)  # 65535 -> 255
    if kind == "bool":
        return x.astype(np.float32) * np.float32(255.0)
    return x


def centre_square(height: int, width: int) -> tuple[int, int, int]:
    """(top, left, side) of the largest square centred in a height x width image."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def resize(x: np.ndarray, side: int, aspect: str = "stretch") -> np.ndarray:
    """(B, C, H, W) pixel values -> (B, C, side, side) float32, bilinear with antialiasing; aspect "crop" first
    cuts the centred square (centre_square), "stretch" resizes the whole image."""
    import torch

    if aspect == "crop":
        top, left, sq = centre_square(x.shape[2], x.shape[3])
        x = x[:, :, top:top + sq, left:left + sq]
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return torch.nn.functional.interpolate(t, size=(side, side), mode="bilinear", antialias=True,
                                           align_corners=False).numpy()


# ------------------------------------------------------------------------------- .npy / .npz
def _runs(idx: np.ndarray):
    """Sorted unique indices -> (first, count) of consecutive runs."""
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(idx)]])
    return [(int(idx[a]), int(b - a)) for a, b in zip(starts, ends)]


class NpyFile(Images):
    """An .npy array (or an uncompressed .npz member) read row by row with os.pread: never mapped whole."""

    def __init__(self, path: Path, offset: int, shape: tuple, dtype: np.dtype, fortran: bool, labels,
                 image_size, normalisation, what: str, aspect: str = "stretch"):
        if fortran:
            raise VscError(f"{what}: Fortran-ordered arrays cannot be read in rows; save with np.ascontiguousarray")
        self.path, self.offset, self.dtype, self.raw_shape = Path(path), offset, np.dtype(dtype), tuple(shape)
        self.pix = _Pixels(shape, self.dtype, image_size, normalisation, what, aspect)
        self.shape, self.name = self.pix.shape, what
        self.row_bytes = int(np.prod(shape[1:])) * self.dtype.itemsize
        self.labels = _labels(labels, shape[0], what)
        need = offset + shape[0] * self.row_bytes
        if os.path.getsize(path) < need:
            raise VscError(f"{what}: file is truncated ({os.path.getsize(path)} bytes, the array needs {need})")
        self._fd = None

    def _read(self, idx):
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        out = np.empty((len(idx), *self.raw_shape[1:]), self.dtype)
        buf = out.reshape(-1).view(np.uint8)
        at = 0
        for first, count in _runs(idx):
            end, where = at + count * self.row_bytes, self.offset + first * self.row_bytes
            while at < end:  # one call returns at most ~2 GiB on Linux
                got = os.preadv(self._fd, [memoryview(buf[at:end])], where)
                if got <= 0:
                    raise VscError(f"{self.name}: short read (file changed or truncated?)")
                at, where = at + got, where + got
        return self.pix(out)

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass


def _npy_header(fh, what):
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, SyntaxError) as exc:
        raise VscError(f"{what}: not a readable .npy array ({exc})") from None
    if dtype.hasobject:
        raise VscError(f"{what}: object arrays are never loaded (they would need pickle)")
    return shape, fortran, dtype, fh.tell()


def _labels(labels, n, what):
    if labels is None:
        return np.full(n, -1, np.int64)
    labels = np.asarray(labels)
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise VscError(f"{what}: labels must be integers of shape ({n},), not {labels.dtype} {labels.shape}")
    return labels.astype(np.int64)


def open_npy(path: Path, image_size, normalisation, aspect: str = "stretch") -> Images:
    with open(path, "rb") as fh:
        shape, fortran, dtype, offset = _npy_header(fh, str(path))
    return NpyFile(path, offset, shape, dtype, fortran, None, image_size, normalisation, str(path), aspect)


def open_npz(path: Path, image_size, normalisation, aspect: str = "stretch") -> Images:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise VscError(f"{path}: not a readable .npz file ({exc})") from None
    with zf:
        names = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
        key = next((k for k in ("images", "x") if k in names), None)
        if key is None:
            raise VscError(f"{path}: no 'images' (or 'x') array inside; it holds {', '.join(names) or 'nothing'}")
        lab_key = next((k for k in ("labels", "y") if k in names), None)
        what = f"{path}[{key}]"
        labels = None
        if lab_key:
            with zf.open(names[lab_key]) as fh:
                lshape, lfortran, ldtype, _ = _npy_header(fh, f"{path}[{lab_key}]")
                labels = np.frombuffer(fh.read(), ldtype)[:int(np.prod(lshape))].reshape(lshape)
        info = zf.getinfo(names[key])
        if info.compress_type == zipfile.ZIP_STORED:  # np.savez: the member's bytes lie in the file as they are
            with open(path, "rb") as raw:
                raw.seek(info.header_offset)
                local = raw.read(30)
                if local[:4] != b"PK\x03\x04":
                    raise VscError(f"{what}: damaged zip entry")
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                start = info.header_offset + 30 + name_len + extra_len
                raw.seek(start)
                shape, fortran, dtype, offset = _npy_header(raw, what)
            return NpyFile(path, offset, shape, dtype, fortran, labels, image_size, normalisation, what, aspect)
        with zf.open(names[key]) as fh:  # np.savez_compressed: no random access, so loaded whole
            shape, fortran, dtype, _ = _npy_header(fh, what)
            data = np.frombuffer(fh.read(), dtype)
        if data.size != int(np.prod(shape)):
            raise VscError(f"{what}: truncated array")
        data = data.reshape(shape, order="F" if fortran else "C")
        pix = _Pixels(shape, dtype, image_size, normalisation, what, aspect)
        x = np.concatenate([pix(data[i:i + READ_BLOCK]) for i in range(0, len(data), READ_BLOCK)]) \
            if len(data) else np.zeros((0, int(np.prod(pix.shape))), np.float32)
        return Memory(x, _labels(labels, shape[0], what), pix.shape, what)


# ------------------------------------------------------------------------------- HDF5
class H5File(Images):
    def __init__(self, path: Path, image_size, normalisation, aspect: str = "stretch"):
        import h5py

        self.path, self.name = Path(path), str(path)
        with _h5(path) as f:
            if "images" not in f or not isinstance(f["images"], h5py.Dataset):
                raise VscError(f"{path}: no 'images' dataset (it holds {', '.join(f.keys()) or 'nothing'})")
            ds = f["images"]
            self.pix = _Pixels(ds.shape, ds.dtype, image_size, normalisation, f"{path}[images]", aspect)
            labels = None
            if "labels" in f:
                try:
                    labels = np.asarray(f["labels"])
                except Exception as exc:  # noqa: BLE001 - h5py raises several types for damage
                    raise VscError(f"{path}[labels]: unreadable ({exc})") from None
            self.labels = _labels(labels, ds.shape[0], f"{path}[labels]")
        self.shape = self.pix.shape
        self._file = None

    def _read(self, idx):
        import h5py

        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        ds = self._file["images"]
        try:
            runs = _runs(idx)
            raw = (ds[runs[0][0]:runs[0][0] + runs[0][1]] if len(runs) == 1 else ds[idx]) if len(idx) \
                else np.zeros((0, *ds.shape[1:]), ds.dtype)
        except Exception as exc:  # noqa: BLE001
            raise VscError(f"{self.path}[images]: cannot read images ({str(exc).splitlines()[0]})") from None
        return self.pix(raw)


def _h5(path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise VscError(f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0]})") from None


# ------------------------------------------------------------------------------- image folders
class Folder(Images):
    """One image file per row, decoded with Pillow when read."""

    def __init__(self, root: Path, image_size, normalisation, progress: bool = False, aspect: str = "stretch"):
        from PIL import Image
        from vsc_cli.common.progress import tqdm

        self.root, self.name, self.normalisation, self.image_size = Path(root), str(root), normalisation, image_size
        self.aspect = aspect
        files, skipped = [], 0
        seen = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            seen.add(os.path.realpath(dirpath))  # a symlink loop is walked once
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")  # .ipynb_checkpoints, .git, ...
                                 and os.path.realpath(os.path.join(dirpath, d)) not in seen)
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                if p.suffix.lower() in IMAGE_SUFFIXES and not fn.startswith("."):
                    files.append(p)
                else:
                    skipped += 1
        files.sort(key=lambda p: p.relative_to(root).parts)  # sorted path order, folder by folder
        if not files:
            raise VscError(f"{root}: no images (PNG, JPEG, BMP, GIF, WebP or TIFF) in it or its sub-folders")
        rel = [f.relative_to(root) for f in files]
        top = [r.parts[0] if len(r.parts) > 1 else None for r in rel]
        if any(t is not None for t in top):
            loose = next((f for f, t in zip(files, top) if t is None), None)
            if loose is not None:
                raise VscError(f"{loose}: an image directly in {root}, which also has class sub-folders; move it "
                               "into a class folder or remove it")
            self.classes = sorted(set(top))
            labels = np.array([self.classes.index(t) for t in top], np.int64)
        else:
            self.classes, labels = [], np.full(len(files), -1, np.int64)
        sizes, grey = {}, True
        for f in tqdm(files, desc=f"checking {root}", disable=not progress, leave=False):
            try:
                with Image.open(f) as im:
                    size, mode = im.size, im.mode
            except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
                raise VscError(f"{f}: not a readable image ({type(exc).__name__}: {exc})") from None
            sizes.setdefault(size, f)
            grey = grey and mode in GREY_MODES
        if len(sizes) > 1 and not image_size:
            (s0, f0), (s1, f1) = list(sizes.items())[:2]
            raise VscError(f"{f1} is {s1[0]}x{s1[1]} but {f0} is {s0[0]}x{s0[1]}: images of different sizes "
                           "need --image-size S (each is resized to S x S)")
        w, h = next(iter(sizes))
        self.mode = "L" if grey else "RGB"
        self.files, self.labels, self.skipped = files, labels, skipped
        self.shape = (1 if grey else 3, image_size or h, image_size or w)

    def _read(self, idx):
        from PIL import Image

        from vsc_cli.data.datasets import normalise

        c, h, w = self.shape
        out = np.empty((len(idx), c, h, w), np.float32)
        for k, i in enumerate(idx):
            f = self.files[i]
            try:
                with Image.open(f) as im:
                    if im.mode in DEEP_MODES:  # convert("L") would clip 16-bit and float pixels at 255
                        a = to_255(np.asarray(im, dtype=np.float32), "float" if im.mode == "F" else "16bit", str(f))
                        im = Image.fromarray(a, mode="F")
                    else:
                        im = im.convert(self.mode)
                    if im.size != (w, h):
                        if self.aspect == "crop":  # the centred square first: the aspect ratio is kept
                            top, left, sq = centre_square(im.size[1], im.size[0])
                            im = im.crop((left, top, left + sq, top + sq))
                        im = im.resize((w, h), Image.BILINEAR)
                    a = np.asarray(im, dtype=np.float32)
                    if a.ndim == 2 and c == 3:
                        a = np.repeat(a[:, :, None], 3, axis=2)
            except VscError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise VscError(f"{f}: not a readable image ({type(exc).__name__}: {exc})") from None
            out[k] = a[None] if c == 1 else np.moveaxis(a, 2, 0)
        return normalise(out, self.normalisation)


# ------------------------------------------------------------------------------- entry point
_OPENED: dict = {}  # (path, its mtime, image_size, normalisation, aspect) -> Images: a folder is scanned once


def open_own(path, image_size: int | None, normalisation: str, progress: bool = False,
             aspect: str = "stretch") -> Images:
    """All images of a user's file or folder (both splits)."""
    path = Path(path)
    if not path.exists():
        raise VscError(f"--data {path}: no such file or folder")
    key = (str(path.resolve()), path.stat().st_mtime_ns, image_size, normalisation, aspect)
    if key not in _OPENED:
        _OPENED.clear()  # one dataset at a time
        _OPENED[key] = _open_own(path, image_size, normalisation, progress, aspect)
    return _OPENED[key]


def _open_own(path: Path, image_size, normalisation, progress, aspect) -> Images:
    if path.is_dir():
        return Folder(path, image_size, normalisation, progress, aspect)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return open_npy(path, image_size, normalisation, aspect)
    if suffix == ".npz":
        return open_npz(path, image_size, normalisation, aspect)
    if suffix in (".h5", ".hdf5", ".hdf", ".he5"):
        return H5File(path, image_size, normalisation, aspect)
    raise VscError(f"--data {path}: not a folder, .npy, .npz or HDF5 (.h5, .hdf5) file")


def open_images(data: str, split: str, data_dir=None, normalisation: str = "unit", limit: int | None = None,
                image_size: int | None = None, progress: bool = False, validation: float = 0.0,
                aspect: str = "stretch") -> Images:
    """The images of `split` ('train', 'validation' or 'test') of a built-in dataset or of a user's file or folder.
    limit: the first N of the training split (or of the test split); validation: the fraction of those training
    images that is the validation split (carve), the rest being 'train'; aspect: own images' resizing (_Pixels)."""
    from vsc_cli.data.datasets import image_shape, load_split

    if split not in SPLITS:
        raise VscError(f"unknown split {split!r}; choose {', '.join(SPLITS)}")
    if split == "validation" and not validation:
        raise VscError("this run has no validation split (it was trained without --validation); use --split train "
                       "or test")
    base = "test" if split == "test" else "train"
    if is_path(data):
        images = open_own(data, image_size, normalisation, progress, aspect)
        idx = own_split(len(images), base)
        idx = idx[:limit] if limit is not None else idx
        if base == "train" and validation:
            idx = idx[pick_split(len(idx), split, validation)]
        return images.subset(idx)
    x, labels = load_split(data, base, data_dir, normalisation, limit, progress=progress, image_size=image_size)
    if base == "train" and validation:
        pick = pick_split(len(x), split, validation)
        x, labels = x[pick], labels[pick]
    return Memory(x, labels, image_shape(data, x.shape[1]), data)
