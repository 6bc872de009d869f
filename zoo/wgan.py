"""WGAN (Arjovsky et al. 2017, weight clipping) and WGAN-GP (Gulrajani et al. 2017, gradient penalty).

Critic:    L_D = E[D(G(z))] − E[D(x)]  (+ λ·E[(‖∇D(x̂)‖₂ − 1)²] for WGAN-GP)       Alg. 1 of each paper
Generator: L_G = −E[D(G(z))]
"""

from __future__ import annotations

import functools
from typing import Literal

import torch

from zoo.adversarial import AdversarialModel, Batch, CriticSchedule
from zoo.nets import MLPCritic, MLPGenerator, default_critic, default_generator
from zoo.nets.common import has_batch_norm
from zoo.ops.losses import clip_parameters_, gradient_penalty, wasserstein_critic_loss, wasserstein_generator_loss
from zoo.types import CriticFactory, GeneratorFactory, OptimizerFactory


class WassersteinLosses:
    """The two Wasserstein phases, shared by WGAN and WGAN-GP."""

    def critic_scores(self: AdversarialModel, real: Batch, fake: Batch) -> dict[str, torch.Tensor]:
        real_scores, fake_scores = self.critic(real["x"]), self.critic(fake["x"])
        loss = wasserstein_critic_loss(real_scores, fake_scores)
        return {"loss": loss, "wasserstein": -loss.detach()}

    def generator_loss(self: AdversarialModel, fake: Batch) -> dict[str, torch.Tensor]:
        return {"loss": wasserstein_generator_loss(self.critic(fake["x"]))}


def _networks(latent_dim, data_shape, value_range, generator, critic, critic_norm):
    generator_net = (generator or default_generator)(latent_dim, tuple(data_shape), tuple(value_range))
    critic_net = critic(tuple(data_shape)) if critic is not None else default_critic(tuple(data_shape), critic_norm)
    return generator_net, critic_net


class WGAN(WassersteinLosses, AdversarialModel):
    """Weight clipping. Defaults from the paper and official code: RMSProp 5e-5, clip ±0.01, n_critic 5 with
    100 critic steps before the first 25 and every 500th generator step, BN in both DCGAN nets; the
    official code clamps at the start of each critic step (``clip_timing="before_update"``). OC-GAN's WGAN
    (authors' ``wgan.sh``/``dcgan.py``) clips at 0.05 after each update with 20 critic steps for the first 50
    and every 500th generator step: ``clip_value=0.05, clip_timing=after_update, warmup_critic_steps=20,
    warmup_generator_steps=50, warmup_every_offset=1`` (its periodic long phases precede steps 499, 999, ...)."""

    def __init__(self, data_shape: tuple[int, ...], value_range: tuple[float, float] = (-1.0, 1.0),
                 latent_dim: int = 100, generator: GeneratorFactory | None = None,
                 critic: CriticFactory | None = None, generator_optimizer: OptimizerFactory | None = None,
                 critic_optimizer: OptimizerFactory | None = None, n_critic: int = 5, warmup: bool = True,
                 clip_value: float = 0.01, clip_timing: Literal["before_update", "after_update"] = "before_update",
                 warmup_critic_steps: int = 100, warmup_generator_steps: int = 25, warmup_every: int = 500,
                 warmup_every_offset: int = 0, ema_decay: float | None = None,
                 max_generator_steps: int | None = None) -> None:
        if clip_value <= 0:
            raise ValueError(f"clip_value must be > 0, got {clip_value}")
        if clip_timing not in ("before_update", "after_update"):
            raise ValueError(f"clip_timing must be 'before_update' or 'after_update', got {clip_timing!r}")
        rmsprop = functools.partial(torch.optim.RMSprop, lr=5e-5)
        generator_net, critic_net = _networks(latent_dim, data_shape, value_range, generator, critic, "batch")
        super().__init__(data_shape, value_range, latent_dim, generator_net, critic_net,
                         generator_optimizer or rmsprop, critic_optimizer or rmsprop,
                         CriticSchedule(n_critic, warmup, warmup_critic_steps, warmup_generator_steps, warmup_every,
                                        warmup_every_offset),
                         ema_decay, max_generator_steps)
        self.clip_value = clip_value
        self.clip_timing = clip_timing
        self.save_hyperparameters()

    def critic_loss(self, real: Batch, fake: Batch) -> dict[str, torch.Tensor]:
        return self.critic_scores(real, fake)

    def before_critic_update(self) -> None:
        if self.clip_timing == "before_update":
            clip_parameters_(self.critic, self.clip_value)

    def after_critic_update(self) -> None:
        if self.clip_timing == "after_update":
            clip_parameters_(self.critic, self.clip_value)


class WGANGP(WassersteinLosses, AdversarialModel):
    """Gradient penalty. Defaults from the paper's Alg. 1 except β1 = 0.5, which the official MNIST/CIFAR/toy
    scripts use (the paper and the 64x64 script use 0): Adam 1e-4, betas (0.5, 0.9), λ = 10, n_critic 5,
    no warm-up. The critic must not use batch norm (it couples the samples the penalty treats one by one)."""

    def __init__(self, data_shape: tuple[int, ...], value_range: tuple[float, float] = (-1.0, 1.0),
                 latent_dim: int = 128, generator: GeneratorFactory | None = None,
                 critic: CriticFactory | None = None, generator_optimizer: OptimizerFactory | None = None,
                 critic_optimizer: OptimizerFactory | None = None, n_critic: int = 5,
                 gp_weight: float = 10.0, gp_eps: float = 1e-12, ema_decay: float | None = None,
                 max_generator_steps: int | None = None) -> None:
        if gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight}")
        adam = functools.partial(torch.optim.Adam, lr=1e-4, betas=(0.5, 0.9))
        generator_net, critic_net = _networks(latent_dim, data_shape, value_range, generator, critic, "none")
        if has_batch_norm(critic_net):
            raise ValueError("WGAN-GP's critic must not use batch norm (it couples the samples the gradient "
                             "penalty treats independently): use norm 'layer' or 'none'")
        super().__init__(data_shape, value_range, latent_dim, generator_net, critic_net,
                         generator_optimizer or adam, critic_optimizer or adam, CriticSchedule(n_critic=n_critic),
                         ema_decay, max_generator_steps)
        self.gp_weight = gp_weight
        self.gp_eps = gp_eps
        self.save_hyperparameters()

    def critic_loss(self, real: Batch, fake: Batch) -> dict[str, torch.Tensor]:
        terms = self.critic_scores(real, fake)
        alpha = self.rand(len(real["x"]), generator=self.phase_rng)
        penalty = gradient_penalty(self.critic, real["x"], fake["x"], alpha, eps=self.gp_eps,
                                   loss_scale=self.loss_scale())
        terms["loss"] = terms["loss"] + self.gp_weight * penalty
        terms["gradient_penalty"] = penalty.detach()
        return terms


__all__ = ["WGAN", "WGANGP", "MLPCritic", "MLPGenerator"]
