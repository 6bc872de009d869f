"""Pieces shared by the architectures: normalisation by name, output activations, DCGAN init."""

from __future__ import annotations

from torch import nn

NORMS = ("batch", "layer", "instance", "none")


def norm_layer(norm: str, channels: int, dims: int = 2) -> nn.Module:
    """``layer`` normalises over (C, H, W) with a per-channel affine, as WGAN-GP's 64x64 critic does."""
    if norm == "batch":
        return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels) if dims == 2 else nn.LayerNorm(channels)
    if norm == "instance":
        if dims != 2:
            raise ValueError("instance norm needs image features")
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def output_activation(value_range: tuple[float, float] | None) -> nn.Module:
    """Images in [-1, 1] end in tanh, in [0, 1] in a sigmoid; unbounded data (2-D toys) in nothing."""
    if value_range is None:
        return nn.Identity()
    low, high = float(value_range[0]), float(value_range[1])
    if (low, high) == (-1.0, 1.0):
        return nn.Tanh()
    if (low, high) == (0.0, 1.0):
        return nn.Sigmoid()
    return nn.Identity()


def dcgan_init_(module: nn.Module, std: float = 0.02) -> None:
    """N(0, 0.02) convolution/linear weights, N(1, 0.02) norm scales, zero biases (Radford et al.)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d | nn.GroupNorm | nn.InstanceNorm2d | nn.LayerNorm):
            if m.weight is not None:
                nn.init.normal_(m.weight, 1.0, std)
                nn.init.zeros_(m.bias)


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


INITS = ("default", "glorot_normal", "glorot_uniform")


def glorot_init_(module: nn.Module, init: str) -> None:
    """TF1's initialisers on linear/conv weights with zero biases (``default`` keeps PyTorch's). Authors'
    TF code (FlexAE, WAE) relies on them: PyTorch's default is a scaled uniform with non-zero biases."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "default":
        return
    fill = nn.init.xavier_normal_ if init == "glorot_normal" else nn.init.xavier_uniform_
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            fill(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
