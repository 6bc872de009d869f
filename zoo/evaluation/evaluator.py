"""The evaluator: every requested metric from one pass of feature extraction, with cached real-data features.

The protocol, for any number of ranks:

1. Real features of ``reference_split`` (``n_reference`` samples, a fixed seeded subset when the split is
   larger) are extracted once and cached on disk (:mod:`genzoo.evaluation.reference`).
2. ``n_samples`` latents are drawn from a generator seeded with ``seed`` (the same latents at every event and
   for any number of ranks); each rank generates and extracts the samples ``rank::world_size`` and the features
   are gathered back into order, so a DDP evaluation equals the single-process one.
3. A metric that needs reconstructions (``reconstruction_fid``) gets ``model.reconstruct`` of the selected
   reference samples, sharded the same way and gathered back into the real features' order.
4. Rank zero computes the metrics (the functions of :mod:`genzoo.evaluation.registry`) and broadcasts them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from genzoo.evaluation.collective import Collective
from genzoo.evaluation.extractors import FeatureExtractor, build_extractor
from genzoo.evaluation.features import (
    SPLITS,
    FeatureSet,
    data_batches,
    datamodule_split,
    extract,
    finite_gathered,
    gather_feature_set,
    normalized_samples,
    subset_indices,
)
from genzoo.evaluation.reference import ReferenceCache, default_cache_dir, sample_fingerprint
from genzoo.evaluation.registry import METRICS, MetricOptions, checked_metric_names, metric_needs
from genzoo.evaluation.torchmetric import GenerativeMetrics
from genzoo.ops.utils import isolated_rng, seeded

SAMPLE_NORMALIZATIONS = ("none", "minmax")


@dataclass
class EvaluationResult:
    values: dict[str, float]
    protocol: dict[str, Any]
    prd_curve: tuple[torch.Tensor, torch.Tensor] | None = None
    seconds: float = 0.0


def class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def generated_batches(model: Any, n: int, seed: int, batch_size: int, rank: int = 0,
                      world_size: int = 1) -> Iterator[torch.Tensor]:
    """The evaluation's generated samples in batches: ``n`` latents from a generator seeded with ``seed`` (drawn
    at once, leaving the global RNG alone), this rank's ``rank::world_size`` of them generated ``batch_size`` at
    a time. ``zoo sample`` writes the same samples, so evaluating its output equals evaluating the model."""
    with isolated_rng(model.device):
        latents = model.sample_latents(n, generator=seeded(seed))
    return (model.generate(chunk) for chunk in latents[rank::world_size].split(batch_size))


@dataclass
class Evaluator:
    """Generated-vs-real metrics for any model with ``sample_latents``/``generate``/``value_range``.

    ``metrics``: names registered with :func:`~genzoo.evaluation.registry.register_metric`: ``fid``, ``kid``,
    ``inception_score`` (from the generated samples' Inception logits; ``inception`` extractor only),
    ``precision_recall`` (improved P/R), ``prd``, ``memorization`` (FlexAE's PMS in pixels and IMS in features;
    generated-to-train, train-to-train and test-to-train) and ``reconstruction_fid`` (FID of the model's
    reconstructions of the selected reference samples against those samples: FlexAE's protocol with
    ``reference_split="test"``; needs ``model.reconstruct``).
    ``n_reference=None`` uses the whole split. ``sample_normalization``: ``none``, or ``minmax`` (each generated
    sample and reconstruction rescaled to the full value range on its own before feature extraction, real images
    untouched: FlexAE's protocol; :func:`~genzoo.evaluation.features.normalized_samples`).

    The datamodule is used duck-typed: its ``<split>_set`` (after ``setup``), ``value_range``, ``num_workers``
    and ``identity()``, which keys the reference cache (a datamodule without one is not cached on disk)."""

    extractor: str = "inception"
    metrics: Sequence[str] = ("fid", "kid", "precision_recall", "prd")
    n_samples: int = 10_000
    reference_split: str = "train"
    n_reference: int | None = 10_000
    batch_size: int = 250
    seed: int = 0
    cache_dir: str | Path | None = field(default_factory=default_cache_dir)
    options: MetricOptions = field(default_factory=MetricOptions)
    sample_normalization: str = "none"

    def __post_init__(self) -> None:
        if self.sample_normalization not in SAMPLE_NORMALIZATIONS:
            raise ValueError(f"sample_normalization must be one of {SAMPLE_NORMALIZATIONS}, got "
                             f"{self.sample_normalization!r}")
        self.metrics = checked_metric_names(self.metrics)
        if self.n_samples < 2 or self.batch_size < 1 or (self.n_reference is not None and self.n_reference < 2):
            raise ValueError(f"need n_samples >= 2, n_reference >= 2 (or None) and batch_size >= 1; got "
                             f"{self.n_samples}, {self.n_reference}, {self.batch_size}")
        if self.reference_split not in SPLITS:
            raise ValueError(f"reference_split must be train, val or test, got {self.reference_split!r}")
        self.cache = ReferenceCache(self.cache_dir)
        self._extractor: FeatureExtractor | None = None
        self._real: dict[tuple[str, bool], FeatureSet] = {}
        self._memo: dict[str, Any] = {}  # the metrics' memo (MetricInputs.memo)
        self._memo_owner: int | None = None
        self.last_reference: FeatureSet | None = None

    @property
    def feature_extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            extractor = build_extractor(self.extractor)
            if self.keeps_logits and not extractor.gives_logits:
                needing = [name for name in self.metrics if "logits" in METRICS[name].needs]
                raise ValueError(f"metrics {needing} need the class logits of the Inception network; the "
                                 f"{self.extractor!r} extractor gives none: use extractor='inception'")
            self._extractor = extractor
        return self._extractor

    @property
    def needs(self) -> frozenset[str]:
        """What the requested metrics need beyond generated and reference features."""
        return metric_needs(self.metrics)

    @property
    def keeps_pixels(self) -> bool:
        return "pixels" in self.needs

    @property
    def keeps_logits(self) -> bool:
        return "logits" in self.needs

    # ---- real and generated features -------------------------------------------------------------------
    def real_features(self, datamodule: Any, split: str, device: torch.device, collective: Collective) -> FeatureSet:
        """This split's reference features (on rank zero; other ranks get an empty set), cached on disk."""
        memo_key = (split, self.keeps_pixels)
        if memo_key in self._real:
            return self._real[memo_key]
        dataset, indices = self.reference_indices(datamodule, split)
        extractor = self.feature_extractor.to(device)
        key = None
        cached = None
        if collective.rank == 0:
            key = self.cache_key(datamodule, split, dataset, indices)
            cached = self.cache.load(key) if key is not None else None
        if not collective.broadcast(cached is not None):
            batches = self.shard_batches(datamodule, dataset, indices, collective)
            local = extract(extractor, batches, datamodule.value_range, device, self.keeps_pixels)
            cached = gather_feature_set(local, len(indices), collective)
            if key is not None:
                self.cache.save(key, cached)
        result = cached if collective.rank == 0 else FeatureSet(torch.empty(0))
        self._real[memo_key] = result
        return result

    def cache_key(self, datamodule: Any, split: str, dataset: Dataset, indices: list[int]) -> dict[str, Any] | None:
        """The reference cache's key; None for a datamodule without ``identity()``: it cannot say what its
        samples depend on, and a stale hit would go unnoticed."""
        if not callable(getattr(datamodule, "identity", None)):
            return None
        return {"datamodule": datamodule.identity(), "split": split, "n": len(indices),
                "subset_seed": self.seed if len(indices) < len(dataset) else None,
                "fingerprint": sample_fingerprint(dataset, indices),
                "extractor": self.feature_extractor.protocol(), "pixels": self.keeps_pixels}

    def generated_features(self, model: Any, device: torch.device, collective: Collective) -> FeatureSet:
        extractor = self.feature_extractor.to(device)
        if isinstance(getattr(model, "sampling_network", None), torch.nn.Module):
            collective.broadcast_buffers(model.sampling_network)
        value_range = tuple(model.value_range)
        batches = (self.normalized(x, value_range) for x in generated_batches(
            model, self.n_samples, self.seed, self.batch_size, collective.rank, collective.world_size))
        local = extract(extractor, batches, value_range, device, self.keeps_pixels, self.keeps_logits)
        return finite_gathered(local, self.n_samples, collective, "generated samples")

    def reconstructed_features(self, model: Any, datamodule: Any, device: torch.device,
                               collective: Collective) -> FeatureSet:
        """Features of ``model.reconstruct`` of the reference subset, in the order of :meth:`real_features`."""
        if not callable(getattr(model, "reconstruct", None)):
            raise ValueError(f"the reconstruction_fid metric needs a model with reconstruct(); "
                             f"{type(model).__name__} has none")
        if isinstance(model, torch.nn.Module):  # batch-norm statistics of encoder and decoder
            collective.broadcast_buffers(model)
        dataset, indices = self.reference_indices(datamodule, self.reference_split)
        batches = self.shard_batches(datamodule, dataset, indices, collective)
        value_range = tuple(model.value_range)
        with isolated_rng(model.device):
            local = extract(self.feature_extractor.to(device),
                            (self.normalized(model.reconstruct(x.to(model.device)), value_range) for x in batches),
                            value_range, device, keep_pixels=False)
        return finite_gathered(local, len(indices), collective, "reconstructions")

    def normalized(self, x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
        if self.sample_normalization != "none" and not all(math.isfinite(v) for v in value_range):
            raise ValueError(f"sample_normalization={self.sample_normalization!r} rescales samples to the model's "
                             f"value_range, which must be finite; got {value_range}")
        return normalized_samples(x, value_range, self.sample_normalization)

    def reference_indices(self, datamodule: Any, split: str) -> tuple[Dataset, list[int]]:
        dataset = datamodule_split(datamodule, split)
        return dataset, subset_indices(len(dataset), self.n_reference, self.seed)

    def shard_batches(self, datamodule: Any, dataset: Dataset, indices: Sequence[int],
                      collective: Collective) -> Iterator[torch.Tensor]:
        """This rank's samples ``indices[rank::world_size]`` in batches."""
        return data_batches(dataset, indices[collective.rank::collective.world_size], self.batch_size,
                            getattr(datamodule, "num_workers", 0))

    # ---- metrics -------------------------------------------------------------------------------------------
    def evaluate(self, model: Any, datamodule: Any, device: torch.device | None = None,
                 collective: Collective | None = None, reference: FeatureSet | None = None) -> EvaluationResult:
        """The metrics of ``model``'s samples against ``datamodule``'s reference split, or against ``reference``
        features computed earlier (saved statistics); :attr:`last_reference` keeps the reference used."""
        start = time.perf_counter()
        if self._memo_owner != id(datamodule):  # in-memory reference features belong to one datamodule
            self._real, self._memo, self._memo_owner = {}, {}, id(datamodule)
        collective = collective or Collective()
        device = device or model.device
        needs = self.needs
        extra: dict[str, FeatureSet] = {}
        if "reconstruction" in needs:  # first: a model without reconstruct() fails before any work
            extra["reconstruction"] = self.reconstructed_features(model, datamodule, device, collective)
        real = reference if reference is not None else self.real_features(datamodule, self.reference_split, device,
                                                                           collective)
        self.last_reference = real
        fake = self.generated_features(model, device, collective)
        for split in ("train", "test"):
            if split in needs:
                extra[split] = self.real_features(datamodule, split, device, collective)
        result = None
        if collective.rank == 0:  # metrics run where the extractor ran: k-means and k-NN use the GPU if any
            try:
                result = self.compute(fake.to(device), real.to(device), {k: v.to(device) for k, v in extra.items()})
            except ValueError as error:
                raise ValueError(f"evaluating {len(fake.features)} generated against {len(real.features)} "
                                 f"{self.reference_split} samples: {error}") from error
            result.protocol["datamodule"] = class_path(datamodule) if reference is None else "saved features"
        result = collective.broadcast(result)
        result.seconds = time.perf_counter() - start
        return result

    def compute(self, fake: FeatureSet, real: FeatureSet, extra: dict[str, FeatureSet]) -> EvaluationResult:
        """All requested metrics from extracted features (rank zero), in the order they were registered."""
        protocol: dict[str, Any] = {"extractor": self.feature_extractor.protocol(),
                                    "n_generated": len(fake.features), "reference_split": self.reference_split,
                                    "n_reference": len(real.features), "seed": self.seed,
                                    "sample_normalization": self.sample_normalization}
        # the features are gathered already (in rank order, rank zero only): no torchmetrics sync
        metric = GenerativeMetrics(self.metrics, self.feature_extractor, options=self.options, seed=self.seed,
                                   reference_split=self.reference_split, memo=self._memo, protocol=protocol,
                                   sync_on_compute=False)
        for role, features in (("fake", fake), ("real", real), *extra.items()):
            metric.add_features(features, role)
        values = metric.compute()
        return EvaluationResult(values, metric.protocol, metric.curves.get("prd"))
