"""OC-GAN's generator and discriminator (Durall et al. 2019, authors' ``dcgan.py``), at 32, 64 or 128 px.

``conv="octave"`` with ``alpha``, the low-frequency share of every hidden layer (0.5 the paper's octave nets,
0.99 its "LOW" variant), or ``conv="standard"``: the same architecture with plain convolutions (the
baseline). At 128 px with ``width=32`` the layout is the authors':

    G: z → Linear → 512x4x4 (BN, ReLU) → 4 upsampling blocks 256, 128, 64, 32 (octave, BN_H/BN_L, ReLU, β)
       → last upsampling octave conv to C channels (α_out = 0) → tanh
    D: 5 stride-2 octave blocks 32 ... 512 (BN_H/BN_L, LeakyReLU 0.2, β) → stride-2 octave conv to 1
       channel (α_out = 0) → spatial mean → one score per sample

Upsampling is the authors' nearest ×2 + 3x3 octave conv (``upsample="nearest"``) or a true transposed octave
convolution (``"transposed"``, 4x4 stride 2, mirroring DCGAN). Downsampling uses the official stride-2 octave
semantics (see :mod:`genzoo.nets.octave`). The authors' code meant DCGAN's N(0, 0.02) initialisation but a bug
left PyTorch's default; ``dcgan_init=True`` applies the intended one.

The generator's ``eval_beta`` (β_H, β_L) is the β it samples with in eval mode, whatever the training β the
schedule has set: the authors write every epoch's FID images with β_H = 0.7, β_L = 0.3 (``G(z, 0.5)``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genzoo.nets.common import dcgan_init_, output_activation
from genzoo.nets.octave import OctaveConv2d, OctaveConvTranspose2d, OctaveNormAct, OctaveUpsample, checked_beta

SIZES = (32, 64, 128)


def ocgan_layout(data_shape: tuple[int, ...]) -> tuple[int, int]:
    """(channels, number of resolution doublings from 4x4) for a square image of 32, 64 or 128 px."""
    if len(data_shape) != 3 or data_shape[1] != data_shape[2] or data_shape[1] not in SIZES:
        raise ValueError(f"OC-GAN networks take square images of {SIZES} px (C, H, W), got {tuple(data_shape)}; "
                         f"resize the data (e.g. --data.init_args.image_size 32)")
    return data_shape[0], int(math.log2(data_shape[1] // 4))


def effective_alpha(conv: str, alpha: float) -> float:
    """``conv="standard"`` is the same net with α = 0 (plain convolutions, identical parameter count)."""
    if conv == "standard":
        return 0.0
    if conv != "octave":
        raise ValueError(f"conv must be 'standard' or 'octave', got {conv!r}")
    if alpha <= 0:
        raise ValueError(f"conv='octave' needs alpha > 0 (got {alpha}); use conv='standard' for plain convolutions")
    return alpha


def upsampling_conv(kind: str, in_channels: int, out_channels: int, alpha_in: float, alpha_out: float) -> nn.Module:
    if kind == "nearest":
        return OctaveUpsample(in_channels, out_channels, 3, alpha_in, alpha_out)
    if kind == "transposed":
        return OctaveConvTranspose2d(in_channels, out_channels, 4, alpha_in, alpha_out)
    raise ValueError(f"upsample must be 'nearest' or 'transposed', got {kind!r}")


class OCGANGenerator(nn.Module):
    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], value_range: tuple[float, float] = (-1, 1),
                 width: int = 32, conv: str = "octave", alpha: float = 0.5, upsample: str = "nearest",
                 dcgan_init: bool = False, eval_beta: tuple[float, float] | None = None) -> None:
        super().__init__()
        alpha = effective_alpha(conv, alpha)
        channels, doublings = ocgan_layout(data_shape)
        if eval_beta is not None:
            eval_beta = checked_beta(eval_beta, "eval_beta")
        widths = [width * 2 ** i for i in reversed(range(doublings))]  # 512 ... 32 at 128 px, width 32
        self.start_channels = widths[0]
        self.project = nn.Sequential(nn.Linear(latent_dim, widths[0] * 16, bias=False),
                                     nn.BatchNorm1d(widths[0] * 16), nn.ReLU())
        blocks = []
        for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            blocks += [upsampling_conv(upsample, cin, cout, alpha if i else 0.0, alpha),
                       OctaveNormAct(cout, alpha, activation=nn.ReLU(), eval_beta=eval_beta)]
        blocks.append(upsampling_conv(upsample, widths[-1], channels, alpha if blocks else 0.0, 0.0))
        self.blocks = nn.Sequential(*blocks)
        self.output = output_activation(value_range)
        if dcgan_init:
            dcgan_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], self.start_channels, 4, 4)
        return self.output(self.blocks(x))


class OCGANCritic(nn.Module):
    """The discriminator (raw logit or critic value per sample); the same net serves DCGAN, LSGAN and WGAN,
    batch norm included, as in the authors' code."""

    def __init__(self, data_shape: tuple[int, ...], width: int = 32, conv: str = "octave", alpha: float = 0.5,
                 norm: bool = True, dcgan_init: bool = False) -> None:
        super().__init__()
        alpha = effective_alpha(conv, alpha)
        channels, doublings = ocgan_layout(data_shape)
        widths = [width * 2 ** i for i in range(doublings)]  # 32 ... 512 at 128 px
        layers, cin, alpha_in = [], channels, 0.0
        for cout in widths:
            layers += [OctaveConv2d(cin, cout, 3, alpha_in, alpha, stride=2),
                       OctaveNormAct(cout, alpha, norm=norm, activation=nn.LeakyReLU(0.2))]
            cin, alpha_in = cout, alpha
        layers.append(OctaveConv2d(cin, 1, 3, alpha_in, 0.0, stride=2))
        self.layers = nn.Sequential(*layers)
        if dcgan_init:
            dcgan_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean(dim=(1, 2, 3))
