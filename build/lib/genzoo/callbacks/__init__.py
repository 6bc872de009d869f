"""Training callbacks: evaluation metrics (FID, KID, precision/recall, PRD, memorisation, reconstruction FID,
computed by the Lightning-free :mod:`genzoo.evaluation`), sample visualisation, autoencoder interpolations and
nearest training neighbours, and mode-coverage metrics, logged to whatever loggers exist; step checkpoints written
atomically, and a guard against divergence."""

from genzoo.callbacks.autoencoder import LatentInterpolation, NearestNeighbours
from genzoo.callbacks.checkpoint import AtomicCheckpointIO, StepCheckpoint
from genzoo.callbacks.divergence import DivergenceGuard
from genzoo.callbacks.evaluation import Evaluation
from genzoo.callbacks.flat import EquivarianceScore, LatentTraversal, equivariance_score
from genzoo.callbacks.logging import PeriodicCallback, figure_to_array, log_image, log_metrics
from genzoo.callbacks.modes import ModeCoverage, grid_mode_metrics
from genzoo.callbacks.samples import SampleGrid, SampleWriter, isolated_sample
from genzoo.callbacks.schedules import FreezeEncoder, OctaveBetaSchedule
from genzoo.evaluation import Evaluator

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
