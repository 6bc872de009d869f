"""2-D toy distributions for GAN mode-coverage and manifold experiments.

Samples are dicts ``{"x": float32 [2], "label": int64 component index}`` (:class:`Circle5` adds
``"tangents"``: float32 ``[2, 1]``). Each split is generated once, up front, from a ``torch.Generator`` (never the
global RNG): the training set from ``seed`` itself, validation/test sets from seeds derived from it, so they are
fresh samples of the same distribution.

Toys live in their own coordinates, so ``value_range`` is ``(-inf, inf)``: models must not clamp or squash
toy outputs. The Gaussian mixtures expose ``modes`` ([K, 2], in data coordinates) and ``std`` (per-coordinate
noise, same coordinates) for mode-coverage metrics.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from genzoo.ops.utils import seeded

from .base import TensorDictDataset, ZooDataModule

UNBOUNDED = (-math.inf, math.inf)


def derived_seed(seed: int, split_index: int) -> int:
    """Seed for the ``split_index``-th held-out split, statistically independent of ``seed`` itself."""
    return int(np.random.SeedSequence([seed, split_index]).generate_state(1)[0])


def grid_points(coordinates: list[float]) -> torch.Tensor:
    """All pairs ``(a, b)`` of the coordinates, first coordinate varying slowest: ``[len**2, 2]``."""
    values = torch.tensor(coordinates, dtype=torch.float32)
    return torch.cartesian_prod(values, values)


class ToyDataModule(ZooDataModule):
    """Base of the 2-D toys: subclasses implement :meth:`sample` (``num_samples`` points from a seed)."""

    arbitrary_value_range = True

    def __init__(self, num_samples: int = 100_000, batch_size: int = 256, num_workers: int = 0, seed: int = 0,
                 num_val_samples: int = 1000, num_test_samples: int = 1000) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, value_range=UNBOUNDED)
        for name, value, minimum in (("num_samples", num_samples, 1), ("num_val_samples", num_val_samples, 0),
                                     ("num_test_samples", num_test_samples, 0)):
            if value < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.num_samples = num_samples
        self.num_val_samples = num_val_samples
        self.num_test_samples = num_test_samples

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (2,)

    def sample(self, num_samples: int, seed: int) -> dict[str, torch.Tensor]:
        """``num_samples`` points (and per-point extras such as labels), a pure function of ``seed``."""
        raise NotImplementedError

    def build_datasets(self) -> tuple[Dataset, Dataset | None, Dataset | None]:
        train = TensorDictDataset(**self.sample(self.num_samples, self.seed))
        val = test = None
        if self.num_val_samples:
            val = TensorDictDataset(**self.sample(self.num_val_samples, derived_seed(self.seed, 1)))
        if self.num_test_samples:
            test = TensorDictDataset(**self.sample(self.num_test_samples, derived_seed(self.seed, 2)))
        return train, val, test


class GaussianMixtureToy(ToyDataModule):
    """Uniform mixture of isotropic Gaussians with centres ``modes`` and per-coordinate std ``std``.

    ``stratified``: components are assigned in turn (counts differ by at most one), then shuffled, instead of
    drawn iid: a small sample (AE-OT's 512 grid points) then has the mixture's own histogram, not one about
    0.02 away from it in KL."""

    modes: torch.Tensor
    std: float

    def __init__(self, num_samples: int = 100_000, batch_size: int = 256, num_workers: int = 0, seed: int = 0,
                 num_val_samples: int = 1000, num_test_samples: int = 1000, stratified: bool = False) -> None:
        super().__init__(num_samples=num_samples, batch_size=batch_size, num_workers=num_workers, seed=seed,
                         num_val_samples=num_val_samples, num_test_samples=num_test_samples)
        self.stratified = stratified

    def sample(self, num_samples: int, seed: int) -> dict[str, torch.Tensor]:
        generator = seeded(seed)
        if self.stratified:
            label = (torch.arange(num_samples) % len(self.modes))[torch.randperm(num_samples, generator=generator)]
        else:
            label = torch.randint(len(self.modes), (num_samples,), generator=generator)
        noise = torch.randn(num_samples, 2, generator=generator)
        return {"x": self.modes[label] + self.std * noise, "label": label}


class Grid25(GaussianMixtureToy):
    """PacGAN's 2-D grid: 25 Gaussians at ``{-4, -2, 0, 2, 4}^2`` with std 0.05, equal weights (100,000 train
    samples by default)."""

    modes = grid_points([-4.0, -2.0, 0.0, 2.0, 4.0])
    std = 0.05


class Gaussians8(GaussianMixtureToy):
    """WGAN-GP's (gan_toy.py) 8 Gaussians: centres at radius 2 in the 8 compass directions, noise std 0.02, all
    divided by 1.414 (so ``modes`` lie at radius 2/1.414 and ``std`` is 0.02/1.414)."""

    SCALE, NOISE_STD, DIVISOR = 2.0, 0.02, 1.414  # gan_toy.py divides by 1.414, not sqrt(2)
    _diagonal = 1.0 / math.sqrt(2.0)
    _unit_centres = torch.tensor([(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0), (_diagonal, _diagonal),
                                  (_diagonal, -_diagonal), (-_diagonal, _diagonal), (-_diagonal, -_diagonal)])
    modes = _unit_centres * SCALE / DIVISOR
    std = NOISE_STD / DIVISOR


class Gaussians25WGANGP(ToyDataModule):
    """WGAN-GP's (gan_toy.py) 25 Gaussians: centres ``(2i, 2j)``, ``i, j in -2..2``, noise std 0.05, exactly
    ``num_samples / 25`` points per centre (4,000 for the default 100,000), shuffled once, all divided by 2.828.
    Split sizes must be multiples of 25."""

    NOISE_STD, DIVISOR = 0.05, 2.828  # as in gan_toy.py
    modes = grid_points([-4.0, -2.0, 0.0, 2.0, 4.0]) / DIVISOR
    std = NOISE_STD / DIVISOR

    def __init__(self, num_samples: int = 100_000, batch_size: int = 256, num_workers: int = 0, seed: int = 0,
                 num_val_samples: int = 1000, num_test_samples: int = 1000) -> None:
        super().__init__(num_samples=num_samples, batch_size=batch_size, num_workers=num_workers, seed=seed,
                         num_val_samples=num_val_samples, num_test_samples=num_test_samples)
        for name, value in (("num_samples", num_samples), ("num_val_samples", num_val_samples),
                            ("num_test_samples", num_test_samples)):
            if value % len(self.modes):
                raise ValueError(f"{name} must be a multiple of {len(self.modes)} (equal points per centre), "
                                 f"got {value}")

    def sample(self, num_samples: int, seed: int) -> dict[str, torch.Tensor]:
        generator = seeded(seed)
        label = torch.arange(len(self.modes)).repeat(num_samples // len(self.modes))
        label = label[torch.randperm(num_samples, generator=generator)]
        noise = torch.randn(num_samples, 2, generator=generator)
        return {"x": self.modes[label] + self.std * noise, "label": label}


class SwissRoll(ToyDataModule):
    """scikit-learn's ``make_swiss_roll(n, noise=0.25, random_state=seed)``, columns (0, 2), divided by 7.5
    (as in gan_toy.py). Labels are 0: the roll has no components."""

    NOISE, DIVISOR = 0.25, 7.5

    def sample(self, num_samples: int, seed: int) -> dict[str, torch.Tensor]:
        from sklearn.datasets import make_swiss_roll

        points, _ = make_swiss_roll(num_samples, noise=self.NOISE, random_state=seed)
        x = torch.as_tensor(points[:, [0, 2]] / self.DIVISOR, dtype=torch.float32)
        return {"x": x, "label": torch.zeros(num_samples, dtype=torch.long)}


class Circle5(ToyDataModule):
    """5 points on the unit circle at angles ``2*pi*j/5`` with their unit counter-clockwise tangents
    ``(-sin, cos)`` as ``"tangents"`` of shape ``[2, 1]`` (data dimension 2, one tangent direction).

    ``num_samples`` cycles through the 5 points (label ``j``); ``noise_std`` > 0 adds isotropic Gaussian noise
    to the positions (the tangents stay those of the clean points)."""

    NUM_POINTS = 5

    def __init__(self, num_samples: int = 5000, batch_size: int = 256, num_workers: int = 0, seed: int = 0,
                 num_val_samples: int = 1000, num_test_samples: int = 1000, noise_std: float = 0.0) -> None:
        super().__init__(num_samples=num_samples, batch_size=batch_size, num_workers=num_workers, seed=seed,
                         num_val_samples=num_val_samples, num_test_samples=num_test_samples)
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        angles = 2 * math.pi * torch.arange(self.NUM_POINTS, dtype=torch.float64) / self.NUM_POINTS
        self.modes = torch.stack([angles.cos(), angles.sin()], dim=1).float()
        self.tangents = torch.stack([-angles.sin(), angles.cos()], dim=1).float().unsqueeze(-1)  # [5, 2, 1]
        self.std = noise_std

    def sample(self, num_samples: int, seed: int) -> dict[str, torch.Tensor]:
        label = torch.arange(num_samples) % self.NUM_POINTS
        x = self.modes[label]
        if self.std > 0:
            x = x + self.std * torch.randn(num_samples, 2, generator=seeded(seed))
        return {"x": x, "tangents": self.tangents[label], "label": label}

    def tangents_at(self, x: torch.Tensor) -> torch.Tensor:
        """The unit counter-clockwise tangent ``(-sin, cos)`` of the circle at each point's angle
        ``atan2(y, x)``: ``[N, 2] -> [N, 2, 1]``, to score a generator's tangents at the points it generates."""
        angle = torch.atan2(x[:, 1], x[:, 0])
        return torch.stack([-angle.sin(), angle.cos()], dim=1).unsqueeze(-1)
