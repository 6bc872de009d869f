"""Logger-agnostic logging of images and scalars from callbacks, and the schedule they log on.

Callbacks call :func:`log_image` / :func:`log_metrics` and need not know which loggers the trainer has:
W&B and TensorBoard get the image natively; without an image-capable logger (CSVLogger only, or no logger)
the image is written as a PNG so that it is never silently lost.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image


def to_uint8_hwc(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """A uint8 HWC array (returned as is) or a CHW float tensor in [0, 1] -> uint8 HWC array (C = 1 or 3)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3:
            raise ValueError(f"numpy images must be uint8 HWC, got {image.dtype} of shape {image.shape}")
        return image
    if image.ndim != 3:
        raise ValueError(f"tensor images must be CHW, got shape {tuple(image.shape)}")
    image = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return image.permute(1, 2, 0).cpu().numpy()


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a matplotlib figure to a uint8 RGB HWC array and close it.

    An Agg canvas is attached explicitly, so this works headless whatever pyplot's backend is."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    _close(fig)
    return rgb


def _close(fig: Figure) -> None:
    # Figures made with pyplot stay alive in its registry until closed; plain Figure objects need nothing.
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)


def run_dir(trainer: L.Trainer) -> Path:
    """The run's own directory, ``trainer.default_root_dir``, whatever the loggers: checkpoints, ``images/`` and
    ``evaluation.jsonl`` live here (``zoo fit`` gives each run its own, see :func:`genzoo.cli.choose_run_dir`)."""
    return Path(trainer.default_root_dir)


def image_dir(trainer: L.Trainer) -> Path:
    return run_dir(trainer) / "images"


def log_image(trainer: L.Trainer, key: str, image: np.ndarray | torch.Tensor, step: int | None = None,
              save_png: bool = True) -> Path | None:
    """Log ``image`` under ``key`` to every image-capable logger of ``trainer`` and, unless ``save_png`` is
    False, as a PNG in the run directory's ``images/`` (rank zero only). Returns the PNG path if one was written."""
    if not trainer.is_global_zero:
        return None
    step = trainer.global_step if step is None else step
    array = to_uint8_hwc(image)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[array], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, array, global_step=step, dataformats="HWC")
    if not save_png:
        return None
    path = image_dir(trainer) / f"{key.replace('/', '_')}_step{step}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
    return path


def log_metrics(trainer: L.Trainer, metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log scalars to every logger of ``trainer`` (rank zero only), outside ``LightningModule.log``."""
    if not trainer.is_global_zero:
        return
    step = trainer.global_step if step is None else step
    for logger in trainer.loggers:
        logger.log_metrics(dict(metrics), step=step)


class PeriodicCallback(Callback):
    """Calls :meth:`log_now` every ``every_n_steps`` optimizer steps and/or every ``every_n_epochs`` epochs,
    and once more at the end of training; never twice for the same global step, and on rank zero only
    (unless ``all_ranks``).

    Steps are counted with ``trainer.global_step``, which may advance by more than one per batch (GANs that
    step two optimizers), so a step event fires whenever ``global_step // every_n_steps`` increases rather
    than on exact multiples. Subclasses whose work is collective (sharded evaluation) set ``all_ranks``.
    """

    all_ranks = False
    needs_samples = True  # skipped while the model is not ``ready_to_sample``

    def __init__(self, every_n_steps: int | None = None, every_n_epochs: int | None = 1) -> None:
        for name, value in (("every_n_steps", every_n_steps), ("every_n_epochs", every_n_epochs)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be None or >= 1, got {value}")
        self.every_n_steps = every_n_steps
        self.every_n_epochs = every_n_epochs
        self._last_step_bucket = 0
        self._last_logged_step: int | None = None
        self._trained_this_fit = False

    def log_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise NotImplementedError

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Start from the current step so that a resumed run does not re-log the buckets it has passed.
        if self.every_n_steps:
            self._last_step_bucket = trainer.global_step // self.every_n_steps
        self._last_logged_step = None
        self._trained_this_fit = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        self._trained_this_fit = True
        if self.every_n_steps:
            bucket = trainer.global_step // self.every_n_steps
            if bucket > self._last_step_bucket:
                self._last_step_bucket = bucket
                self._log_once(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._log_once(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._trained_this_fit:  # a finished run resumed as it was: nothing new to log
            self._log_once(trainer, pl_module)

    def _log_once(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == self._last_logged_step:
            return
        if self.needs_samples and not getattr(pl_module, "ready_to_sample", True):
            return  # not marked as logged: the train-end event still runs once the model can sample
        self._last_logged_step = trainer.global_step
        if self.all_ranks or trainer.is_global_zero:
            self.log_now(trainer, pl_module)
