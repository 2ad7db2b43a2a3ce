"""A run's state between iterations (`RunState`): the model, Adam, the batch order and its generator, the noise
generator, the iteration; written to the checkpoint and read back so that a resumed run goes on bit for bit."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from vsc_cli.common.errors import VscError
from vsc_cli.common.version import __version__
from vsc_cli.trainers import dist
from vsc_cli.trainers.checkpoint import check_tensors, save_checkpoint


def make_optimizer(model, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (AdamW, decoupled weight decay, when weight_decay > 0), fused (one kernel for all parameters' updates
    instead of several passes per parameter) where torch has it for the parameters' device and dtype; the plain one
    otherwise. A resumed run keeps the variant its checkpoint recorded (load_state_dict restores the flag)."""
    make, kw = (torch.optim.AdamW, {"weight_decay": weight_decay}) if weight_decay else (torch.optim.Adam, {})
    try:
        return make(model.parameters(), lr=lr, fused=True, **kw)
    except (RuntimeError, ValueError, TypeError):
        return make(model.parameters(), lr=lr, **kw)


def noise_seed(seed: int, rank: int) -> int:
    """Seed of a rank's eps/eta generator: rank 0 (and a single process) uses seed + 2."""
    return seed + 2 + 1_000_003 * rank


def agree(model, world, device) -> list[str]:
    """SHA-256 of the parameters on every rank; VscError when the ranks hold different models."""
    import hashlib

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    mine = torch.frombuffer(bytearray(h.digest()), dtype=torch.uint8)
    digests = [bytes(d.numpy()).hex() for d in dist.all_gather(world, mine, device)]
    if len(set(digests)) > 1:
        raise VscError(f"the {world.size} processes hold different parameters (SHA-256 "
                       f"{', '.join(d[:12] for d in digests)}); gradients were not synchronised")
    return digests


class RunState:
    """Everything a run carries from one iteration to the next: the model, Adam, the batch order and its
    generator, the noise generator, the iteration and the training time of earlier sessions. `save` writes it
    (with the log's open window) to the checkpoint, a collective under torchrun; `restore` reads it back, so that
    a resumed run goes on bit for bit (tests/test_train.py)."""

    def __init__(self, cfg, model, n: int, pixels: int, world, device):
        self.cfg, self.model, self.n, self.pixels, self.world, self.device = cfg, model, n, pixels, world, device
        self.shard = n // world.size  # DistributedSampler-style: rank r takes perm[r::size], the tail dropped
        self.opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)  # batch order (CPU; the same on every rank)
        self.noise_gen = torch.Generator(device=device).manual_seed(noise_seed(cfg.seed, world.rank))  # eps, eta
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 3 + 1_000_003 * world.rank)  # flips and crops
        # the validation split's evaluations: their rows (validation.csv), the best ELBO and its iteration, the
        # evaluations since it, and the iteration at which --patience stopped the run (None: it did not)
        self.validation = {"rows": [], "best_elbo": None, "best_iteration": None, "since_best": 0, "stopped_at": None}
        self.perm, self.pos, self.iteration = torch.randperm(n, generator=self.data_gen), 0, 0
        self.seconds, self.last_good = 0.0, None  # training time of earlier sessions; the last checkpoint
        self.data_max = 0.0  # the largest pixel value of the training images (set by train._setup)
        self.data_dir = None  # the absolute cache folder of a built-in set (set by train._setup)
        self.epoch = self._shard(self.perm)

    def _shard(self, perm: torch.Tensor) -> torch.Tensor:
        """This rank's part of a batch order."""
        return perm[self.world.rank::self.world.size][:self.shard]

    def next_batch(self) -> torch.Tensor:
        """This rank's image indices of the next batch; a new epoch reshuffles and drops the incomplete last batch."""
        if self.pos + self.cfg.batch_size > self.shard:
            self.perm, self.pos = torch.randperm(self.n, generator=self.data_gen), 0
            self.epoch = self._shard(self.perm)
        idx = self.epoch[self.pos:self.pos + self.cfg.batch_size]
        self.pos += self.cfg.batch_size
        return idx

    def restore(self, state: dict, path: Path) -> None:
        """Continue from a checkpoint's state (load_checkpoint), refusing one that does not fit this run."""
        world, n = self.world, self.n
        if state["pixels"] != self.pixels:
            raise VscError(f"{path}: the run has {state['pixels']} pixels per image, the data {self.pixels}")
        check_tensors(self.model.state_dict(), state["model"], self.cfg, self.pixels)
        if len(state["perm"]) != n or state["pos"] > n or state["iteration"] > self.cfg.iterations:
            raise VscError(f"{path}: its batch order or iteration does not fit {n} training images "
                           f"and {self.cfg.iterations} iterations")
        try:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.data_gen.set_state(state["rng"]["data"])
            noise_states = [state["rng"]["noise"], *state["rng"].get("noise_ranks", [])]
            if "aug" in state["rng"]:
                aug_states = [state["rng"]["aug"], *state["rng"].get("aug_ranks", [])]
                if world.rank < len(aug_states):
                    self.aug_gen.set_state(aug_states[world.rank])
            if world.rank < len(noise_states):  # generator states are CPU byte tensors, even for cuda
                self.noise_gen.set_state(noise_states[world.rank])
            else:  # a rank the interrupted run did not have
                self.noise_gen.manual_seed(noise_seed(self.cfg.seed, world.rank) + state["iteration"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise VscError(f"{path}: optimiser or generator state does not fit this run "
                           f"({str(exc).splitlines()[0]})") from None
        self.perm, self.pos, self.iteration = state["perm"], state["pos"], state["iteration"]
        self.epoch = self._shard(self.perm)
        stored_world = int(state.get("world_size", 1))
        if stored_world != world.size:  # shards of another size: start a new epoch (the rest is exact)
            self.pos = n
            if world.main:
                print(f"note: the run was trained by {stored_world} process(es), it goes on with {world.size}; "
                      "it starts a new pass over the data", file=sys.stderr)
        self.seconds, self.last_good = float(state.get("seconds", 0.0)), self.iteration
        if "validation" in state:
            self.validation = {**self.validation, **state["validation"]}

    def save(self, path: Path, log, seconds: float) -> list[str]:
        """Write the checkpoint at self.iteration (a collective: every rank calls it, rank 0 writes); returns the
        ranks' parameter digests."""
        world = self.world
        window = log.window()
        noise = dist.all_gather(world, self.noise_gen.get_state(), self.device)
        aug = dist.all_gather(world, self.aug_gen.get_state(), self.device)
        digests = agree(self.model, world, self.device)
        if world.main:
            save_checkpoint(path, {
                "vsc_version": __version__, "config": self.cfg.to_dict(),
                "pixels": self.pixels, "iteration": self.iteration, "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "perm": self.perm, "pos": self.pos, "seconds": seconds,
                "rng": {"data": self.data_gen.get_state(), "noise": noise[0], "noise_ranks": noise[1:],
                        "aug": aug[0], "aug_ranks": aug[1:]},
                "validation": self.validation,
                "log_window": {"sums": window, "count": log.count},  # a partial log.csv row
                "world_size": world.size,
                # the dataset cache folder it was trained from: commands on the run find its data from anywhere
                **({"data_dir": self.data_dir} if self.data_dir else {}),
            })
        return digests
