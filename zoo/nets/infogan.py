"""The InfoGAN-style autoencoder of 2-Stage VAE as FlexAE uses it (FlexAESR.py L186-286), for square images
whose side is a multiple of 4 (28, 32, 64, ...): two stride-2 convolutions and a 1024-unit dense layer; and
Lucic et al.'s InfoGAN generator, AE-OT's decoder (:class:`LucicInfoGANDecoder`).

Ported from TF1: ``padding='same'`` with k4 s2 is ``padding=1`` here; TF's batch norm (momentum 0.99, eps 1e-3)
is ``momentum=0.01, eps=1e-3``; weights are Glorot (uniform for the encoder and image critic, normal for the
decoder, as the authors set them) with zero biases.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genzoo.nets.common import glorot_init_, output_activation


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


class LucicInfoGANDecoder(nn.Module):
    """Lucic et al.'s InfoGAN generator ("Are GANs created equal?", 2018), which AE-OT's decoder copies
    (Lei et al. 2020 §6.4): z -> Dense(1024) BN ReLU -> Dense(128·(s/4)²) BN ReLU -> ConvT(64, k4 s2) BN ReLU
    -> ConvT(c, k4 s2) -> sigmoid (tanh for data in [-1, 1]).

    Its upsampling path is one layer shorter than :class:`InfoGANDecoder` (FlexAE's modified copy): no
    ConvT(128) and no final k3 convolution. The dense layer keeps the side / 4 grid (7x7 at 28 px, 8x8 at 32,
    16x16 at 64), as compare_gan's code does. Weights are N(0, 0.02) with zero biases and batch norm uses decay
    0.999, eps 1e-3 (compare_gan's ``ops``). ``negative_slope`` 0 gives the paper's ReLU; compare_gan's code
    uses a leaky ReLU with slope 0.2."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...],
                 value_range: tuple[float, float] | None = (0.0, 1.0), width: int = 64, hidden: int = 1024,
                 negative_slope: float = 0.0) -> None:
        super().__init__()
        channels, base = infogan_layout(data_shape)
        if negative_slope < 0:
            raise ValueError(f"negative_slope must be >= 0 (0: ReLU), got {negative_slope}")
        self.shape = (2 * width, base, base)

        def norm(features: int, dims: int) -> nn.Module:
            cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
            return cls(features, momentum=0.001, eps=1e-3)  # TF decay 0.999

        def act() -> nn.Module:
            return nn.LeakyReLU(negative_slope) if negative_slope else nn.ReLU()

        self.dense = nn.Sequential(
            nn.Linear(latent_dim, hidden), norm(hidden, 1), act(),
            nn.Linear(hidden, math.prod(self.shape)), norm(math.prod(self.shape), 1), act())
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), norm(width, 2), act(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1))
        self.activation = output_activation(value_range)
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.ConvTranspose2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.activation(self.conv(self.dense(z).view(len(z), *self.shape)))


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
