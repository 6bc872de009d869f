"""Hinge-loss GAN with a spectrally normalised critic: SN-GAN (Miyato et al. 2018) with the hinge objective of
Lim & Ye 2017, the standard of modern GAN baselines (BigGAN, StyleGAN-T's comparisons, mimicry's SNGAN).

Critic:    L_D = E max(0, 1 − D(x)) + E max(0, 1 + D(G(z)))        Miyato et al., Eq. 16
Generator: L_G = −E D(G(z))

Everything else (networks, schedule, EMA, budget, checkpoints) is :class:`~genzoo.adversarial.AdversarialModel`'s;
this file is the worked example of adding a GAN variant (README, "Contributing").
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genzoo.adversarial import AdversarialModel
from genzoo.ops.losses import hinge_critic_loss, wasserstein_generator_loss
from genzoo.types import Batch, CriticFactory


class HingeGAN(AdversarialModel):
    """Defaults are mimicry's SNGAN: Adam 2e-4, betas (0, 0.9), five critic updates per generator update, spectral
    norm on every critic convolution and linear layer (one power iteration per forward pass)."""

    default_optimizer = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.0, 0.9))

    def __init__(self, *args, margin: float = 1.0, spectral_normalization: bool = True, **kwargs) -> None:
        if margin <= 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        self.spectral_normalization = spectral_normalization  # read by init_critic during the base's __init__
        super().__init__(*args, **kwargs)
        self.margin = margin

    def init_critic(self, factory: CriticFactory | None) -> nn.Module:
        critic = super().init_critic(factory)
        if self.spectral_normalization:
            for module in list(critic.modules()):
                if isinstance(module, nn.Conv2d | nn.Linear | nn.ConvTranspose2d):
                    spectral_norm(module)
        return critic

    def critic_loss(self, real: Batch, fake: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        real_scores, fake_scores = self.critic(real["x"]), self.critic(fake["x"])
        return {"loss": hinge_critic_loss(real_scores, fake_scores, self.margin),
                "real_score": real_scores.detach().float().mean(), "fake_score": fake_scores.detach().float().mean()}

    def generator_loss(self, fake: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        return {"loss": wasserstein_generator_loss(self.critic(fake["x"]))}


__all__ = ["HingeGAN"]
