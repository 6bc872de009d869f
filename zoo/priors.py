"""Latent priors of deterministic autoencoders: objects with ``sample(n)`` whose codes the decoder turns into
data (Pythae's model/sampler split). WAE fixes a Gaussian, FlexAE learns one (P-GEN) and AE-OT fits a transport
map; the autoencoder's training code does not change with the prior.

Priors are ``nn.Module``s so that learned ones live in the model's state dict, checkpoints and DDP.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.nets import MLPGenerator
from zoo.types import GeneratorFactory


class Prior(nn.Module):
    """``sample(n, generator)``: ``n`` codes of dimension ``dim``, without gradients."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"a prior's dim must be >= 1, got {dim}")
        self.dim = int(dim)

    @property
    def device(self) -> torch.device:
        tensor = next(iter(self.parameters()), None)
        if tensor is None:
            tensor = next(iter(self.buffers()), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


def standard_normal(n: int, dim: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """N(0, I) noise drawn on the generator's device (so seeded draws do not depend on where the model is),
    then moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.randn(n, dim, generator=generator, device=source).to(device)


class GaussianPrior(Prior):
    """N(0, scale² I): WAE's fixed prior (``pz_scale`` 1 in the WAE code)."""

    def __init__(self, dim: int, scale: float = 1.0) -> None:
        super().__init__(dim)
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.scale * standard_normal(n, self.dim, generator, self.device)


class LearnedPrior(Prior):
    """FlexAE's P-GEN G_ψ: N(0, I_{m'}) noise -> codes in R^m, trained adversarially toward the aggregate
    posterior (the model owns that training; the prior is only the network and its noise).

    ``network(noise_dim, (dim,), None)`` builds G_ψ; the default is the authors' 4 x 1024 ReLU MLP with a
    linear output and Glorot-normal weights (FlexAESR.py L246-261). ``noise_dim`` m' defaults to m, as in the
    code; the paper asks only that m' be at least the data's intrinsic dimension."""

    def __init__(self, dim: int, noise_dim: int | None = None, network: GeneratorFactory | None = None) -> None:
        super().__init__(dim)
        self.noise_dim = int(noise_dim or dim)
        if self.noise_dim < 1:
            raise ValueError(f"noise_dim must be >= 1, got {noise_dim}")
        factory = network or (lambda m_in, shape, _: MLPGenerator(m_in, shape, None, 1024, 4, "glorot_normal"))
        self.network = factory(self.noise_dim, (self.dim,), None)
        with torch.no_grad():
            out = self.network(torch.zeros(2, self.noise_dim))
        if tuple(out.shape) != (2, self.dim):
            raise ValueError(f"the prior network maps noise to shape {tuple(out.shape[1:])}, expected ({self.dim},)")

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return standard_normal(n, self.noise_dim, generator, self.device)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.network(noise)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            return self(self.noise(n, generator)).float()
        finally:
            self.train(was_training)
