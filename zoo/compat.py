"""Every private Lightning member genzoo relies on, in one place.

Lightning does not promise these across releases; each use goes through a function here, and
``tests/test_compat.py`` checks that every member in :data:`PRIVATE_MEMBERS` still exists, naming the one an
upgrade removed.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.trainer.connectors.logger_connector.logger_connector import _LoggerConnector

#: (owner, member): what the functions below and the subclasses named alongside touch
PRIVATE_MEMBERS: tuple[tuple[type, str, str], ...] = (
    (L.LightningModule, "_trainer", "the trainer, or None outside a fit (genzoo.base)"),
    (L.Trainer, "_logger_connector", "when the trainer writes logs (genzoo.base's batched logging)"),
    (_LoggerConnector, "should_update_logs", "when the trainer writes logs (genzoo.base's batched logging)"),
    (DDPStrategy, "_ddp_kwargs", "DDP options, for find_unused_parameters (genzoo.base)"),
    (ModelCheckpoint, "_every_n_train_steps", "StepCheckpoint's save interval"),
    (ModelCheckpoint, "_save_last_checkpoint", "StepCheckpoint's last.ckpt at a mid-epoch stop"),
    (ModelCheckpoint, "_save_topk_checkpoint", "StepCheckpoint's step-multiple saves"),
    (ModelCheckpoint, "_monitor_candidates", "StepCheckpoint's metrics for file names"),
    (ModelCheckpoint, "_should_skip_saving_checkpoint", "StepCheckpoint's duplicate-save guard"),
    (ModelCheckpoint, "_defer_save_until_validation", "StepCheckpoint with a validation monitor"),
    (ModelCheckpoint, "_last_time_checked", "StepCheckpoint's train_time_interval bookkeeping"),
    (TQDMProgressBar, "_should_update", "RunProgressBar's refresh rate"),
    (LightningCLI, "_run_subcommand", "ZooCLI's subcommand checks"),
    (LightningCLI, "_instantiate_trainer", "ZooCLI's forced callbacks"),
)


def trainer_of(module: L.LightningModule) -> L.Trainer | None:
    """The module's trainer, or None when it is not attached (``module.trainer`` raises then)."""
    return module._trainer


def logs_written_after_this_step(trainer: L.Trainer) -> bool:
    """Whether the trainer hands this training step's logged values to its logger (every ``log_every_n_steps``
    batches, and when the fit stops)."""
    return trainer._logger_connector.should_update_logs


def ddp_options(strategy: Any) -> dict[str, Any] | None:
    """The keyword arguments a DDP strategy will give DistributedDataParallel (mutable), or None for others."""
    return strategy._ddp_kwargs if isinstance(strategy, DDPStrategy) else None


def batches_done_in_resumed_epoch(trainer: L.Trainer) -> int:
    """Batches of the interrupted epoch whose training_step already ran when fit resumes mid-epoch, else 0
    (``processed``, not ``completed``: a checkpoint written in on_train_batch_end has not counted its batch)."""
    if not trainer.fit_loop.restarting:
        return 0
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed


def every_n_train_steps(callback: ModelCheckpoint) -> int:
    return callback._every_n_train_steps


def save_last_checkpoint(callback: ModelCheckpoint, trainer: L.Trainer) -> None:
    """``last.ckpt`` now, whatever the save interval."""
    callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))


def save_step_checkpoint(callback: ModelCheckpoint, trainer: L.Trainer) -> None:
    """What ModelCheckpoint does when its step interval fires: top-k and last, unless this step was saved already
    or a monitored metric will only exist after validation."""
    if callback._should_skip_saving_checkpoint(trainer):
        return
    candidates = callback._monitor_candidates(trainer)
    if callback.monitor is not None and callback.monitor not in candidates:
        callback._defer_save_until_validation = True
        return
    callback._save_topk_checkpoint(trainer, candidates)
    callback._save_last_checkpoint(trainer, candidates)
    callback._last_time_checked = time.monotonic()


def should_refresh(bar: TQDMProgressBar, current: int, total: int | float) -> bool:
    """Whether a progress bar at ``current`` of ``total`` is due for a redraw at its refresh rate."""
    return bar._should_update(current, total)


def missing_private_members() -> list[str]:
    """``owner.member`` for each private member this Lightning no longer has (instance attributes are looked
    up on a default instance)."""
    missing = []
    for owner, name, _ in PRIVATE_MEMBERS:
        if hasattr(owner, name):
            continue
        instance = _default_instance(owner)
        if instance is None or not hasattr(instance, name):
            missing.append(f"{owner.__module__}.{owner.__qualname__}.{name}")
    return missing


def _default_instance(owner: type) -> Any:
    if owner is L.LightningModule:
        return L.LightningModule()
    if owner is L.Trainer:
        return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    if owner is DDPStrategy:
        return DDPStrategy()
    if owner is ModelCheckpoint:
        return ModelCheckpoint()
    if owner is TQDMProgressBar:
        return TQDMProgressBar()
    return None
