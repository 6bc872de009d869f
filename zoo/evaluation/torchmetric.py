"""The zoo's metrics as one ``torchmetrics.Metric``, for Lightning users who keep metrics in their own modules.

    metric = GenerativeMetrics(["fid", "kid", "precision_recall"], extractor="inception")
    metric.update(real_images, real=True)      # any number of batches, on any number of ranks
    metric.update(model.sample(64), real=False)
    metric.compute()                            # {"fid": ..., "kid": ..., "kid_std": ..., "precision": ..., ...}

Features (and, when a metric needs them, 8-bit pixels and Inception logits) are kept as torchmetrics states that
gather across ranks (``dist_reduce_fx="cat"``); ``compute`` runs the registered metric functions
(:mod:`genzoo.evaluation.registry`), the same code the training callback uses, on rank order. Real features can be
computed once and saved (:meth:`GenerativeMetrics.save_reference`), then loaded into any later metric
(:meth:`GenerativeMetrics.load_reference`). Metrics that need whole datamodule splits or reconstructions
(``memorization``, ``reconstruction_fid``) stay with :class:`~genzoo.evaluation.Evaluator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from genzoo.checkpoints import atomic_save, load_plain
from genzoo.evaluation.extractors import FeatureExtractor, build_extractor
from genzoo.evaluation.features import FeatureSet, quantised_pixels
from genzoo.evaluation.registry import METRICS, MetricInputs, MetricOptions, resolve_metric_names

#: inputs a torchmetrics object can hold itself (the rest need datamodule splits or a model)
SUPPORTED_NEEDS = frozenset({"pixels", "logits"})


class GenerativeMetrics(Metric):
    """Registered metrics (``fid``, ``kid``, ``inception_score``, ``precision_recall``, ``prd``, your own) of generated
    against real samples, as a ``torchmetrics.Metric``.

    ``extractor``: a registry spec (``"inception"``, ``"vgg16"``, ``"classifier:fashion_mnist"``, ``"pixels"``) or a
    :class:`~genzoo.evaluation.extractors.FeatureExtractor`; ``value_range``: the range of the samples passed to
    :meth:`update` (what the model generates and the datamodule yields)."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, metrics: Sequence[str] = ("fid",), extractor: str | FeatureExtractor = "inception",
                 value_range: tuple[float, float] = (-1.0, 1.0), options: MetricOptions | None = None,
                 seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric_names = resolve_metric_names(metrics)
        unknown = sorted(set(self.metric_names) - set(METRICS))
        if unknown or not self.metric_names:
            raise ValueError(f"unknown or no metrics {unknown or list(metrics)}; choose from {list(METRICS)}")
        unsupported = {name: sorted(METRICS[name].needs - SUPPORTED_NEEDS) for name in self.metric_names
                       if METRICS[name].needs - SUPPORTED_NEEDS}
        if unsupported:
            raise ValueError(f"metrics {unsupported} need datamodule splits or a model: use "
                             "genzoo.evaluation.Evaluator")
        self.extractor = build_extractor(extractor) if isinstance(extractor, str) else extractor
        if not isinstance(self.extractor, nn.Module):
            raise TypeError(f"extractor must be a registry spec or a FeatureExtractor, got {type(extractor).__name__}")
        needs = frozenset().union(*(METRICS[name].needs for name in self.metric_names))
        if "logits" in needs and not getattr(self.extractor, "gives_logits", False):
            raise ValueError(f"metrics {list(self.metric_names)} need class logits, which this extractor does not "
                             "give: use extractor='inception'")
        self.keep_pixels, self.keep_logits = "pixels" in needs, "logits" in needs
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.options = options or MetricOptions()
        self.seed = seed
        for side in ("real", "fake"):
            for kind in ("features", "pixels", "logits"):
                self.add_state(f"{side}_{kind}", default=[], dist_reduce_fx="cat")

    @torch.no_grad()
    def update(self, x: torch.Tensor, real: bool) -> None:
        """Extract and keep the features of a batch of samples (``real`` or generated)."""
        side = "real" if real else "fake"
        if self.keep_logits and not real:
            features, logits = self.extractor.with_logits(x, self.value_range)
            getattr(self, f"{side}_logits").append(logits.float())
        else:
            features = self.extractor(x, self.value_range)
        getattr(self, f"{side}_features").append(features.float())
        if self.keep_pixels:
            getattr(self, f"{side}_pixels").append(quantised_pixels(x, self.value_range).to(features.device))

    def feature_set(self, side: str) -> FeatureSet:
        states = [getattr(self, f"{side}_{kind}") for kind in ("features", "pixels", "logits")]
        tensors = [dim_zero_cat(state) if isinstance(state, torch.Tensor) or state else None for state in states]
        if tensors[0] is None or len(tensors[0]) < 2:
            raise ValueError(f"GenerativeMetrics needs at least 2 {side} samples before compute(): call "
                             f"update(x, real={side == 'real'}) first")
        return FeatureSet(*tensors)

    def compute(self) -> dict[str, float]:
        inputs = MetricInputs(self.feature_set("fake"), self.feature_set("real"), self.options, self.seed,
                              reference_split="update")
        values: dict[str, float] = {}
        for name in self.metric_names:
            values.update(METRICS[name].function(inputs))
        return values

    # ---- pre-computed reference statistics ------------------------------------------------------------------
    def save_reference(self, path: str | Path) -> None:
        """The real features (and pixels) gathered so far, with the extractor's protocol, to ``path``."""
        real = self.feature_set("real")
        atomic_save({"protocol": self.extractor.protocol(), "features": real.features.cpu(),
                     "pixels": None if real.pixels is None else real.pixels.cpu()}, path)

    def load_reference(self, path: str | Path) -> None:
        """Real features saved by :meth:`save_reference`, replacing any real samples given so far; the extractor's
        protocol must match the one they were computed with."""
        saved = load_plain(path)
        if saved.get("protocol") != self.extractor.protocol():
            raise ValueError(f"{path} holds features of another extractor protocol ({saved.get('protocol')}); this "
                             f"metric uses {self.extractor.protocol()}")
        if self.keep_pixels and saved.get("pixels") is None:
            raise ValueError(f"{path} holds no pixels, which {list(self.metric_names)} need")
        device = self.device
        self.real_features = [saved["features"].to(device)]
        self.real_pixels = [saved["pixels"].to(device)] if self.keep_pixels else []
        self.real_logits = []
