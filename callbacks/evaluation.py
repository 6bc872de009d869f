"""Evaluation: every requested metric from one pass of feature extraction, with cached real-data statistics.

:class:`Evaluator` is Lightning-free (``benchmarks.evaluate`` uses it on a checkpoint); :class:`Evaluation` is
the callback that runs it during training and logs values, protocol and plots. Both follow one protocol:

1. Real features of ``reference_split`` (``n_reference`` samples, a fixed seeded subset when the split is
   larger) are extracted once and cached on disk, keyed by the datamodule and its settings, the split, the
   subset, a fingerprint of its first samples and the extractor's protocol (network, weights hash,
   preprocessing). A changed key recomputes.
2. ``n_samples`` latents are drawn from a generator seeded with ``seed`` (the same latents at every event and
   for any number of ranks); each rank generates and extracts the samples ``rank::world_size`` and the features
   are gathered back into order, so a DDP evaluation equals the single-process one.
3. With ``reconstruction_fid`` (autoencoders), each rank reconstructs the selected reference samples
   ``rank::world_size`` with ``model.reconstruct`` and extracts them, gathered back into the real features' order.
4. Rank zero computes the metrics (pure functions in :mod:`callbacks.metrics`) and broadcasts them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, Dataset, Subset

from callbacks import metrics as M
from callbacks.extractors import FeatureExtractor, build_extractor
from callbacks.logging import PeriodicCallback, figure_to_array, image_dir, log_image, log_metrics
from zoo.checkpoints import atomic_save, load_plain
from zoo.ops.utils import isolated_rng

METRICS = ("fid", "kid", "precision_recall", "prd", "memorization", "reconstruction_fid")
SAMPLE_NORMALIZATIONS = ("none", "minmax")
CACHE_ENV = "GENZOO_CACHE_DIR"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, "~/.cache/genzoo")).expanduser() / "reference"


# ------------------------------------------------------------------------------------ collective operations

class Collective:
    """The three collective operations evaluation needs; the base class is the single-process case."""

    rank, world_size = 0, 1

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.unsqueeze(0)

    def broadcast(self, obj: Any) -> Any:
        return obj

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Give every rank rank zero's buffers (batch-norm running statistics drift apart under DDP, which
        only syncs them at the next forward) so that all shards come from the network a checkpoint holds."""


class TrainerCollective(Collective):
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


def gather_in_order(local: torch.Tensor, total: int, collective: Collective) -> torch.Tensor:
    """Reassemble rows that rank r computed for positions ``r::world_size`` into their original order."""
    world = collective.world_size
    padded = local.new_zeros((math.ceil(total / world), *local.shape[1:]))
    padded[: len(local)] = local
    gathered = collective.all_gather(padded)
    out = local.new_empty((total, *local.shape[1:]))
    for rank in range(world):
        out[rank::world] = gathered[rank, : len(range(rank, total, world))]
    return out


# ----------------------------------------------------------------------------------------------- features

@dataclass
class FeatureSet:
    """Features (N, d) and, for the pixel-space memorisation score, the samples as uint8 in [0, 255]."""

    features: torch.Tensor
    pixels: torch.Tensor | None = None

    def to(self, device: torch.device) -> FeatureSet:
        return FeatureSet(self.features.to(device), self.pixels.to(device) if self.pixels is not None else None)

    def unit_pixels(self) -> torch.Tensor:
        return self.pixels.flatten(1).float() / 255


def quantised_pixels(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    if not all(math.isfinite(v) for v in value_range):
        raise ValueError("the pixel-space memorisation score needs image data with a finite value_range")
    low, high = value_range
    return ((x.float() - low) / (high - low)).clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def extract(extractor: FeatureExtractor, batches: Iterable[torch.Tensor], value_range: tuple[float, float],
            device: torch.device, keep_pixels: bool) -> FeatureSet:
    features, pixels = [], []
    for x in batches:
        features.append(extractor(x.to(device), value_range).cpu())
        if keep_pixels:
            pixels.append(quantised_pixels(x, value_range))
    return FeatureSet(torch.cat(features) if features else torch.empty(0, extractor.dim),
                      torch.cat(pixels) if keep_pixels and pixels else None)


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
    features = gather_in_order(local.features, total, collective)
    pixels = gather_in_order(local.pixels, total, collective) if local.pixels is not None else None
    return FeatureSet(features, pixels)


def finite_gathered(local: FeatureSet, total: int, collective: Collective, what: str) -> FeatureSet:
    """:func:`gather_feature_set` after checking that this rank's model outputs gave finite features."""
    if not torch.isfinite(local.features).all():
        raise FloatingPointError(f"{what} give non-finite features: the model has diverged")
    return gather_feature_set(local, total, collective)


# ------------------------------------------------------------------------------------------- real data

def datamodule_identity(datamodule: L.LightningDataModule) -> dict[str, Any]:
    """The datamodule's class and settings that can change its samples (not paths, batch sizes, workers).

    A datamodule held as a setting (a wrapper's ``base``) contributes its own identity, so wrappers of different
    datasets never share a reference cache entry."""
    ignored = {"data_dir", "batch_size", "num_workers", "prepare_data_per_node",
               "allow_zero_length_dataloader_with_multiple_devices"}
    scalar = int | float | str | bool
    settings: dict[str, Any] = {}
    for key, value in sorted(vars(datamodule).items()):
        if key.startswith("_") or key in ignored:
            continue
        if isinstance(value, scalar):
            settings[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(item, scalar) for item in value):
            settings[key] = list(value)
        elif isinstance(value, L.LightningDataModule):
            settings[key] = datamodule_identity(value)
    return {"class": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}", **settings}


def split_dataset(datamodule: L.LightningDataModule, split: str) -> Dataset:
    if getattr(datamodule, "train_set", None) is None and hasattr(datamodule, "setup"):
        datamodule.setup("fit")
    dataset = getattr(datamodule, f"{split}_set", None)
    if dataset is None or len(dataset) == 0:
        available = [s for s in ("train", "val", "test") if getattr(datamodule, f"{s}_set", None) is not None]
        raise ValueError(f"{type(datamodule).__name__} has no {split!r} split (available: {available})")
    return dataset


def subset_indices(size: int, n: int | None, seed: int) -> list[int]:
    """All indices, or a fixed random subset of ``n`` in increasing order."""
    if n is None or n >= size:
        return list(range(size))
    return sorted(torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n].tolist())


def data_batches(dataset: Dataset, indices: Sequence[int], batch_size: int, num_workers: int) -> Iterator[torch.Tensor]:
    loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, num_workers=num_workers)
    for batch in loader:
        yield batch["x"] if isinstance(batch, dict) else batch


class ReferenceCache:
    """Real-data feature sets on disk, one file per key, written atomically by rank zero."""

    def __init__(self, directory: str | Path | None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else None

    def path(self, key: dict[str, Any]) -> Path | None:
        if self.directory is None:
            return None
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        name = key["datamodule"]["class"].rsplit(".", 1)[-1]
        extractor = str(key["extractor"].get("extractor", "features"))
        return self.directory / f"{name}-{key['split']}-{key['n']}-{extractor}-{digest}.pt"

    def load(self, key: dict[str, Any]) -> FeatureSet | None:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            entry = load_plain(path, "reference cache")
            if entry.get("key") != json.loads(json.dumps(key, default=str)):
                raise ValueError("its key differs")
            return FeatureSet(entry["features"], entry.get("pixels"))
        except Exception as error:  # corrupt or foreign file: recompute rather than trust it
            warnings.warn(f"ignoring reference cache {path} ({error}); recomputing", stacklevel=2)
            return None

    def save(self, key: dict[str, Any], value: FeatureSet) -> None:
        path = self.path(key)
        if path is None:
            return
        atomic_save({"key": json.loads(json.dumps(key, default=str)), "features": value.features,
                     "pixels": value.pixels}, path)


# ---------------------------------------------------------------------------------------------- evaluator

@dataclass
class MetricOptions:
    """Metric settings; defaults are the reference implementations' (see :mod:`callbacks.metrics`)."""

    kid_subsets: int = 100
    kid_subset_size: int = 1000
    pr_k: int = 3
    prd_clusters: int = 20
    prd_angles: int = 1001
    prd_runs: int = 10
    prd_beta: float = 8.0


@dataclass
class EvaluationResult:
    values: dict[str, float]
    protocol: dict[str, Any]
    prd_curve: tuple[torch.Tensor, torch.Tensor] | None = None
    seconds: float = 0.0


@dataclass
class Evaluator:
    """Generated-vs-real metrics for any model with ``sample_latents``/``generate``/``value_range``.

    ``metrics``: any of ``fid``, ``kid``, ``precision_recall`` (improved P/R), ``prd``, ``memorization``
    (FlexAE's PMS in pixels and IMS in features; generated-to-train, train-to-train and test-to-train) and
    ``reconstruction_fid`` (FID of the model's reconstructions of the selected reference samples against those
    samples: FlexAE's protocol with ``reference_split="test"``; needs ``model.reconstruct``).
    ``n_reference=None`` uses the whole split. ``sample_normalization``: ``none``, or ``minmax`` (each generated
    sample and reconstruction rescaled to the full value range on its own before feature extraction, real images
    untouched: FlexAE's protocol; :func:`normalized_samples`)."""

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
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown or not self.metrics:
            raise ValueError(f"unknown or no metrics {unknown or list(self.metrics)}; choose from {list(METRICS)}")
        if self.n_samples < 2 or self.batch_size < 1 or (self.n_reference is not None and self.n_reference < 2):
            raise ValueError(f"need n_samples >= 2, n_reference >= 2 (or None) and batch_size >= 1; got "
                             f"{self.n_samples}, {self.n_reference}, {self.batch_size}")
        if self.reference_split not in ("train", "val", "test"):
            raise ValueError(f"reference_split must be train, val or test, got {self.reference_split!r}")
        self.cache = ReferenceCache(self.cache_dir)
        self._extractor: FeatureExtractor | None = None
        self._real: dict[tuple[str, bool], FeatureSet] = {}
        self._memorization_baselines: dict[str, float] | None = None
        self._memo_owner: int | None = None

    @property
    def feature_extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = build_extractor(self.extractor)
        return self._extractor

    @property
    def keeps_pixels(self) -> bool:
        return "memorization" in self.metrics

    # ---- real and generated features -------------------------------------------------------------------
    def real_features(self, datamodule: L.LightningDataModule, split: str, device: torch.device,
                      collective: Collective) -> FeatureSet:
        """This split's reference features (on rank zero; other ranks get an empty set), cached on disk."""
        memo_key = (split, self.keeps_pixels)
        if memo_key in self._real:
            return self._real[memo_key]
        dataset, indices = self.reference_indices(datamodule, split)
        extractor = self.feature_extractor.to(device)
        key = None
        cached = None
        if collective.rank == 0:
            key = {"datamodule": datamodule_identity(datamodule), "split": split, "n": len(indices),
                   "subset_seed": self.seed if len(indices) < len(dataset) else None,
                   "fingerprint": sample_fingerprint(dataset, indices),
                   "extractor": extractor.protocol(), "pixels": self.keeps_pixels}
            cached = self.cache.load(key)
        if not collective.broadcast(cached is not None):
            batches = self.shard_batches(datamodule, dataset, indices, collective)
            local = extract(extractor, batches, datamodule.value_range, device, self.keeps_pixels)
            cached = gather_feature_set(local, len(indices), collective)
            if collective.rank == 0:
                self.cache.save(key, cached)
        result = cached if collective.rank == 0 else FeatureSet(torch.empty(0))
        self._real[memo_key] = result
        return result

    def generated_features(self, model: Any, device: torch.device, collective: Collective) -> FeatureSet:
        extractor = self.feature_extractor.to(device)
        if isinstance(getattr(model, "sampling_network", None), torch.nn.Module):
            collective.broadcast_buffers(model.sampling_network)
        with isolated_rng(model.device):
            latents = model.sample_latents(self.n_samples, generator=torch.Generator().manual_seed(self.seed))
        mine = latents[collective.rank::collective.world_size]
        value_range = tuple(model.value_range)
        batches = (self.normalized(model.generate(chunk), value_range) for chunk in mine.split(self.batch_size))
        local = extract(extractor, batches, value_range, device, self.keeps_pixels)
        return finite_gathered(local, self.n_samples, collective, "generated samples")

    def reconstructed_features(self, model: Any, datamodule: L.LightningDataModule, device: torch.device,
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

    def reference_indices(self, datamodule: L.LightningDataModule, split: str) -> tuple[Dataset, list[int]]:
        dataset = split_dataset(datamodule, split)
        return dataset, subset_indices(len(dataset), self.n_reference, self.seed)

    def shard_batches(self, datamodule: L.LightningDataModule, dataset: Dataset, indices: Sequence[int],
                      collective: Collective) -> Iterator[torch.Tensor]:
        """This rank's samples ``indices[rank::world_size]`` in batches."""
        return data_batches(dataset, indices[collective.rank::collective.world_size], self.batch_size,
                            getattr(datamodule, "num_workers", 0))

    # ---- metrics -------------------------------------------------------------------------------------------
    def evaluate(self, model: Any, datamodule: L.LightningDataModule, device: torch.device | None = None,
                 collective: Collective | None = None) -> EvaluationResult:
        start = time.perf_counter()
        if self._memo_owner != id(datamodule):  # in-memory reference features belong to one datamodule
            self._real, self._memorization_baselines, self._memo_owner = {}, None, id(datamodule)
        collective = collective or Collective()
        device = device or model.device
        extra: dict[str, FeatureSet] = {}
        if "reconstruction_fid" in self.metrics:  # first: a model without reconstruct() fails before any work
            extra["reconstruction"] = self.reconstructed_features(model, datamodule, device, collective)
        real = self.real_features(datamodule, self.reference_split, device, collective)
        fake = self.generated_features(model, device, collective)
        if "memorization" in self.metrics:
            extra["train"] = self.real_features(datamodule, "train", device, collective)
            extra["test"] = self.real_features(datamodule, "test", device, collective)
        result = None
        if collective.rank == 0:  # metrics run where the extractor ran: k-means and k-NN use the GPU if any
            try:
                result = self.compute(fake.to(device), real.to(device), {k: v.to(device) for k, v in extra.items()})
            except ValueError as error:
                raise ValueError(f"evaluating {len(fake.features)} generated against {len(real.features)} "
                                 f"{self.reference_split} samples: {error}") from error
            result.protocol["datamodule"] = datamodule_identity(datamodule)["class"]
        result = collective.broadcast(result)
        result.seconds = time.perf_counter() - start
        return result

    def compute(self, fake: FeatureSet, real: FeatureSet, extra: dict[str, FeatureSet]) -> EvaluationResult:
        """All requested metrics from extracted features (rank zero)."""
        o = self.options
        values: dict[str, float] = {}
        protocol: dict[str, Any] = {"extractor": self.feature_extractor.protocol(),
                                    "n_generated": len(fake.features), "reference_split": self.reference_split,
                                    "n_reference": len(real.features), "seed": self.seed,
                                    "sample_normalization": self.sample_normalization}
        prd_curve = None
        f, r = fake.features, real.features
        if "fid" in self.metrics:
            values["fid"] = M.frechet_distance(f, r)
        if "kid" in self.metrics:
            subset = min(o.kid_subset_size, len(f), len(r))
            values["kid"], values["kid_std"] = M.kernel_distance(f, r, o.kid_subsets, subset, seed=self.seed)
            protocol["kid"] = {"subsets": o.kid_subsets, "subset_size": subset}
        if "precision_recall" in self.metrics:
            values.update(M.precision_recall(r, f, k=o.pr_k))
            protocol["precision_recall"] = {"k": o.pr_k}
        if "prd" in self.metrics:
            n = min(len(f), len(r))  # PRD compares equal-sized sets, as the reference enforces
            prd_curve = M.prd(f[:n], r[:n], o.prd_clusters, o.prd_angles, o.prd_runs, seed=self.seed)
            values["prd_f8"], values["prd_f1_8"] = M.prd_f_beta(*prd_curve, beta=o.prd_beta)
            protocol["prd"] = {"n": n, "clusters": o.prd_clusters, "angles": o.prd_angles, "runs": o.prd_runs,
                               "beta": o.prd_beta}
        if "reconstruction_fid" in self.metrics:
            values["reconstruction_fid"] = M.frechet_distance(extra["reconstruction"].features, r)
            protocol["reconstruction_fid"] = {"n": len(extra["reconstruction"].features),
                                              "split": self.reference_split}
        if "memorization" in self.metrics:
            values.update(self.memorization(fake, extra["train"], extra["test"]))
            protocol["memorization"] = {"n_train": len(extra["train"].features),
                                        "n_test": len(extra["test"].features), "pixels": "uint8 / 255, flattened"}
        return EvaluationResult(values, protocol, prd_curve)

    def memorization(self, fake: FeatureSet, train: FeatureSet, test: FeatureSet) -> dict[str, float]:
        """PMS/IMS of generated samples against train, with the train-train and test-train baselines (fixed per
        dataset, so computed once)."""
        values = {"pms": M.memorization_score(fake.unit_pixels(), train.unit_pixels()),
                  "ims": M.memorization_score(fake.features, train.features)}
        if self._memorization_baselines is None:
            self._memorization_baselines = {
                "pms_train_train": M.memorization_score(train.unit_pixels(), train.unit_pixels(), exclude_self=True),
                "ims_train_train": M.memorization_score(train.features, train.features, exclude_self=True),
                "pms_test_train": M.memorization_score(test.unit_pixels(), train.unit_pixels()),
                "ims_test_train": M.memorization_score(test.features, train.features)}
        return {**values, **self._memorization_baselines}


def sample_fingerprint(dataset: Dataset, indices: Sequence[int], count: int = 16) -> str:
    """A hash of the first and last few selected samples: changed files or preprocessing change the key."""
    digest = hashlib.sha256()
    for i in list(indices[:count]) + list(indices[-count:]):
        sample = dataset[i]
        x = sample["x"] if isinstance(sample, dict) else sample
        digest.update(np.ascontiguousarray(torch.as_tensor(x).float().numpy()).tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- callback

class Evaluation(PeriodicCallback):
    """Runs an :class:`Evaluator` every ``every_n_steps`` optimizer steps and/or ``every_n_epochs`` epochs and
    at the end of training, on all ranks, and logs ``<prefix>/<metric>`` (``eval/fid``, ``eval/kid``,
    ``eval/precision``, ``eval/recall``, ``eval/prd_f8``, ``eval/prd_f1_8``, ``eval/pms``,
    ``eval/reconstruction_fid``, …) with the protocol (extractor, weights hash, sample sizes, reference split)
    as the logger's hyper-parameter ``evaluation``.
    Values also go to ``trainer.callback_metrics``, so ``ModelCheckpoint(monitor="eval/fid")`` keeps the best.

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
                 kid_subsets: int = 100, kid_subset_size: int = 1000, pr_k: int = 3, prd_clusters: int = 20,
                 prd_angles: int = 1001, prd_runs: int = 10, train_missing_classifier: bool = False,
                 sample_normalization: str = "none") -> None:
        super().__init__(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        self.train_missing_classifier = train_missing_classifier
        options = MetricOptions(kid_subsets, kid_subset_size, pr_k, prd_clusters, prd_angles, prd_runs)
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
        from callbacks.extractors.classifier import resolve_checkpoint, save_classifier, train_classifier

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


def prd_plot(precision: torch.Tensor, recall: torch.Tensor, step: int) -> np.ndarray:
    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    ax = fig.add_subplot()
    ax.plot(recall.numpy(), precision.numpy(), lw=2)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=f"PRD, step {step}")
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
