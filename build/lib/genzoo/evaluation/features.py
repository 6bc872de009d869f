"""Feature sets: samples of a datamodule split or of a model through an extractor, and their gathering across
ranks (each rank extracts positions ``rank::world_size``; the gather restores the order)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from genzoo.evaluation.collective import Collective, gather_in_order
from genzoo.evaluation.extractors import FeatureExtractor
from genzoo.ops.utils import seeded

SPLITS = ("train", "val", "test")


@dataclass
class FeatureSet:
    """Features (N, d); for the pixel-space memorisation score the samples as uint8 in [0, 255], and for the
    Inception Score the extractor's class logits (N, classes) from the same pass."""

    features: torch.Tensor
    pixels: torch.Tensor | None = None
    logits: torch.Tensor | None = None

    def to(self, device: torch.device) -> FeatureSet:
        return FeatureSet(*(t.to(device) if t is not None else None for t in (self.features, self.pixels, self.logits)))

    def unit_pixels(self) -> torch.Tensor:
        return self.pixels.flatten(1).float() / 255


def quantised_pixels(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    if not all(math.isfinite(v) for v in value_range):
        raise ValueError("the pixel-space memorisation score needs image data with a finite value_range")
    low, high = value_range
    return ((x.float() - low) / (high - low)).clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def extract(extractor: FeatureExtractor, batches: Iterable[torch.Tensor], value_range: tuple[float, float],
            device: torch.device, keep_pixels: bool, keep_logits: bool = False) -> FeatureSet:
    features, pixels, logits = [], [], []
    for x in batches:
        if keep_logits:  # one pass gives both
            batch_features, batch_logits = extractor.with_logits(x.to(device), value_range)
            logits.append(batch_logits.cpu())
        else:
            batch_features = extractor(x.to(device), value_range)
        features.append(batch_features.cpu())
        if keep_pixels:
            pixels.append(quantised_pixels(x, value_range))
    return FeatureSet(torch.cat(features) if features else torch.empty(0, extractor.dim),
                      torch.cat(pixels) if keep_pixels and pixels else None,
                      torch.cat(logits) if keep_logits and logits else None)


def normalized_samples(x: torch.Tensor, value_range: tuple[float, float], normalization: str) -> torch.Tensor:
    """Model outputs as the metric sees them. ``minmax`` rescales each image on its own so that its minimum and
    maximum (over all pixels and channels) span ``value_range``: FlexAE's FID code (``norm=True``) does this to
    generated samples and reconstructions, not to real images. A constant image becomes the range's low end
    (the authors' code would divide by zero)."""
    if normalization == "none":
        return x
    low, high = value_range
    flat = x.float().flatten(1)
    lowest = flat.min(1, keepdim=True).values
    spread = (flat.max(1, keepdim=True).values - lowest).clamp_min(torch.finfo(flat.dtype).tiny)
    return ((flat - lowest) / spread * (high - low) + low).view(x.shape)


def gather_feature_set(local: FeatureSet, total: int, collective: Collective) -> FeatureSet:
    return FeatureSet(*(gather_in_order(t, total, collective) if t is not None else None
                        for t in (local.features, local.pixels, local.logits)))


def finite_gathered(local: FeatureSet, total: int, collective: Collective, what: str) -> FeatureSet:
    """:func:`gather_feature_set` after checking that this rank's model outputs gave finite features."""
    if not all(torch.isfinite(t).all() for t in (local.features, local.logits) if t is not None):
        raise FloatingPointError(f"{what} give non-finite features: the model has diverged")
    return gather_feature_set(local, total, collective)


# ------------------------------------------------------------------------------------------------ real data

def datamodule_split(datamodule: Any, split: str) -> Dataset:
    """A datamodule's ``train``/``val``/``test`` split (its ``<split>_set``), set up first if needed."""
    if getattr(datamodule, "train_set", None) is None and hasattr(datamodule, "setup"):
        datamodule.setup("fit")
    dataset = getattr(datamodule, f"{split}_set", None)
    if dataset is None or len(dataset) == 0:
        available = [s for s in SPLITS if getattr(datamodule, f"{s}_set", None) is not None]
        raise ValueError(f"{type(datamodule).__name__} has no {split!r} split (available: {available})")
    return dataset


def subset_indices(size: int, n: int | None, seed: int) -> list[int]:
    """All indices, or a fixed random subset of ``n`` in increasing order."""
    if n is None or n >= size:
        return list(range(size))
    return sorted(torch.randperm(size, generator=seeded(seed))[:n].tolist())


def data_batches(dataset: Dataset, indices: Sequence[int], batch_size: int, num_workers: int) -> Iterator[torch.Tensor]:
    loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, num_workers=num_workers)
    for batch in loader:
        yield batch["x"] if isinstance(batch, dict) else batch
