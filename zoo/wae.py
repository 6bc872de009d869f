"""Wasserstein autoencoders (Tolstikhin et al. 2018) with a fixed N(0, σ²I) prior: FlexAE's baselines.

    L = c·Σ‖x − D(E(x))‖² + λ·D_Z(Q_z, P_z)          (WAE, Eq. 4; c = 0.05 in the authors' ``l2sq`` cost)

WAE-GAN:  D_Z by a latent adversary (JS): the adversary minimises λ·[BCE(A(z_p), 1) + BCE(A(z_q), 0)], the
          autoencoder adds λ·BCE(A(z_q), 1); one autoencoder step, then one adversary step on the same batch.
WAE-MMD:  D_Z = MMD² with the IMQ kernel summed over 7 scales (:func:`genzoo.ops.losses.imq_mmd`).

Defaults are the WAE code's MNIST configuration (configs.py): λ 10, Adam β1 0.5 with lr 1e-3 (autoencoder)
and 5e-4 (adversary), a 4 x 512 ReLU adversary whose linear layers start N(0, 0.01²) with zero biases
(ops.linear). Left out, as options rarely used in comparisons: the WAE code's encoder input noise, its
moment-matching encoder pre-training, its LR decay and the CelebA "Pz trick". The networks default to FlexAE's
autoencoder so that the baselines differ from FlexAE only in the objective.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import torch

from genzoo.autoencoder import AutoencoderModel
from genzoo.base import FixedCycle
from genzoo.nets import MLPCritic
from genzoo.ops.losses import WAE_IMQ_SCALES, imq_mmd, nonsaturating_critic_loss, nonsaturating_generator_loss
from genzoo.priors import GaussianPrior
from genzoo.types import CriticFactory, EncoderFactory, GeneratorFactory, OptimizerFactory


class WAE(AutoencoderModel):
    compiled_networks = ("encoder", "decoder", "adversary")

    def __init__(self, data_shape: tuple[int, ...], value_range: tuple[float, float] = (0.0, 1.0),
                 latent_dim: int = 32, regularizer: Literal["gan", "mmd"] = "mmd", penalty_weight: float = 10.0,
                 reconstruction_weight: float = 0.05, prior_scale: float = 1.0,
                 encoder: EncoderFactory | None = None, decoder: GeneratorFactory | None = None,
                 adversary: CriticFactory | None = None, autoencoder_optimizer: OptimizerFactory | None = None,
                 adversary_optimizer: OptimizerFactory | None = None,
                 mmd_scales: tuple[float, ...] = WAE_IMQ_SCALES, max_outer_steps: int | None = None,
                 compile: bool | dict[str, Any] = False) -> None:
        if regularizer not in ("gan", "mmd"):
            raise ValueError(f"regularizer must be 'gan' or 'mmd', got {regularizer!r}")
        if penalty_weight < 0:
            raise ValueError(f"penalty_weight must be >= 0, got {penalty_weight}")
        if not mmd_scales or min(mmd_scales) <= 0:
            raise ValueError(f"mmd_scales must be positive, got {mmd_scales}")
        super().__init__(data_shape, value_range, latent_dim, encoder=encoder, decoder=decoder,
                         prior=functools.partial(GaussianPrior, scale=prior_scale),
                         reconstruction_weight=reconstruction_weight, max_outer_steps=max_outer_steps,
                         compile=compile)
        self.regularizer = regularizer
        self.penalty_weight = float(penalty_weight)
        self.mmd_scales = tuple(float(s) for s in mmd_scales)
        self.add_optimizer("autoencoder", lambda: [*self.encoder.parameters(), *self.decoder.parameters()],
                           autoencoder_optimizer or functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999)))
        self.adversary = None
        if regularizer == "gan":
            build_adversary = adversary or functools.partial(MLPCritic, width=512, depth=4, init="normal_0.01")
            self.adversary = build_adversary((latent_dim,))
            self.check_critic(self.adversary, (latent_dim,), "adversary")
            self.add_optimizer("adversary", lambda: list(self.adversary.parameters()),
                               adversary_optimizer or functools.partial(torch.optim.Adam, lr=5e-4, betas=(0.5, 0.999)))
            self.phase_schedule = FixedCycle([("autoencoder", "adversary")])  # one of each per batch and outer step

    def latent_penalty(self, codes: torch.Tensor, prior_codes: torch.Tensor) -> torch.Tensor:
        """D_Z(Q_z, P_z) as the autoencoder minimises it."""
        if self.regularizer == "mmd":
            return imq_mmd(codes, prior_codes, self.prior.scale ** 2, self.mmd_scales)
        return nonsaturating_generator_loss(self.adversary(codes))  # encoded codes should look like prior ones

    def train_on(self, x: torch.Tensor, phases: tuple[str, ...], noise: torch.Generator) -> None:
        prior_codes = self.prior.sample(len(x), noise).to(x.dtype)
        with self.training_phase("autoencoder"):
            codes = self.encoder(x)
            reconstruction = self.reconstruction_loss(x, self.decoder(codes))
            penalty = self.latent_penalty(codes, prior_codes)
            self.update("autoencoder", reconstruction + self.penalty_weight * penalty,
                        {"reconstruction": reconstruction, f"{self.regularizer}_penalty": penalty})
        if "adversary" in phases:
            with self.training_phase("adversary"):
                with torch.no_grad():
                    codes = self.encoder(x)
                loss = nonsaturating_critic_loss(self.adversary(prior_codes), self.adversary(codes))
                self.update("adversary", self.penalty_weight * loss)
