"""MLPs for low-dimensional data (the 2-D toys): WGAN-GP's toy nets are 3 hidden layers of 512 ReLUs."""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.nets.common import glorot_init_, output_activation


def _mlp(sizes: list[int], init: str = "default") -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    net = nn.Sequential(*layers)
    glorot_init_(net, init)
    return net


def _check_size(name: str, width: int, depth: int) -> None:
    if width < 1 or depth < 1:
        raise ValueError(f"{name} needs width >= 1 and depth >= 1, got width={width}, depth={depth}")


class MLPGenerator(nn.Module):
    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], value_range: tuple[float, float] | None = None,
                 width: int = 512, depth: int = 3, init: str = "default") -> None:
        super().__init__()
        _check_size("MLPGenerator", width, depth)
        self.data_shape = tuple(data_shape)
        self.net = _mlp([latent_dim] + [width] * depth + [math.prod(self.data_shape)], init)
        # toys are unbounded: only image-like (0,1)/(-1,1) ranges get a squashing output
        self.out = output_activation(value_range) if len(self.data_shape) > 1 else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(z)).view(len(z), *self.data_shape)


class MLPCritic(nn.Module):
    """``init``: ``default`` (PyTorch's), ``glorot_normal`` or ``glorot_uniform`` (TF's, e.g. FlexAE's nets)."""

    def __init__(self, data_shape: tuple[int, ...], width: int = 512, depth: int = 3, init: str = "default") -> None:
        super().__init__()
        _check_size("MLPCritic", width, depth)
        self.net = _mlp([math.prod(data_shape)] + [width] * depth + [1], init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


class MLPEncoder(nn.Module):
    """Vector data -> latent codes (linear output), for autoencoders on non-image data."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, width: int = 512, depth: int = 3,
                 init: str = "default") -> None:
        super().__init__()
        _check_size("MLPEncoder", width, depth)
        self.net = _mlp([math.prod(data_shape)] + [width] * depth + [latent_dim], init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))
