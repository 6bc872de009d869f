"""What a person watching a run sees: one progress bar in the paper's unit, and a summary at the end."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info

from genzoo.callbacks.logging import image_dir, run_dir
from genzoo.compat import should_refresh


def model_budget(pl_module: L.LightningModule) -> tuple[str, int, int] | None:
    budget = getattr(pl_module, "step_budget", None)
    return budget() if callable(budget) else None


class RunProgressBar(TQDMProgressBar):
    """Lightning's bar counts batches of an endless epoch; this one counts the model's own steps (generator or
    outer steps, the papers' unit) against its budget, with an ETA, and shows the current losses. Models
    without a step budget (AE-OT trains for epochs) keep Lightning's per-epoch bar. Validation, test and predict
    bars are Lightning's."""

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        budget = model_budget(trainer.lightning_module)
        if budget is None:
            return super().on_train_epoch_start(trainer, *args)
        bar = self.train_progress_bar
        if bar.total != budget[2]:  # once per run: the bar spans epochs
            name, taken, limit = budget
            bar.reset(total=limit)
            bar.initial = 0
            bar.n = taken
            bar.set_description(name.removeprefix("max_").replace("_", " "))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        budget = model_budget(pl_module)
        if budget is None:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        bar, taken = self.train_progress_bar, budget[1]
        if bar is not None and taken != bar.n and should_refresh(self, taken, bar.total):
            bar.n = taken
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if model_budget(pl_module) is None:
            super().on_train_epoch_end(trainer, pl_module)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        losses = {key.removeprefix("train/").removesuffix("_loss"): f"{float(value):.4g}"
                  for key, value in trainer.callback_metrics.items()
                  if key.startswith("train/") and key.endswith("_loss")}
        return {**losses, **metrics}


class RunSummary(Callback):
    """At the end of ``fit``, a few lines: how far the run got and in how long, its last evaluation, and where
    its checkpoint, sample images, metrics and config are (rank zero)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            rank_zero_info(summary(trainer, pl_module, time.monotonic() - getattr(self, "_start", time.monotonic())))


def summary(trainer: L.Trainer, pl_module: L.LightningModule, seconds: float) -> str:
    progress = pl_module.progress() if hasattr(pl_module, "progress") else f"epoch {trainer.current_epoch}"
    minutes, rest = divmod(int(seconds), 60)
    lines = [f"genzoo: {type(pl_module).__name__} stopped at {progress} (global step {trainer.global_step}) after "
             f"{minutes} min {rest} s", f"  run directory  {run_dir(trainer)}"]
    checkpoint = getattr(trainer.checkpoint_callback, "last_model_path", "") or ""
    if checkpoint:
        lines.append(f"  checkpoint     {checkpoint}")
    images = sorted(image_dir(trainer).glob("samples_*.png"), key=lambda p: p.stat().st_mtime)
    if images:
        lines.append(f"  samples        {images[-1]}")
    evaluation = run_dir(trainer) / "evaluation.jsonl"
    if evaluation.is_file() and evaluation.read_text().strip():
        record = json.loads(evaluation.read_text().splitlines()[-1])
        shown = {k: v for k, v in record.items() if isinstance(v, float) and k != "seconds"}
        values = "  ".join(f"{k} {v:.4g}" for k, v in list(shown.items())[:6])
        lines.append(f"  evaluation     step {record.get('step')}: {values}  ({evaluation})")
    if (run_dir(trainer) / "config.yaml").is_file():
        lines.append(f"  config         {Path(run_dir(trainer)) / 'config.yaml'}")
    return "\n".join(lines)
