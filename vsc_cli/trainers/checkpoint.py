"""Checkpoints that are data, not code: one safetensors file, no pickle anywhere.

The file is in the safetensors layout (https://github.com/huggingface/safetensors): an 8-byte
little-endian header length N, N bytes of JSON header {name: {dtype, shape, data_offsets}, ...,
"__metadata__": {str: str}}, then the raw little-endian tensor bytes. It is written and parsed by the
`safetensors` library (the format's reference implementation); vsc's checks sit on top: the SHA-256, the
config's validation, shapes against the model, and the refusal of pickles. Files of vsc 0.2, which wrote
the layout with its own code, read the same way.

Tensors: model/<parameter>, optimizer/state/<param index>/<key>, perm (the epoch's batch order),
rng/data and rng/noise (generator states; rng/noise/<rank> for the other processes of a torchrun job).
Everything else (config, iteration, the epoch position,
optimizer hyper-parameters, the partial log window) is JSON in the metadata entry "vsc". The entry
"vsc_sha256" is a SHA-256 over the rest of the header and all tensor bytes: a truncated, bit-flipped
or edited file is refused, naming what is wrong. (It detects damage, it is not a signature.)
"""
from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from vsc_cli.common.version import __version__
from vsc_cli.common.config import TrainConfig
from vsc_cli.common.errors import VscError
from vsc_cli.common.registry import NETWORKS
from vsc_cli.common.safeio import atomic_write

FORMAT = "vsc-checkpoint/2"
CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"  # the checkpoint of the best validation ELBO so far: what commands on a run use
LEGACY_CHECKPOINT = "checkpoint.pt"  # vsc 0.1 wrote torch.save pickles; they are never loaded
MAX_HEADER_BYTES = 64 << 20  # a header larger than this is damage, not a checkpoint

# the tensor types vsc writes (and so accepts back)
SUPPORTED = {torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
             torch.int8, torch.uint8, torch.bool}

if sys.byteorder != "little":  # pragma: no cover - safetensors data are little-endian
    raise ImportError("vsc checkpoints need a little-endian machine")


def _digest(header: dict, chunks) -> str:
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------ file format
def _safetensors_bytes(tensors: dict, metadata: dict) -> bytes:
    try:
        return safetensors.torch.save(tensors, metadata=metadata)
    except (SafetensorError, ValueError, TypeError, RuntimeError) as exc:
        raise VscError(f"cannot store the checkpoint's tensors ({exc})") from None


def _split(blob: bytes) -> tuple[dict, memoryview]:
    """(header, tensor bytes) of a blob the safetensors library has accepted or written."""
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n].decode("utf-8")), memoryview(blob)[8 + n:]


def write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    """Write `tensors` (name -> tensor) and `metadata` (str -> str) to `path` atomically, through the safetensors
    library, with the SHA-256 entry "vsc_sha256" over the header without it and all tensor bytes."""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    for name, t in tensors.items():
        if t.dtype not in SUPPORTED:
            raise VscError(f"cannot store tensor {name} of type {t.dtype}")
    meta = {k: v for k, v in metadata.items() if k != "vsc_sha256"}
    # the library decides the layout (its tensor order and offsets); the metadata does not move any byte of data,
    # so the digest of a first serialisation holds for the second, which carries it
    header, data = _split(_safetensors_bytes(tensors, meta))
    blob = _safetensors_bytes(tensors, {**meta, "vsc_sha256": _digest(header, [data])})
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))


def read_safetensors(path: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of a file written by write_safetensors (vsc >= 0.2); VscError for anything else.

    The safetensors library parses and validates the layout; on top of it: pickles are named and never
    loaded, the SHA-256 must match, and only vsc's tensor types are accepted."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise VscError(f"{path}: cannot read ({exc.strerror})") from None

    def bad(why):
        return VscError(f"{path}: not a valid vsc checkpoint ({why})")

    # a safetensors file has its JSON header at byte 8; only a file without one is judged by its first bytes (a
    # header length whose low byte is 0x80, or whose low bytes read "PK", is no pickle or zip)
    if blob[8:9] != b"{" and (blob[:1] == b"\x80" or blob[:2] == b"PK"):
        raise bad("it looks like a pickle or a torch.save archive; those can run code and are never loaded")
    if len(blob) < 8:
        raise bad(f"only {len(blob)} bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > min(MAX_HEADER_BYTES, len(blob) - 8):
        raise bad(f"header length {n} does not fit in the {len(blob)}-byte file; truncated?")
    try:
        tensors = safetensors.torch.load(blob)
    except SafetensorError as exc:
        raise bad(f"{exc}; truncated or damaged?") from None
    except Exception as exc:  # noqa: BLE001 - the library's other refusals (bad UTF-8, bad JSON, sizes)
        raise bad(f"{type(exc).__name__}: {exc}") from None
    header, data = _split(blob)
    metadata = dict(header.get("__metadata__") or {})
    stored_digest = metadata.pop("vsc_sha256", None)
    if stored_digest is None:
        raise bad("no vsc_sha256 checksum; not written by vsc")
    header_wo = {k: v for k, v in header.items() if k != "__metadata__"}
    header_wo["__metadata__"] = metadata
    if _digest(header_wo, [data]) != stored_digest:
        raise bad("SHA-256 mismatch: the file was altered or damaged after it was written")
    for name, t in tensors.items():
        if t.dtype not in SUPPORTED:
            raise bad(f"tensor {name!r} has type {t.dtype}, which vsc does not write")
    return tensors, metadata


# ------------------------------------------------------------------------------------ training state
def save_checkpoint(path: Path, state: dict) -> None:
    """Write a training state (the dict `train` builds) as tensors + JSON, atomically."""
    tensors = {f"model/{k}": v for k, v in state["model"].items()}
    opt = state["optimizer"]
    opt_json = {"param_groups": opt["param_groups"], "state": {}}
    for idx, entry in opt["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/state/{idx}/{key}"] = value
            else:
                opt_json["state"].setdefault(str(idx), {})[key] = value
    tensors["perm"] = state["perm"]
    tensors["rng/data"] = state["rng"]["data"]
    tensors["rng/noise"] = state["rng"]["noise"]
    for rank, noise in enumerate(state["rng"].get("noise_ranks", []), start=1):  # torchrun: the other ranks'
        tensors[f"rng/noise/{rank}"] = noise
    if "aug" in state["rng"]:  # the augmentation's draws (vsc before it has none)
        tensors["rng/aug"] = state["rng"]["aug"]
        for rank, aug in enumerate(state["rng"].get("aug_ranks", []), start=1):
            tensors[f"rng/aug/{rank}"] = aug
    info = {k: v for k, v in state.items() if k not in ("model", "optimizer", "perm", "rng")}
    info["optimizer"] = opt_json
    info["format"] = FORMAT
    write_safetensors(Path(path), tensors, {"vsc": json.dumps(info), "format": FORMAT, "vsc_version": __version__})


def checkpoint_path(path: Path) -> Path:
    """The checkpoint file of a run directory (or the file itself)."""
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT).is_file() and (path / LEGACY_CHECKPOINT).is_file():
            raise VscError(f"{path / LEGACY_CHECKPOINT} is a pickle-based checkpoint from vsc 0.1; pickles can "
                           "run code, so vsc no longer loads them: retrain the run")
        path = path / CHECKPOINT
    if not path.is_file():
        raise VscError(f"no checkpoint at {path}")
    return path


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by save_checkpoint back into the training-state dict (CPU tensors)."""
    path = checkpoint_path(path)
    tensors, metadata = read_safetensors(path)
    try:
        info = json.loads(metadata["vsc"])
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise KeyError("format")
        state = {k: v for k, v in info.items() if k != "optimizer"}
        state["model"] = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
        opt_state: dict = {int(i): dict(v) for i, v in info["optimizer"]["state"].items()}
        for name, value in tensors.items():
            if name.startswith("optimizer/state/"):
                _, _, idx, key = name.split("/", 3)
                opt_state.setdefault(int(idx), {})[key] = value
        state["optimizer"] = {"state": opt_state, "param_groups": info["optimizer"]["param_groups"]}
        state["perm"] = tensors["perm"]
        state["rng"] = {"data": tensors["rng/data"], "noise": tensors["rng/noise"], "noise_ranks": []}
        while f"rng/noise/{len(state['rng']['noise_ranks']) + 1}" in tensors:
            state["rng"]["noise_ranks"].append(tensors[f"rng/noise/{len(state['rng']['noise_ranks']) + 1}"])
        if "rng/aug" in tensors:
            state["rng"]["aug"], state["rng"]["aug_ranks"] = tensors["rng/aug"], []
            while f"rng/aug/{len(state['rng']['aug_ranks']) + 1}" in tensors:
                state["rng"]["aug_ranks"].append(tensors[f"rng/aug/{len(state['rng']['aug_ranks']) + 1}"])
        if "validation" in state and not isinstance(state["validation"], dict):
            raise KeyError("validation")
        if not isinstance(state.get("world_size", 1), int) or state.get("world_size", 1) < 1:
            raise KeyError("world_size")
        state["config"] = TrainConfig.from_dict(info["config"]).to_dict()  # validates every field
        for key in ("pixels", "iteration", "pos"):
            if not isinstance(state[key], int) or state[key] < 0:
                raise KeyError(key)
    except VscError as exc:
        raise VscError(f"{path}: {exc}") from None
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise VscError(f"{path}: not a vsc training checkpoint (bad or missing entry {exc})") from None
    return state


def build_model(state: dict, device="cpu"):
    """Rebuild the model a checkpoint describes; refuse tensors that do not fit its config.

    The spike-and-slab op's numba and cuda backends each run on one kind of device only: a run trained with
    one of them and rebuilt on the other kind of device gets that device's default backend (the same math)."""
    from vsc_kernels import default_backend

    from vsc_cli.models.vae import VAE

    cfg = TrainConfig.from_dict(state["config"])
    if cfg.backend in ("numba", "cuda") and (cfg.backend == "cuda") != (torch.device(device).type == "cuda"):
        cfg = cfg.replace(backend=default_backend(device))
    model = VAE(cfg, state["pixels"]).to(device)
    check_tensors(model.state_dict(), state["model"], cfg, state["pixels"])
    model.load_state_dict(state["model"])
    return model


def check_tensors(expected: dict, stored: dict, cfg: TrainConfig, pixels: int) -> None:
    """VscError naming the first missing, extra or wrongly shaped tensor."""
    net = NETWORKS[cfg.network].describe(cfg)
    what = (f"a {cfg.model} model with dim {cfg.dim}, {net}, "
            f"{pixels} pixels, {cfg.likelihood} likelihood")
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    if missing or extra:
        names = ", ".join([f"missing {m}" for m in missing[:2]] + [f"unexpected {e}" for e in extra[:2]])
        raise VscError(f"checkpoint tensors do not match its config ({what}): {names}")
    for k, v in expected.items():
        if tuple(stored[k].shape) != tuple(v.shape):
            raise VscError(f"checkpoint tensor {k} has shape {tuple(stored[k].shape)}, but {what} needs "
                           f"{tuple(v.shape)}")
        if not stored[k].is_floating_point():
            raise VscError(f"checkpoint tensor {k} has type {stored[k].dtype}, expected floating point")
