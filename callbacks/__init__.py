"""Training callbacks: evaluation metrics (FID, KID, precision/recall, PRD, memorisation), sample
visualisation and mode-coverage metrics, logged to whatever loggers exist, and
step checkpoints."""

from callbacks.checkpoint import StepCheckpoint
from callbacks.evaluation import Evaluation, Evaluator
from callbacks.logging import PeriodicCallback, figure_to_array, log_image, log_metrics
from callbacks.modes import ModeCoverage, grid_mode_metrics
from callbacks.samples import SampleGrid, isolated_sample
from callbacks.schedules import OctaveBetaSchedule

__all__ = [
    "Evaluation",
    "Evaluator",
    "ModeCoverage",
    "OctaveBetaSchedule",
    "PeriodicCallback",
    "SampleGrid",
    "StepCheckpoint",
    "figure_to_array",
    "grid_mode_metrics",
    "isolated_sample",
    "log_image",
    "log_metrics",
]
