"""The shared adversarial base (after StyleGAN2-ADA's phase-based ``loss.py``).

A method names its objective in two phases, ``critic_loss(real, fake)`` and ``generator_loss(fake)``, each
returning a dict with the total under ``"loss"`` plus any terms to log. The base owns the rest: the
critic/generator schedule, toggling, backward and steps, AMP details, the generator-step counter, the
optional EMA generator and the schedule state in checkpoints.

Data accounting follows the official WGAN/WGAN-GP code: each ``training_step`` is one critic update on one
real batch; after ``n_critic`` of them (100 during WGAN's warm-up) comes one generator update on fresh
noise. Lightning's ``global_step`` counts every optimizer step (critic and generator), so
``trainer.max_steps`` bounds their sum; ``max_generator_steps`` bounds generator steps, the papers' unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from zoo.base import GenerativeModel
from zoo.types import OptimizerFactory

Batch = dict[str, torch.Tensor]


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


class AdversarialModel(GenerativeModel):
    """Base for critic/generator games. Subclasses set ``self.generator`` and ``self.critic`` and implement
    :meth:`critic_loss` and :meth:`generator_loss`; :meth:`fake_batch` may add keys (e.g. tangents)."""

    def __init__(self, data_shape: tuple[int, ...], value_range: tuple[float, float], latent_dim: int,
                 generator: nn.Module, critic: nn.Module, generator_optimizer: OptimizerFactory,
                 critic_optimizer: OptimizerFactory, schedule: CriticSchedule, ema_decay: float | None = None,
                 max_generator_steps: int | None = None) -> None:
        super().__init__(data_shape, value_range, latent_dim)
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay}")
        if max_generator_steps is not None and max_generator_steps < 1:
            raise ValueError(f"max_generator_steps must be >= 1 or None, got {max_generator_steps}")
        self.generator = generator
        self.critic = critic
        self.schedule = schedule
        self.max_generator_steps = max_generator_steps
        self.generator_ema: AveragedModel | None = None
        if ema_decay is not None:
            self.generator_ema = AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay),
                                               use_buffers=True)
            self.generator_ema.requires_grad_(False)
        self.add_optimizer("critic", lambda: list(self.critic.parameters()), critic_optimizer)
        self.add_optimizer("generator", lambda: list(self.generator.parameters()), generator_optimizer)
        # schedule state: saved in checkpoints so a resumed run continues the cycle exactly
        self.generator_step = 0
        self.critic_steps_in_cycle = 0
        self.phase_rng: torch.Generator | None = None  # the current update's generator (see GenerativeModel.rng)
        self._check_output_shape()

    def _check_output_shape(self) -> None:
        """Fail at construction, not mid-training, when a network does not fit the data."""
        with torch.no_grad():
            was_training = self.generator.training
            self.generator.eval()
            out = self.generator(torch.zeros(2, self.latent_dim))
            self.generator.train(was_training)
            if tuple(out.shape[1:]) != self.data_shape:
                raise ValueError(f"the generator makes samples of shape {tuple(out.shape[1:])}, but the data has "
                                 f"shape {self.data_shape}: choose a network for this image size")
            self.critic.eval()
            scores = self.shape_check_scores(out)
            self.critic.train()
            if scores.shape != (2,):
                raise ValueError(f"the critic must return one score per sample, got shape {tuple(scores.shape)}")

    # ---- what a method defines ---------------------------------------------------------------------------
    def critic_loss(self, real: Batch, fake: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def generator_loss(self, fake: Batch) -> dict[str, torch.Tensor]:
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

    def fake_batch(self, n: int, generator: torch.Generator) -> Batch:
        return {"x": self.generator(self.randn(n, self.latent_dim, generator=generator))}

    # ---- the API ----------------------------------------------------------------------------------------
    @property
    def sampling_network(self) -> nn.Module:
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    def progress(self) -> str:
        return f"generator step {self.generator_step}"

    def step_budget(self) -> tuple[str, int, int] | None:
        if self.max_generator_steps is None:
            return None
        return "max_generator_steps", self.generator_step, self.max_generator_steps

    # ---- training -----------------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> None:
        real = {k: v for k, v in self.checked_batch(batch).items() if k != "label"}
        n = len(real["x"])

        self.before_critic_update()
        with self.training_phase("critic"):
            self.phase_rng = self.rng()
            with torch.no_grad():
                fake = self.fake_batch(n, self.phase_rng)
            terms = self.critic_loss(real, fake)
            self.update("critic", terms.pop("loss"), terms)
        self.after_critic_update()
        self.critic_steps_in_cycle += 1

        if self.critic_steps_in_cycle >= self.schedule.critic_steps(self.generator_step):
            with self.training_phase("generator"):
                self.phase_rng = self.rng()
                terms = self.generator_loss(self.fake_batch(n, self.phase_rng))
                self.update("generator", terms.pop("loss"), terms)
            if self.generator_ema is not None:
                self.generator_ema.update_parameters(self.generator)
            self.critic_steps_in_cycle = 0
            self.generator_step += 1
            self.log("train/generator_step", float(self.generator_step), on_step=True)
            if self.budget_reached():
                self.trainer.should_stop = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["zoo"]["schedule"] = {"generator_step": self.generator_step,
                                         "critic_steps_in_cycle": self.critic_steps_in_cycle}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["zoo"].get("schedule", {})
        self.generator_step = int(state.get("generator_step", 0))
        self.critic_steps_in_cycle = int(state.get("critic_steps_in_cycle", 0))
