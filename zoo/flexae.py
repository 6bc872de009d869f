"""FlexAE and FlexAE-SR (Mondal et al., UAI 2021): a deterministic autoencoder whose latent prior is learned.

A prior generator G_ψ (P-GEN, n ~ N(0, I_m') -> ẑ ∈ R^m) and the encoder are pulled toward each other through a
latent WGAN-GP critic C_κ; FlexAE-SR also decodes convex combinations of pairs of codes and trains an image
critic C_ζ so that those decodings look like data (the smoothing regulariser). With s the batch size:

    L_AE     = 1/s Σ ‖x − D(E(x))‖²                                      Eq. 5   (E, D)
    L_Critic = mean C_κ(ẑ) − mean C_κ(z) + β·GP_κ                         Eq. 6   (C_κ; z = E(x) plays "real")
    L_Gen    = −mean C_κ(ẑ)                                              Eq. 7   (G_ψ)
    L_Enc    = λ1 · mean C_κ(z)                                          Eq. 8   (E)
    L_Reg    = mean C_ζ(x_inp) − mean C_ζ(x) + β·GP_ζ                      Eq. 9   (C_ζ; SR only)
    L_AEReg  = −λ2 · mean C_ζ(x_inp),  x_inp = D(γ z_j + (1 − γ) z_k)      Eq. 10  (E, D; SR only)

Training follows the authors' FlexAESR.py (L380-465): each term has its own Adam optimizer and learning rate,
which is where the code puts the relative weights (λ1 = λ2 = 1 there; exposed here). One outer step is one
reconstruction update on its own batch, then ``n_critic`` (5) critic updates on fresh batches, then the
smoothing, P-GEN and encoder updates on the last critic batch. In Lightning terms an outer step is
``n_critic + 1`` training steps (batches); ``max_outer_steps`` counts outer steps, the paper's iterations.
Interpolation partners are the next sample of the same shuffled batch (the authors draw a second batch).

Decoder batch-norm running statistics (what eval-mode generation normalises with) follow the authors' TF graph,
where every trainer run updates the moving averages of each decoder instantiation once: reconstruction, P-GEN
samples and (SR) interpolations mix 1:1:1. Here each outer step updates them once from each: the reconstruction
step, a statistics-only decode of the last critic step's prior codes, and the smoothing step; the no-grad decodes
of interpolations for the image critic keep batch statistics but leave the running ones alone. (Decoding those
too made interpolations, whose codes have about 2/3 of the codes' variance, 6/7 of the mix.) The TF averages
take 14 such triples per outer step (one per trainer run), ours one, so ours average over more outer steps; the
mix, which sets the statistics, is the same.

``learned_prior=False`` keeps N(0, I) with the same latent critic: the WGAN-GP "WAE" of the paper's Table 3
(an AAE with a Wasserstein adversary), differing from FlexAE in the prior alone.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from genzoo.autoencoder import AutoencoderModel, frozen_running_stats, paired
from genzoo.base import FixedCycle
from genzoo.nets import InfoGANCritic, MLPCritic
from genzoo.ops.losses import gradient_penalty, mix, wasserstein_critic_loss, wasserstein_generator_loss
from genzoo.priors import GaussianPrior, LearnedPrior
from genzoo.types import CriticFactory, EncoderFactory, GeneratorFactory, OptimizerFactory


def _adam(lr: float, betas: tuple[float, float]) -> OptimizerFactory:
    return functools.partial(torch.optim.Adam, lr=lr, betas=betas)


def default_image_critic(data_shape: tuple[int, ...]) -> nn.Module:
    return InfoGANCritic(data_shape) if len(data_shape) == 3 else MLPCritic(data_shape)


class FlexAE(AutoencoderModel):
    """Defaults are the authors' code: m = m' = 32, β = 10, five critic updates per outer step, batch 128, and
    the optimizers (FlexAESR.py L380-437): reconstruction Adam 2e-4 (0.9, 0.999); latent critic 1e-4 (0, 0.9);
    image critic 2e-4 (0.5, 0.9); smoothing 2e-4 (0.5, 0.9); P-GEN 2e-4 (0, 0.9); encoder 1e-5 (0, 0.9)."""

    smoothing = False  # FlexAE-SR sets it
    compiled_networks = ("encoder", "decoder", "prior")  # the critics' gradient penalties differentiate them twice

    def __init__(self, data_shape: tuple[int, ...], value_range: tuple[float, float] = (0.0, 1.0),
                 latent_dim: int = 32, noise_dim: int | None = None, learned_prior: bool = True,
                 encoder: EncoderFactory | None = None, decoder: GeneratorFactory | None = None,
                 prior_network: GeneratorFactory | None = None, latent_critic: CriticFactory | None = None,
                 image_critic: CriticFactory | None = None, n_critic: int = 5, gp_weight: float = 10.0,
                 lambda_prior: float = 1.0, lambda_smoothing: float = 1.0,
                 autoencoder_optimizer: OptimizerFactory | None = None,
                 latent_critic_optimizer: OptimizerFactory | None = None,
                 image_critic_optimizer: OptimizerFactory | None = None,
                 smoothing_optimizer: OptimizerFactory | None = None,
                 prior_optimizer: OptimizerFactory | None = None,
                 encoder_optimizer: OptimizerFactory | None = None,
                 max_outer_steps: int | None = None, compile: bool | dict[str, Any] = False) -> None:
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        for name, value in (("gp_weight", gp_weight), ("lambda_prior", lambda_prior),
                            ("lambda_smoothing", lambda_smoothing)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        data_shape = tuple(data_shape)
        prior = (functools.partial(LearnedPrior, noise_dim=noise_dim, network=prior_network) if learned_prior
                 else GaussianPrior)
        super().__init__(data_shape, value_range, latent_dim, encoder=encoder, decoder=decoder, prior=prior,
                         max_outer_steps=max_outer_steps, compile=compile)
        self.learned_prior = learned_prior
        self.n_critic = n_critic
        self.gp_weight = float(gp_weight)
        self.lambda_prior = float(lambda_prior)
        self.lambda_smoothing = float(lambda_smoothing)
        self.latent_critic = (latent_critic or functools.partial(MLPCritic, width=1024, depth=4,
                                                                 init="glorot_normal"))((latent_dim,))
        self.check_critic(self.latent_critic, (latent_dim,), "latent critic")
        autoencoder = lambda: [*self.encoder.parameters(), *self.decoder.parameters()]  # noqa: E731
        self.add_optimizer("autoencoder", autoencoder, autoencoder_optimizer or _adam(2e-4, (0.9, 0.999)))
        self.add_optimizer("latent_critic", lambda: list(self.latent_critic.parameters()),
                           latent_critic_optimizer or _adam(1e-4, (0.0, 0.9)))
        self.image_critic = None
        if self.smoothing:
            self.image_critic = (image_critic or default_image_critic)(data_shape)
            self.check_critic(self.image_critic, data_shape, "image critic")
            self.add_optimizer("image_critic", lambda: list(self.image_critic.parameters()),
                               image_critic_optimizer or _adam(2e-4, (0.5, 0.9)))
            self.add_optimizer("smoothing", autoencoder, smoothing_optimizer or _adam(2e-4, (0.5, 0.9)))
        if learned_prior:
            self.add_optimizer("prior", lambda: list(self.prior.parameters()),
                               prior_optimizer or _adam(2e-4, (0.0, 0.9)))
        self.add_optimizer("encoder", lambda: list(self.encoder.parameters()),
                           encoder_optimizer or _adam(1e-5, (0.0, 0.9)))
        # one outer step: a reconstruction batch, then n_critic critic batches, the last one also updating the
        # generator side (smoothing, P-GEN, encoder) on its batch
        critics = ("latent_critic", "image_critic") if self.smoothing else ("latent_critic",)
        generator_side = ("smoothing",) * self.smoothing + ("prior",) * learned_prior + ("encoder",)
        self.phase_schedule = FixedCycle([("autoencoder",)] + [critics] * (n_critic - 1) + [critics + generator_side])

    # ---- the objective's terms ------------------------------------------------------------------------
    def critic_terms(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eqs. 6 and 9: WGAN-GP with the penalty at per-sample interpolates alpha·real + (1 − alpha)·fake."""
        loss = wasserstein_critic_loss(critic(real), critic(fake))
        penalty = gradient_penalty(critic, real, fake, alpha, loss_scale=self.loss_scale())
        return {"loss": loss + self.gp_weight * penalty, "wasserstein": -loss.detach(),
                "gradient_penalty": penalty.detach()}

    def interpolations(self, codes: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """x_inp = D(γ z_j + (1 − γ) z_k) for each code and its partner (Eq. 10)."""
        return self.decoder(mix(codes, paired(codes), gamma))

    def prior_loss(self, noise: torch.Tensor) -> torch.Tensor:
        """Eq. 7: P-GEN's samples should score like codes."""
        return wasserstein_generator_loss(self.latent_critic(self.prior(noise)))

    def encoder_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 8 (× λ1): codes should score like P-GEN's samples."""
        return self.lambda_prior * self.latent_critic(self.encoder(x)).float().mean()

    def smoothing_loss(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """Eq. 10 (× λ2): decoded interpolations should score like data."""
        scores = self.image_critic(self.interpolations(self.encoder(x), gamma))
        return self.lambda_smoothing * wasserstein_generator_loss(scores)

    def prior_codes(self, noise: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.prior(noise) if self.learned_prior else self.prior.sample(n, generator)

    # ---- one training step ----------------------------------------------------------------------------
    def train_on(self, x: torch.Tensor, phases: tuple[str, ...], noise: torch.Generator) -> None:
        if "autoencoder" in phases:
            with self.training_phase("autoencoder"):
                self.update("autoencoder", self.reconstruction_loss(x, self.decoder(self.encoder(x))))
            return
        n = len(x)
        uniform = lambda: self.rand(n, generator=noise)  # noqa: E731
        prior_noise = self.prior.noise(n, noise) if self.learned_prior else None
        x_inp = None
        with torch.no_grad():
            codes, prior_codes = self.encoder(x), self.prior_codes(prior_noise, n, noise)
            if "image_critic" in phases:
                with frozen_running_stats(self.decoder):  # the smoothing step updates them for interpolations
                    x_inp = self.interpolations(codes, uniform())
        with self.training_phase("latent_critic"):
            terms = self.critic_terms(self.latent_critic, codes, prior_codes, uniform())
            self.update("latent_critic", terms["loss"], {"latent_wasserstein": terms["wasserstein"],
                                                         "latent_gradient_penalty": terms["gradient_penalty"]})
        if "image_critic" in phases:
            with self.training_phase("image_critic"):
                terms = self.critic_terms(self.image_critic, x, x_inp, uniform())
                self.update("image_critic", terms["loss"], {"image_wasserstein": terms["wasserstein"],
                                                            "image_gradient_penalty": terms["gradient_penalty"]})
        if "encoder" not in phases:
            return
        # the generator side reuses the last critic batch and noise, as the authors' code does
        with torch.no_grad():  # running statistics only: the P-GEN share of the authors' mix (module docstring)
            self.decoder(prior_codes)
        if "smoothing" in phases:
            with self.training_phase("smoothing"):
                self.update("smoothing", self.smoothing_loss(x, uniform()))
        if "prior" in phases:
            with self.training_phase("prior"):
                self.update("prior", self.prior_loss(prior_noise))
        with self.training_phase("encoder"):
            self.update("encoder", self.encoder_loss(x))


class FlexAESR(FlexAE):
    """FlexAE with the smoothing regulariser (the authors' public code, FlexAESR.py)."""

    smoothing = True


__all__ = ["FlexAE", "FlexAESR"]
