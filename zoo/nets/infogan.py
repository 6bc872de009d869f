"""The InfoGAN-style autoencoder of 2-Stage VAE as FlexAE uses it (FlexAESR.py L186-286), for square images
whose side is a multiple of 4 (28, 32, 64, ...): two stride-2 convolutions and a 1024-unit dense layer.

Ported from TF1: ``padding='same'`` with k4 s2 is ``padding=1`` here; TF's batch norm (momentum 0.99, eps 1e-3)
is ``momentum=0.01, eps=1e-3``; weights are Glorot (uniform for the encoder and image critic, normal for the
decoder, as the authors set them) with zero biases.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.nets.common import glorot_init_, output_activation


def infogan_layout(data_shape: tuple[int, ...]) -> tuple[int, int]:
    """(channels, side / 4) for an image shape, or a clear error."""
    if len(data_shape) != 3 or data_shape[1] != data_shape[2] or data_shape[1] % 4:
        raise ValueError(f"the InfoGAN-style nets need square images whose side is a multiple of 4 (28, 32, 64), "
                         f"got data_shape={tuple(data_shape)}")
    return data_shape[0], data_shape[1] // 4


def _batch_norm(features: int, dims: int) -> nn.Module:
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(features, momentum=0.01, eps=1e-3)  # TF1 defaults


class InfoGANEncoder(nn.Module):
    """x -> Conv(64, k4 s2) ReLU -> Conv(128, k4 s2) BN ReLU -> Dense(1024) BN ReLU -> Dense(m)."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, width: int = 64, hidden: int = 1024) -> None:
        super().__init__()
        channels, base = infogan_layout(data_shape)
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), _batch_norm(2 * width, 2), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * width * base * base, hidden), _batch_norm(hidden, 1), nn.ReLU(),
            nn.Linear(hidden, latent_dim))
        glorot_init_(self.net, "glorot_uniform")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class InfoGANDecoder(nn.Module):
    """z -> Dense(1024) BN ReLU -> Dense(128·(s/4)²) BN ReLU -> ConvT(128) BN ReLU -> ConvT(64) BN ReLU
    -> Conv(c, k3) -> sigmoid (tanh for data in [-1, 1])."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...],
                 value_range: tuple[float, float] | None = (0.0, 1.0), width: int = 64, hidden: int = 1024) -> None:
        super().__init__()
        channels, base = infogan_layout(data_shape)
        self.shape = (2 * width, base, base)
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, hidden), _batch_norm(hidden, 1), nn.ReLU(),
            nn.Linear(hidden, math.prod(self.shape)), _batch_norm(math.prod(self.shape), 1), nn.ReLU())
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, 2 * width, 4, 2, 1), _batch_norm(2 * width, 2), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), _batch_norm(width, 2), nn.ReLU())
        self.out = nn.Conv2d(width, channels, 3, 1, 1)
        self.activation = output_activation(value_range)
        glorot_init_(self, "glorot_normal")
        glorot_init_(self.out, "glorot_uniform")  # the final conv keeps TF's default

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.activation(self.out(self.conv(self.dense(z).view(len(z), *self.shape))))


class InfoGANCritic(nn.Module):
    """FlexAE-SR's image critic C_ζ: the encoder without batch norm (a WGAN-GP critic must not couple samples),
    ending in one score."""

    def __init__(self, data_shape: tuple[int, ...], width: int = 64, hidden: int = 1024) -> None:
        super().__init__()
        channels, base = infogan_layout(data_shape)
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * width * base * base, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        glorot_init_(self.net, "glorot_uniform")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)
