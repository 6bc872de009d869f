"""MLPs for low-dimensional data (the 2-D toys): WGAN-GP's toy nets are 3 hidden layers of 512 ReLUs."""

from __future__ import annotations

import math

import torch
from torch import nn

from genzoo.nets.common import INITS, glorot_init_, output_activation

ACTIVATIONS = ("relu", "leaky_relu")
# ``normal_0.01``: every linear layer's weights N(0, 0.01²) and zero biases, as WAE's TF code (ops.linear with
# init_std 0.0099999, init_bias 0) initialises its latent adversary
MLP_INITS = (*INITS, "normal_0.01")


def _activation(name: str) -> nn.Module:
    """``leaky_relu`` has slope 0.2 (FlatGAN's nets)."""
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def _mlp(sizes: list[int], init: str = "default", activation: str = "relu") -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(_activation(activation))
    net = nn.Sequential(*layers)
    if init not in MLP_INITS:
        raise ValueError(f"init must be one of {MLP_INITS}, got {init!r}")
    if init == "normal_0.01":
        for layer in net:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
    else:
        glorot_init_(net, init)
    return net


def _check_size(name: str, width: int, depth: int) -> None:
    if width < 1 or depth < 1:
        raise ValueError(f"{name} needs width >= 1 and depth >= 1, got width={width}, depth={depth}")


class MLPGenerator(nn.Module):
    """``circle_lift`` feeds (cos z_1, sin z_1, z_2, …) instead of z, so z_1 is an angle: FlatGAN's 2-D toy
    generator (the authors' ``z1_circle_topology``)."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], value_range: tuple[float, float] | None = None,
                 width: int = 512, depth: int = 3, init: str = "default", activation: str = "relu",
                 circle_lift: bool = False) -> None:
        super().__init__()
        _check_size("MLPGenerator", width, depth)
        self.data_shape = tuple(data_shape)
        self.circle_lift = circle_lift
        inputs = latent_dim + 1 if circle_lift else latent_dim
        self.net = _mlp([inputs] + [width] * depth + [math.prod(self.data_shape)], init, activation)
        # toys are unbounded: only image-like (0,1)/(-1,1) ranges get a squashing output
        self.out = output_activation(value_range) if len(self.data_shape) > 1 else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.circle_lift:
            z = torch.cat([z[:, :1].cos(), z[:, :1].sin(), z[:, 1:]], dim=1)
        return self.out(self.net(z)).view(len(z), *self.data_shape)


class MLPCritic(nn.Module):
    """``init``: ``default`` (PyTorch's), ``glorot_normal`` or ``glorot_uniform`` (TF's, e.g. FlexAE's nets), or
    ``normal_0.01`` (WAE's latent adversary)."""

    def __init__(self, data_shape: tuple[int, ...], width: int = 512, depth: int = 3, init: str = "default",
                 activation: str = "relu") -> None:
        super().__init__()
        _check_size("MLPCritic", width, depth)
        self.net = _mlp([math.prod(data_shape)] + [width] * depth + [1], init, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


class MLPOneForm(nn.Module):
    """A 1-form (covector field) x -> ω(x) in R^m, m = prod(form_shape): FlatGAN's 2-D toy 1-form net
    (2 -> 50 -> 50 -> 2, LeakyReLU 0.2)."""

    def __init__(self, data_shape: tuple[int, ...], form_shape: tuple[int, ...], width: int = 50, depth: int = 2,
                 activation: str = "leaky_relu") -> None:
        super().__init__()
        _check_size("MLPOneForm", width, depth)
        self.net = _mlp([math.prod(data_shape)] + [width] * depth + [math.prod(form_shape)], activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class MLPEncoder(nn.Module):
    """Vector data -> latent codes (linear output), for autoencoders on non-image data."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, width: int = 512, depth: int = 3,
                 init: str = "default") -> None:
        super().__init__()
        _check_size("MLPEncoder", width, depth)
        self.net = _mlp([math.prod(data_shape)] + [width] * depth + [latent_dim], init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))
