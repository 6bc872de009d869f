"""The ``Evaluation`` callback: runs a :class:`~genzoo.evaluation.Evaluator` during training and ``zoo test``, on all
ranks, and logs its values, protocol and plots.

The evaluation itself (protocol, reference cache, metric registry) is Lightning-free in :mod:`genzoo.evaluation`;
this module adds what needs the trainer: its collective operations, the schedule, logging and the classifier
extractor trained on the run's datamodule.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure

from genzoo.callbacks.logging import PeriodicCallback, figure_to_array, image_dir, log_image, log_metrics
from genzoo.evaluation import Collective, EvaluationResult, Evaluator, MetricOptions, default_cache_dir
from genzoo.evaluation.extractors.classifier import resolve_checkpoint, save_classifier, train_classifier


class TrainerCollective(Collective):
    """The evaluation's collective operations over the trainer's strategy (DDP or a single process)."""

    def __init__(self, trainer: L.Trainer) -> None:
        self.strategy = trainer.strategy
        self.rank, self.world_size = trainer.global_rank, trainer.world_size

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return tensor.unsqueeze(0)
        return self.strategy.all_gather(tensor.to(self.strategy.root_device)).cpu()

    def broadcast(self, obj: Any) -> Any:
        return self.strategy.broadcast(obj, src=0)

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        if self.world_size > 1 and torch.distributed.is_initialized():
            for buffer in module.buffers():
                torch.distributed.broadcast(buffer.data, src=0)


class Evaluation(PeriodicCallback):
    """Runs an :class:`Evaluator` every ``every_n_steps`` optimizer steps and/or ``every_n_epochs`` epochs and
    at the end of training, on all ranks, and logs ``<prefix>/<metric>`` (``eval/fid``, ``eval/kid``,
    ``eval/is_mean``, ``eval/precision``, ``eval/recall``, ``eval/prd_f8``, ``eval/prd_f1_8``, ``eval/pms``,
    ``eval/reconstruction_fid``, …) with the protocol (extractor, weights hash, sample sizes, reference split)
    as the logger's hyper-parameter ``evaluation``. ``metrics``: any names registered with
    :func:`genzoo.evaluation.register_metric` (``fid``, ``kid``, ``inception_score``, ``precision_recall``, ``prd``,
    ``memorization``, ``reconstruction_fid``, or a metric of your own). Values also go to
    ``trainer.callback_metrics``, so ``ModelCheckpoint(monitor="eval/fid")`` keeps the best.

    ``train_missing_classifier``: with a ``classifier:<name>`` extractor whose checkpoint does not exist yet,
    train it on the run's datamodule at the start of fit (seconds for digits) instead of stopping.

    ``sample_normalization="minmax"``: FlexAE's protocol, each generated sample and reconstruction min-max
    rescaled on its own before feature extraction (see :class:`Evaluator`).

    Plots: the PRD curve and every metric over training (``<prefix>/prd_curve``, ``<prefix>/fid_curve``) go
    to image-capable loggers, or to PNGs when there are none; every event is appended to
    ``<log dir>/evaluation.jsonl``."""

    all_ranks = True

    def __init__(self, extractor: str = "inception",
                 metrics: Sequence[str] = ("fid", "kid", "precision_recall", "prd"),
                 n_samples: int = 10_000, reference_split: str = "train", n_reference: int | None = 10_000,
                 every_n_steps: int | None = None, every_n_epochs: int | None = 1, batch_size: int = 250,
                 seed: int = 0, cache_dir: str | None = None, prefix: str = "eval", plots: bool = True,
                 kid_subsets: int = 100, kid_subset_size: int = 1000, kid_seed: int = 2020,
                 inception_score_splits: int = 10, pr_k: int = 3, prd_clusters: int = 20, prd_angles: int = 1001,
                 prd_runs: int = 10, train_missing_classifier: bool = False,
                 sample_normalization: str = "none") -> None:
        super().__init__(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        self.train_missing_classifier = train_missing_classifier
        options = MetricOptions(kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, kid_seed=kid_seed,
                                inception_score_splits=inception_score_splits, pr_k=pr_k, prd_clusters=prd_clusters,
                                prd_angles=prd_angles, prd_runs=prd_runs)
        self.evaluator = Evaluator(extractor, tuple(metrics), n_samples, reference_split, n_reference, batch_size,
                                   seed, cache_dir if cache_dir is not None else default_cache_dir(), options,
                                   sample_normalization=sample_normalization)
        self.prefix = prefix
        self.plots = plots
        self.history: list[dict[str, float]] = []
        self._protocol_logged = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # build the extractor now: missing weights should stop a run at its start, not hours in
        try:
            self.evaluator.feature_extractor  # noqa: B018
        except FileNotFoundError:
            if not (self.train_missing_classifier and self.evaluator.extractor.startswith("classifier:")):
                raise
            self.train_classifier(trainer)
            self.evaluator.feature_extractor  # noqa: B018

    def train_classifier(self, trainer: L.Trainer) -> None:
        """Train the named classifier extractor on this run's datamodule (rank zero), and give every node a
        copy of the same file (nodes need not share a file system)."""
        name = self.evaluator.extractor.partition(":")[2]
        path = resolve_checkpoint(name)
        content = None
        if trainer.is_global_zero:
            net, accuracy = train_classifier(trainer.datamodule, device=trainer.strategy.root_device)
            save_classifier(path, net, name, accuracy)
            content = path.read_bytes()
            rank_zero_info(f"trained the '{name}' classifier extractor: test accuracy {accuracy:.4f}, saved to {path}")
        content = trainer.strategy.broadcast(content, src=0)
        if trainer.local_rank == 0 and not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        trainer.strategy.barrier()

    def log_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        evaluator = self.evaluator  # a line before and after: a long evaluation should not look like a hang
        rank_zero_info(f"Evaluation at global step {trainer.global_step}: {', '.join(evaluator.metrics)} on "
                       f"{evaluator.n_samples} samples ({evaluator.extractor} features)")
        result = evaluator.evaluate(pl_module, trainer.datamodule, pl_module.device, TrainerCollective(trainer))
        rank_zero_info(f"Evaluation done in {result.seconds:.0f} s: " + ", ".join(
            f"{name} {value:.4g}" for name, value in list(result.values.items())[:4]))
        metrics = {f"{self.prefix}/{name}": value for name, value in result.values.items()}
        for name, value in metrics.items():
            trainer.callback_metrics[name] = torch.tensor(value)
        self.history.append({"step": trainer.global_step, "epoch": trainer.current_epoch, **result.values})
        if not trainer.is_global_zero:
            return
        if not self._protocol_logged:
            for logger in trainer.loggers:
                logger.log_hyperparams({"evaluation": result.protocol})
            self._protocol_logged = True
        log_metrics(trainer, {**metrics, f"{self.prefix}/seconds": result.seconds})
        self.append_jsonl(trainer, result)
        if self.plots:
            if result.prd_curve is not None:
                log_image(trainer, f"{self.prefix}/prd_curve", prd_plot(*result.prd_curve, trainer.global_step))
            headline = next((m for m in ("fid", "prd_f8", "precision") if m in result.values), None)
            if headline is not None:
                log_image(trainer, f"{self.prefix}/{headline}_curve", history_plot(self.history, headline))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``zoo test``: the configured metrics against the test split, in Lightning's results table."""
        if not getattr(pl_module, "ready_to_sample", True):
            return
        evaluator = dataclasses.replace(self.evaluator, reference_split="test")
        result = evaluator.evaluate(pl_module, trainer.datamodule, pl_module.device, TrainerCollective(trainer))
        prefix = "test" if self.prefix == "eval" else f"test/{self.prefix}"
        for name, value in result.values.items():  # the same on every rank (a collective evaluation)
            pl_module.log(f"{prefix}/{name}", float(value))
        if trainer.is_global_zero:
            self.append_jsonl(trainer, result, split="test")

    def append_jsonl(self, trainer: L.Trainer, result: EvaluationResult, split: str | None = None) -> None:
        path = image_dir(trainer).parent / "evaluation.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"step": trainer.global_step, "epoch": trainer.current_epoch, **({"split": split} if split else {}),
                  **result.values, "seconds": result.seconds, "protocol": result.protocol}
        with path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    @property
    def state_key(self) -> str:  # several evaluations (e.g. Inception and VGG16) keep separate histories
        return self._generate_state_key(extractor=self.evaluator.extractor, prefix=self.prefix)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def prd_plot(precision: torch.Tensor, recall: torch.Tensor, step: int | None = None) -> np.ndarray:
    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    ax = fig.add_subplot()
    ax.plot(recall.numpy(), precision.numpy(), lw=2)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title="PRD" if step is None else f"PRD, step {step}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_to_array(fig)


def history_plot(history: list[dict[str, float]], metric: str) -> np.ndarray:
    points = [(h["step"], h[metric]) for h in history if metric in h]
    fig = Figure(figsize=(5, 3.5), dpi=100)
    ax = fig.add_subplot()
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
    ax.set(xlabel="global step", ylabel=metric, title=f"{metric} over training")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_to_array(fig)
