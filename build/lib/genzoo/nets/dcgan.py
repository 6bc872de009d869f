"""DCGAN-style generator and critic for square images of 4·2^k or 7·2^k pixels (8, 16, 28, 32, 64, 128, ...).

The generator starts from a 4x4 (or 7x7) map and doubles with stride-2 transposed convolutions; the critic
mirrors it with stride-2 convolutions, then a final convolution over the whole 4x4 (7x7) map gives one score.
Channel widths double toward the low resolution, as in Radford et al. and the official WGAN code.
"""

from __future__ import annotations

import torch
from torch import nn

from genzoo.nets.common import dcgan_init_, norm_layer, output_activation


def dcgan_layout(data_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, base size 4 or 7, number of x2 stages) for an image shape, or a clear error."""
    if len(data_shape) != 3:
        raise ValueError(f"DCGAN nets need images shaped (C, H, W), got data_shape={tuple(data_shape)}")
    channels, height, width = data_shape
    if height != width:
        raise ValueError(f"DCGAN nets need square images, got {height}x{width}")
    for base in (4, 7):
        stages, size = 0, height
        while size > base and size % 2 == 0:
            size //= 2
            stages += 1
        if size == base and stages >= 1:
            return channels, base, stages
    raise ValueError(
        f"DCGAN nets support image sizes 4·2^k or 7·2^k with k >= 1 (8, 14, 16, 28, 32, 64, 128, ...), got {height}")


class DCGANGenerator(nn.Module):
    """``bias=False`` removes every convolution bias, as the official WGAN code's DCGAN (``bias=False``
    throughout); by default only the convolutions that a norm layer follows go without one."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], value_range: tuple[float, float] = (-1.0, 1.0),
                 width: int = 64, norm: str = "batch", bias: bool = True) -> None:
        super().__init__()
        channels, base, stages = dcgan_layout(data_shape)
        if latent_dim < 1 or width < 1:
            raise ValueError(f"latent_dim and width must be >= 1, got {latent_dim}, {width}")
        widths = [width * 2 ** (stages - 1 - i) for i in range(stages)]  # e.g. 512, 256, 128, 64 at 64 px
        inner_bias = bias and norm == "none"  # a norm right after makes a bias redundant
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], base, 1, 0, bias=inner_bias),
            norm_layer(norm, widths[0]), nn.ReLU(True)]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=inner_bias), norm_layer(norm, c_out),
                       nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=bias), output_activation(value_range)]
        self.net = nn.Sequential(*layers)
        self.latent_dim = latent_dim
        dcgan_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(len(z), self.latent_dim, 1, 1))


class DCGANCritic(nn.Module):
    """``norm`` applies to every layer but the first (as in DCGAN); use ``none`` or ``layer`` with a gradient
    penalty, since batch norm couples the samples the penalty treats independently. ``bias=False`` removes
    every convolution bias (the official WGAN code's DCGAN), as in :class:`DCGANGenerator`."""

    def __init__(self, data_shape: tuple[int, ...], width: int = 64, norm: str = "none",
                 negative_slope: float = 0.2, bias: bool = True) -> None:
        super().__init__()
        channels, base, stages = dcgan_layout(data_shape)
        widths = [width * 2 ** i for i in range(stages)]  # e.g. 64, 128, 256, 512 at 64 px
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=bias),
                                   nn.LeakyReLU(negative_slope, True)]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=bias and norm == "none"), norm_layer(norm, c_out),
                       nn.LeakyReLU(negative_slope, True)]
        layers.append(nn.Conv2d(widths[-1], 1, base, 1, 0, bias=bias))
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()
