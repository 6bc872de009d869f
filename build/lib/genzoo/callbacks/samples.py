"""Sample visualisation during training: image grids from fixed noise, scatter plots for 2-D toys."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torchvision
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure
from torchvision.utils import save_image

from genzoo.callbacks.logging import PeriodicCallback, figure_to_array, log_image
from genzoo.checkpoints import atomic_save
from genzoo.ops.utils import isolated_rng, seeded


def isolated_sample(pl_module: L.LightningModule, n: int) -> torch.Tensor:
    """``pl_module.sample(n)`` under :func:`isolated_rng`."""
    with isolated_rng(pl_module.device):
        return pl_module.sample(n)


class SampleGrid(PeriodicCallback):
    """Logs generated samples every ``every_n_steps`` steps and/or ``every_n_epochs`` epochs and at train end.

    Images (``data_shape == (C, H, W)``): a grid of ``num_samples`` images generated from fixed latents, drawn
    once from a CPU generator seeded with ``seed`` (so they are the same in every event and every run), logged
    as ``samples/grid``. 2-D data (``data_shape == (2,)``): ``num_points`` fresh samples scattered over up to
    ``num_real_points`` training points (from ``trainer.datamodule.train_set`` when it has dict samples with
    key ``"x"``), logged as ``samples/scatter``. See :func:`genzoo.callbacks.logging.log_image` for where they go.
    """

    def __init__(self, num_samples: int = 64, every_n_steps: int | None = None,
                 every_n_epochs: int | None = 1, seed: int = 0, num_points: int = 2500,
                 num_real_points: int = 2500) -> None:
        super().__init__(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        if num_samples < 1 or num_points < 1 or num_real_points < 0:
            raise ValueError("num_samples and num_points must be >= 1 and num_real_points >= 0")
        self.num_samples = num_samples
        self.seed = seed
        self.num_points = num_points
        self.num_real_points = num_real_points
        self.fixed_z: torch.Tensor | None = None  # a function of seed only, so resuming needs no saved state
        self._real_points: torch.Tensor | None = None

    def log_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if tuple(pl_module.data_shape) == (2,):
            log_image(trainer, "samples/scatter", self.scatter_image(trainer, pl_module))
        else:
            log_image(trainer, "samples/grid", self.grid_image(pl_module))

    def grid_image(self, pl_module: L.LightningModule) -> torch.Tensor:
        """The fixed-noise sample grid as a CHW float tensor in [0, 1]."""
        if self.fixed_z is None:
            generator = seeded(self.seed)
            self.fixed_z = pl_module.sample_latents(self.num_samples, generator=generator)
        images = pl_module.generate(self.fixed_z.to(pl_module.device)).detach().float().cpu()
        low, high = pl_module.value_range
        images = ((images - low) / (high - low)).clamp(0, 1)
        return torchvision.utils.make_grid(images, nrow=math.ceil(math.sqrt(self.num_samples)), padding=2)

    def scatter_image(self, trainer: L.Trainer, pl_module: L.LightningModule) -> np.ndarray:
        """Generated points over real training points, rendered to a uint8 RGB array."""
        generated = isolated_sample(pl_module, self.num_points).detach().float().cpu()
        generated = generated[torch.isfinite(generated).all(dim=1)]  # a diverging model must not break plots
        real = self.real_points(trainer)
        fig = Figure(figsize=(5, 5), dpi=100)
        ax = fig.add_subplot()
        if real is not None:
            ax.scatter(real[:, 0], real[:, 1], s=3, c="0.6", linewidths=0, label="data")
        ax.scatter(generated[:, 0], generated[:, 1], s=3, c="tab:blue", alpha=0.6, linewidths=0,
                   label="generated")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"step {trainer.global_step}")
        ax.legend(loc="upper right", markerscale=3)
        fig.tight_layout()
        return figure_to_array(fig)

    def real_points(self, trainer: L.Trainer) -> torch.Tensor | None:
        """A fixed random subsample of the training set's 2-D points, or None if it is not available."""
        if self._real_points is None and self.num_real_points > 0:
            train_set = getattr(getattr(trainer, "datamodule", None), "train_set", None)
            if train_set is None or len(train_set) == 0:
                return None
            first = train_set[0]
            if not (isinstance(first, dict) and "x" in first):
                return None
            generator = seeded(self.seed)
            indices = torch.randperm(len(train_set), generator=generator)[: self.num_real_points]
            points = torch.stack([torch.as_tensor(train_set[int(i)]["x"]) for i in indices])
            self._real_points = points.float().reshape(len(indices), -1)
        return self._real_points


def unit_pixels(samples: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Images in ``value_range`` as floats in [0, 1] (clamped), as PNGs store them."""
    low, high = value_range
    return ((samples.float() - low) / (high - low)).clamp(0, 1)


def write_sample_folder(samples: torch.Tensor, directory: str | Path, value_range: tuple[float, float],
                        grid: bool = True) -> Path:
    """``samples.pt`` (all samples, one tensor in ``value_range``) and, for images, one PNG per sample
    (``000000.png``, ...) and with ``grid`` a ``grid.png`` of the first 64: what ``zoo predict`` and ``zoo sample``
    write into a directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_save(samples, directory / "samples.pt")
    if samples.dim() == 4:
        pixels = unit_pixels(samples, value_range)
        for index, image in enumerate(pixels):
            save_image(image, directory / f"{index:06d}.png")
        if grid:
            save_image(pixels[:64], directory / "grid.png", nrow=8)
    return directory


def write_sample_grid(samples: torch.Tensor, path: str | Path, value_range: tuple[float, float]) -> Path:
    """All ``samples`` (images) as one square-ish grid PNG."""
    if samples.dim() != 4:
        raise ValueError(f"a grid needs images (N, C, H, W); these samples have shape {tuple(samples.shape)}: "
                         "write a directory or a .pt/.npz file instead")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(unit_pixels(samples, value_range), path, nrow=math.ceil(math.sqrt(len(samples))), padding=2)
    return path


class SampleWriter(BasePredictionWriter):
    """Writes what ``predict`` generates to ``directory`` (:func:`write_sample_folder`): ``samples.pt`` (all
    samples, one tensor in the model's value range) and, for images, one PNG per sample (``000000.png``, ...) and
    ``grid.png``."""

    def __init__(self, directory: str | Path) -> None:
        super().__init__(write_interval="epoch")
        self.directory = Path(directory)

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions, batch_indices) -> None:
        if not trainer.is_global_zero or not predictions:
            return
        samples = torch.cat([p.cpu() for p in predictions])
        write_sample_folder(samples, self.directory, tuple(pl_module.value_range))
        rank_zero_info(f"wrote {len(samples)} samples to {self.directory}")
