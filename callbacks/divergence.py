"""A guard against runs that blow up while staying finite."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from genzoo.base import DivergenceError

ACTIONS = ("stop", "warn")


class DivergenceGuard(Callback):
    """Stops the run (or warns once) when the largest parameter magnitude exceeds ``max_abs_parameter``.

    The model already stops on NaN/inf losses and parameters; this catches the finite runaway: with a learning
    rate of 1e6 parameters reach 1e13 and the run would train garbage to its end. Trained zoo networks keep every
    parameter below ~2 (all fourteen Fashion-MNIST results), so the default 1e5 is far from any healthy run.

    Checked every ``every_n_steps`` optimizer steps (one reduction over the parameters and one host sync, off the
    other steps) and before every checkpoint is written, so a blown-up state never becomes the newest checkpoint:
    with ``action="stop"`` the run ends with the earlier checkpoints kept. ``max_abs_parameter=None`` turns the
    guard off (``zoo fit ... --divergence_guard.max_abs_parameter null``).
    """

    def __init__(self, max_abs_parameter: float | None = 1e5, every_n_steps: int = 50, action: str = "stop") -> None:
        if max_abs_parameter is not None and not max_abs_parameter > 0:
            raise ValueError(f"max_abs_parameter must be > 0 or None (off), got {max_abs_parameter}")
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        self.max_abs_parameter = max_abs_parameter
        self.every_n_steps = every_n_steps
        self.action = action
        self._next_check = 0
        self._warned = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._next_check = trainer.global_step + self.every_n_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if trainer.global_step >= self._next_check:
            self._next_check = trainer.global_step + self.every_n_steps
            self.check(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self.check(trainer, pl_module)

    def check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.max_abs_parameter is None:
            return
        largest, name = largest_parameter(pl_module)
        if largest <= self.max_abs_parameter:
            return
        progress = pl_module.progress() if hasattr(pl_module, "progress") else f"epoch {trainer.current_epoch}"
        message = (f"{type(pl_module).__name__} has diverged: |{name}| reaches {largest:.3g} (> max_abs_parameter "
                   f"{self.max_abs_parameter:g}) at global step {trainer.global_step} ({progress})")
        if self.action == "stop":
            raise DivergenceError(f"{message}; training stopped, earlier checkpoints are kept. Lower the learning "
                                  "rate or check the data (DivergenceGuard: max_abs_parameter null turns this off).")
        if not self._warned:
            self._warned = True
            rank_zero_warn(f"{message}; training continues (DivergenceGuard action='warn')")


@torch.no_grad()
def largest_parameter(module: torch.nn.Module) -> tuple[float, str]:
    """The largest absolute parameter value and its parameter's name (one host sync)."""
    named = [(name, p) for name, p in module.named_parameters() if p.numel()]
    if not named:
        return 0.0, ""
    maxima = torch.stack([p.detach().abs().max().float() for _, p in named])
    index = int(maxima.argmax())
    return float(maxima[index]), named[index][0]
