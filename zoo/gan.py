"""DCGAN (non-saturating, Radford et al. 2016 / Goodfellow et al. 2014) and LSGAN (Mao et al. 2017): the
OC-GAN paper's two non-Wasserstein games (Durall et al. 2019, Sec. 4). With ``OCGANGenerator``/``OCGANCritic``
factories they are OC-GAN's octave models; with ``alpha: 0`` its standard baselines.

DCGAN  critic: BCE(D(x), 1) + BCE(D(G(z)), 0)      generator: BCE(D(G(z)), 1)
LSGAN  critic: E(D(x) − 1)² + E D(G(z))²            generator: E(D(G(z)) − 1)²
"""

from __future__ import annotations

import functools

import torch

from zoo.adversarial import AdversarialModel, Batch, CriticSchedule
from zoo.nets import default_critic, default_generator
from zoo.ops.losses import (
    least_squares_critic_loss,
    least_squares_generator_loss,
    nonsaturating_critic_loss,
    nonsaturating_generator_loss,
)
from zoo.types import CriticFactory, GeneratorFactory, OptimizerFactory


class TwoPlayerGAN(AdversarialModel):
    """Shared setup; subclasses name their loss pair. Defaults from the OC-GAN paper (Sec. 4.2): Adam 2e-4,
    betas (0.5, 0.999), one discriminator update per generator update, z of 100 dims, batch-norm nets."""

    critic_objective = staticmethod(nonsaturating_critic_loss)
    generator_objective = staticmethod(nonsaturating_generator_loss)

    def __init__(self, data_shape: tuple[int, ...], value_range: tuple[float, float] = (-1.0, 1.0),
                 latent_dim: int = 100, generator: GeneratorFactory | None = None,
                 critic: CriticFactory | None = None, generator_optimizer: OptimizerFactory | None = None,
                 critic_optimizer: OptimizerFactory | None = None, n_critic: int = 1,
                 ema_decay: float | None = None, max_generator_steps: int | None = None) -> None:
        adam = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
        generator_net = (generator or default_generator)(latent_dim, tuple(data_shape), tuple(value_range))
        critic_net = critic(tuple(data_shape)) if critic is not None else default_critic(tuple(data_shape), "batch")
        super().__init__(data_shape, value_range, latent_dim, generator_net, critic_net,
                         generator_optimizer or adam, critic_optimizer or adam, CriticSchedule(n_critic=n_critic),
                         ema_decay, max_generator_steps)
        self.save_hyperparameters()

    def critic_loss(self, real: Batch, fake: Batch) -> dict[str, torch.Tensor]:
        real_scores, fake_scores = self.critic(real["x"]), self.critic(fake["x"])
        return {"loss": self.critic_objective(real_scores, fake_scores),
                "real_score": real_scores.detach().float().mean(), "fake_score": fake_scores.detach().float().mean()}

    def generator_loss(self, fake: Batch) -> dict[str, torch.Tensor]:
        return {"loss": self.generator_objective(self.critic(fake["x"]))}


class DCGAN(TwoPlayerGAN):
    """The non-saturating GAN (the OC-GAN paper's "GAN")."""


class LSGAN(TwoPlayerGAN):
    critic_objective = staticmethod(least_squares_critic_loss)
    generator_objective = staticmethod(least_squares_generator_loss)


__all__ = ["DCGAN", "LSGAN"]
