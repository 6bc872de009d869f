"""Step-based checkpointing that works with the zoo's alternating optimizer steps, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from genzoo.base import fit_ends_after_this_epoch, max_steps_reached
from genzoo.checkpoints import atomic_save
from genzoo.compat import every_n_train_steps, save_last_checkpoint, save_step_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Local checkpoints go through :func:`genzoo.checkpoints.atomic_save` (a temporary file beside the destination,
    fsync, rename), so a full disk or a kill mid-write leaves the previous file intact. Lightning's own writes
    the temporary file in ``$TMPDIR``; on another filesystem than the run directory the final move is a copy
    over the destination, and a full disk there truncates a good ``last.ckpt``. Remote paths keep Lightning's."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_save(checkpoint, path)


class StepCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``every_n_train_steps`` fires whenever ``global_step`` crosses a multiple of N.

    Lightning's own waits for ``global_step % N == 0``, but a zoo model takes one or two optimizer steps per
    batch (a critic step, then sometimes a generator step), so ``global_step`` can jump over the multiple and
    that checkpoint is never written. The checkpoint holds the state after the batch's updates, which is
    what an exact resume needs (Lightning's warning about pre-optimization state does not apply).

    With ``save_last``, the state at the end of fitting always reaches ``last.ckpt``, even between step
    multiples (it holds the result of the model's after-training stage, e.g. AE-OT's transport map).

    Files go to ``dirpath``, by default ``<trainer.default_root_dir>/checkpoints`` whatever the loggers, and are
    written by :class:`AtomicCheckpointIO` (installed at setup unless the trainer has its own
    CheckpointIO plugin).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._last_step_bucket = 0
        self._trained_this_fit = False
        self._saved_at_stop: tuple[int, bool] | None = None  # (global step, model ready to sample) of that save

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:  # the run directory, not a logger's (W&B's would bury it under <project>/<id>)
            self.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # a user's own CheckpointIO is kept
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._trained_this_fit = False
        if every_n_train_steps(self) >= 1:  # a resumed run counts from where it stopped
            self._last_step_bucket = trainer.global_step // every_n_train_steps(self)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        self._trained_this_fit = True
        if pl_module.automatic_optimization:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._save_on_step_multiple(trainer)
        if self.save_last and not trainer.fast_dev_run and stops_after_this_batch(trainer):
            # A budget that ends the run mid-epoch: last.ckpt holds this mid-epoch state, so a resume with a larger
            # budget continues the epoch's batches exactly as a run given that budget from the start would.
            save_last_checkpoint(self, trainer)
            self._saved_at_stop = (trainer.global_step, getattr(pl_module, "ready_to_sample", True))

    def _save_on_step_multiple(self, trainer: L.Trainer) -> None:
        if every_n_train_steps(self) < 1:
            return
        bucket = trainer.global_step // every_n_train_steps(self)
        if bucket <= self._last_step_bucket:
            return
        self._last_step_bucket = bucket
        save_step_checkpoint(self, trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._trained_this_fit:  # a finished run resumed as it was writes nothing
            super().on_train_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        unchanged = self._saved_at_stop == (trainer.global_step, getattr(pl_module, "ready_to_sample", True))
        if self.save_last and not trainer.fast_dev_run and fit_ends_after_this_epoch(trainer) and not unchanged:
            save_last_checkpoint(self, trainer)


def stops_after_this_batch(trainer: L.Trainer) -> bool:
    """True in ``on_train_batch_end`` when fit stops after this batch on a stop request or ``max_steps``."""
    return trainer.should_stop or max_steps_reached(trainer)
