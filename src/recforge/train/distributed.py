"""Data-parallel training under ``torchrun``: process-group helpers for the Trainer.

recforge uses PyTorch's own engine: ``torch.distributed`` with ``DistributedDataParallel`` (DDP),
gloo on CPU and NCCL on CUDA, started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``). Nothing here is home-made communication;
these helpers only wire it to the Trainer's in-memory tensors:

* :func:`distributed_session` initialises the process group from the torchrun environment and
  tears it down; the Trainer reads the :class:`DistInfo` from
  :func:`recforge.train.checkpoint.training_context`.
* :func:`shard_indices` is ``DistributedSampler``'s rule applied to index tensors: every rank
  draws the same permutation from a generator seeded with ``seed + epoch``, pads it to a multiple
  of the world size by repeating its first indices (``drop_last=False``), and takes every
  ``world_size``-th index starting at its rank. Every rank then has exactly
  ``ceil(n / world_size)`` rows per epoch, so all ranks run the same number of steps (DDP needs
  that) and at most ``world_size - 1`` rows are seen twice per epoch.
* :func:`broadcast_flags` lets rank 0 decide (early stop, checkpoint due) for everyone.

Batch size: ``config.batch_size`` stays the *global* batch. Each rank takes
``ceil(batch_size / world_size)`` rows per step; DDP averages the ranks' gradients, and each rank's
loss is a mean over its rows, so one step follows the gradient of the mean over the global batch:
the same optimisation problem, step count and learning-rate schedule as a single process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from recforge.errors import ConfigError

#: Environment variables torchrun sets for every worker.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the process group.

    Attributes:
        rank: global rank (0 writes runs and checkpoints).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        backend: ``"gloo"`` or ``"nccl"``.
        device: where this rank trains.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes files."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Are the torchrun environment variables present?"""
    return all(k in os.environ for k in TORCHRUN_ENV)


def require_torchrun() -> None:
    """Raise a ConfigError naming the launch command unless torchrun's variables are set."""
    if not launched_by_torchrun():
        missing = [k for k in TORCHRUN_ENV if k not in os.environ]
        raise ConfigError(
            f"--distributed needs torchrun's environment ({', '.join(missing)} unset); start "
            "with: torchrun --nproc_per_node=N -m recforge.cli train ... --distributed"
        )


def init_from_env(device: str = "auto", *, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by the torchrun environment.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``; on CUDA each
            rank uses GPU ``LOCAL_RANK``.
        timeout_s: how long collectives wait for a missing rank before failing.

    Raises:
        ConfigError: not started by torchrun, or CUDA requested without GPUs.
    """
    require_torchrun()
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ["LOCAL_RANK"])
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {device!r} requested but CUDA is not available")
        torch.cuda.set_device(local)
        dev, backend = torch.device("cuda", local), "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)
        )
    return DistInfo(rank, world, local, backend, dev)


@contextmanager
def distributed_session(device: str = "auto") -> Iterator[DistInfo]:
    """:func:`init_from_env` for the block; the process group is destroyed afterwards."""
    info = init_from_env(device)
    try:
        yield info
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def shard_size(n: int, world_size: int) -> int:
    """Rows each rank gets per epoch: ``ceil(n / world_size)``."""
    return math.ceil(n / world_size)


def shard_indices(n: int, seed: int, epoch: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's row indices for ``epoch`` (``DistributedSampler`` with shuffle, no drop_last).

    Returns:
        ``(ceil(n / world_size),)`` int64 indices into the ``n`` training rows; the union over
        ranks is every row, plus the first ``padding`` rows of the permutation once more.
    """
    g = torch.Generator().manual_seed(seed + epoch)
    perm = torch.randperm(n, generator=g)
    total = shard_size(n, world_size) * world_size
    if total > n:  # pad by wrapping around, as DistributedSampler does
        reps = math.ceil((total - n) / n)
        perm = torch.cat([perm, perm.repeat(reps)[: total - n]])
    return perm[rank:total:world_size]


def broadcast_flags(flags: list[int], info: DistInfo) -> list[int]:
    """Rank 0's ``flags`` on every rank (a tiny int64 broadcast)."""
    t = torch.tensor(flags, dtype=torch.int64, device=info.device)
    dist.broadcast(t, src=0)
    return [int(v) for v in t.tolist()]


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``values`` over all ranks (in place; returned for chaining)."""
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of rank ``rank``'s dropout / negative-sampling streams in ``epoch``.

    Reseeding per epoch (instead of carrying one stream) keeps ranks' draws independent and makes
    an epoch-boundary checkpoint resumable without every rank's RNG state.
    """
    return (seed * 1_000_003 + epoch * 10_007 + rank) % (2**63 - 1)


@dataclass(frozen=True)
class DataParallel:
    """How this process takes part in a fit: alone, or as one rank of a torchrun group.

    The Trainer asks it for everything that differs between the two: the rows and batch size of
    an epoch, the epoch's row order (with per-rank reseeding), the epoch's mean loss and the
    decisions rank 0 makes for everyone.

    Attributes:
        info: this rank's :class:`DistInfo`, or None for a single process.
        seed: the fit's seed (shard permutations derive from it).
    """

    info: DistInfo | None
    seed: int

    @property
    def writes(self) -> bool:
        """Whether this process writes checkpoints and shows progress (rank 0 or alone)."""
        return self.info is None or self.info.is_main

    def rows_per_epoch(self, n: int) -> int:
        """Rows this process trains on per epoch: all ``n``, or its shard."""
        return n if self.info is None else shard_size(n, self.info.world_size)

    def local_batch(self, batch_size: int) -> int:
        """This process's share of the global ``batch_size``."""
        return batch_size if self.info is None else math.ceil(batch_size / self.info.world_size)

    def epoch_order(
        self,
        n: int,
        epoch: int,
        generator: torch.Generator,
        device: torch.device,
        reseed: Callable[[int], None],
    ) -> torch.Tensor:
        """This epoch's row indices on ``device``.

        Alone: one permutation of all rows from ``generator``. Under torchrun: this rank's shard
        (:func:`shard_indices`); then torch's global RNG (dropout) and, through ``reseed``, the
        objective's sampler are reseeded per (epoch, rank), so that ranks draw independently.
        """
        if self.info is None:
            return torch.randperm(n, generator=generator).to(device)
        perm = shard_indices(n, self.seed, epoch, self.info.rank, self.info.world_size)
        perm = perm.to(device)
        rank_rng = rank_seed(self.seed, epoch, self.info.rank)
        torch.manual_seed(rank_rng)
        reseed(rank_rng)
        return perm

    def mean_loss(self, total: torch.Tensor, rows: int) -> float:
        """Mean training loss of the epoch from this process's ``total`` over its ``rows``."""
        if self.info is None:
            return float(total) / rows
        sums = all_reduce_sum(torch.stack([total, total.new_tensor(float(rows))]))
        return float(sums[0] / sums[1])

    def agree(self, *flags: bool) -> list[bool]:
        """The flags as decided by rank 0 (every rank validated the same data); alone: as given."""
        if self.info is None:
            return list(flags)
        return [bool(v) for v in broadcast_flags([int(f) for f in flags], self.info)]
