"""Small torch helpers shared by models, networks and callbacks (no Lightning)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside (batch-norm running statistics, no dropout), its mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Autocast off: forward-mode tangents and input gradients are small differences of nearby values that
    bf16's 8-bit (and fp16's 11-bit) mantissa would swamp, so they are computed in fp32."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def seeded(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator of its own, seeded: draws from it neither depend on nor move the global RNG."""
    return torch.Generator(device=device).manual_seed(int(seed))


@contextlib.contextmanager
def isolated_rng(device: torch.device) -> Iterator[None]:
    """Random draws inside do not consume the global RNG streams (CPU and ``device``), so a run's training
    randomness does not depend on which callbacks are attached."""
    devices = [] if device.type == "cpu" else [device]
    with torch.random.fork_rng(devices=devices, device_type=None if device.type == "cpu" else device.type):
        yield
