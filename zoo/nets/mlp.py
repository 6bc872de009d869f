"""MLPs for low-dimensional data (the 2-D toys): WGAN-GP's toy nets are 3 hidden layers of 512 ReLUs."""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.nets.common import output_activation


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], value_range: tuple[float, float] | None = None,
                 width: int = 512, depth: int = 3) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"MLPGenerator needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        self.data_shape = tuple(data_shape)
        self.net = _mlp([latent_dim] + [width] * depth + [math.prod(self.data_shape)])
        # toys are unbounded: only image-like (0,1)/(-1,1) ranges get a squashing output
        self.out = output_activation(value_range) if len(self.data_shape) > 1 else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(z)).view(len(z), *self.data_shape)


class MLPCritic(nn.Module):
    def __init__(self, data_shape: tuple[int, ...], width: int = 512, depth: int = 3) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"MLPCritic needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        self.net = _mlp([math.prod(data_shape)] + [width] * depth + [1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)
