"""The collective operations a sharded evaluation needs, and the gather that puts shards back in order.

:class:`Collective` is the single-process case; a distributed runner (the Lightning callback's
``TrainerCollective``) implements the same three methods over its process group."""

from __future__ import annotations

import math
from typing import Any

import torch


class Collective:
    """The three collective operations evaluation needs; the base class is the single-process case."""

    rank, world_size = 0, 1

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(world_size, *tensor.shape)``: every rank's tensor (all of equal shape)."""
        return tensor.unsqueeze(0)

    def broadcast(self, obj: Any) -> Any:
        """Rank zero's ``obj`` on every rank."""
        return obj

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Give every rank rank zero's buffers (batch-norm running statistics drift apart under DDP, which
        only syncs them at the next forward) so that all shards come from the network a checkpoint holds."""


def gather_in_order(local: torch.Tensor, total: int, collective: Collective) -> torch.Tensor:
    """Reassemble rows that rank r computed for positions ``r::world_size`` into their original order."""
    world = collective.world_size
    padded = local.new_zeros((math.ceil(total / world), *local.shape[1:]))
    padded[: len(local)] = local
    gathered = collective.all_gather(padded)
    out = local.new_empty((total, *local.shape[1:]))
    for rank in range(world):
        out[rank::world] = gathered[rank, : len(range(rank, total, world))]
    return out
