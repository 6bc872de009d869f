"""The FlexAE paper's synthetic data (Sec. 4.1, Figs. 2-3): a low-dimensional true latent pushed through a
fixed, randomly initialised MLP into R^128, so the data lie on a known low-dimensional manifold.

The paper leaves the MLP and the mixture to its (unavailable) supplement; these are project choices, stated
as such: ``depth`` linear layers (latent -> hidden -> ... -> data_dim) with weights N(0, 1/fan_in), biases
N(0, 0.1²) and LeakyReLU(0.2) between them, drawn from ``map_seed``; the mixture has ``components`` Gaussians
of std ``component_std`` evenly spaced on a circle of radius ``radius`` (WGAN-GP's 8-Gaussians layout).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from genzoo.ops.utils import seeded

from .toys import ToyDataModule

LATENTS = ("gaussian", "mixture")


class LatentManifold(ToyDataModule):
    """Samples ``{"x": f(u) in R^data_dim, "latent": u, "label": mixture component (0 for the Gaussian)}``.

    ``latent="gaussian"``: u ~ N(0, I_latent_dim) (the paper's R^5); ``"mixture"``: u in R^2 from the circle
    mixture. Training/val/test sets are independent draws (seeds derived from ``seed``); the map depends on
    ``map_seed`` only, so every split and every run share it."""

    def __init__(self, latent: str = "gaussian", latent_dim: int = 5, data_dim: int = 128, hidden: int = 128,
                 depth: int = 3, map_seed: int = 0, components: int = 8, radius: float = 2.0,
                 component_std: float = 0.1, num_samples: int = 20_000, batch_size: int = 128,
                 num_workers: int = 0, seed: int = 0, num_val_samples: int = 1000,
                 num_test_samples: int = 10_000) -> None:
        super().__init__(num_samples=num_samples, batch_size=batch_size, num_workers=num_workers, seed=seed,
                         num_val_samples=num_val_samples, num_test_samples=num_test_samples)
        if latent not in LATENTS:
            raise ValueError(f"latent must be one of {LATENTS}, got {latent!r}")
        if latent == "mixture":
            latent_dim = 2
        for name, value in (("latent_dim", latent_dim), ("data_dim", data_dim), ("hidden", hidden),
                            ("depth", depth), ("components", components)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if radius < 0 or component_std <= 0:
            raise ValueError(f"need radius >= 0 and component_std > 0, got {radius}, {component_std}")
        self.latent = latent
        self.latent_dim = latent_dim
        self.data_dim = data_dim
        self.hidden = hidden
        self.depth = depth
        self.map_seed = map_seed
        self.components = components
        self.radius = radius
        self.component_std = component_std
        self._layers = self._random_map()

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.data_dim,)

    def _random_map(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        generator = seeded(self.map_seed)
        sizes = [self.latent_dim] + [self.hidden] * (self.depth - 1) + [self.data_dim]
        return [(torch.randn(fan_out, fan_in, generator=generator) / math.sqrt(fan_in),
                 0.1 * torch.randn(fan_out, generator=generator))
                for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True)]

    def map(self, latents: torch.Tensor) -> torch.Tensor:
        """f: R^latent_dim -> R^data_dim."""
        h = latents.float()
        for i, (weight, bias) in enumerate(self._layers):
            h = F.linear(h, weight, bias)
            if i < len(self._layers) - 1:
                h = F.leaky_relu(h, 0.2)
        return h

    def sample_latents(self, num_samples: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.latent == "gaussian":
            return torch.randn(num_samples, self.latent_dim, generator=generator), torch.zeros(num_samples,
                                                                                             dtype=torch.long)
        label = torch.randint(self.components, (num_samples,), generator=generator)
        angle = 2 * math.pi * label.float() / self.components
        centres = self.radius * torch.stack([angle.cos(), angle.sin()], dim=1)
        return centres + self.component_std * torch.randn(num_samples, 2, generator=generator), label

    def sample(self, num_samples: int, seed: int) -> dict[str, torch.Tensor]:
        latents, label = self.sample_latents(num_samples, seeded(seed))
        return {"x": self.map(latents), "latent": latents, "label": label}
