"""WGAN (Arjovsky et al. 2017, weight clipping) and WGAN-GP (Gulrajani et al. 2017, gradient penalty).

Critic:    L_D = E[D(G(z))] − E[D(x)]  (+ λ·E[(‖∇D(x̂)‖₂ − 1)²] for WGAN-GP)       Alg. 1 of each paper
Generator: L_G = −E[D(G(z))]
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import torch

from genzoo.adversarial import AdversarialModel
from genzoo.nets.common import has_batch_norm
from genzoo.ops.losses import clip_parameters_, gradient_penalty, wasserstein_critic_loss, wasserstein_generator_loss
from genzoo.types import Batch


class WassersteinGAN(AdversarialModel):
    """The two Wasserstein phases, shared by WGAN and WGAN-GP."""

    def critic_loss(self, real: Batch, fake: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        loss = wasserstein_critic_loss(self.critic(real["x"]), self.critic(fake["x"]))
        return {"loss": loss, "wasserstein": -loss.detach()}

    def generator_loss(self, fake: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        return {"loss": wasserstein_generator_loss(self.critic(fake["x"]))}


class WGAN(WassersteinGAN):
    """Weight clipping. Defaults from the paper and official code: RMSProp 5e-5, clip ±0.01, n_critic 5 with
    100 critic steps before the first 25 and every 500th generator step, BN in both DCGAN nets; the
    official code clamps at the start of each critic step (``clip_timing="before_update"``). OC-GAN's WGAN
    (authors' ``wgan.sh``/``dcgan.py``) clips at 0.05 after each update with 20 critic steps for the first 50
    and every 500th generator step: ``clip_value=0.05, clip_timing=after_update, warmup_critic_steps=20,
    warmup_generator_steps=50, warmup_every_offset=1`` (its periodic long phases precede steps 499, 999, ...).
    The shared settings (networks, optimizers, n_critic, ema_decay, max_generator_steps) are
    :class:`~genzoo.adversarial.AdversarialModel`'s."""

    default_optimizer = functools.partial(torch.optim.RMSprop, lr=5e-5)
    critic_norm = "batch"

    def __init__(self, *args, latent_dim: int = 100, warmup: bool = True, clip_value: float = 0.01,
                 clip_timing: Literal["before_update", "after_update"] = "before_update",
                 warmup_critic_steps: int = 100, warmup_generator_steps: int = 25, warmup_every: int = 500,
                 warmup_every_offset: int = 0, **kwargs) -> None:
        if clip_value <= 0:
            raise ValueError(f"clip_value must be > 0, got {clip_value}")
        if clip_timing not in ("before_update", "after_update"):
            raise ValueError(f"clip_timing must be 'before_update' or 'after_update', got {clip_timing!r}")
        super().__init__(*args, latent_dim=latent_dim, **kwargs)
        self.phase_schedule = dataclasses.replace(
            self.phase_schedule, warmup=warmup, warmup_critic_steps=warmup_critic_steps,
            warmup_generator_steps=warmup_generator_steps, warmup_every=warmup_every,
            warmup_every_offset=warmup_every_offset)
        self.clip_value = clip_value
        self.clip_timing = clip_timing

    def before_critic_update(self) -> None:
        if self.clip_timing == "before_update":
            clip_parameters_(self.critic, self.clip_value)

    def after_critic_update(self) -> None:
        if self.clip_timing == "after_update":
            clip_parameters_(self.critic, self.clip_value)


class WGANGP(WassersteinGAN):
    """Gradient penalty. Defaults from the paper's Alg. 1 except β1 = 0.5, which the official MNIST/CIFAR/toy
    scripts use (the paper and the 64x64 script use 0): Adam 1e-4, betas (0.5, 0.9), λ = 10, n_critic 5,
    no warm-up (the shared defaults of :class:`~genzoo.adversarial.AdversarialModel`). The critic must not use
    batch norm (it couples the samples the penalty treats one by one)."""

    compiled_networks = ("generator",)  # the penalty differentiates the critic twice

    def __init__(self, *args, gp_weight: float = 10.0, gp_eps: float = 1e-12, **kwargs) -> None:
        if gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight}")
        super().__init__(*args, **kwargs)
        if has_batch_norm(self.critic):
            raise ValueError("WGAN-GP's critic must not use batch norm (it couples the samples the gradient "
                             "penalty treats independently): use norm 'layer' or 'none'")
        self.gp_weight = gp_weight
        self.gp_eps = gp_eps

    def critic_loss(self, real: Batch, fake: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        terms = super().critic_loss(real, fake, noise)
        alpha = self.rand(len(real["x"]), generator=noise)
        penalty = gradient_penalty(self.critic, real["x"], fake["x"], alpha, eps=self.gp_eps,
                                   loss_scale=self.loss_scale())
        terms["loss"] = terms["loss"] + self.gp_weight * penalty
        terms["gradient_penalty"] = penalty.detach()
        return terms


__all__ = ["WGAN", "WGANGP", "WassersteinGAN"]
