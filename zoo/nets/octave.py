"""Octave convolutions (Chen et al. 2019) for OC-GAN (Durall et al. 2019): layers on (high, low) feature pairs.

A feature map of C channels is split into a high-frequency part with ``C - int(α·C)`` channels at full
resolution and a low-frequency part with ``int(α·C)`` channels at half resolution. An octave tensor is the pair
``(x_high, x_low)``; a plain tensor stands for ``α = 0`` (no low part). Four stride-1 convolutions with the same
kernel exchange information between the branches:

    Y_H = f(X_H; W_HH) + upsample_nearest(f(X_L; W_LH))
    Y_L = f(X_L; W_LL) + f(avgpool(X_H); W_HL)

A path is absent when its input or output share is zero (the first layer, α_in = 0, has only H→H and H→L; the
last, α_out = 0, only H→H and L→H). Stride 2 follows the official implementation (not the OC-GAN code, which
pools both branches first and then runs a stride-1 octave conv; see ../shared/reference §2.1): the high input is
pooled for H→H and H→L, the low input for L→L, and L→H skips its upsampling because its resolution already
matches. Biases are off, as in every reference implementation.

The forward computes these sums with fewer kernels, to the same value up to float rounding: paths that read inputs
of one resolution and add into one output run as one convolution over the inputs concatenated along channels
(:func:`path_sum`; the four path modules and their weights stay as they are).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

OctaveTensor = tuple[Tensor, Tensor | None]


def octave_channels(channels: int, alpha: float, name: str = "alpha") -> tuple[int, int]:
    """(high, low) channel counts: low = int(α·C), as the reference implementations."""
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {alpha}")
    low = int(alpha * channels)
    high = channels - low
    if alpha > 0 and low == 0:
        raise ValueError(f"{name}={alpha} leaves the low-frequency branch of {channels} channels empty "
                         f"(int({alpha}·{channels}) = 0); use more channels or {name}=0")
    if high == 0:
        raise ValueError(f"{name}={alpha} leaves the high-frequency branch of {channels} channels empty")
    return high, low


def as_octave(x: Tensor | OctaveTensor) -> OctaveTensor:
    return (x, None) if isinstance(x, Tensor) else (x[0], x[1])


def check_pair(high: Tensor, low: Tensor | None, high_channels: int, low_channels: int, layer: str) -> None:
    if high.ndim != 4 or high.shape[1] != high_channels:
        raise ValueError(f"{layer}: expected a high-frequency input of {high_channels} channels (N, C, H, W), "
                         f"got {tuple(high.shape)}")
    if (low is None) != (low_channels == 0):
        raise ValueError(f"{layer}: expected {'a low-frequency input' if low_channels else 'no low-frequency input'}"
                         f" (alpha_in {'> 0' if low_channels else '= 0'})")
    if low is not None:
        expected = (high.shape[0], low_channels, high.shape[2] // 2, high.shape[3] // 2)
        if tuple(low.shape) != expected or high.shape[2] % 2 or high.shape[3] % 2:
            raise ValueError(f"{layer}: the low-frequency input must be {expected} (half the high resolution "
                             f"{tuple(high.shape[2:])}, which must be even), got {tuple(low.shape)}")


def pool(x: Tensor, layer: str) -> Tensor:
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"{layer}: cannot halve an odd spatial size {tuple(x.shape[-2:])}; octave layers need "
                         f"even sizes")
    return F.avg_pool2d(x, 2)


def upsample(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def add_upsampled(y: Tensor, x: Tensor) -> Tensor:
    """``y + upsample(x)``. (Adding into a (N, C, H/2, 2, W) view of ``y`` instead, without the upsampled copy, was
    1.1x faster at 64 px on this project's CPU but measured up to 2x slower at 128 px: not kept.)"""
    return y + upsample(x)


def path_sum(*terms: tuple[Tensor | None, nn.Module | None]) -> Tensor:
    """Σ path(x) over the (x, path) terms whose path exists (at least one), with paths of one kind and
    resolution: several run as one convolution of the inputs concatenated along channels with the weights
    concatenated along their input dim (one kernel and no sums of outputs; the same value up to rounding). On CPU
    this makes a stride-2 layer ~3% faster at 32-64 px; at stride 1 (only H→L + L→L fuse) it is neutral."""
    terms = [(x, path) for x, path in terms if path is not None]
    if len(terms) == 1:
        return terms[0][1](terms[0][0])
    x = torch.cat([x for x, _ in terms], 1)
    path = terms[0][1]
    if isinstance(path, nn.ConvTranspose2d):  # weights (in, out, k, k)
        weight = torch.cat([p.weight for _, p in terms], 0)
        return F.conv_transpose2d(x, weight, None, path.stride, path.padding)
    weight = torch.cat([p.weight for _, p in terms], 1)  # (out, in, k, k)
    return F.conv2d(x, weight, None, path.stride, path.padding)


class OctavePaths(nn.Module):
    """The four paths H→H, H→L, L→H, L→L, each ``make(in, out)`` or None where a share is zero."""

    def __init__(self, in_channels: int, out_channels: int, alpha_in: float, alpha_out: float, make) -> None:
        super().__init__()
        self.in_high, self.in_low = octave_channels(in_channels, alpha_in, "alpha_in")
        self.out_high, self.out_low = octave_channels(out_channels, alpha_out, "alpha_out")

        def path(cin: int, cout: int) -> nn.Module | None:
            return make(cin, cout) if cin and cout else None

        self.high_to_high = path(self.in_high, self.out_high)
        self.high_to_low = path(self.in_high, self.out_low)
        self.low_to_high = path(self.in_low, self.out_high)
        self.low_to_low = path(self.in_low, self.out_low)


class OctaveConv2d(OctavePaths):
    """Octave convolution; returns ``(y_high, y_low)``, or a plain tensor when ``alpha_out = 0``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, alpha_in: float = 0.5,
                 alpha_out: float = 0.5, stride: int = 1, padding: int | None = None) -> None:
        if stride not in (1, 2):
            raise ValueError(f"octave convolutions support stride 1 or 2, got {stride}")
        padding = kernel_size // 2 if padding is None else padding
        super().__init__(in_channels, out_channels, alpha_in, alpha_out,
                         lambda cin, cout: nn.Conv2d(cin, cout, kernel_size, 1, padding, bias=False))
        self.stride = stride

    def forward(self, x: Tensor | OctaveTensor) -> Tensor | OctaveTensor:
        high, low = as_octave(x)
        name = type(self).__name__
        check_pair(high, low, self.in_high, self.in_low, name)
        if self.stride == 1:
            y_high = self.high_to_high(high)
            if low is not None:
                y_high = add_upsampled(y_high, self.low_to_high(low))
        else:
            high = pool(high, name)
            # the un-pooled low branch already has the new high resolution: H→H and L→H are one convolution
            y_high = path_sum((high, self.high_to_high), (low, self.low_to_high))
            if self.low_to_low is not None:
                low = pool(low, name)
        if self.high_to_low is None:  # alpha_out = 0
            return y_high
        # H→L and L→L both read the low resolution: one convolution over [avgpool(X_H), X_L]
        return y_high, path_sum((pool(high, name), self.high_to_low), (low, self.low_to_low))


class OctaveConvTranspose2d(OctavePaths):
    """A true transposed octave convolution (each path a ``ConvTranspose2d``; H→L pools its input, L→H
    upsamples its output), so an octave generator can mirror DCGAN's transposed layers. It doubles both
    branches (DCGAN's ``kernel_size=4, stride=2, padding=1`` by default), which keeps the low branch at half the
    high resolution; the 1x1 -> 4x4 projection at a generator's input has no octave form."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 4, alpha_in: float = 0.5,
                 alpha_out: float = 0.5, stride: int = 2, padding: int = 1) -> None:
        if stride != 2 or kernel_size != 2 * padding + 2:
            raise ValueError("a transposed octave convolution must exactly double both branches (stride 2, "
                             f"kernel_size = 2·padding + 2), got kernel_size={kernel_size}, stride={stride}, "
                             f"padding={padding}")
        super().__init__(in_channels, out_channels, alpha_in, alpha_out,
                         lambda cin, cout: nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, bias=False))

    def forward(self, x: Tensor | OctaveTensor) -> Tensor | OctaveTensor:
        high, low = as_octave(x)
        check_pair(high, low, self.in_high, self.in_low, type(self).__name__)
        y_high = self.high_to_high(high)
        if low is not None:
            y_high = add_upsampled(y_high, self.low_to_high(low))
        if self.high_to_low is None:  # alpha_out = 0
            return y_high
        return y_high, path_sum((pool(high, "OctaveConvTranspose2d"), self.high_to_low), (low, self.low_to_low))


class OctaveUpsample(nn.Module):
    """The OC-GAN authors' generator block: nearest ×2 on both branches, then a stride-1 octave conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, alpha_in: float = 0.5,
                 alpha_out: float = 0.5) -> None:
        super().__init__()
        self.conv = OctaveConv2d(in_channels, out_channels, kernel_size, alpha_in, alpha_out, stride=1)

    def forward(self, x: Tensor | OctaveTensor) -> Tensor | OctaveTensor:
        high, low = as_octave(x)
        return self.conv((upsample(high), upsample(low) if low is not None else None))


class OctaveNormAct(nn.Module):
    """Separate batch norms and activations for the two branches, then the β weighting of OC-GAN's Eq. 3
    (``β_H·X_H``, ``β_L·X_L``). β lives in buffers that a schedule callback sets (1 = no weighting) and that
    checkpoints keep, so a loaded generator samples with the β it was trained with.

    ``eval_beta`` (β_H, β_L) replaces that β whenever the block runs in eval mode (generation for evaluation
    and sample grids): the authors train with their schedule's β but always sample with 0.7/0.3. It is kept in
    buffers too, so checkpoints carry it; ``None`` uses the training β in both modes."""

    def __init__(self, channels: int, alpha: float, norm: bool = True,
                 activation: nn.Module | None = None, eval_beta: tuple[float, float] | None = None) -> None:
        super().__init__()
        high, low = octave_channels(channels, alpha)
        self.norm_high = nn.BatchNorm2d(high) if norm else nn.Identity()
        self.norm_low = nn.BatchNorm2d(low) if norm and low else nn.Identity()
        self.activation = activation if activation is not None else nn.ReLU()
        self.register_buffer("beta_high", torch.tensor(1.0))
        self.register_buffer("beta_low", torch.tensor(1.0))
        self.has_eval_beta = eval_beta is not None
        if eval_beta is not None:
            eval_high, eval_low = checked_beta(eval_beta, "eval_beta")
            self.register_buffer("eval_beta_high", torch.tensor(eval_high))
            self.register_buffer("eval_beta_low", torch.tensor(eval_low))

    def sample_with_training_beta(self) -> None:
        """Drop ``eval_beta``: eval mode samples with the training β from now on (an evaluation reading for
        models stopped before their schedule reached it; the buffers stay, so a checkpoint still loads)."""
        self.has_eval_beta = False

    def set_beta(self, beta_high: float, beta_low: float) -> None:
        """Set the training β (the schedule's); ``eval_beta`` is left as constructed."""
        self.beta_high.fill_(beta_high)
        self.beta_low.fill_(beta_low)

    def current_beta(self) -> tuple[Tensor, Tensor]:
        if self.has_eval_beta and not self.training:
            return self.eval_beta_high, self.eval_beta_low
        return self.beta_high, self.beta_low

    def forward(self, x: Tensor | OctaveTensor) -> Tensor | OctaveTensor:
        high, low = as_octave(x)
        beta_high, beta_low = self.current_beta()
        high = self.activation(self.norm_high(high)) * beta_high
        if low is None:
            return high
        return high, self.activation(self.norm_low(low)) * beta_low


def checked_beta(beta: object, name: str = "beta") -> tuple[float, float]:
    """(β_H, β_L) as two finite numbers >= 0, or a ValueError naming ``name`` and what is wrong."""
    if isinstance(beta, (str, bytes)) or not hasattr(beta, "__len__") or len(beta) != 2:
        raise ValueError(f"{name} must be two numbers [beta_high, beta_low], got {beta!r}")
    try:
        high, low = (float(b) for b in beta)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers [beta_high, beta_low], got {beta!r}") from None
    if not (math.isfinite(high) and math.isfinite(low)) or high < 0 or low < 0:
        raise ValueError(f"{name} must be two finite numbers >= 0 [beta_high, beta_low], got {beta!r}")
    return high, low


def set_octave_beta(module: nn.Module, beta_high: float, beta_low: float) -> int:
    """Set β on every :class:`OctaveNormAct` inside ``module``; returns how many were set."""
    blocks = [m for m in module.modules() if isinstance(m, OctaveNormAct)]
    for block in blocks:
        block.set_beta(beta_high, beta_low)
    return len(blocks)
