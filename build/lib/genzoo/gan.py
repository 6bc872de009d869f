"""DCGAN (non-saturating, Radford et al. 2016 / Goodfellow et al. 2014) and LSGAN (Mao et al. 2017): the
OC-GAN paper's two non-Wasserstein games (Durall et al. 2019, Sec. 4). With ``OCGANGenerator``/``OCGANCritic``
factories they are OC-GAN's octave models; with ``alpha: 0`` its standard baselines.

DCGAN  critic: BCE(D(x), 1) + BCE(D(G(z)), 0)      generator: BCE(D(G(z)), 1)
LSGAN  critic: E(D(x) − 1)² + E D(G(z))²            generator: E(D(G(z)) − 1)²
"""

from __future__ import annotations

import functools

import torch

from genzoo.adversarial import AdversarialModel
from genzoo.ops.losses import (
    least_squares_critic_loss,
    least_squares_generator_loss,
    nonsaturating_critic_loss,
    nonsaturating_generator_loss,
)
from genzoo.types import Batch


class TwoPlayerGAN(AdversarialModel):
    """Shared setup; subclasses name their loss pair. Defaults from the OC-GAN paper (Sec. 4.2): Adam 2e-4,
    betas (0.5, 0.999), one discriminator update per generator update, z of 100 dims, batch-norm nets."""

    critic_objective = staticmethod(nonsaturating_critic_loss)
    generator_objective = staticmethod(nonsaturating_generator_loss)
    default_optimizer = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
    critic_norm = "batch"

    def __init__(self, *args, latent_dim: int = 100, n_critic: int = 1, **kwargs) -> None:
        super().__init__(*args, latent_dim=latent_dim, n_critic=n_critic, **kwargs)

    def critic_loss(self, real: Batch, fake: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        real_scores, fake_scores = self.critic(real["x"]), self.critic(fake["x"])
        return {"loss": self.critic_objective(real_scores, fake_scores),
                "real_score": real_scores.detach().float().mean(), "fake_score": fake_scores.detach().float().mean()}

    def generator_loss(self, fake: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        return {"loss": self.generator_objective(self.critic(fake["x"]))}


class DCGAN(TwoPlayerGAN):
    """The non-saturating GAN (the OC-GAN paper's "GAN")."""


class LSGAN(TwoPlayerGAN):
    critic_objective = staticmethod(least_squares_critic_loss)
    generator_objective = staticmethod(least_squares_generator_loss)


__all__ = ["DCGAN", "LSGAN"]
