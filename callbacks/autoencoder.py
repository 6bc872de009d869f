"""Autoencoder visualisations after FlexAE (Fig. 5): decoded interpolations between the latents of real images,
and the nearest training images of generated samples in pixel and feature space (is the model copying?).

Both are rank-zero :class:`~genzoo.callbacks.logging.PeriodicCallback` s for image data; they run under
:func:`~genzoo.callbacks.samples.isolated_rng` (training randomness does not depend on them) and leave every submodule's
train/eval mode as they found it. Images go wherever :func:`~genzoo.callbacks.logging.log_image` sends them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import lightning as L
import torch
import torchvision

from genzoo.callbacks.logging import PeriodicCallback, log_image
from genzoo.evaluation.extractors import FeatureExtractor, build_extractor
from genzoo.evaluation.extractors.base import to_unit_range
from genzoo.evaluation.features import (
    FeatureSet,
    data_batches,
    datamodule_split,
    extract,
    quantised_pixels,
    subset_indices,
)
from genzoo.ops.utils import isolated_rng, seeded


@contextlib.contextmanager
def inference(module: L.LightningModule) -> Iterator[None]:
    """Eval mode, no grad and isolated randomness inside; each submodule's train/eval mode is restored after."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        with isolated_rng(module.device), torch.no_grad():
            module.eval()
            yield
    finally:
        for m, training in modes:
            m.training = training


def require_images(pl_module: L.LightningModule, callback: object) -> None:
    if len(tuple(pl_module.data_shape)) != 3:
        raise ValueError(f"{type(callback).__name__} needs image data (C, H, W); {type(pl_module).__name__} has "
                         f"data_shape {tuple(pl_module.data_shape)}")


def require_datamodule(trainer: L.Trainer, callback: object) -> L.LightningDataModule:
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None:
        raise ValueError(f"{type(callback).__name__} reads real images from trainer.datamodule; fit with a "
                         "datamodule, not bare dataloaders")
    return datamodule


def sample_x(sample: object) -> torch.Tensor:
    return torch.as_tensor(sample["x"] if isinstance(sample, dict) else sample)


def image_grid(rows: torch.Tensor) -> torch.Tensor:
    """(rows, columns, C, H, W) images in [0, 1] -> one CHW grid, 2 px padding."""
    return torchvision.utils.make_grid(rows.flatten(0, 1), nrow=rows.shape[1], padding=2)


# ---------------------------------------------------------------------------------------- interpolation

class LatentInterpolation(PeriodicCallback):
    """Decoded convex combinations ``(1 - t) z_a + t z_b``, ``t = linspace(0, 1, num_steps)``, of the latents of
    ``num_pairs`` fixed pairs of distinct real images from the datamodule's ``split`` (a choice seeded by
    ``seed``), logged as ``autoencoder/interpolation``: one row per pair, columns real a, the decoded points, real b.

    Needs a model with ``encode``/``decode`` (an autoencoder) and a datamodule with the split."""

    needs_samples = False  # decodes real images' codes: fine before AE-OT's transport map exists

    def __init__(self, num_pairs: int = 8, num_steps: int = 10, split: str = "test", seed: int = 0,
                 every_n_steps: int | None = None, every_n_epochs: int | None = 1) -> None:
        super().__init__(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        if num_pairs < 1 or num_steps < 2:
            raise ValueError(f"need num_pairs >= 1 and num_steps >= 2, got {num_pairs} and {num_steps}")
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        self.num_pairs = num_pairs
        self.num_steps = num_steps
        self.split = split
        self.seed = seed
        self._pairs: torch.Tensor | None = None  # (num_pairs, 2, C, H, W): a function of the data and seed

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.require_autoencoder(pl_module)  # fail at the start of a run, not after its first epoch
        require_images(pl_module, self)
        if trainer.is_global_zero:
            self.real_pairs(trainer)

    def require_autoencoder(self, pl_module: L.LightningModule) -> None:
        missing = [name for name in ("encode", "decode") if not callable(getattr(pl_module, name, None))]
        if missing:
            raise TypeError(f"LatentInterpolation needs an autoencoder with encode() and decode(); "
                            f"{type(pl_module).__name__} has no {' or '.join(missing)}()")

    def real_pairs(self, trainer: L.Trainer) -> torch.Tensor:
        """The fixed pairs: position ``2i`` and ``2i + 1`` (mod the split's size) of a seeded permutation."""
        if self._pairs is None:
            dataset = datamodule_split(require_datamodule(trainer, self), self.split)
            if len(dataset) < 2:
                raise ValueError(f"the {self.split!r} split has {len(dataset)} sample(s); interpolation needs 2")
            order = torch.randperm(len(dataset), generator=seeded(self.seed)).tolist()
            x = torch.stack([sample_x(dataset[order[i % len(order)]]) for i in range(2 * self.num_pairs)])
            self._pairs = x.float().unflatten(0, (self.num_pairs, 2))
        return self._pairs

    def interpolation_grid(self, trainer: L.Trainer, pl_module: L.LightningModule) -> torch.Tensor:
        """``(num_pairs, num_steps + 2, C, H, W)`` on the CPU, in the model's value range: real a, the decoded
        interpolation (its ends are ``decode(encode(a))`` and ``decode(encode(b))``), real b."""
        self.require_autoencoder(pl_module)
        pairs = self.real_pairs(trainer)
        with inference(pl_module):
            z = pl_module.encode(pairs.flatten(0, 1).to(pl_module.device)).unflatten(0, (self.num_pairs, 2))
            t = torch.linspace(0, 1, self.num_steps, device=z.device)[None, :, None]
            path = (1 - t) * z[:, :1] + t * z[:, 1:]  # (num_pairs, num_steps, latent_dim)
            decoded = pl_module.decode(path.flatten(0, 1)).float().cpu()
        decoded = decoded.reshape(self.num_pairs, self.num_steps, *pairs.shape[2:])
        return torch.cat([pairs[:, :1], decoded, pairs[:, 1:]], dim=1)

    def log_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = to_unit_range(self.interpolation_grid(trainer, pl_module), pl_module.value_range)
        log_image(trainer, "autoencoder/interpolation", image_grid(rows))


# ------------------------------------------------------------------------------------ nearest neighbours

@dataclass
class Neighbours:
    """The ``k`` nearest training images of each generated sample in one space, nearest first."""

    samples: torch.Tensor  # (n, C, H, W) the generated images in [0, 1], quantised to 8 bits
    images: torch.Tensor  # (n, k, C, H, W) their neighbours in [0, 1], quantised to 8 bits
    indices: torch.Tensor  # (n, k) the neighbours' indices in the train split
    distances: torch.Tensor  # (n, k) Euclidean distances, increasing along each row


def nearest(queries: torch.Tensor, reference: torch.Tensor, k: int,
            chunk_size: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances and row indices of the ``k`` rows of ``reference`` nearest to each query, in increasing distance.

    ``reference`` (on any device; uint8 rows are pixels and count as value / 255) goes to the queries' device
    ``chunk_size`` rows at a time, so memory stays ``O(len(queries) * chunk_size)``. Distances are computed
    directly, not by the matrix-product expansion: an identical row is at distance exactly 0."""
    best_d = queries.new_empty(len(queries), 0)
    best_i = torch.empty(len(queries), 0, dtype=torch.long, device=queries.device)
    for start in range(0, len(reference), chunk_size):
        chunk = reference[start:start + chunk_size].to(queries.device).flatten(1).float()
        chunk = chunk / 255 if reference.dtype == torch.uint8 else chunk
        d = torch.cat([best_d, torch.cdist(queries, chunk, compute_mode="donot_use_mm_for_euclid_dist")], dim=1)
        i = torch.cat([best_i, torch.arange(start, start + len(chunk), device=queries.device).expand(len(queries), -1)],
                      dim=1)
        best_d, position = d.topk(min(k, d.shape[1]), dim=1, largest=False, sorted=True)
        best_i = i.gather(1, position)
    return best_d, best_i


class NearestNeighbours(PeriodicCallback):
    """For ``num_samples`` samples generated from fixed latents (drawn once from a CPU generator seeded with
    ``seed``), their ``k`` nearest training images by Euclidean distance in pixel space (8-bit pixels in [0, 1],
    flattened) and in the ``extractor``'s feature space, logged as ``autoencoder/nearest_pixels`` and
    ``autoencoder/nearest_features`` (one row per sample: the sample, then its neighbours, nearest first);
    ``extractor="pixels"`` logs the pixel panel only. The training images are a fixed subset of at most
    ``n_train`` (seeded by ``seed``), extracted once. Works for any model with ``sample_latents``/``generate``."""

    chunk_size = 2048  # training rows per cdist call
    batch_size = 250  # training images per extractor call

    def __init__(self, num_samples: int = 8, k: int = 5, extractor: str = "pixels", n_train: int = 10_000,
                 seed: int = 0, every_n_steps: int | None = None, every_n_epochs: int | None = 1) -> None:
        super().__init__(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        if num_samples < 1 or k < 1 or n_train < 1:
            raise ValueError(f"need num_samples, k and n_train >= 1, got {num_samples}, {k} and {n_train}")
        self.num_samples = num_samples
        self.k = k
        self.extractor = extractor
        self.n_train = n_train
        self.seed = seed
        self.fixed_z: torch.Tensor | None = None  # a function of seed only
        self._extractor: FeatureExtractor | None = None
        self._train: FeatureSet | None = None  # the subset's 8-bit pixels and features (CPU)
        self._train_indices: torch.Tensor | None = None

    @property
    def feature_extractor(self) -> FeatureExtractor | None:
        """The extractor of the feature panel; None for ``"pixels"`` (the pixel panel is that panel)."""
        if self._extractor is None and self.extractor != "pixels":
            self._extractor = build_extractor(self.extractor)
        return self._extractor

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        require_images(pl_module, self)
        self.feature_extractor  # noqa: B018  (missing weights stop a run at its start)

    def training_subset(self, trainer: L.Trainer, device: torch.device) -> FeatureSet:
        if self._train is None:
            datamodule = require_datamodule(trainer, self)
            dataset = datamodule_split(datamodule, "train")
            indices = subset_indices(len(dataset), self.n_train, self.seed)
            batches = data_batches(dataset, indices, self.batch_size, getattr(datamodule, "num_workers", 0))
            value_range = tuple(datamodule.value_range)
            if self.feature_extractor is None:
                pixels = torch.cat([quantised_pixels(x, value_range) for x in batches])
                self._train = FeatureSet(torch.empty(len(pixels), 0), pixels)
            else:
                self._train = extract(self.feature_extractor.to(device), batches, value_range, device, keep_pixels=True)
            self._train_indices = torch.tensor(indices)
        return self._train

    def nearest_neighbours(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Neighbours]:
        """``{"pixels": ..., "features": ...}`` (``"pixels"`` only with the pixels extractor)."""
        device, value_range = pl_module.device, tuple(pl_module.value_range)
        with inference(pl_module):
            train = self.training_subset(trainer, device)  # under isolated_rng: a DataLoader draws a seed
            if self.fixed_z is None:
                self.fixed_z = pl_module.sample_latents(self.num_samples,
                                                        generator=seeded(self.seed))
            samples = pl_module.generate(self.fixed_z.to(device)).float()
            pixels = quantised_pixels(samples, value_range)
            spaces = {"pixels": (pixels.flatten(1).float().to(device) / 255, train.pixels)}
            if self.feature_extractor is not None:
                spaces["features"] = (self.feature_extractor.to(device)(samples, value_range), train.features)
            result = {}
            for name, (queries, reference) in spaces.items():
                distances, positions = nearest(queries, reference, self.k, self.chunk_size)
                positions = positions.cpu()
                result[name] = Neighbours(pixels.float() / 255, train.pixels[positions].float() / 255,
                                          self._train_indices[positions], distances.cpu())
        return result

    def log_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, found in self.nearest_neighbours(trainer, pl_module).items():
            rows = torch.cat([found.samples[:, None], found.images], dim=1)
            log_image(trainer, f"autoencoder/nearest_{name}", image_grid(rows))
