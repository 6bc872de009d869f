"""FlatGAN's networks: the critic as a differential form, the fixed tangent downsampler, and the authors'
MNIST generator / 0-form / 1-form architectures generalised to 8–64 px (``models.py`` of their code).

The critic is the mixed-degree form ω(x)(v) = f(x) + α·det(Vᵀ Ω(x)) with a scalar 0-form network f and k
1-form networks Ω = [ω_1 … ω_k] (the simple k-covector ω_1∧…∧ω_k). The 1-forms may live in a smaller
space: a fixed Gaussian blur + average pooling maps the tangent vectors there before the pairing.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.nets.common import output_activation
from genzoo.ops.flat import determinant

#: (data_shape, form_shape) -> a 1-form network returning (B, prod(form_shape))
OneFormFactory = Callable[[tuple[int, ...], tuple[int, ...]], nn.Module]


class Downsampler(nn.Module):
    """Blur each tangent image with a fixed Gaussian (σ, radius int(4σ + 0.5), scipy's default truncation:
    17×17 for σ = 2) and average-pool it by ``factor``: the authors' MNIST ``Downsampler(factor=4, sigma=2)``
    (32×32 -> 8×8). Not learned."""

    def __init__(self, data_shape: tuple[int, ...], factor: int = 4, sigma: float = 2.0) -> None:
        super().__init__()
        if len(data_shape) != 3:
            raise ValueError(f"the downsampler needs image data (C, H, W), got shape {tuple(data_shape)}")
        channels, height, width = data_shape
        if factor < 1 or height % factor or width % factor:
            raise ValueError(f"downsample factor {factor} must be >= 1 and divide the image size {height}x{width}")
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.factor = factor
        self.channels = channels
        self.radius = int(4 * sigma + 0.5)
        offsets = torch.arange(-self.radius, self.radius + 1, dtype=torch.float64)
        line = torch.exp(-0.5 * (offsets / sigma) ** 2) if sigma > 0 else (offsets == 0).double()
        line = line / line.sum()
        kernel = (line[:, None] * line[None, :]).float()
        self.register_buffer("kernel", kernel.expand(channels, 1, *kernel.shape).clone(), persistent=False)
        self.out_shape = (channels, height // factor, width // factor)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H/factor, W/factor)``."""
        blurred = F.conv2d(images, self.kernel.to(images.dtype), padding=self.radius, groups=self.channels)
        return F.avg_pool2d(blurred, self.factor) if self.factor > 1 else blurred


class DifferentialForm(nn.Module):
    """ω(x)(v) = f(x) + α·det(Vᵀ Ω(x)) (``flatgan.py`` ``DifferentialForm``): ``forward(x, tangents)`` with
    ``tangents`` a frame ``(B, *data_shape, k)`` (None for k = 0, where ω = f is a WGAN-like critic).

    ``one_form`` is copied k times, so all 1-forms start with identical weights as in the authors' code
    (``deepcopy``); the determinant's gradient separates them from the first step on."""

    def __init__(self, data_shape: tuple[int, ...], zero_form: nn.Module, one_form: nn.Module | None = None,
                 k: int = 0, alpha: float = 1.0, downsampler: Downsampler | None = None) -> None:
        super().__init__()
        if k < 0 or (k > 0 and one_form is None):
            raise ValueError(f"a form of degree k={k} needs k >= 0 and a one_form network when k > 0")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.data_shape = tuple(data_shape)
        self.k = k
        self.alpha = float(alpha)
        self.zero_form = zero_form
        self.one_forms = nn.ModuleList([copy.deepcopy(one_form) for _ in range(k)])
        self.downsampler = downsampler
        self.form_shape = downsampler.out_shape if downsampler is not None else (math.prod(self.data_shape),)

    def forward(self, x: torch.Tensor, tangents: torch.Tensor | None = None) -> torch.Tensor:
        value = self.zero_form(x)
        if self.k == 0:
            return value
        if tangents is None:
            raise ValueError(f"a {self.k}-form needs {self.k} tangent vectors per sample")
        return value + self.k_part(x, tangents)

    def k_part(self, x: torch.Tensor, tangents: torch.Tensor) -> torch.Tensor:
        """α·det(Vᵀ Ω(x)): the 1-forms run in the ambient precision, the projection and the k×k determinant
        in fp32 (α is 1e-5 for MNIST and the entries are products of small differences)."""
        return self.pair(tangents, self.one_form_values(x))

    def one_form_values(self, x: torch.Tensor) -> torch.Tensor:
        """Ω(x): the k 1-forms at ``x``, ``(B, m, k)``."""
        return torch.stack([net(x).flatten(1) for net in self.one_forms], dim=2)

    def pair(self, tangents: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        """α·det(Vᵀ Ω) for tangent frames ``(B, *data_shape, k)`` and 1-form values ``omega`` (fp32)."""
        if tangents.shape[1:] != (*self.data_shape, self.k):
            raise ValueError(f"tangents must be shaped (B, *{self.data_shape}, {self.k}), got {tuple(tangents.shape)}")
        with torch.autocast(device_type=omega.device.type, enabled=False):
            projected = self.project(tangents.float())  # (B, k, m)
            if projected.shape[2] != omega.shape[1]:
                raise ValueError(f"the 1-form networks return {omega.shape[1]} numbers per point, but the tangents' "
                                 f"space has {projected.shape[2]} (form_shape {self.form_shape})")
            return self.alpha * determinant(projected @ omega.float())

    def project(self, tangents: torch.Tensor) -> torch.Tensor:
        """Tangent frame ``(B, *data_shape, k)`` -> rows ``(B, k, m)`` in the 1-forms' space."""
        rows = tangents.movedim(-1, 1)  # (B, k, *data_shape)
        if self.downsampler is not None:
            rows = self.downsampler(rows.flatten(0, 1)).view(len(tangents), self.k, -1)
        return rows.flatten(2)


# ---- the authors' MNIST architectures, generalised ------------------------------------------------------
def _doublings(data_shape: tuple[int, ...], name: str) -> int:
    """How many stride-2 stages lie between 4x4 and the (square, 4·2^n) image."""
    if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
        raise ValueError(f"{name} needs square images (C, H, H), got shape {tuple(data_shape)}")
    size = data_shape[1]
    n = round(math.log2(size / 4)) if size >= 8 else 0
    if n < 1 or 4 * 2 ** n != size or n > 4:
        raise ValueError(f"{name} supports image sizes 8, 16, 32 and 64 (4·2^n), got {size}")
    return n


class FlatGenerator(nn.Module):
    """``MNIST_Generator`` (DIM = ``width`` = 32): ConvT(z -> 1024, 4x4) ELU -> ConvT(1024 -> 512) ELU ->
    ConvT(512 -> 128) ELU -> ConvT(128 -> C) -> tanh at 32 px, no batch norm (per-sample Jacobians). Other
    sizes keep the last stages of (2048, 1024, 512, 128)·width/32."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], value_range: tuple[float, float] | None = None,
                 width: int = 32) -> None:
        super().__init__()
        n = _doublings(tuple(data_shape), "FlatGenerator")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        channels = [max(1, c * width // 32) for c in (2048, 1024, 512, 128)[-n:]]
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, channels[0], 4, 1, 0), nn.ELU()]
        for c_in, c_out in zip(channels, channels[1:], strict=False):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.ELU()]
        layers += [nn.ConvTranspose2d(channels[-1], data_shape[0], 4, 2, 1), output_activation(value_range)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(*z.shape, 1, 1))


def _trunk(data_shape: tuple[int, ...], width: int, name: str) -> tuple[nn.Sequential, int]:
    """Stride-2 4x4 convolutions with LeakyReLU 0.2 down to 4x4: channels (2, 4, 32)·width at 32 px (the
    authors' discriminator), the last stages of (1, 2, 4, 32)·width otherwise."""
    n = _doublings(tuple(data_shape), name)
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    channels = [data_shape[0]] + [c * width for c in (1, 2, 4, 32)[-n:]]
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels, channels[1:], strict=False):
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers), channels[-1]


class FlatCritic(nn.Module):
    """The 0-form f: ``MNIST_Discriminator(tangent=False, dim=32)``, Conv 64 -> 128 -> 1024 -> 1 at 32 px."""

    def __init__(self, data_shape: tuple[int, ...], width: int = 32) -> None:
        super().__init__()
        self.trunk, channels = _trunk(tuple(data_shape), width, "FlatCritic")
        self.head = nn.Conv2d(channels, 1, 4, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x)).flatten()


class FlatOneForm(nn.Module):
    """A 1-form ω_i: ``MNIST_Discriminator(tangent=True, dim=8)``, Conv 16 -> 32 -> 256 down to 4x4, then
    ConvTranspose up to the form space (8x8 = 64 numbers for 32 px pooled by 4). Form spaces smaller than
    4x4 get a linear head."""

    def __init__(self, data_shape: tuple[int, ...], form_shape: Sequence[int], width: int = 8) -> None:
        super().__init__()
        self.trunk, channels = _trunk(tuple(data_shape), width, "FlatOneForm")
        form_shape = tuple(form_shape)
        size = form_shape[-1] if len(form_shape) == 3 and form_shape[1] == form_shape[2] else 0
        ups = round(math.log2(size / 4)) if size >= 4 else -1
        if ups >= 0 and 4 * 2 ** ups == size:
            layers: list[nn.Module] = []
            for i in range(ups):
                c_out = form_shape[0] if i == ups - 1 else max(1, channels // 2)
                layers.append(nn.ConvTranspose2d(channels, c_out, 4, 2, 1))
                if i < ups - 1:
                    layers.append(nn.LeakyReLU(0.2))
                channels = c_out
            self.head = nn.Sequential(*layers) if ups else nn.Conv2d(channels, form_shape[0], 3, 1, 1)
        else:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, math.prod(form_shape)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x)).flatten(1)
