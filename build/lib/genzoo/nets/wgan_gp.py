"""The official WGAN-GP networks (Gulrajani et al. 2017; igul222/improved_wgan_training, TensorFlow).

- ``gan_mnist.py`` (28 px): ``WGANGPMnistGenerator`` / ``WGANGPMnistCritic``. 5x5 kernels, a linear stem and a
  linear head, the generator's 8x8 map cropped to 7x7, and no batch norm anywhere in ``wgan-gp`` mode.
- ``gan_cifar.py`` (32 px): ``WGANGPCifarGenerator`` / ``WGANGPCifarCritic``. The same DCGAN family at 32 px
  with batch norm in the generator (on the linear stem too) and none in the critic.
- ``gan_cifar_resnet.py`` (32 px, the paper's headline CIFAR-10 model when unconditional):
  ``WGANGPResNetGenerator`` / ``WGANGPResNetCritic``. Pre-activation residual blocks with 3x3 convolutions,
  nearest x2 upsampling before a convolution, 2x2 mean pooling after (or, in shortcuts, before) one, and a
  global mean pool before the critic's linear head. Batch norm in the generator, no norm in the critic.

Weights start as tflib's: uniform with std sqrt(4 / (fan_in + fan_out)) ("He") for convolutions and
sqrt(2 / (fan_in + fan_out)) (Glorot) for linear layers, 1x1 shortcuts and the ResNet's output convolution, where
a stride divides fan_out (convolution) or fan_in (transposed convolution) by 4; biases start at zero.
TF's "SAME" padding of a stride-2 5x5 convolution pads one pixel more at the bottom/right than the top/left;
PyTorch's symmetric padding samples the same grid shifted by one pixel (same shapes and parameters).
The generators' last activation follows the data's value range (tanh for [-1, 1], a sigmoid for [0, 1] as
``gan_mnist.py``, whose data are in [0, 1]).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genzoo.nets.common import output_activation


def _image_channels(data_shape: tuple[int, ...], size: int, net: str) -> int:
    """The channel count of (C, size, size) images, or an error naming the net and the shape it needs."""
    shape = tuple(data_shape)
    if len(shape) != 3 or shape[1:] != (size, size) or shape[0] < 1:
        raise ValueError(f"{net} is the official WGAN-GP architecture for {size}x{size} images and needs "
                         f"data_shape (C, {size}, {size}), got {shape}")
    return shape[0]


def _check_sizes(**sizes: int) -> None:
    bad = {name: value for name, value in sizes.items() if value < 1}
    if bad:
        raise ValueError(f"these sizes must be >= 1: {bad}")


def _tflib_uniform_(layer: nn.Conv2d | nn.ConvTranspose2d | nn.Linear, fan_in: float, fan_out: float,
                    he: bool) -> None:
    std = math.sqrt((4.0 if he else 2.0) / (fan_in + fan_out))
    nn.init.uniform_(layer.weight, -std * math.sqrt(3.0), std * math.sqrt(3.0))
    nn.init.zeros_(layer.bias)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, he: bool = True) -> nn.Conv2d:
    layer = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2)
    _tflib_uniform_(layer, c_in * kernel ** 2, c_out * kernel ** 2 / stride ** 2, he)
    return layer


def _deconv(c_in: int, c_out: int, kernel: int = 5) -> nn.ConvTranspose2d:
    """tflib's Deconv2D: stride 2, output exactly twice the input's size."""
    layer = nn.ConvTranspose2d(c_in, c_out, kernel, 2, padding=kernel // 2, output_padding=1)
    _tflib_uniform_(layer, c_in * kernel ** 2 / 4, c_out * kernel ** 2, he=True)
    return layer


def _linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    _tflib_uniform_(layer, n_in, n_out, he=False)
    return layer


class _TopLeftCrop(nn.Module):
    """``gan_mnist.py``'s ``output[:, :, :7, :7]``: 8x8 -> 7x7, so that two doublings reach 28."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : self.size, : self.size]


class _DCGANCritic(nn.Module):
    """Three stride-2 5x5 convolutions (width, 2·width, 4·width) with LeakyReLU 0.2 down to 4x4, then a linear
    score: the critic of both ``gan_mnist.py`` (28 -> 14 -> 7 -> 4) and ``gan_cifar.py`` (32 -> 16 -> 8 -> 4)."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        _check_sizes(width=width)
        self.net = nn.Sequential(
            _conv(channels, width, 5, 2), nn.LeakyReLU(0.2),
            _conv(width, 2 * width, 5, 2), nn.LeakyReLU(0.2),
            _conv(2 * width, 4 * width, 5, 2), nn.LeakyReLU(0.2),
            nn.Flatten(), _linear(4 * 4 * 4 * width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class _DCGANGenerator(nn.Module):
    """Linear(z -> 4·4·4·width) → 5x5 deconvs to 2·width and width → deconv to C → output activation, ReLUs
    between: the generator of both ``gan_mnist.py`` (``crop`` 7: 8x8 cropped to 7x7, no batch norm) and
    ``gan_cifar.py`` (batch norm after the stem and each hidden deconv)."""

    def __init__(self, latent_dim: int, channels: int, value_range: tuple[float, float], width: int,
                 batch_norm: bool, crop: int | None = None) -> None:
        super().__init__()
        _check_sizes(latent_dim=latent_dim, width=width)

        def norm(c: int, flat: bool = False) -> list[nn.Module]:
            # the stem's batch norm is per feature of the flat 4·4·4·width vector (tflib's axes [0])
            return [(nn.BatchNorm1d if flat else nn.BatchNorm2d)(c)] if batch_norm else []

        self.net = nn.Sequential(
            _linear(latent_dim, 4 * 4 * 4 * width), *norm(4 * 4 * 4 * width, flat=True), nn.ReLU(),
            nn.Unflatten(1, (4 * width, 4, 4)),
            _deconv(4 * width, 2 * width), *norm(2 * width), nn.ReLU(), *([_TopLeftCrop(crop)] if crop else []),
            _deconv(2 * width, width), *norm(width), nn.ReLU(),
            _deconv(width, channels), output_activation(value_range))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class WGANGPMnistGenerator(_DCGANGenerator):
    """``gan_mnist.py``: Linear(z -> 4·4·4·width) → ReLU → 5x5 deconv to 2·width (8x8) → ReLU → crop to 7x7 →
    deconv to width (14x14) → ReLU → deconv to C (28x28) → output activation. No batch norm (``wgan-gp`` mode)."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], value_range: tuple[float, float] = (-1.0, 1.0),
                 width: int = 64) -> None:
        super().__init__(latent_dim, _image_channels(data_shape, 28, type(self).__name__), value_range, width,
                         batch_norm=False, crop=7)


class WGANGPMnistCritic(_DCGANCritic):
    """``gan_mnist.py``'s critic (no batch norm, as in its ``wgan-gp`` mode), DIM = ``width`` = 64."""

    def __init__(self, data_shape: tuple[int, ...], width: int = 64) -> None:
        super().__init__(_image_channels(data_shape, 28, type(self).__name__), width)


class WGANGPCifarGenerator(_DCGANGenerator):
    """``gan_cifar.py``: Linear(z -> 4·4·4·width) → BN → ReLU → 5x5 deconvs to 2·width (8x8), width (16x16), each
    with BN and ReLU → deconv to C (32x32) → output activation. DIM = ``width`` is 128 in the script, whose
    comment says that overfits and advises 64."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], value_range: tuple[float, float] = (-1.0, 1.0),
                 width: int = 128) -> None:
        super().__init__(latent_dim, _image_channels(data_shape, 32, type(self).__name__), value_range, width,
                         batch_norm=True)


class WGANGPCifarCritic(_DCGANCritic):
    """``gan_cifar.py``'s critic (no norm in ``wgan-gp`` mode), DIM = ``width`` (128 in the script)."""

    def __init__(self, data_shape: tuple[int, ...], width: int = 128) -> None:
        super().__init__(_image_channels(data_shape, 32, type(self).__name__), width)


class _ResidualBlock(nn.Module):
    """``gan_cifar_resnet.py``'s pre-activation block: [norm → ReLU → 3x3 conv] twice, plus a shortcut that is the
    identity when neither channels nor size change, else a 1x1 convolution resampled the same way. ``up``
    upsamples (nearest x2) before the first convolution; ``down`` mean-pools after the second."""

    def __init__(self, c_in: int, c_out: int, resample: str | None, batch_norm: bool) -> None:
        super().__init__()
        if resample == "up":
            conv1 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv(c_in, c_out, 3))
            conv2 = _conv(c_out, c_out, 3)
            shortcut = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv(c_in, c_out, 1, he=False))
            mid = c_out
        elif resample == "down":
            conv1, conv2 = _conv(c_in, c_in, 3), nn.Sequential(_conv(c_in, c_out, 3), nn.AvgPool2d(2))
            shortcut = nn.Sequential(_conv(c_in, c_out, 1, he=False), nn.AvgPool2d(2))
            mid = c_in
        elif resample is None:
            conv1, conv2 = _conv(c_in, c_out, 3), _conv(c_out, c_out, 3)
            shortcut = nn.Identity() if c_in == c_out else _conv(c_in, c_out, 1, he=False)
            mid = c_out
        else:
            raise ValueError(f"resample must be 'up', 'down' or None, got {resample!r}")

        def norm(channels: int) -> nn.Module:
            return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()

        # not in-place: the block's input also feeds the shortcut
        self.residual = nn.Sequential(norm(c_in), nn.ReLU(), conv1, norm(mid), nn.ReLU(), conv2)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.residual(x)


class _FirstCriticBlock(nn.Module):
    """``OptimizedResBlockDisc1``: 3x3 conv → ReLU → 3x3 conv → mean pool, plus mean pool → 1x1 conv; no
    activation before the first convolution, since it sees the image."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(_conv(channels, width, 3), nn.ReLU(), _conv(width, width, 3), nn.AvgPool2d(2))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), _conv(channels, width, 1, he=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.residual(x)


class WGANGPResNetGenerator(nn.Module):
    """``gan_cifar_resnet.py`` (unconditional): Linear(z -> 4·4·width) → 3 up-blocks (4 -> 8 -> 16 -> 32, batch
    norm) → BN → ReLU → 3x3 conv to C → output activation. DIM_G = ``width`` = 128."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], value_range: tuple[float, float] = (-1.0, 1.0),
                 width: int = 128) -> None:
        super().__init__()
        channels = _image_channels(data_shape, 32, type(self).__name__)
        _check_sizes(latent_dim=latent_dim, width=width)
        self.net = nn.Sequential(
            _linear(latent_dim, 4 * 4 * width), nn.Unflatten(1, (width, 4, 4)),
            *(_ResidualBlock(width, width, "up", batch_norm=True) for _ in range(3)),
            nn.BatchNorm2d(width), nn.ReLU(), _conv(width, channels, 3, he=False), output_activation(value_range))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class WGANGPResNetCritic(nn.Module):
    """``gan_cifar_resnet.py``'s critic (``NORMALIZATION_D = False``): first block (32 -> 16), a down-block
    (16 -> 8), two blocks at 8x8, ReLU, global mean pool, Linear(width -> 1). DIM_D = ``width`` = 128."""

    def __init__(self, data_shape: tuple[int, ...], width: int = 128) -> None:
        super().__init__()
        channels = _image_channels(data_shape, 32, type(self).__name__)
        _check_sizes(width=width)
        self.blocks = nn.Sequential(
            _FirstCriticBlock(channels, width),
            _ResidualBlock(width, width, "down", batch_norm=False),
            _ResidualBlock(width, width, None, batch_norm=False),
            _ResidualBlock(width, width, None, batch_norm=False),
            nn.ReLU())
        self.head = _linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean(dim=(2, 3))).flatten()
