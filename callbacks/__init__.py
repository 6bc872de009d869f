"""Training callbacks: evaluation metrics (FID, KID, precision/recall, PRD, memorisation, reconstruction FID,
computed by the Lightning-free :mod:`zoo.evaluation`), sample visualisation, autoencoder interpolations and
nearest training neighbours, and mode-coverage metrics, logged to whatever loggers exist; step checkpoints written
atomically, and a guard against divergence."""

from callbacks.autoencoder import LatentInterpolation, NearestNeighbours
from callbacks.checkpoint import AtomicCheckpointIO, StepCheckpoint
from callbacks.divergence import DivergenceGuard
from callbacks.evaluation import Evaluation
from callbacks.flat import EquivarianceScore, LatentTraversal, equivariance_score
from callbacks.logging import PeriodicCallback, figure_to_array, log_image, log_metrics
from callbacks.modes import ModeCoverage, grid_mode_metrics
from callbacks.samples import SampleGrid, SampleWriter, isolated_sample
from callbacks.schedules import FreezeEncoder, OctaveBetaSchedule
from zoo.evaluation import Evaluator

__all__ = [
    "AtomicCheckpointIO",
    "DivergenceGuard",
    "EquivarianceScore",
    "Evaluation",
    "Evaluator",
    "FreezeEncoder",
    "LatentInterpolation",
    "LatentTraversal",
    "ModeCoverage",
    "NearestNeighbours",
    "OctaveBetaSchedule",
    "PeriodicCallback",
    "SampleGrid",
    "SampleWriter",
    "StepCheckpoint",
    "figure_to_array",
    "equivariance_score",
    "grid_mode_metrics",
    "isolated_sample",
    "log_image",
    "log_metrics",
]
