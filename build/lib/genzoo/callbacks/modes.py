"""Mode coverage on Gaussian-mixture toys (e.g. the 25-mode grid), following the PacGAN protocol."""

from __future__ import annotations

import math

import lightning as L
import torch

from genzoo.callbacks.logging import PeriodicCallback, log_metrics
from genzoo.callbacks.samples import isolated_sample


def grid_mode_metrics(samples: torch.Tensor, modes: torch.Tensor, std: float, threshold: float = 3.0) -> dict:
    """PacGAN mode metrics of 2-D ``samples`` [N, 2] against mixture centres ``modes`` [M, 2] sharing ``std``.

    Each sample is assigned to its nearest mode by the std-normalised distance ``||x - mu|| / std`` and is
    high quality if that distance is below ``threshold``. Returns plain Python numbers:

    - ``modes``: number of modes with at least one high-quality sample (int),
    - ``hq_fraction``: fraction of all samples that are high quality,
    - ``reverse_kl``: KL(p_gen || uniform over the M modes) = sum_i p_i log(M p_i), where p_gen is the
      normalised histogram of high-quality samples over modes (0 log 0 = 0). With no high-quality sample at
      all p_gen is undefined (PacGAN's code divides by zero); we return log(M), the KL of a point mass, i.e.
      the worst value any histogram can reach, so the metric stays finite and loggable.
    """
    samples = samples.detach().reshape(len(samples), -1).double().cpu()
    modes = modes.detach().double().cpu()
    if samples.ndim != 2 or samples.shape[1] != 2 or modes.ndim != 2 or modes.shape[1] != 2:
        raise ValueError(f"expected samples [N, 2] and modes [M, 2], got {tuple(samples.shape)} and "
                         f"{tuple(modes.shape)}")
    if len(samples) == 0 or len(modes) == 0:
        raise ValueError("need at least one sample and one mode")
    if std <= 0:
        raise ValueError(f"std must be positive, got {std}")
    # exact pairwise distances: the matmul shortcut loses precision near zero, right where samples sit
    distances = torch.cdist(samples, modes, compute_mode="donot_use_mm_for_euclid_dist") / std
    nearest_distance, nearest_mode = distances.min(dim=1)
    high_quality = nearest_distance < threshold  # NaN samples compare False, i.e. count as low quality
    counts = torch.bincount(nearest_mode[high_quality], minlength=len(modes)).double()
    num_modes = len(modes)
    if counts.sum() > 0:
        p = counts[counts > 0] / counts.sum()
        reverse_kl = float((p * torch.log(num_modes * p)).sum())
    else:
        reverse_kl = math.log(num_modes)
    return {
        "modes": int((counts > 0).sum()),
        "hq_fraction": float(high_quality.double().mean()),
        "reverse_kl": reverse_kl,
    }


class ModeCoverage(PeriodicCallback):
    """Logs ``eval/modes``, ``eval/hq_fraction`` and ``eval/reverse_kl`` (see :func:`grid_mode_metrics`) of
    ``num_samples`` generated points every ``every_n_steps`` steps and/or ``every_n_epochs`` epochs and at
    train end, to every logger of the trainer. The latest result is kept in ``self.latest`` and all of them,
    with their step, in ``self.history`` (on rank zero).

    ``modes`` [M, 2] and ``std`` default to ``trainer.datamodule.modes`` / ``.std``."""

    def __init__(self, modes: torch.Tensor | None = None, std: float | None = None, num_samples: int = 2500,
                 threshold: float = 3.0, every_n_steps: int | None = None, every_n_epochs: int | None = 1,
                 prefix: str = "eval/") -> None:
        super().__init__(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.modes = None if modes is None else torch.as_tensor(modes, dtype=torch.float64)
        self.std = std
        self.num_samples = num_samples
        self.threshold = threshold
        self.prefix = prefix
        self.latest: dict | None = None
        self.history: list[dict] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        self._resolve_modes(trainer)  # fail at the start of training, not at the first evaluation

    def _resolve_modes(self, trainer: L.Trainer) -> tuple[torch.Tensor, float]:
        datamodule = getattr(trainer, "datamodule", None)
        modes = self.modes if self.modes is not None else getattr(datamodule, "modes", None)
        std = self.std if self.std is not None else getattr(datamodule, "std", None)
        if modes is None or std is None:
            missing = [name for name, value in (("modes", modes), ("std", std)) if value is None]
            raise ValueError(
                f"ModeCoverage is missing {' and '.join(missing)}: pass ModeCoverage(modes=..., std=...) or "
                f"use a datamodule with `modes` and `std` attributes (got {type(datamodule).__name__})")
        return torch.as_tensor(modes), float(std)

    def log_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        modes, std = self._resolve_modes(trainer)
        samples = isolated_sample(pl_module, self.num_samples)
        self.latest = grid_mode_metrics(samples, modes, std, threshold=self.threshold)
        self.history.append({"step": trainer.global_step, **self.latest})
        log_metrics(trainer, {f"{self.prefix}{k}": v for k, v in self.latest.items()})
