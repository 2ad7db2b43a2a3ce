"""The HDF5 codes file: `encode` writes a run's codes of a dataset into it, and its readers (features, labels, gamma)
serve `vsc classify` (classify.py) and `vsc sparsity` (sparsity.py).

HDF5 layout written by `encode` (format "vsc-codes/1"), one group per split ("train", "test"):
    <split>/mu, <split>/logvar, <split>/gamma   float32 (N, J)  the encoder's outputs (eq. 5, 12)
    <split>/code                               float32 (N, J)  gamma * mu, the posterior mean E_q[z]
    <split>/labels                             int64 (N,)
    <split>/code_csr/{indptr, indices, data}   CSR copy of the spike-selected code: the elements
                                               with gamma > threshold (attribute `threshold`)
File attributes: format, dataset, splits, model, alpha, dim, network, decoder, the networks' own settings
(hidden for the MLP, channels for the conv network; network_attrs), likelihood, normalisation,
iterations, checkpoint, checkpoint_sha256, vsc_version, created, limit (-1: whole splits).
Split attributes: the example-specificity of its codes at the CSR threshold (vsc_cli/evaluation/metrics.py):
active_mean/_p5/_p50/_p95, dims_used, dims_always_on, dims_dead, jaccard_all,
jaccard_different_class, jaccard_same_class (NaN without labels), jaccard_images, threshold.
gamma * mu is the deterministic code because under q(z|x) (eq. 5) z is 0 with probability 1 - gamma
and N(mu, sigma^2) otherwise, so E[z] = gamma mu: elements the encoder switches off are (near) 0.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np

from vsc_cli.common.version import __version__
from vsc_cli.evaluation.encoding import encode_batches
from vsc_cli.trainers.run import Run
from vsc_cli.common.registry import FAMILIES, NETWORKS
from vsc_cli.common.errors import VscError, WriteError
from vsc_cli.evaluation.metrics import specificity
from vsc_cli.common.safeio import OutputLock, atomic_output, check_writable_folder, write_error

FORMAT = "vsc-codes/1"
HDF5_LIBVER = ("v110", "latest")  # object headers with checksums: damaged metadata is detected
SPLITS = ("train", "test")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def encode(run_dir: Path, out: Path, data: str | None = None, splits=SPLITS, data_dir=None,
           batch_size: int = 1000, threshold: float = 0.5, force: bool = False, progress: bool = True,
           limit: int | None = None) -> Path | None:
    """Encode the splits of `data` with the run's encoder into the HDF5 file `out` (atomically).

    Under torchrun every process encodes a contiguous shard of each split into a part file; rank 0 then
    joins the parts into `out` (copying the compressed chunks as they are) and removes them. Returns
    None on ranks other than 0.
    limit: encode only the first N images of each split."""
    from vsc_cli.trainers import dist

    world, _ = dist.setup("cpu")
    try:
        return _encode(run_dir, out, data, splits, data_dir, batch_size, threshold, force, progress, limit, world)
    finally:
        dist.teardown(world)


def _encode(run_dir, out, data, splits, data_dir, batch_size, threshold, force, progress, limit, world):
    from vsc_cli.trainers import dist

    out = Path(out)
    run = Run.open(run_dir, data=data, data_dir=data_dir)
    state, model, data, ckpt = run.state, run.model, run.data, run.checkpoint
    if out.is_dir():
        raise VscError(f"{out} is a folder; give a file name for the codes, e.g. {out / 'codes.h5'}")
    check_writable_folder(out)

    def open_splits():  # each checked against the run's image shape
        return {s: run.images(s, limit, progress and world.main) for s in splits}

    images = dist.main_first(world, open_splits)  # rank 0 may download; the others then find the files
    n = sum(len(x) for x in images.values())
    if not world.on:
        with OutputLock(out, "vsc encode"):
            _check_room(out, force, model.cfg.dim, n)
            with atomic_output(out) as tmp:  # never looks like a finished file until renamed
                _encode_into(tmp, out, state, model, data, images, batch_size, threshold, progress, limit, ckpt)
        return out
    parts = out.parent / f".{out.name}.parts"  # one file per rank; must be on a file system all ranks see
    with OutputLock(out, "vsc encode") if world.main else contextlib.nullcontext():
        failure = None
        if world.main:
            try:
                _check_room(out, force, model.cfg.dim, n)
                shutil.rmtree(parts, ignore_errors=True)  # left by a killed job (we hold the lock)
                parts.mkdir()
            except (VscError, OSError) as exc:
                failure = exc
        if dist.any_rank(world, failure is not None):
            raise failure or VscError("rank 0 could not start the output (see its message)")
        try:
            part = parts / f"rank-{world.rank:05d}.h5"
            with atomic_output(part) as tmp:
                _encode_into(tmp, part, state, model, data, images, batch_size, threshold, progress and world.main,
                             limit, ckpt, world)
        except Exception as exc:  # noqa: BLE001 - re-raised below, once every rank knows
            failure = exc
        if dist.any_rank(world, failure is not None):
            if world.main:
                shutil.rmtree(parts, ignore_errors=True)
            raise failure or VscError(f"another process failed while encoding (see its message); {out} not written")
        if world.main:
            try:
                with atomic_output(out) as tmp:
                    files = [parts / f"rank-{r:05d}.h5" for r in range(world.size)]
                    _guarded_h5(tmp, out, lambda f, check: _join_parts(f, out, files, splits, check))
            except Exception as exc:  # noqa: BLE001 - reported below, after telling the other ranks
                failure = exc
            finally:
                shutil.rmtree(parts, ignore_errors=True)
        if dist.any_rank(world, failure is not None):  # instead of a barrier: the others learn of a failed join
            if failure is not None:
                raise failure
            raise VscError(f"rank 0 could not join the parts (see its message); {out} not written")
    return out if world.main else None


def _check_room(out: Path, force: bool, dim: int, n: int) -> None:
    if out.exists() and not force:
        raise VscError(f"{out} exists; pass --force to overwrite it")
    need = _estimated_bytes(dim, n)
    free = shutil.disk_usage(out.parent).free
    if free < need:
        raise WriteError(f"cannot write {out}: about {need / 1e6:.0f} MB may be needed and only "
                         f"{free / 1e6:.0f} MB are free on that disk")


def _estimated_bytes(dim: int, n: int) -> int:
    """An upper bound on a codes file's size: 4 float32 (N, J) arrays and the CSR copy, uncompressed."""
    return n * (dim * (4 * 4 + 8) + 16) + (1 << 20)


def _encode_into(tmp, out, state, model, data, images, batch_size, threshold, progress, limit, ckpt, world=None):
    _guarded_h5(tmp, out, lambda f, check: _fill(f, state, model, data, images, batch_size, threshold, progress,
                                                 limit, ckpt, check, world))


def _guarded_h5(tmp, out, fill) -> None:
    """Create the HDF5 file tmp through a _WriteGuard and run fill(h5file, check); a failed write (a full
    disk) becomes one WriteError naming `out`."""
    import h5py

    with open(tmp, "w+b", buffering=0) as raw:
        fh = _WriteGuard(raw)
        try:
            with h5py.File(fh, "w", libver=HDF5_LIBVER) as f:  # libver: object headers with checksums
                fill(f, fh.check)
        except _WriteFailed:
            pass
        except (RuntimeError, OSError, ValueError):
            if fh.error is None:
                raise
    if fh.error is not None:
        raise write_error(fh.error, out)


class _WriteFailed(Exception):
    pass


class _WriteGuard:
    """The file HDF5 writes through. A failed write (a full disk) is recorded and then *hidden* from HDF5:
    HDF5 (2.0.0 in h5py 3.16) can crash (SIGSEGV) closing a file after a failed write. The encoder checks the
    record after each batch, stops, and the temporary file is deleted, so the hidden failure never reaches a reader."""

    def __init__(self, fh):
        self.fh, self.error = fh, None

    def write(self, data):
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):  # an unbuffered file may write part of a block
                    wrote = self.fh.write(view[done:])
                    if not wrote:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    done += wrote
            except OSError as exc:
                self.error = exc
        return len(view)

    def seek(self, *args):
        return self.fh.seek(*args)  # unbuffered: a seek never flushes, so it cannot fail on a full disk

    def truncate(self, size=None):
        return self._quiet(self.fh.truncate, size)

    def flush(self):
        return self._quiet(self.fh.flush)

    def _quiet(self, op, *args):
        if self.error is None:
            try:
                return op(*args)
            except OSError as exc:
                self.error = exc
        return args[0] if args else None

    def check(self):
        if self.error is not None:
            raise _WriteFailed

    def __getattr__(self, name):  # read, readinto, seek, tell: the real file's
        return getattr(self.fh, name)


def _fill(f, state, model, data, images, batch_size, threshold, progress, limit, ckpt, check, world=None):
    from vsc_cli.trainers.dist import shard_range

    cfg = model.cfg
    f.attrs.update({
        "format": FORMAT, "dataset": data, "splits": ",".join(images), "model": cfg.model,
        "alpha": cfg.alpha if FAMILIES[cfg.model].uses_alpha else 1.0, "dim": cfg.dim,
        **network_attrs(cfg), "likelihood": cfg.likelihood,
        "normalisation": cfg.normalisation, "iterations": int(state["iteration"]),
        "checkpoint": str(ckpt.resolve()), "checkpoint_sha256": sha256(ckpt),
        "vsc_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "limit": -1 if limit is None else int(limit),
    })
    for split, x in images.items():
        group = f.create_group(split)
        if world is None or not world.on:
            _write_split(group, model, x, x.labels, batch_size, threshold, progress, check)
            continue
        rows = chunk_rows(len(x))  # shard edges on chunk edges: the parts' chunks join without recompression
        begin, end = shard_range(len(x), world, rows)
        group.attrs.update(rows=len(x), begin=begin, end=end)
        part = x.subset(np.arange(begin, end))
        _write_split(group, model, part, part.labels, batch_size, threshold, progress, check, rows)
    if world is None or not world.on:  # under torchrun the joined file gets them (_join_parts)
        _specificity_attrs(f, images, threshold)


def network_attrs(cfg) -> dict:
    """The networks' attributes: `network` (the encoder's), `decoder` (the decoder's: the same network mirrored, or
    a decoder-only one such as linear) and each one's own settings by name (`hidden` for the MLP, `channels` for the
    conv network), lists as comma-separated text."""
    decoder = cfg.decoder if cfg.decoder in NETWORKS.tagged("decoder-only") else cfg.network
    out = {"network": cfg.network, "decoder": decoder}
    for name in dict.fromkeys((cfg.network, decoder)):
        for key in NETWORKS[name].settings:
            value = getattr(cfg, key)
            out[key] = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
    return out


def _specificity_attrs(f, splits, threshold: float) -> None:
    """Each split group's example-specificity numbers (metrics.specificity) as its attributes."""
    for split in splits:
        g = f[split]
        if g["gamma"].shape[0] == 0:
            continue
        spec = specificity(np.asarray(g["gamma"]), np.asarray(g["labels"]), threshold)
        g.attrs.update({k: (np.nan if v is None else v) for k, v in spec.items()})


def chunk_rows(n: int) -> int:
    return max(1, min(n, 1024))


def _dense_options(n: int, rows: int | None = None) -> dict:
    return dict(chunks=(rows or chunk_rows(n), None), compression="gzip", compression_opts=4, shuffle=True,
                fletcher32=True)


def _write_split(group, model, x, labels, batch_size, threshold, progress, check=lambda: None, rows=None):
    """rows: the chunk height of the whole split when x is one rank's part of it (torchrun)."""
    n, dim = len(x), model.cfg.dim
    opts = _dense_options(n, rows)
    opts["chunks"] = (opts["chunks"][0], dim)
    grow = rows is not None or n == 0  # a part may be shorter than one chunk, or empty
    if grow:
        opts["maxshape"] = (None, dim)
    sets = {name: group.create_dataset(name, (n, dim), dtype="float32", **opts)
            for name in ("mu", "logvar", "gamma", "code")}
    group.create_dataset("labels", data=labels.astype(np.int64), chunks=(min(max(n, 1), 1 << 16),), fletcher32=True,
                         maxshape=(None,) if grow else (n,))
    csr = group.create_group("code_csr")
    csr.attrs.update(threshold=threshold, shape=(n, dim))
    indptr = csr.create_dataset("indptr", (n + 1,), dtype="int64", chunks=(min(n + 1, 1 << 16),), fletcher32=True)
    indices = csr.create_dataset("indices", (0,), maxshape=(None,), dtype="int32", chunks=(1 << 16,),
                                 compression="gzip", shuffle=True, fletcher32=True)
    values = csr.create_dataset("data", (0,), maxshape=(None,), dtype="float32", chunks=(1 << 16,),
                                compression="gzip", shuffle=True, fletcher32=True)
    nnz = 0
    indptr[0] = 0
    for start, mu, logvar, gamma in encode_batches(model, x, batch_size, progress, f"encoding {group.name[1:]}"):
        stop = start + len(mu)
        code = gamma * mu
        for name, block in (("mu", mu), ("logvar", logvar), ("gamma", gamma), ("code", code)):
            sets[name][start:stop] = block
        rows_, cols = np.nonzero(gamma > threshold)
        counts = np.bincount(rows_, minlength=len(mu))
        indptr[start + 1:stop + 1] = nnz + np.cumsum(counts)
        indices.resize((nnz + len(cols),))
        values.resize((nnz + len(cols),))
        indices[nnz:] = cols.astype(np.int32)
        values[nnz:] = code[rows_, cols]
        nnz += len(cols)
        check()


def _join_parts(f, out: Path, parts: list, splits, check=lambda: None) -> None:
    """Fill the open HDF5 file f from the ranks' part files: the dense arrays' compressed chunks are copied
    as they are (shards start on chunk edges); labels and the CSR copy are appended a block at a time
    (indptr shifted), so memory stays bounded whatever the size."""
    import h5py

    block = 1 << 20
    sources = [h5py.File(p, "r") for p in parts]
    try:
        for k, v in sources[0].attrs.items():
            f.attrs[k] = v
        for split in splits:
            groups = [src[split] for src in sources]
            n, dim = int(groups[0].attrs["rows"]), int(groups[0]["mu"].shape[1])
            g = f.create_group(split)
            opts = _dense_options(n)
            opts["chunks"] = (opts["chunks"][0], dim)
            if n == 0:
                opts["maxshape"] = (None, dim)
            for name in ("mu", "logvar", "gamma", "code"):
                ds = g.create_dataset(name, (n, dim), dtype="float32", **opts)
                for part in groups:
                    begin, src = int(part.attrs["begin"]), part[name]
                    if src.chunks != ds.chunks:
                        raise VscError(f"{out}: part chunks {src.chunks} differ from {ds.chunks}")
                    for row in range(0, src.shape[0], ds.chunks[0]):
                        mask, blob = src.id.read_direct_chunk((row, 0))
                        ds.id.write_direct_chunk((begin + row, 0), blob, mask)
                    check()
            labels = g.create_dataset("labels", (n,), dtype="int64", chunks=(min(max(n, 1), 1 << 16),),
                                      fletcher32=True, maxshape=(None,) if n == 0 else (n,))
            csr = g.create_group("code_csr")
            csr.attrs.update(threshold=groups[0]["code_csr"].attrs["threshold"], shape=(n, dim))
            indptr = csr.create_dataset("indptr", (n + 1,), dtype="int64", chunks=(min(n + 1, 1 << 16),),
                                        fletcher32=True)
            arrays = {name: csr.create_dataset(name, (0,), maxshape=(None,), dtype=dtype, chunks=(1 << 16,),
                                               compression="gzip", shuffle=True, fletcher32=True)
                      for name, dtype in (("indices", "int32"), ("data", "float32"))}
            indptr[0], nnz = 0, 0
            for part in groups:
                begin, rows = int(part.attrs["begin"]), part["labels"].shape[0]
                for a in range(0, rows, block):
                    b = min(rows, a + block)
                    labels[begin + a:begin + b] = part["labels"][a:b]
                    indptr[begin + a + 1:begin + b + 1] = part["code_csr/indptr"][a + 1:b + 1] + nnz
                count = int(part["code_csr/indptr"][-1])
                for name, ds in arrays.items():
                    ds.resize((nnz + count,))
                    for a in range(0, count, block):
                        ds[nnz + a:nnz + min(count, a + block)] = part[f"code_csr/{name}"][a:a + block]
                nnz += count
                check()
        _specificity_attrs(f, splits, float(sources[0][splits[0]]["code_csr"].attrs["threshold"]) if splits else 0.5)
    finally:
        for src in sources:
            src.close()


# ------------------------------------------------------------------------------------ reading
# h5py and the HDF5 library raise all of these for damaged files; each becomes a one-line VscError
H5_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError, AttributeError)


def _open_h5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except H5_ERRORS as exc:
        raise VscError(f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0] if str(exc) else exc})") from None


def read_features(path: Path, split: str, features: str = "code"):
    """(X float32 (N, J), y int64 (N,)) from our files or any HDF5 file with <split>/features, <split>/labels.

    A damaged file (truncated, bit-flipped: our files carry HDF5 checksums) raises VscError."""
    path = Path(path)
    with _open_h5(path) as f:
        try:
            return _read_features(f, path, split, features)
        except VscError:
            raise
        except H5_ERRORS as exc:
            raise VscError(f"{path}: damaged or unreadable ({str(exc).splitlines()[0] if str(exc) else exc})") from None


def _read_features(f, path, split, features):
    import h5py

    if split not in f or not isinstance(f[split], h5py.Group):
        raise VscError(f"{path}: no group '{split}' (it has: {', '.join(f.keys()) or 'nothing'})")
    g = f[split]
    name = features if features in g else "features" if "features" in g else None
    if name is None:
        raise VscError(f"{path}: no dataset '{split}/{features}' (nor '{split}/features')")
    if "labels" not in g:
        raise VscError(f"{path}: no dataset '{split}/labels'")
    x, y = g[name], g["labels"]
    if not isinstance(x, h5py.Dataset) or not isinstance(y, h5py.Dataset):
        raise VscError(f"{path}: '{split}/{name}' and '{split}/labels' must be datasets")
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise VscError(f"{path}: '{split}/{name}' has shape {x.shape} but '{split}/labels' {y.shape}; "
                       "expected (N, J) and (N,)")
    if x.dtype.kind not in "fiu" or y.dtype.kind not in "iu":
        raise VscError(f"{path}: '{split}/{name}' must be numeric and '{split}/labels' integers "
                       f"(they are {x.dtype} and {y.dtype})")
    labels = np.asarray(y).astype(np.int64)
    if len(labels) and labels.min() < 0:
        raise VscError(f"{path}: '{split}/labels' has negative values")
    return np.asarray(x, dtype=np.float32), labels


def read_labels(path: Path, split: str) -> np.ndarray | None:
    """<split>/labels of a `vsc encode` file, or None when it has none."""
    import h5py

    with _open_h5(path) as f:
        try:
            ds = f.get(f"{split}/labels")
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
                return None
            return np.asarray(ds).astype(np.int64)
        except H5_ERRORS as exc:
            raise VscError(f"{path}: damaged or unreadable ({str(exc).splitlines()[0] if str(exc) else exc})") from None


def read_gamma(path: Path, split: str):
    """(gamma (N, J) float64, alpha or None) from a `vsc encode` file; VscError if absent or damaged."""
    import h5py

    with _open_h5(path) as f:
        try:
            if f"{split}/gamma" not in f or not isinstance(f[f"{split}/gamma"], h5py.Dataset):
                raise VscError(f"{path}: no dataset '{split}/gamma'")
            ds = f[f"{split}/gamma"]
            if ds.ndim != 2 or ds.dtype.kind != "f":
                raise VscError(f"{path}: '{split}/gamma' has shape {ds.shape} and type {ds.dtype}, "
                               "expected floating point (N, J)")
            gamma = np.asarray(ds, dtype=np.float64)
            alpha = float(f.attrs["alpha"]) if "alpha" in f.attrs else None
        except VscError:
            raise
        except H5_ERRORS as exc:
            raise VscError(f"{path}: damaged or unreadable ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    if not np.isfinite(gamma).all() or gamma.min(initial=0) < 0 or gamma.max(initial=0) > 1:
        raise VscError(f"{path}: '{split}/gamma' has values outside [0, 1]")
    return gamma, alpha
