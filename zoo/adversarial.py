"""The shared adversarial base (after StyleGAN2-ADA's phase-based ``loss.py``).

A method names its objective in two phases, ``critic_loss(real, fake, noise)`` and ``generator_loss(fake, noise)``,
each returning a dict with the total under ``"loss"`` plus any terms to log. The base owns the rest: the networks
(built from factories through :meth:`~AdversarialModel.init_generator` and :meth:`~AdversarialModel.init_critic`),
the critic/generator schedule (as data, :class:`CriticSchedule`), toggling, backward and steps, AMP details, the
optional EMA generator; :class:`~genzoo.base.GenerativeModel` counts, stops and checkpoints the schedule.

A variant's constructor takes only what is new and passes the shared settings through as keywords::

    class HingeGAN(AdversarialModel):
        def __init__(self, *args, margin: float = 1.0, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.margin = margin

Data accounting follows the official WGAN/WGAN-GP code: each ``training_step`` is one critic update on one
real batch; after ``n_critic`` of them (100 during WGAN's warm-up) comes one generator update on fresh
noise. Lightning's ``global_step`` counts every optimizer step (critic and generator), so
``trainer.max_steps`` bounds their sum; ``max_generator_steps`` bounds generator steps, the papers' unit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from genzoo.base import GenerativeModel
from genzoo.nets import default_critic, default_generator
from genzoo.ops.utils import eval_mode
from genzoo.types import Batch, CriticFactory, GeneratorFactory, OptimizerFactory


@dataclass(frozen=True)
class CriticSchedule:
    """How many critic updates precede each generator update.

    With ``warmup`` (WGAN's official code, omitted from the paper) the critic gets ``warmup_critic_steps``
    updates before generator step g (0-based: the number of generator steps already taken) when
    ``g < warmup_generator_steps`` or ``(g + warmup_every_offset) % warmup_every == 0``; ``n_critic``
    otherwise. The two authors' codes differ by one step in the periodic phase:

    - WGAN (``main.py``: ``gen_iterations < 25 or gen_iterations % 500 == 0``): offset 0, the long phases
      precede steps 0–24, 500, 1000, ...;
    - OC-GAN (``train.py``: ``g_iter < 50 or (g_iter + 1) % 500 == 0``): offset 1, steps 0–49, 499, 999, ...
    """

    n_critic: int = 5
    warmup: bool = False
    warmup_critic_steps: int = 100
    warmup_generator_steps: int = 25
    warmup_every: int = 500
    warmup_every_offset: int = 0

    def __post_init__(self) -> None:
        if self.n_critic < 1 or self.warmup_critic_steps < 1:
            raise ValueError(f"n_critic and warmup_critic_steps must be >= 1, got {self.n_critic}, "
                             f"{self.warmup_critic_steps}")
        if self.warmup_generator_steps < 0 or self.warmup_every < 0:
            raise ValueError("warmup_generator_steps and warmup_every must be >= 0")
        if self.warmup_every_offset < 0 or (self.warmup_every_offset > 0
                                            and self.warmup_every_offset >= self.warmup_every):
            raise ValueError(f"warmup_every_offset must be in [0, warmup_every) (0 when warmup_every is 0), got "
                             f"{self.warmup_every_offset} with warmup_every {self.warmup_every}")

    def critic_steps(self, generator_step: int) -> int:
        if self.warmup and (generator_step < self.warmup_generator_steps
                            or (self.warmup_every > 0
                                and (generator_step + self.warmup_every_offset) % self.warmup_every == 0)):
            return self.warmup_critic_steps
        return self.n_critic

    def cycle(self, generator_step: int) -> tuple[tuple[str, ...], ...]:
        """One critic update per batch; the cycle's last batch also updates the generator."""
        return (("critic",),) * (self.critic_steps(generator_step) - 1) + (("critic", "generator"),)


class AdversarialModel(GenerativeModel):
    """Base for critic/generator games. A method implements :meth:`critic_loss` and :meth:`generator_loss`;
    :meth:`fake_batch` may add keys (e.g. tangents). Class attributes hold the method's defaults: the
    optimizer both players get unless configured, and the default critic's normalisation."""

    progress_name = "generator_step"
    budget_name = "max_generator_steps"
    #: both players' optimizer unless configured (the WGAN-GP paper's Adam)
    default_optimizer: ClassVar[Callable[..., torch.optim.Optimizer]] = functools.partial(
        torch.optim.Adam, lr=1e-4, betas=(0.5, 0.9))
    #: the default critic's normalisation ("none", "layer" or "batch")
    critic_norm: ClassVar[str] = "none"
    compiled_networks = ("generator", "critic")

    def __init__(self, data_shape: tuple[int, ...], value_range: tuple[float, float] = (-1.0, 1.0),
                 latent_dim: int = 128, generator: GeneratorFactory | None = None,
                 critic: CriticFactory | None = None, generator_optimizer: OptimizerFactory | None = None,
                 critic_optimizer: OptimizerFactory | None = None, n_critic: int = 5,
                 ema_decay: float | None = None, max_generator_steps: int | None = None,
                 compile: bool | dict[str, Any] = False) -> None:
        super().__init__(data_shape, value_range, latent_dim, compile=compile)
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay}")
        if max_generator_steps is not None and max_generator_steps < 1:
            raise ValueError(f"max_generator_steps must be >= 1 or None, got {max_generator_steps}")
        self.generator = self.init_generator(generator)
        self.critic = self.init_critic(critic)
        self.phase_schedule = CriticSchedule(n_critic=n_critic)
        self.max_generator_steps = self.step_limit = max_generator_steps
        self.generator_ema: AveragedModel | None = None
        if ema_decay is not None:
            self.generator_ema = AveragedModel(self.generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay),
                                               use_buffers=True)
            self.generator_ema.requires_grad_(False)
        self.add_optimizer("critic", lambda: list(self.critic.parameters()), critic_optimizer or self.default_optimizer)
        self.add_optimizer("generator", lambda: list(self.generator.parameters()),
                           generator_optimizer or self.default_optimizer)
        self._check_output_shape()

    # ---- the networks (lightning-bolts' init_generator / init_discriminator hooks) ---------------------------
    def init_generator(self, factory: GeneratorFactory | None) -> nn.Module:
        """The generator from a configured factory, or the default for the data (MLP for vectors, DCGAN for images)."""
        return (factory or default_generator)(self.latent_dim, self.data_shape, self.value_range)

    def init_critic(self, factory: CriticFactory | None) -> nn.Module:
        """The critic from a configured factory, or the default for the data with :attr:`critic_norm`."""
        return factory(self.data_shape) if factory is not None else default_critic(self.data_shape, self.critic_norm)

    @property
    def generator_step(self) -> int:
        """Generator updates taken: the papers' unit of progress."""
        return self.progress_step

    def _check_output_shape(self) -> None:
        """Fail at construction, not mid-training, when a network does not fit the data."""
        with torch.no_grad(), eval_mode(self.generator):
            out = self.generator(torch.zeros(2, self.latent_dim))
            if tuple(out.shape[1:]) != self.data_shape:
                raise ValueError(f"the generator makes samples of shape {tuple(out.shape[1:])}, but the data has "
                                 f"shape {self.data_shape}: choose a network for this image size")
            self.critic.eval()
            scores = self.shape_check_scores(out)
            self.critic.train()
            if scores.shape != (2,):
                raise ValueError(f"the critic must return one score per sample, got shape {tuple(scores.shape)}")

    # ---- what a method defines ---------------------------------------------------------------------------
    def critic_loss(self, real: Batch, fake: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        """The critic's phase: ``{"loss": total, **terms to log}``; ``noise`` seeds any randomness (penalties)."""
        raise NotImplementedError

    def generator_loss(self, fake: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def before_critic_update(self) -> None:
        """Hook (WGAN clips weights here)."""

    def after_critic_update(self) -> None:
        """Hook (WGAN can clip here instead)."""

    def shape_check_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The critic's scores for generated ``x`` at construction (FlatGAN's form also takes tangents)."""
        return self.critic(x)

    def scores(self, batch: Batch) -> torch.Tensor:
        """The critic's scores for a batch (FlatGAN's form also reads the batch's tangents)."""
        return self.critic(batch["x"])

    def held_out_terms(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The critic's mean score on held-out real samples, on fresh generated ones, and their gap (for the
        Wasserstein critics, the distance estimate on data the critic never trained on)."""
        real = self.scores(batch).float().mean()
        fake = self.scores(self.fake_batch(len(batch["x"]), generator)).float().mean()
        return {"critic_real": real, "critic_fake": fake, "critic_gap": real - fake}

    def fake_batch(self, n: int, noise: torch.Generator) -> Batch:
        return {"x": self.generator(self.randn(n, self.latent_dim, generator=noise))}

    # ---- the API ----------------------------------------------------------------------------------------
    @property
    def sampling_network(self) -> nn.Module:
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    # ---- training -----------------------------------------------------------------------------------------
    def train_phases(self, real: Batch, phases: tuple[str, ...]) -> None:
        n = len(real["x"])
        if "critic" in phases:
            self.before_critic_update()
            with self.training_phase("critic"):
                noise = self.noise()
                with torch.no_grad():
                    fake = self.fake_batch(n, noise)
                terms = self.critic_loss(real, fake, noise)
                self.update("critic", terms.pop("loss"), terms)
            self.after_critic_update()
        if "generator" in phases:
            with self.training_phase("generator"):
                noise = self.noise()
                terms = self.generator_loss(self.fake_batch(n, noise), noise)
                self.update("generator", terms.pop("loss"), terms)
            if self.generator_ema is not None:
                self.generator_ema.update_parameters(self.generator)
