"""Data-parallel training over the processes ``torchrun`` starts (gloo on CPU, NCCL on GPU).

Every process holds the whole router and the whole experience and makes the same choices (the
strategy's items, replay buffer, anchors and Fisher information, the seeded batches), so the
state outside the weights is the same everywhere without being sent. Each optimiser step splits
its batch over the processes; :class:`~torch.nn.parallel.DistributedDataParallel` averages the
gradients, so every process takes the same step. The loss of a shard is its share of the whole
batch's weighted mean, so the averaged gradient is the gradient of the one-process loss. Only
rank 0 writes files (:func:`is_writer`).

    torchrun --nproc-per-node 2 -m hubroute.cli train --out runs/ddp ...
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_writer() -> bool:
    """Whether this process writes results (rank 0, or the only process)."""
    return world()[0] == 0


def init_from_env() -> bool:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1);
    False when there is none. Gloo on CPU, NCCL when CUDA is there; each rank takes the GPU of its
    ``LOCAL_RANK``."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or not dist.is_available():
        return False
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


@contextlib.contextmanager
def from_env() -> Iterator[bool]:
    """:func:`init_from_env` for the duration of a command (the group is left at the end); yields
    whether there is a group."""
    joined = init_from_env()
    try:
        yield joined
    finally:
        if joined and dist.is_initialized():
            dist.destroy_process_group()


def shard(n: int) -> slice:
    """This rank's contiguous part of ``n`` batch items (sizes differ by at most one)."""
    rank, size = world()
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def all_sum(value: float) -> float:
    """``value`` summed over the ranks."""
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item())


class StepModule(nn.Module):
    """The trainable tensors of a router as one module whose forward is one shard's loss, for
    :class:`~torch.nn.parallel.DistributedDataParallel`."""

    def __init__(self, params: list[nn.Parameter], loss: Callable[..., torch.Tensor]):
        super().__init__()
        self.params = nn.ParameterList(params)
        self.loss = loss

    def forward(self, *args: Any) -> torch.Tensor:
        """The loss of one shard (see :class:`~hubroute.training.trainer.Trainer`)."""
        return self.loss(*args)


def wrap(params: list[nn.Parameter], loss: Callable[..., torch.Tensor]) -> nn.Module:
    """``loss`` over ``params`` in DistributedDataParallel (parameters left unused by a step,
    such as rows no example of a shard touches, get zero gradients)."""
    from torch.nn.parallel import DistributedDataParallel

    device = params[0].device
    return DistributedDataParallel(
        StepModule(params, loss),
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True,
        broadcast_buffers=False,
    )
