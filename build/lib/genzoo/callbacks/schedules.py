"""Training-time schedules set by callbacks: OC-GAN's β_H/β_L frequency weighting (Durall et al. 2019, Eq. 3) and
AE-OT's encoder freeze."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback

from genzoo.nets.octave import checked_beta, set_octave_beta

BETA_SCHEDULES = ("constant", "ramp", "combination")


def octave_beta(schedule: str, epoch: int, epochs: int, beta_high: float = 1.0,
                beta_low: float = 1.0) -> tuple[float, float]:
    """(β_H, β_L) for 0-based ``epoch`` of ``epochs``, with f = (epoch + 1) / epochs:

    - ``constant``: the given ``beta_high``, ``beta_low`` (1, 1 = no weighting: the paper's "OCT");
    - ``ramp`` (paper Fig. 7a, values not published; our curve): β_H = f, β_L = 1 − f — low frequencies
      first, high frequencies rising linearly until they alone remain;
    - ``combination`` (paper Fig. 7b as the authors implemented it, ``dcgan.py``): β_H = min(0.7, f + 0.2),
      β_L = 1 − β_H — from 0.22/0.78 after the first of 50 epochs to 0.7/0.3 at half time, then constant.
    """
    if epochs < 1 or epoch < 0:
        raise ValueError(f"need epochs >= 1 and epoch >= 0, got {epochs} and {epoch}")
    f = min((epoch + 1) / epochs, 1.0)
    if schedule == "constant":
        return beta_high, beta_low
    if schedule == "ramp":
        return f, 1.0 - f
    if schedule == "combination":
        high = min(0.7, f + 0.2)
        return high, 1.0 - high
    raise ValueError(f"schedule must be one of {BETA_SCHEDULES}, got {schedule!r}")


class OctaveBetaSchedule(Callback):
    """Sets β_H/β_L on every octave block of the model (generator and critic alike, as the authors do) at the
    start of each epoch and logs them as ``train/beta_high``/``train/beta_low``. ``epochs`` defaults to the
    trainer's ``max_epochs``. This is the training β; a generator built with ``eval_beta`` samples with that
    instead in eval mode (evaluation, sample grids)."""

    def __init__(self, schedule: str = "combination", epochs: int | None = None, beta_high: float = 1.0,
                 beta_low: float = 1.0) -> None:
        if schedule not in BETA_SCHEDULES:
            raise ValueError(f"schedule must be one of {BETA_SCHEDULES}, got {schedule!r}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        beta_high, beta_low = checked_beta((beta_high, beta_low), "OctaveBetaSchedule's (beta_high, beta_low)")
        self.schedule, self.epochs, self.beta_high, self.beta_low = schedule, epochs, beta_high, beta_low

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epochs = self.epochs or trainer.max_epochs
        if self.schedule != "constant" and (epochs is None or epochs < 1):
            raise ValueError(f"the {self.schedule!r} β schedule needs a length: set epochs or trainer.max_epochs")
        if set_octave_beta(pl_module, 1.0, 1.0) == 0:
            raise ValueError("OctaveBetaSchedule: the model has no octave blocks to weight (alpha = 0?)")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epochs = self.epochs or trainer.max_epochs or 1
        beta_high, beta_low = octave_beta(self.schedule, trainer.current_epoch, epochs, self.beta_high,
                                          self.beta_low)
        set_octave_beta(pl_module, beta_high, beta_low)
        pl_module.log_dict({"train/beta_high": beta_high, "train/beta_low": beta_low}, on_step=False,
                           on_epoch=True, sync_dist=False)


class FreezeEncoder(Callback):
    """AE-OT's schedule: freeze the encoder once the epoch-mean reconstruction loss stops falling, then let the
    decoder refine (the paper: "when the L² loss stops descending … we freeze the encoder").

    A plateau is ``patience`` epochs in a row whose loss is not below ``(1 − threshold)`` × the best so far
    (after at least ``min_epochs``); ``max_epochs`` freezes regardless once reached. Reads ``monitor`` from
    the logged metrics (an epoch mean synchronised across ranks, so every rank freezes at the same epoch)
    and calls ``pl_module.freeze_encoder()``."""

    def __init__(self, patience: int = 5, threshold: float = 0.01, min_epochs: int = 1,
                 max_epochs: int | None = None, monitor: str = "train/reconstruction_epoch") -> None:
        if patience < 1 or not 0 <= threshold < 1 or min_epochs < 0 or (max_epochs is not None and max_epochs < 1):
            raise ValueError(f"FreezeEncoder: need patience >= 1, 0 <= threshold < 1, min_epochs >= 0 and "
                             f"max_epochs >= 1 or None, got {patience}, {threshold}, {min_epochs}, {max_epochs}")
        self.patience, self.threshold, self.min_epochs, self.max_epochs = patience, threshold, min_epochs, max_epochs
        self.monitor = monitor
        self.best = float("inf")
        self.bad_epochs = 0
        self.frozen_at: int | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if getattr(pl_module, "encoder_frozen", True):
            return
        if self.monitor not in trainer.callback_metrics:
            raise ValueError(f"FreezeEncoder monitors {self.monitor!r}, which the model does not log; logged: "
                             f"{sorted(trainer.callback_metrics)}")
        loss = float(trainer.callback_metrics[self.monitor])
        if loss < (1 - self.threshold) * self.best:
            self.best, self.bad_epochs = loss, 0
        else:
            self.bad_epochs += 1
        epoch = trainer.current_epoch + 1
        plateau = self.bad_epochs >= self.patience and epoch >= self.min_epochs
        if plateau or (self.max_epochs is not None and epoch >= self.max_epochs):
            pl_module.freeze_encoder()
            self.frozen_at = epoch

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "frozen_at": self.frozen_at}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best, self.bad_epochs = float(state_dict["best"]), int(state_dict["bad_epochs"])
        self.frozen_at = state_dict.get("frozen_at")
