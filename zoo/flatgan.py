"""FlatGAN (Möllenhoff & Cremers, ICML 2019): flat-metric minimisation between k-currents.

    min_g  F_λ(g#S, T) = min_g  sup_{‖ω‖* ≤ λ, ‖dω‖* ≤ 1}  E_z ⟨ω(g(z)), ∇_z g·e_1 ∧ … ∧ ∇_z g·e_k⟩
                                                        − (1/N) Σ_i ⟨ω(x_i), T_i,1 ∧ … ∧ T_i,k⟩

Critic:    L_ω = E ω(g(z))(Dg) − E ω(x)(T) + ρ·(P_‖ω‖ + P_‖dω‖)      penalties at the data points (the code)
Generator: L_g = −E ω(g(z))(Dg)
The authors' code minimises the opposite signs for both players; flipping both keeps the game (the penalties
are even in ω) and gives the zoo's convention, real data scoring high. ω is the mixed form
f + α·det(Vᵀ Ω), so for k = 0 this is a WGAN with the flat-norm penalties.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch

from genzoo.adversarial import AdversarialModel
from genzoo.nets.common import has_batch_norm
from genzoo.nets.forms import DifferentialForm, Downsampler, FlatCritic, FlatGenerator, FlatOneForm, OneFormFactory
from genzoo.nets.mlp import MLPCritic, MLPGenerator, MLPOneForm
from genzoo.ops.flat import (
    EXTERIOR_PENALTIES,
    FormAtPoints,
    LatentCurrent,
    comass_penalty,
    exterior_penalty,
    haar_frames,
    pushforward,
    tangents_of,
)
from genzoo.ops.losses import wasserstein_critic_loss, wasserstein_generator_loss
from genzoo.ops.utils import full_precision
from genzoo.types import Batch, CriticFactory, GeneratorFactory, OptimizerFactory


def build_form(data_shape: tuple[int, ...], zero_form: CriticFactory, one_form: OneFormFactory | None, k: int,
               alpha: float, downsample_factor: int | None, blur_sigma: float) -> DifferentialForm:
    """The critic ω = f + α·det(Vᵀ Ω) from its 0-form and 1-form factories; for images the 1-forms see the
    tangents blurred and pooled by ``downsample_factor`` (None: at full size)."""
    downsampler = None
    if len(data_shape) == 3 and downsample_factor is not None:
        downsampler = Downsampler(data_shape, downsample_factor, blur_sigma)
    form_shape = downsampler.out_shape if downsampler is not None else (math.prod(data_shape),)
    one_form_net = one_form(data_shape, form_shape) if one_form is not None else None
    return DifferentialForm(data_shape, zero_form(data_shape), one_form_net, k, alpha, downsampler)


def default_networks(data_shape: tuple[int, ...]):
    """The authors' nets: their 2-D demo's LeakyReLU MLPs for vectors, their MNIST conv nets for images."""
    if len(data_shape) == 1:
        return (functools.partial(MLPGenerator, width=250, depth=3, activation="leaky_relu"),
                functools.partial(MLPCritic, width=100, depth=3, activation="leaky_relu"), MLPOneForm)
    return FlatGenerator, FlatCritic, FlatOneForm


class FlatGAN(AdversarialModel):
    """Defaults are the authors' MNIST demo (``demo_mnist.py``): latent 128 with z_1 ~ U(±7.5) (rotation),
    z_2 ~ U(±0.5) (thickness), the rest N(0, 1); k = 2, α = 1e-5, λ = 1, ρ = 5, the ``bound`` dω penalty,
    tangents blurred (σ = 2) and pooled by 4, one critic step per generator step, Adam 1e-4, betas (0.5, 0.9).

    Batches carry the data tangents as ``"tangents"`` ``(B, *data_shape, k)`` (``genzoo.datamodules.TangentImages``,
    ``MovingImages``, ``Circle5``); for k = 0 they are ignored. The generator's tangents ∇_z g·e_i and both
    penalties are computed in fp32 under mixed precision (:func:`genzoo.ops.flat.full_precision`); the networks'
    plain forward passes follow the trainer's precision."""

    compiled_networks = ("generator",)  # the penalties differentiate the forms twice

    def __init__(self, data_shape: tuple[int, ...], value_range: tuple[float, float] = (-1.0, 1.0),
                 latent_dim: int = 128, k: int = 2, generator: GeneratorFactory | None = None,
                 zero_form: CriticFactory | None = None, one_form: OneFormFactory | None = None,
                 alpha: float = 1e-5, comass_bound: float = 1.0, penalty_weight: float = 5.0,
                 exterior_penalty: Literal["bound", "exact"] = "bound", downsample_factor: int | None = 4,
                 blur_sigma: float = 2.0, oriented_ranges: Sequence[float] = (15.0, 1.0),
                 nuisance: Literal["gaussian", "uniform"] = "gaussian", nuisance_range: float = 2 * math.pi,
                 generator_optimizer: OptimizerFactory | None = None,
                 critic_optimizer: OptimizerFactory | None = None, n_critic: int = 1,
                 ema_decay: float | None = None, max_generator_steps: int | None = None,
                 compile: bool | dict[str, Any] = False) -> None:
        data_shape = tuple(int(s) for s in data_shape)
        if k < 0 or k > math.prod(data_shape):
            raise ValueError(f"k must be in [0, {math.prod(data_shape)}] for data of shape {data_shape}, got {k}")
        if len(oriented_ranges) != k:
            raise ValueError(f"oriented_ranges needs one range per oriented latent coordinate: k={k}, got "
                             f"{list(oriented_ranges)}")
        if comass_bound <= 0 or penalty_weight < 0:
            raise ValueError(f"comass_bound must be > 0 and penalty_weight >= 0, got {comass_bound}, {penalty_weight}")
        if exterior_penalty not in EXTERIOR_PENALTIES:
            raise ValueError(f"exterior_penalty must be one of {EXTERIOR_PENALTIES}, got {exterior_penalty!r}")
        default_generator, default_zero_form, default_one_form = default_networks(data_shape)
        critic = functools.partial(build_form, zero_form=zero_form or default_zero_form,
                                   one_form=(one_form or default_one_form) if k else None, k=k, alpha=alpha,
                                   downsample_factor=downsample_factor, blur_sigma=blur_sigma)
        super().__init__(data_shape, value_range, latent_dim, generator=generator or default_generator, critic=critic,
                         generator_optimizer=generator_optimizer, critic_optimizer=critic_optimizer,
                         n_critic=n_critic, ema_decay=ema_decay, max_generator_steps=max_generator_steps,
                         compile=compile)
        if k and has_batch_norm(self.generator):
            raise ValueError("FlatGAN's generator must not use batch norm: its tangents are per-sample Jacobians")
        if has_batch_norm(self.critic):
            raise ValueError("FlatGAN's form networks must not use batch norm: the penalties treat points one by one")
        self.latent_current = LatentCurrent(latent_dim, tuple(oriented_ranges), nuisance, nuisance_range)
        self.comass_bound = comass_bound
        self.penalty_weight = penalty_weight
        self.exterior_penalty = exterior_penalty

    @property
    def k(self) -> int:
        """The degree of the currents: how many oriented latent directions and data tangents."""
        return self.critic.k

    # ---- the objective -------------------------------------------------------------------------------------
    def critic_loss(self, real: Batch, fake: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        fake_scores = self.critic(fake["x"], fake.get("tangents"))
        with full_precision(self.device):
            # ω at the data points once, in fp32: the real scores and both penalties read it
            at_data = FormAtPoints(self.critic, real["x"].float())
            real_scores = at_data(self.data_tangents(real))
            comass, exterior = self.flat_penalties(at_data, noise)
        loss = wasserstein_critic_loss(real_scores, fake_scores)  # (g#S − T)(ω), the flat-distance estimate's negative
        return {"loss": loss + self.penalty_weight * (comass + exterior), "flat_distance": -loss.detach(),
                "comass_penalty": comass.detach(), "exterior_penalty": exterior.detach()}

    def generator_loss(self, fake: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        return {"loss": wasserstein_generator_loss(self.critic(fake["x"], fake.get("tangents")))}

    def flat_penalties(self, at_data: FormAtPoints, noise: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """‖ω‖* ≤ λ against one Haar k-frame and ‖dω‖* ≤ 1 against one Haar (k+1)-frame per data point (fp32)."""
        x = at_data.points.detach()
        n = len(x)
        with full_precision(self.device):
            frames = haar_frames(n, self.data_shape, self.k, noise, x.device) if self.k else None
            comass = comass_penalty(at_data(frames), self.comass_bound)
            frames = haar_frames(n, self.data_shape, self.k + 1, noise, x.device)
            exterior = exterior_penalty(self.critic, x, frames, self.exterior_penalty, at_points=at_data)
        return comass, exterior

    def data_tangents(self, real: Batch) -> torch.Tensor | None:
        if self.k == 0:
            return None
        tangents = real.get("tangents")
        if tangents is None:
            raise ValueError(f"FlatGAN with k={self.k} needs batches with 'tangents' (B, *data_shape, k): wrap the "
                             "data in genzoo.datamodules.TangentImages, or use MovingImages / Circle5")
        if tuple(tangents.shape[1:]) != (*self.data_shape, self.k):
            raise ValueError(f"the data tangents have shape {tuple(tangents.shape[1:])} per sample, the model needs "
                             f"{(*self.data_shape, self.k)} (k={self.k} directions)")
        return tangents

    # ---- the generator and its tangents --------------------------------------------------------------------
    def fake_batch(self, n: int, noise: torch.Generator) -> Batch:
        return self.push(self.generator, self.latent_current.sample(n, noise, self.device))

    def push(self, network: torch.nn.Module, z: torch.Tensor) -> Batch:
        """g(z) and, for k > 0, its tangents ∇_z g·e_i (fp32, forward mode)."""
        if self.k == 0:
            return {"x": network(z)}
        with full_precision(self.device):
            x, tangents = pushforward(network, z.float(), self.k)
        return {"x": x, "tangents": tangents}

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents from S's distribution: the oriented coordinates uniform, the rest nuisance."""
        return self.latent_current.sample(n, generator).to(self.device)

    def generate_with_tangents(self, z: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples and their tangent frames ``(n, *data_shape, k)`` for given latents (eval mode, fp32)."""
        self.check_latents(z)
        return tangents_of(self.sampling_network, z.to(self.device), self.k, batch_size)

    def scores(self, batch: Batch) -> torch.Tensor:
        return self.critic(batch["x"], self.data_tangents(batch))

    def shape_check_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x, x.new_zeros(*x.shape, self.k) if self.k else None)
