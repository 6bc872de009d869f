"""The zoo's metrics as one ``torchmetrics.Metric``, for Lightning users who keep metrics in their own modules.

    metric = GenerativeMetrics(["fid", "kid", "precision_recall"], extractor="inception")
    metric.update(real_images, real=True)      # any number of batches, on any number of ranks
    metric.update(model.sample(64), real=False)
    metric.compute()                            # {"fid": ..., "kid": ..., "kid_std": ..., "precision": ..., ...}

Features (and, when a metric needs them, 8-bit pixels and Inception logits) are kept as torchmetrics states that
gather across ranks (``dist_reduce_fx="cat"``); ``compute`` runs the registered metric functions
(:mod:`genzoo.evaluation.registry`). The training callback's :class:`~genzoo.evaluation.Evaluator` computes through
this same object (it adds the features it extracted and gathered itself), so there is one implementation. Real
features can be computed once and saved (:meth:`GenerativeMetrics.save_reference`), then loaded into any later
metric (:meth:`GenerativeMetrics.load_reference`). Metrics that compare with more than the reference take those
samples as roles: ``update(x, role="train")``, ``"test"`` (``memorization``) and ``"reconstruction"``
(``reconstruction_fid``).
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
from genzoo.evaluation.registry import METRICS, MetricInputs, MetricOptions, checked_metric_names, metric_needs

#: the sample sets a metric can compare: generated, the reference, and what some metrics need besides
ROLES = ("fake", "real", "train", "test", "reconstruction")


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
                 seed: int = 0, reference_split: str = "reference", memo: dict | None = None,
                 protocol: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric_names = checked_metric_names(metrics)
        self.extractor = build_extractor(extractor) if isinstance(extractor, str) else extractor
        if not isinstance(self.extractor, nn.Module):
            raise TypeError(f"extractor must be a registry spec or a FeatureExtractor, got {type(extractor).__name__}")
        needs = metric_needs(self.metric_names)
        if "logits" in needs and not getattr(self.extractor, "gives_logits", False):
            raise ValueError(f"metrics {list(self.metric_names)} need class logits, which this extractor does not "
                             "give: use extractor='inception'")
        self.needs = needs
        self.keep_pixels, self.keep_logits = "pixels" in needs, "logits" in needs
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.options = options or MetricOptions()
        self.seed = seed
        self.reference_split = reference_split
        self.memo = memo if memo is not None else {}  # values fixed by the data alone (memorisation baselines)
        self.base_protocol = dict(protocol or {})
        self.data_shape: tuple[int, ...] | None = None  # of the samples given to update()
        self.protocol: dict = {}  # what the last compute() did, and its curves (PRD)
        self.curves: dict = {}
        for role in ROLES:
            for kind in ("features", "pixels", "logits"):
                self.add_state(f"{role}_{kind}", default=[], dist_reduce_fx="cat")

    @torch.no_grad()
    def update(self, x: torch.Tensor, real: bool | None = None, role: str | None = None) -> None:
        """Extract and keep the features of a batch of samples: ``real=True`` (the reference), ``real=False``
        (generated) or one of :data:`ROLES` by name."""
        role = role or ("real" if real else "fake")
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.data_shape = tuple(x.shape[1:])
        logits = None
        if self.keep_logits and role == "fake":
            features, logits = self.extractor.with_logits(x, self.value_range)
        else:
            features = self.extractor(x, self.value_range)
        pixels = quantised_pixels(x, self.value_range).to(features.device) if self.keep_pixels else None
        self.add_features(FeatureSet(features.float(), pixels, None if logits is None else logits.float()), role)

    def add_features(self, features: FeatureSet, role: str) -> None:
        """Features extracted elsewhere (with this metric's extractor), e.g. gathered by the Evaluator."""
        for kind in ("features", "pixels", "logits"):
            value = getattr(features, kind)
            if value is not None:
                getattr(self, f"{role}_{kind}").append(value)

    def feature_set(self, role: str) -> FeatureSet:
        states = [getattr(self, f"{role}_{kind}") for kind in ("features", "pixels", "logits")]
        tensors = [dim_zero_cat(state) if isinstance(state, torch.Tensor) or state else None for state in states]
        if tensors[0] is None or len(tensors[0]) < 2:
            how = {"real": "update(x, real=True)", "fake": "update(x, real=False)"}.get(role,
                                                                                     f"update(x, role={role!r})")
            raise ValueError(f"GenerativeMetrics needs at least 2 {role} samples before compute(): call {how} first")
        return FeatureSet(*tensors)

    def compute(self) -> dict[str, float]:
        extra = {role: self.feature_set(role) for role in ("train", "test", "reconstruction") if role in self.needs}
        protocol = dict(self.base_protocol)
        inputs = MetricInputs(self.feature_set("fake"), self.feature_set("real"), self.options, self.seed,
                              self.reference_split, extra, self.memo, protocol)
        values: dict[str, float] = {}
        for name, metric in METRICS.items():  # registration order, whatever order they were asked in
            if name in self.metric_names:
                values.update(metric.function(inputs))
        self.protocol, self.curves = inputs.protocol, inputs.curves
        return values

    # ---- pre-computed reference statistics ------------------------------------------------------------------
    def save_reference(self, path: str | Path) -> None:
        """The real features (and pixels) gathered so far, with the extractor's protocol, to ``path``."""
        save_reference_features(path, self.feature_set("real"), self.extractor.protocol(), self.data_shape)

    def load_reference(self, path: str | Path) -> None:
        """Real features saved by :meth:`save_reference` (or ``zoo evaluate --save_reference``), replacing any real
        samples given so far; the extractor's protocol must match the one they were computed with."""
        real, _, saved_protocol = load_reference_features(path)
        check_reference_features(path, real, saved_protocol, self.extractor.protocol(), self.keep_pixels)
        device = self.device
        self.real_features = [real.features.to(device)]
        self.real_pixels = [real.pixels.to(device)] if self.keep_pixels else []
        self.real_logits = []


def save_reference_features(path: str | Path, real: FeatureSet, protocol: dict, data_shape: tuple | None) -> None:
    """Reference features as a plain-tensor file: reusable by :class:`GenerativeMetrics` and ``zoo evaluate``."""
    atomic_save({"protocol": protocol, "data_shape": None if data_shape is None else list(data_shape),
                 "features": real.features.cpu(), "pixels": None if real.pixels is None else real.pixels.cpu()}, path)


def load_reference_features(path: str | Path) -> tuple[FeatureSet, tuple | None, dict | None]:
    """``(features, data_shape, extractor protocol)`` saved by :func:`save_reference_features`; errors name the
    file. Check the protocol with :func:`check_reference_features` before using them."""
    saved = load_plain(path)
    if not isinstance(saved, dict) or "features" not in saved:
        raise ValueError(f"{path} is not a reference-features file (save one with GenerativeMetrics.save_reference "
                         "or `zoo evaluate ... --save_reference PATH`)")
    shape = saved.get("data_shape")
    return (FeatureSet(saved["features"], saved.get("pixels")), tuple(shape) if shape is not None else None,
            saved.get("protocol"))


def check_reference_features(path: str | Path, features: FeatureSet, saved_protocol: dict | None, protocol: dict,
                             need_pixels: bool) -> None:
    """Saved reference features must come from the extractor protocol in use, with pixels when a metric needs them."""
    if saved_protocol != protocol:
        raise ValueError(f"{path} holds features of another extractor protocol ({saved_protocol}); this "
                         f"evaluation uses {protocol}")
    if need_pixels and features.pixels is None:
        raise ValueError(f"{path} holds no pixels, which the requested metrics need")
