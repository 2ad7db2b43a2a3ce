"""Several processes: `torchrun ... --no-python vsc train|encode ...` (PyTorch DistributedDataParallel).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and the rendezvous address) for every process; without
them vsc runs as one process. The process group uses gloo on the CPU and nccl with --device cuda, where
each process takes the GPU of its LOCAL_RANK. Only rank 0 writes files the user sees; the others
compute their shard and take part in the collectives.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from vsc_cli.common.errors import OptionsError, VscError

TIMEOUT = datetime.timedelta(minutes=10)  # a lost process stops the others after this, not gloo's 30 minutes


@dataclass(frozen=True)
class World:
    rank: int = 0  # this process, 0..size-1
    size: int = 1  # processes in the job
    local_rank: int = 0  # this process on its machine (picks the GPU)
    started: bool = False  # True when this World initialised the process group (and must destroy it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.size > 1


def from_env() -> World:
    """The job's shape from torchrun's variables (one process when they are absent)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise VscError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them)") from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise VscError(f"RANK={rank} does not fit WORLD_SIZE={size}")
    return World(rank, size, local)


def check_device(device: str) -> None:
    """OptionsError when `device` (a command's --device) is cuda and this machine has no usable CUDA device."""
    if device == "cuda" and not torch.cuda.is_available():
        raise OptionsError("--device cuda: no usable CUDA device here; use --device cpu")


def setup(device: str) -> tuple[World, str]:
    """Join the process group when run under torchrun; return the world and this process's device."""
    import torch.distributed as dist

    world = from_env()
    if world.size == 1:
        return world, device
    if device == "cuda":
        if torch.cuda.device_count() <= world.local_rank:
            raise VscError(f"LOCAL_RANK {world.local_rank} has no GPU ({torch.cuda.device_count()} visible)")
        torch.cuda.set_device(world.local_rank)
        device = f"cuda:{world.local_rank}"
    if not dist.is_available():
        raise VscError("this PyTorch build has no torch.distributed")
    started, threads = False, torch.get_num_threads()
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise VscError("WORLD_SIZE > 1 but no MASTER_ADDR: start the processes with torchrun")
        # Imported before the group exists, not on first use: DistributedDataParallel imports torch._dynamo,
        # which imports this module, whose functions take `group=group.WORLD` as default arguments, evaluated
        # at import. Imported after init_process_group they would hold the group for good: teardown's
        # destroy_process_group could not free it, and its gloo worker threads would outlive it. A worker
        # still releasing the last collective's work when the interpreter shuts down needs the GIL, and
        # CPython then ends the thread inside C++ that cannot unwind: std::terminate, the process killed by
        # SIGABRT after a finished run (seen on ranks > 0, which exit right after their last collective).
        from torch.distributed.nn import functional as _takes_the_default_group  # noqa: F401
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=TIMEOUT)
        started = True
    if dist.get_world_size() != world.size or dist.get_rank() != world.rank:
        raise VscError("the process group does not match RANK / WORLD_SIZE")
    set_threads(threads)  # processes share the machine's cores (torchrun sets OMP_NUM_THREADS=1)
    return World(world.rank, world.size, world.local_rank, started), device


def set_threads(n: int) -> None:
    """n threads for torch and numba. numba's OpenMP layer resets the shared OpenMP thread count when it
    starts, so numba is set first and torch second."""
    try:
        import numba

        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    except ImportError:  # pragma: no cover
        pass
    torch.set_num_threads(n)


def teardown(world: World) -> None:
    import torch.distributed as dist

    if world.started and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.on:
        import torch.distributed as dist

        dist.barrier()


def main_first(world: World, fn):
    """fn() on rank 0, then on the others (rank 0 may download or prepare what they read)."""
    if world.main:
        result = fn()
        barrier(world)
        return result
    barrier(world)
    return fn()


def _wire(world: World, t: torch.Tensor, device: str) -> torch.Tensor:
    return t.to(device) if str(device).startswith("cuda") else t.cpu()


def all_gather(world: World, t: torch.Tensor, device: str = "cpu") -> list[torch.Tensor]:
    """Every rank's copy of a same-shaped tensor (CPU results)."""
    if not world.on:
        return [t.cpu()]
    import torch.distributed as dist

    t = _wire(world, t.contiguous(), device)
    out = [torch.empty_like(t) for _ in range(world.size)]
    dist.all_gather(out, t)
    return [o.cpu() for o in out]


def all_mean(world: World, t: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """The mean over ranks of a tensor (CPU result)."""
    if not world.on:
        return t.cpu()
    import torch.distributed as dist

    t = _wire(world, t.clone(), device)
    dist.all_reduce(t)
    return (t / world.size).cpu()


def all_max(world: World, t: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """The elementwise maximum of t over the ranks (t itself in a single process)."""
    if not world.on:
        return t
    import torch.distributed as tdist

    t = _wire(world, t.clone(), device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return t.cpu()


def any_rank(world: World, flag: bool, device: str = "cpu") -> bool:
    """True on every rank when `flag` is True on any rank."""
    if not world.on:
        return flag
    return bool(all_mean(world, torch.tensor([float(flag)]), device).item() > 0)


def shard_range(n: int, world: World, align: int = 1) -> tuple[int, int]:
    """This rank's contiguous [start, stop) of n items; boundaries are multiples of `align`."""
    blocks = -(-n // align)
    first = blocks * world.rank // world.size
    last = blocks * (world.rank + 1) // world.size
    return min(n, first * align), min(n, last * align)


def global_mean(world, device):
    """gbar -> its mean over the processes, whose gradient reaches this process's gbar as if it were the mean.

    DistributedDataParallel averages the processes' gradients; the mean's gradient with respect to one
    process's gbar is 1/size of it, so passing the whole gradient to each process's gbar makes that average
    exactly the gradient of R at the global gbar."""
    def mean(gbar: torch.Tensor) -> torch.Tensor:
        if not world.on:
            return gbar
        total = all_mean(world, gbar.detach(), device).to(gbar.device, gbar.dtype)
        return gbar + (total - gbar.detach())

    return mean


def auto_device(device: str, backend: str, resume) -> str:
    """--device auto: cuda when PyTorch sees a GPU, else cpu; the CPU for --backend numba, and for a resumed run
    whose recorded op is numba's (its checkpoint names the backend it used)."""
    if device != "auto":
        return device
    if backend == "numba" or not torch.cuda.is_available():
        return "cpu"
    if resume is not None:
        from vsc_cli.trainers.checkpoint import load_checkpoint

        try:
            if load_checkpoint(resume)["config"].get("backend") == "numba":
                return "cpu"
        except Exception:  # noqa: BLE001 - training itself says what is wrong with the checkpoint
            return "cpu"
    return "cuda"
